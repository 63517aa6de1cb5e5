package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const nodesYAML = `apiVersion: v1
kind: Node
metadata:
  name: gpu-a
  labels:
    node.kubernetes.io/instance-type: p4de.24xlarge
status:
  capacity:
    nvidia.com/gpu: "8"
---
apiVersion: v1
kind: Node
metadata:
  name: cpu-a
  labels:
    node.kubernetes.io/instance-type: m5.large
`

// As `kubectl get nodes -o yaml` prints it.
const listYAML = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: gfd-1
    labels:
      nvidia.com/gpu.product: Tesla-V100-SXM2-32GB
      skypilot.co/accelerator: v100
- apiVersion: v1
  kind: Node
  metadata:
    name: short-1
    labels:
      node.kubernetes.io/instance-type: p5.48xlarge
      skypilot.co/accelerator: h100
  status:
    capacity:
      nvidia.com/gpu: "7"
metadata:
  resourceVersion: ""
`

func explain(t *testing.T, stdin string, args ...string) ([]map[string]any, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), append([]string{"explain"}, args...), strings.NewReader(stdin), &out, &errOut)
	var records []map[string]any
	if strings.Contains(strings.Join(args, " "), "-o json") && out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &records); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out.String())
		}
	}
	return records, out.String() + errOut.String(), code
}

func TestExplainJSON(t *testing.T) {
	records, out, code := explain(t, nodesYAML+"---\n"+listYAML, "-f", "-", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if len(records) != 4 {
		t.Fatalf("%d records", len(records))
	}
	want := []map[string]any{
		{"name": "gpu-a", "gpu": true, "gpuResource": "nvidia.com/gpu", "gpuCount": 8.0, "expectedGPUCount": 8.0, "accelerator": "a100-80gb", "source": "instance-type", "currentLabel": "", "action": "warn"},
		{"name": "cpu-a", "gpu": false, "accelerator": "", "action": "none"},
		{"name": "gfd-1", "gpu": true, "accelerator": "v100-32gb", "source": "gpu-feature-discovery", "currentLabel": "v100", "action": "warn"},
		{"name": "short-1", "gpu": true, "gpuCount": 7.0, "expectedGPUCount": 8.0, "accelerator": "h100", "action": "warn"},
	}
	for i, w := range want {
		for k, v := range w {
			if records[i][k] != v {
				t.Errorf("%s.%s = %v, want %v", w["name"], k, records[i][k], v)
			}
		}
		if _, ok := records[i]["warnings"].([]any); !ok {
			t.Errorf("%s: warnings is not a list", w["name"])
		}
	}
	if ws := records[3]["warnings"].([]any); len(ws) != 1 || !strings.Contains(ws[0].(string), "reports 7 nvidia.com/gpu") {
		t.Errorf("short-1 warnings: %v", ws)
	}
}

func TestExplainWithConfigLabels(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cm.yaml")
	os.WriteFile(cfg, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gpu-label-webhook}\ndata:\n  autoLabel: \"true\"\n"), 0o644)
	records, out, code := explain(t, nodesYAML, "-f", "-", "--config", cfg, "-o", "json")
	if code != 0 || records[0]["action"] != "label" {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestExplainTable(t *testing.T) {
	_, out, code := explain(t, nodesYAML, "-f", "-")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"NODE", "INSTANCE-TYPE", "gpu-a", "p4de.24xlarge", "8/8", "a100-80gb", "unlabeled", "kubectl label node gpu-a skypilot.co/accelerator=a100-80gb"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestExplainBadInput(t *testing.T) {
	tests := map[string]struct {
		input string
		want  string
		nodes int
	}{
		"not YAML":                   {input: "{{{not yaml", want: "document 1: not YAML or JSON"},
		"not a Node":                 {input: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n" + nodesYAML, want: `document 1: kind "Pod" is not a Node`, nodes: 2},
		"a List of Pods":             {input: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p}}\n", want: `document 1, item 0: kind "Pod" is not a Node`},
		"a Node without a name":      {input: "apiVersion: v1\nkind: Node\nmetadata: {}\n---\n" + nodesYAML, want: "no metadata.name", nodes: 2},
		"a Node with a bad field":    {input: "apiVersion: v1\nkind: Node\nmetadata: {name: x}\nstatus: {capacity: {nvidia.com/gpu: lots}}\n", want: "document 1: status.capacity[nvidia.com/gpu]"},
		"a quantity that would hang": {input: "apiVersion: v1\nkind: Node\nmetadata: {name: x}\nstatus: {allocatable: {nvidia.com/gpu: '1E999999999'}}\n---\n" + nodesYAML, want: "exponent out of range", nodes: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			records, out, code := explain(t, tc.input, "-f", "-", "-o", "json")
			if code != ExitFindings || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output:\n%s", code, out)
			}
			if len(records) != tc.nodes {
				t.Errorf("%d nodes reported, want %d", len(records), tc.nodes)
			}
		})
	}
	if _, out, code := explain(t, "", "-f", "/no/such/file"); code != ExitError || !strings.Contains(out, "no such file") {
		t.Errorf("missing file: exit %d: %s", code, out)
	}
	if _, out, code := explain(t, nodesYAML, "-f", "-", "--config", "/no/such/cm.yaml"); code != ExitError || !strings.Contains(out, "--config") {
		t.Errorf("missing config: exit %d: %s", code, out)
	}
}

// As `kubectl get nodes,resourceslices -o yaml` prints a node of NVIDIA's DRA driver: the
// node carries only Node Feature Discovery's vendor label, its slice names its GPUs (the
// driver's documented device entry, site/content/docs/reference/resourceslice-attributes.md).
const draListYAML = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: dgx-1
    labels:
      feature.node.kubernetes.io/pci-10de.present: "true"
      node.kubernetes.io/instance-type: p4d.24xlarge
- apiVersion: resource.k8s.io/v1
  kind: ResourceSlice
  metadata:
    name: dgx-1-gpu.nvidia.com-4lpks
  spec:
    driver: gpu.nvidia.com
    nodeName: dgx-1
    pool: {name: dgx-1, generation: 1, resourceSliceCount: 1}
    devices:
    - name: gpu-0
      attributes:
        architecture: {string: Ampere}
        productName: {string: NVIDIA A100-SXM4-40GB}
        type: {string: gpu}
        uuid: {string: GPU-2fa81118-5a5f-aa66-7660-471eed407181}
      capacity:
        memory: {value: 40Gi}
- apiVersion: v1
  kind: Node
  metadata:
    name: dgx-2
    labels:
      feature.node.kubernetes.io/pci-10de.present: "true"
metadata:
  resourceVersion: ""
`

func TestExplainReadsResourceSlices(t *testing.T) {
	records, out, code := explain(t, draListYAML, "-f", "-", "-o", "json")
	if code != 0 || len(records) != 2 {
		t.Fatalf("exit %d, %d records: %s", code, len(records), out)
	}
	if r := records[0]; r["accelerator"] != "a100" || r["draGPUs"] != 1.0 || r["gpuCount"] != 0.0 {
		t.Errorf("dgx-1: %v", r)
	}
	ws, _ := records[0]["warnings"].([]any)
	if len(ws) == 0 || !strings.Contains(ws[len(ws)-1].(string), "publishes 1 GPUs in ResourceSlices of gpu.nvidia.com but instance type p4d.24xlarge has 8") {
		t.Errorf("dgx-1 warnings: %v", ws)
	}
	if r := records[1]; r["accelerator"] != "" || r["gpu"] != true || r["draGPUs"] != nil {
		t.Errorf("dgx-2, no slices: %v", r)
	}
	_, out, _ = explain(t, draListYAML, "-f", "-")
	if !strings.Contains(out, "dra:1/8") {
		t.Errorf("table:\n%s", out)
	}
}

func TestExplainRefusesSlicesItCannotRead(t *testing.T) {
	for name, tc := range map[string]struct{ input, want string }{
		"a v1beta1 slice, shaped otherwise": {"apiVersion: resource.k8s.io/v1beta1\nkind: ResourceSlice\nmetadata: {name: s}\nspec: {driver: gpu.nvidia.com}\n", `document 1: ResourceSlice of "resource.k8s.io/v1beta1"`},
		"a slice without a driver":          {"apiVersion: resource.k8s.io/v1\nkind: ResourceSlice\nmetadata: {name: s}\nspec: {}\n", "document 1: ResourceSlice has no spec.driver"},
		"a slice whose devices are no list": {"apiVersion: resource.k8s.io/v1\nkind: ResourceSlice\nmetadata: {name: s}\nspec: {driver: d, devices: 3}\n", "document 1: not a valid ResourceSlice"},
	} {
		t.Run(name, func(t *testing.T) {
			_, out, code := explain(t, tc.input+"---\n"+nodesYAML, "-f", "-", "-o", "json")
			if code != ExitFindings || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output:\n%s", code, out)
			}
		})
	}
}
