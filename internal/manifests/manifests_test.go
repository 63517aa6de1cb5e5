package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
)

// The checked-in manifests are what the generator writes.
func TestManifestsUpToDate(t *testing.T) {
	for dir, gen := range map[string]func() (map[string][]byte, error){"manifests": Files, ChartDir: ChartFiles} {
		files, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range files {
			got, err := os.ReadFile(filepath.Join("..", "..", dir, path))
			if err != nil {
				t.Errorf("%s/%s: %v (run make manifests)", dir, path, err)
				continue
			}
			if string(got) != string(want) {
				t.Errorf("%s/%s differs from the generator: run make manifests", dir, path)
			}
		}
	}
}

// compile builds the match conditions with the variables the apiserver gives them.
func compile(t *testing.T, exprs ...string) []cel.Program {
	t.Helper()
	env, err := cel.NewEnv(ext.Strings(),
		cel.Variable("object", cel.DynType), cel.Variable("oldObject", cel.DynType), cel.Variable("request", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	var out []cel.Program
	for _, e := range exprs {
		ast, iss := env.Compile(e)
		if iss.Err() != nil {
			t.Fatalf("compile %q: %v", e[:min(80, len(e))], iss.Err())
		}
		p, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func node(y string) map[string]any {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		panic(err)
	}
	return m
}

func eval(t *testing.T, p cel.Program, obj, old map[string]any, op string) bool {
	t.Helper()
	var oldV any
	if old != nil {
		oldV = old
	}
	out, _, err := p.Eval(map[string]any{"object": obj, "oldObject": oldV, "request": map[string]any{"operation": op}})
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	return out.Value().(bool)
}

func TestGPUEvidenceCondition(t *testing.T) {
	p := compile(t, GPUEvidenceExpression())[0]
	for _, it := range gpuinfo.Default().InstanceTypes() {
		if it.Model.Kind != gpuinfo.KindGPU {
			continue
		}
		if !eval(t, p, node("metadata: {labels: {node.kubernetes.io/instance-type: "+it.Name+"}}"), nil, "CREATE") {
			t.Errorf("GPU instance type %s does not pass", it.Name)
		}
	}
	// Every resource row that shows a GPU node passes, in capacity and in allocatable.
	for _, r := range gpuinfo.Resources() {
		name := resourceSample(r)
		for _, field := range []string{"capacity", "allocatable"} {
			obj := map[string]any{"metadata": map[string]any{"name": "n"}, "status": map[string]any{field: map[string]any{name: "2"}}}
			if got := eval(t, p, obj, nil, "CREATE"); got != (r.NodeKind() == gpuinfo.KindGPU) {
				t.Errorf("%s in %s (%s row %s, kind %s): condition %v", name, field, r.Match, r.Name, r.Type, got)
			}
		}
	}
	yes := map[string]string{
		"GPU capacity":           "metadata: {name: n}\nstatus: {capacity: {nvidia.com/gpu: '8'}}",
		"MIG capacity":           "metadata: {name: n}\nstatus: {capacity: {nvidia.com/mig-1g.5gb: '7'}}",
		"AMD capacity":           "metadata: {name: n}\nstatus: {capacity: {amd.com/gpu: '1'}}",
		"GFD label":              "metadata: {labels: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}}",
		"GKE label":              "metadata: {labels: {cloud.google.com/gke-accelerator: nvidia-l4}}",
		"beta instance type":     "metadata: {labels: {beta.kubernetes.io/instance-type: p4d.24xlarge}}",
		"instance type any case": "metadata: {labels: {node.kubernetes.io/instance-type: STANDARD_NC24ADS_A100_V4}}",
		"Crusoe's accelerator":   "metadata: {labels: {crusoe.ai/accelerator: nvidia-h100-80gb-sxm-ib}}",
		"AKS's accelerator":      "metadata: {labels: {kubernetes.azure.com/accelerator: nvidia}}",
		"Akash's model key":      "metadata: {labels: {akash.network/capabilities.gpu.vendor.nvidia.model.h100.ram.80Gi: '8'}}",
		"AMD's NFD rule label":   "metadata: {labels: {feature.node.kubernetes.io/amd-vgpu: 'true'}}",
		"Intel's product":        "metadata: {labels: {gpu.intel.com/product: Flex_170}}",
		"MIG manager's config":   "metadata: {labels: {nvidia.com/mig.config: all-1g.5gb}}",
	}
	for name, y := range yes {
		if !eval(t, p, node(y), nil, "CREATE") {
			t.Errorf("%s: does not pass", name)
		}
	}
	no := map[string]string{
		"m5.large":                     "metadata: {labels: {node.kubernetes.io/instance-type: m5.large}}\nstatus: {capacity: {cpu: '2'}}",
		"n2-standard-8":                "metadata: {labels: {node.kubernetes.io/instance-type: n2-standard-8}}",
		"Standard_D4s_v5":              "metadata: {labels: {node.kubernetes.io/instance-type: Standard_D4s_v5}}",
		"zero GPUs":                    "metadata: {name: n}\nstatus: {capacity: {nvidia.com/gpu: '0'}}",
		"no labels at all":             "metadata: {name: n}",
		"trainium":                     "metadata: {labels: {node.kubernetes.io/instance-type: trn1.32xlarge}}",
		"a gpu key set to false":       "metadata: {labels: {example.com/gpu: 'false'}}",
		"GKE's TPU labels":             "metadata: {labels: {cloud.google.com/gke-tpu-accelerator: tpu-v5-lite-podslice}}",
		"Karpenter's GPU manufacturer": "metadata: {labels: {karpenter.k8s.aws/instance-gpu-manufacturer: nvidia}}",
		"GFD's deploy label":           "metadata: {labels: {nvidia.com/gpu.deploy.driver: 'false'}}",
		"MIG disabled":                 "metadata: {labels: {nvidia.com/mig.config: all-disabled}}",
		"a custom MIG config":          "metadata: {labels: {nvidia.com/mig.config: custom-config}}",
	}
	for name, y := range no {
		if eval(t, p, node(y), nil, "CREATE") {
			t.Errorf("%s: passes", name)
		}
	}
}

func TestMayNeedLabelCondition(t *testing.T) {
	p := compile(t, MayNeedLabelExpression(admit.DefaultLabelKey))[0]
	labeled := node("metadata: {labels: {skypilot.co/accelerator: a100, a: b}}\nstatus: {capacity: {nvidia.com/gpu: '8'}, conditions: [{type: Ready, lastHeartbeatTime: '1'}]}")
	heartbeat := node("metadata: {labels: {skypilot.co/accelerator: a100, a: b}}\nstatus: {capacity: {nvidia.com/gpu: '8'}, conditions: [{type: Ready, lastHeartbeatTime: '2'}]}")
	unlabeled := node("metadata: {labels: {a: b}}\nstatus: {capacity: {nvidia.com/gpu: '8'}}")
	relabeled := node("metadata: {labels: {skypilot.co/accelerator: a100, a: c}}\nstatus: {capacity: {nvidia.com/gpu: '8'}}")
	lostGPU := node("metadata: {labels: {skypilot.co/accelerator: a100, a: b}}\nstatus: {capacity: {nvidia.com/gpu: '7'}}")
	tests := map[string]struct {
		obj, old map[string]any
		op       string
		want     bool
	}{
		"CREATE always":                        {labeled, nil, "CREATE", true},
		"heartbeat of a labeled node: skipped": {heartbeat, labeled, "UPDATE", false},
		"status of an unlabeled node":          {unlabeled, unlabeled, "UPDATE", true},
		"labels changed":                       {relabeled, labeled, "UPDATE", true},
		"capacity changed":                     {lostGPU, labeled, "UPDATE", true},
		"object without labels":                {node("metadata: {name: n}"), node("metadata: {name: n}"), "UPDATE", true},
	}
	for name, tc := range tests {
		if got := eval(t, p, tc.obj, tc.old, tc.op); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

// The label command's own patches are skipped, whatever the request's options look like.
func TestNotLabelCommandCondition(t *testing.T) {
	p := compile(t, NotLabelCommandExpression())[0]
	tests := map[string]struct {
		request map[string]any
		want    bool
	}{
		"label's patch":             {map[string]any{"operation": "UPDATE", "options": map[string]any{"kind": "PatchOptions", "fieldManager": admit.LabelFieldManager}}, false},
		"kubectl label":             {map[string]any{"operation": "UPDATE", "options": map[string]any{"kind": "PatchOptions", "fieldManager": "kubectl-label"}}, true},
		"a kubelet's status update": {map[string]any{"operation": "UPDATE", "options": map[string]any{"kind": "UpdateOptions"}}, true},
		"no options":                {map[string]any{"operation": "CREATE"}, true},
		"null options":              {map[string]any{"operation": "CREATE", "options": nil}, true},
	}
	for name, tc := range tests {
		out, _, err := p.Eval(map[string]any{"object": map[string]any{}, "oldObject": nil, "request": tc.request})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := out.Value().(bool); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

func TestWebhookConfigurationsFollowGoodPractice(t *testing.T) {
	m := Mutating("", nil).Webhooks[0]
	if *m.FailurePolicy != "Ignore" || *m.TimeoutSeconds > 3 || *m.SideEffects != "NoneOnDryRun" || *m.ReinvocationPolicy != "IfNeeded" || *m.MatchPolicy != "Equivalent" {
		t.Errorf("mutating webhook: %+v", m)
	}
	if got := strings.Join(m.Rules[0].Resources, ","); got != "nodes,nodes/status" {
		t.Errorf("resources %s", got)
	}
	a := Audit("", nil).Webhooks[0]
	if *a.FailurePolicy != "Ignore" || *a.ClientConfig.Service.Path != review.PathValidate {
		t.Errorf("audit webhook: %+v", a)
	}
}

// The generated sections of the README and docs/ match the code.
func TestDocsUpToDate(t *testing.T) {
	docs, err := ReadDocs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	want, err := RenderDocs(docs)
	if err != nil {
		t.Fatal(err)
	}
	for path, text := range want {
		if text != docs[path] {
			t.Errorf("%s: generated sections are stale: run make manifests", path)
		}
	}
}

// A section is generated into exactly one document: missing or repeated markers are errors.
func TestRenderDocsNeedsEachSectionOnce(t *testing.T) {
	var all strings.Builder
	for name := range sections {
		fmt.Fprintf(&all, "<!-- %s start -->\nSTALE TEXT\n<!-- %s end -->\n", name, name)
	}
	out, err := RenderDocs(map[string]string{"README.md": "intro\n", "docs/a.md": all.String()})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out["docs/a.md"], "STALE TEXT") || out["README.md"] != "intro\n" {
		t.Errorf("not rendered in place: %q", out)
	}
	if _, err := RenderDocs(map[string]string{"README.md": all.String(), "docs/a.md": all.String()}); err == nil || !strings.Contains(err.Error(), "keep it in one") {
		t.Errorf("a section in two documents: %v", err)
	}
	if _, err := RenderDocs(map[string]string{"README.md": "intro\n"}); err == nil || !strings.Contains(err.Error(), "no document has") {
		t.Errorf("a section in none: %v", err)
	}
}

// The apiserver calls the webhook for exactly the real-world nodes inference calls
// accelerator nodes: none is missed, and a CPU node's BMC display or integrated GPU
// never makes its status reports reach the webhook.
func TestGPUEvidenceConditionOnRealNodes(t *testing.T) {
	p := compile(t, GPUEvidenceExpression())[0]
	b, err := os.ReadFile(filepath.Join("..", "gpuinfo", "testdata", "real-nodes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct{ Items []map[string]any }
	var typed corev1.NodeList
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &typed); err != nil {
		t.Fatal(err)
	}
	kb := gpuinfo.Default()
	for i, n := range typed.Items {
		in := kb.Infer(report.Input(&n, nil))
		if got, want := eval(t, p, raw.Items[i], nil, "CREATE"), in.Kind != ""; got != want {
			t.Errorf("%s: condition %v, inference says accelerator %v", n.Name, got, want)
		}
	}
}

// Every Node Feature Discovery PCI key that inference reads as a GPU matches the pattern the
// match condition uses, and display adapters and integrated GPUs do not.
func TestNFDPatternCoversInference(t *testing.T) {
	kb := gpuinfo.Default()
	re := regexp.MustCompile(kb.NFDGPUPattern())
	devices := []string{"", "ffff", "2000"}
	for _, d := range kb.PCIDevices() {
		devices = append(devices, d.Device)
	}
	for _, class := range []string{"", "0300", "0302", "0380", "1200", "0200", "0b40"} {
		for _, vendor := range []string{"10de", "1002", "8086", "1a03", "102b", "1d0f"} {
			for _, device := range devices {
				fields := []string{}
				for _, f := range []string{class, vendor, device} {
					if f != "" {
						fields = append(fields, f)
					}
				}
				key := "feature.node.kubernetes.io/pci-" + strings.Join(fields, "_") + ".present"
				in := kb.Infer(gpuinfo.Node{Labels: map[string]string{key: "true"}})
				if in.Kind != "" && !re.MatchString(key) {
					t.Errorf("%s: a GPU to inference, missed by the pattern", key)
				}
			}
		}
	}
	for _, key := range []string{"pci-0300_1a03", "pci-0300_102b", "pci-0300_8086", "pci-0300_1002", "pci-0300_1002_1586", "pci-0200_10de", "pci-1a03"} {
		if key = "feature.node.kubernetes.io/" + key + ".present"; re.MatchString(key) {
			t.Errorf("%s matches the pattern", key)
		}
	}
}

// The chart's ci/ folder holds exactly the documented examples (a renamed one leaves no stale
// file behind to be checked in its place), and each example's config is one the webhook takes.
func TestChartExamples(t *testing.T) {
	files, err := chartExampleFiles()
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := filepath.Glob(filepath.Join("..", "..", ChartDir, "ci", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range onDisk {
		if files["ci/"+filepath.Base(f)] == nil {
			t.Errorf("%s is no chart example: remove it, or add it to chartExamples", f)
		}
	}
	for _, e := range chartExamples {
		config, _ := e.values["config"].(map[string]any)
		data := map[string]string{}
		for k, v := range config {
			data[k] = fmt.Sprint(v)
		}
		if _, err := admit.ParseConfig(data); err != nil {
			t.Errorf("example %s: its config is refused: %v", e.name, err)
		}
	}
}

// resourceSample is a resource name a row of resources.tsv matches.
func resourceSample(r *gpuinfo.Resource) string {
	switch r.Match {
	case "prefix":
		return r.Name + "x"
	case "model":
		return r.Name + "GA100_A100_SXM4_40GB"
	case "vgpu":
		return r.Name + "GRID_T4-16Q"
	}
	return r.Name
}
