package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
)

// The documents' reference sections (in the README and docs/) are generated from the values the server uses, between
// markers, so the docs cannot drift from the code.

// ConfigReference is the table of ConfigMap keys.
func ConfigReference() string {
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	for _, k := range admit.ConfigKeys {
		def := k.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", k.Key, def, k.Doc)
	}
	return b.String()
}

// ExportedMetrics are the families of the webhook's own metrics, from the registry the server
// fills, each vector touched once so that Gather reports it.
func ExportedMetrics() []*dto.MetricFamily {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Requests.WithLabelValues("", "", "")
	m.Latency.WithLabelValues("")
	m.Findings.WithLabelValues("")
	m.ConfigReloads.WithLabelValues("")
	m.Events.WithLabelValues("")
	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	return families
}

// MetricsReference lists every metric the server exports.
func MetricsReference() string {
	families := ExportedMetrics()
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, f := range families {
		var labels []string
		if len(f.Metric) > 0 {
			for _, l := range f.Metric[0].Label {
				labels = append(labels, l.GetName())
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.GetName(), strings.ToLower(f.GetType().String()), strings.Join(labels, ", "), f.GetHelp())
	}
	return b.String()
}

// RecognitionReference says which models and instance types the webhook knows.
func RecognitionReference() string {
	kb := gpuinfo.Default()
	byKind := map[gpuinfo.Kind][]string{}
	for _, m := range kb.Models() {
		byKind[m.Kind] = append(byKind[m.Kind], "`"+m.LabelValue()+"`")
	}
	clouds := map[string]int{}
	for _, it := range kb.InstanceTypes() {
		clouds[it.Cloud]++
	}
	names := make([]string, 0, len(clouds))
	for c := range clouds {
		names = append(names, fmt.Sprintf("%s %d", c, clouds[c]))
	}
	sort.Strings(names)
	// Device-plugin resources by kind, in resources.tsv's order; a prefix ends in *.
	byType := map[gpuinfo.ResourceType][]string{}
	var types []gpuinfo.ResourceType
	for _, r := range gpuinfo.Resources() {
		name := r.Name
		switch r.Match {
		case "prefix":
			name += "*"
		case "model":
			name += "<MODEL>_*"
		case "vgpu":
			name += "<MODEL>_*-<PROFILE>"
		}
		if byType[r.Type] == nil {
			types = append(types, r.Type)
		}
		byType[r.Type] = append(byType[r.Type], "`"+name+"`")
	}
	var res []string
	for _, t := range types {
		res = append(res, fmt.Sprintf("%s: %s", t, strings.Join(byType[t], ", ")))
	}
	var generic []string
	for _, c := range kb.Conventions() {
		if c.Reader() == "generic" {
			generic = append(generic, fmt.Sprintf("`%s` (designed from %s)", c.Key, strings.TrimPrefix(c.Doc, "designed from: ")))
		}
	}
	return fmt.Sprintf("GPU label values (%d): %s.\n\nAccelerators that are not GPUs, recognised and left alone (%d): %s.\n\nInstance types in the tables: %s (%d in all).\n\n"+
		"Device-plugin resources (%d; only a gpu resource counts physical GPUs, and not beside the others): %s.\n\n"+
		"Generic readers, the least trusted evidence, for label keys no other row knows that hold the word %s: a model only where exactly one model matches and its memory variant is stated, never against more trusted evidence; else a GPU node of unknown model.\n",
		len(byKind[gpuinfo.KindGPU]), strings.Join(byKind[gpuinfo.KindGPU], ", "),
		len(byKind[gpuinfo.KindAccelerator]), strings.Join(byKind[gpuinfo.KindAccelerator], ", "),
		strings.Join(names, ", "), len(kb.InstanceTypes()), len(gpuinfo.Resources()), strings.Join(res, "; "), strings.Join(generic, " or "))
}

var sections = map[string]func() string{
	"alerts-reference":      AlertsReference,
	"config-reference":      ConfigReference,
	"metrics-reference":     MetricsReference,
	"recognition-reference": RecognitionReference,
}

// DocFiles are the Markdown files that may hold generated sections, relative to the
// repository's root: the README and the pages under docs/.
func DocFiles(root string) ([]string, error) {
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	return append([]string{filepath.Join(root, "README.md")}, pages...), nil
}

// RenderDocs replaces each generated section in the documents it is given (path to text). Each
// section must appear in exactly one of them, so a section moved to another page moves its
// markers with it and cannot be left behind, stale, in two places.
func RenderDocs(docs map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(docs))
	for path, text := range docs {
		out[path] = text
	}
	for name, gen := range sections {
		re := regexp.MustCompile(`(?s)(<!-- ` + name + ` start -->\n).*?(<!-- ` + name + ` end -->)`)
		var found []string
		for path, text := range out {
			if n := len(re.FindAllStringIndex(text, -1)); n > 0 {
				found = append(found, path)
				if n > 1 {
					return nil, fmt.Errorf("%s holds the %s section %d times", path, name, n)
				}
			}
		}
		sort.Strings(found)
		switch len(found) {
		case 0:
			return nil, fmt.Errorf("no document has %s markers", name)
		case 1:
		default:
			return nil, fmt.Errorf("the %s section is in %s: keep it in one", name, strings.Join(found, " and "))
		}
		body := gen()
		out[found[0]] = re.ReplaceAllStringFunc(out[found[0]], func(m string) string {
			sub := re.FindStringSubmatch(m)
			return sub[1] + body + sub[2]
		})
	}
	return out, nil
}

// ReadDocs reads the documents under root that may hold generated sections.
func ReadDocs(root string) (map[string]string, error) {
	files, err := DocFiles(root)
	if err != nil {
		return nil, err
	}
	docs := make(map[string]string, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs[f] = string(b)
	}
	return docs, nil
}

// UpdateDocs rewrites the generated sections of the README and docs/ under root.
func UpdateDocs(root string) error {
	docs, err := ReadDocs(root)
	if err != nil {
		return err
	}
	out, err := RenderDocs(docs)
	if err != nil {
		return err
	}
	for path, text := range out {
		if text != docs[path] {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
