package manifests

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
)

// The README's reference sections are generated from the values the server uses, between
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
	return fmt.Sprintf("GPU label values (%d): %s.\n\nAccelerators that are not GPUs, recognised and left alone (%d): %s.\n\nInstance types in the tables: %s (%d in all).\n",
		len(byKind[gpuinfo.KindGPU]), strings.Join(byKind[gpuinfo.KindGPU], ", "),
		len(byKind[gpuinfo.KindAccelerator]), strings.Join(byKind[gpuinfo.KindAccelerator], ", "),
		strings.Join(names, ", "), len(kb.InstanceTypes()))
}

var sections = map[string]func() string{
	"alerts-reference":      AlertsReference,
	"config-reference":      ConfigReference,
	"metrics-reference":     MetricsReference,
	"recognition-reference": RecognitionReference,
}

// RenderREADME replaces each generated section of the README text.
func RenderREADME(text string) (string, error) {
	for name, gen := range sections {
		re := regexp.MustCompile(`(?s)(<!-- ` + name + ` start -->\n).*?(<!-- ` + name + ` end -->)`)
		if !re.MatchString(text) {
			return "", fmt.Errorf("README has no %s markers", name)
		}
		body := gen()
		text = re.ReplaceAllStringFunc(text, func(m string) string {
			sub := re.FindStringSubmatch(m)
			return sub[1] + body + sub[2]
		})
	}
	return text, nil
}

// UpdateREADME rewrites the generated sections of the README at path.
func UpdateREADME(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := RenderREADME(string(b))
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
