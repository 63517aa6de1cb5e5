package admit

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

func mustConfig(t *testing.T, data map[string]string) *Config {
	t.Helper()
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func gpuNode(labels map[string]string, gpus string) gpuinfo.Node {
	n := gpuinfo.Node{Labels: labels}
	if gpus != "" {
		n.Capacity = map[string]resource.Quantity{"nvidia.com/gpu": resource.MustParse(gpus), "cpu": resource.MustParse("96")}
	}
	return n
}

// draNode is a node whose DRA driver publishes n whole GPUs of one product.
func draNode(labels map[string]string, product string, n int) gpuinfo.Node {
	node := gpuinfo.Node{Labels: labels}
	for i := range n {
		node.Devices = append(node.Devices, gpuinfo.Device{Driver: "gpu.nvidia.com", Type: "gpu", Name: fmt.Sprintf("gpu-%d", i), GPU: fmt.Sprintf("GPU-%d", i), Product: product})
	}
	return node
}

func TestDecide(t *testing.T) {
	const key = DefaultLabelKey
	on := map[string]string{KeyAutoLabel: "true"}
	onOverwrite := map[string]string{KeyAutoLabel: "true", KeyOverwrite: "true"}
	tests := map[string]struct {
		config  map[string]string
		node    gpuinfo.Node
		caller  Caller
		action  Action
		value   string
		replace bool
		reasons []Reason
	}{
		"ignores nodes without GPU evidence": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "m5.large"}, ""), caller: Mutating,
			action: ActionNone,
		},
		"ignores non-GPU accelerators": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "trn1.32xlarge"}, ""), caller: Mutating,
			action: ActionNone,
		},
		"warns about an unlabeled GPU node by default": {
			node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge"}, ""), caller: Mutating,
			action: ActionWarn, value: "a100", reasons: []Reason{ReasonLabelMissing, ReasonLabelMissing},
		},
		"labels an unlabeled GPU node when opted in": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge"}, ""), caller: Mutating,
			action: ActionLabel, value: "a100", reasons: []Reason{ReasonLabeled},
		},
		"audit mode only warns even when opted in": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge"}, ""), caller: Audit,
			action: ActionWarn, value: "a100", reasons: []Reason{ReasonLabelMissing, ReasonLabelMissing},
		},
		"node outside the selector is warned, not labeled": {
			config: map[string]string{KeyAutoLabel: "true", KeyNodeSelector: "eks.amazonaws.com/nodegroup in (gpu-a,gpu-b)"},
			node:   gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", "eks.amazonaws.com/nodegroup": "other"}, ""),
			caller: Mutating, action: ActionWarn, value: "a100", reasons: []Reason{ReasonLabelMissing, ReasonLabelMissing},
		},
		"node inside the selector is labeled": {
			config: map[string]string{KeyAutoLabel: "true", KeyNodeSelector: "eks.amazonaws.com/nodegroup in (gpu-a,gpu-b)"},
			node:   gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", "eks.amazonaws.com/nodegroup": "gpu-b"}, ""),
			caller: Mutating, action: ActionLabel, value: "a100", reasons: []Reason{ReasonLabeled},
		},
		"consistent label: nothing to say": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", key: "a100"}, "8"), caller: Mutating,
			action: ActionNone, value: "a100",
		},
		"unknown model is warned with what was seen": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "my-box"}, "8"), caller: Mutating,
			action: ActionWarn, reasons: []Reason{ReasonModelUnknown},
		},
		"a label the admin set on an unknown model is left alone": {
			config: onOverwrite, node: gpuNode(map[string]string{key: "rtx4090"}, "2"), caller: Mutating,
			action: ActionNone,
		},
		"wrong label is warned without overwrite": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", key: "v100"}, ""), caller: Mutating,
			action: ActionWarn, value: "a100", reasons: []Reason{ReasonLabelMismatch},
		},
		"wrong label is corrected with overwrite": {
			config: onOverwrite, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", key: "v100"}, ""), caller: Mutating,
			action: ActionLabel, value: "a100", replace: true, reasons: []Reason{ReasonLabeled},
		},
		"uppercase label is invalid": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", key: "A100"}, ""), caller: Mutating,
			action: ActionWarn, value: "a100", reasons: []Reason{ReasonLabelInvalid},
		},
		"uppercase label is corrected with overwrite": {
			config: onOverwrite, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", key: "A100"}, ""), caller: Mutating,
			action: ActionLabel, value: "a100", replace: true, reasons: []Reason{ReasonLabeled},
		},
		"audit mode never corrects": {
			config: onOverwrite, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", key: "v100"}, ""), caller: Audit,
			action: ActionWarn, value: "a100", reasons: []Reason{ReasonLabelMismatch},
		},
		"fewer GPUs than the instance type has": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p5.48xlarge", key: "h100"}, "7"), caller: Mutating,
			action: ActionWarn, value: "h100", reasons: []Reason{ReasonGPUCountMismatch},
		},
		"disagreeing sources are reported, the most trusted is used": {
			config: on, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", gpuinfo.LabelGFDProduct: "NVIDIA-A100-SXM4-80GB"}, "8"), caller: Mutating,
			action: ActionLabel, value: "a100-80gb", reasons: []Reason{ReasonLabeled, ReasonEvidenceConflict},
		},
		"custom label key": {
			config: map[string]string{KeyAutoLabel: "true", KeyLabelKey: "example.com/gpu"}, node: gpuNode(map[string]string{gpuinfo.LabelGKEAccelerator: "nvidia-l4", key: "l4"}, "1"), caller: Mutating,
			action: ActionLabel, value: "l4", reasons: []Reason{ReasonLabeled},
		},
		"a node with only NFD's vendor label is labeled from its ResourceSlices": {
			config: on, node: draNode(map[string]string{"feature.node.kubernetes.io/pci-10de.present": "true"}, "NVIDIA H100 80GB HBM3", 8), caller: Mutating,
			action: ActionLabel, value: "h100", reasons: []Reason{ReasonLabeled},
		},
		"fewer GPUs in ResourceSlices than the instance type has": {
			config: on, node: draNode(map[string]string{gpuinfo.LabelInstanceType: "p5.48xlarge", key: "h100"}, "NVIDIA H100 80GB HBM3", 7), caller: Mutating,
			action: ActionWarn, value: "h100", reasons: []Reason{ReasonGPUCountMismatch},
		},
		"as many GPUs in ResourceSlices as the instance type has": {
			config: on, node: draNode(map[string]string{gpuinfo.LabelInstanceType: "p5.48xlarge", key: "h100"}, "NVIDIA H100 80GB HBM3", 8), caller: Mutating,
			action: ActionNone, value: "h100",
		},
		"a node whose GPUs only its slices show is one the webhook never sees": {
			node: draNode(nil, "NVIDIA H100 80GB HBM3", 8), caller: Mutating,
			action: ActionWarn, value: "h100", reasons: []Reason{ReasonLabelMissing, ReasonLabelMissing, ReasonSlicesOnly},
		},
		"such a node labeled already has nothing to say": {
			node: draNode(map[string]string{key: "h100"}, "NVIDIA H100 80GB HBM3", 8), caller: Mutating,
			action: ActionNone, value: "h100",
		},
		"config instance types name GPUs the tables lack": {
			config: map[string]string{KeyAutoLabel: "true", KeyInstanceTypes: "lab-box: {gpu: RTX4090, count: 4}"}, node: gpuNode(map[string]string{gpuinfo.LabelInstanceType: "lab-box"}, "3"), caller: Mutating,
			action: ActionLabel, value: "rtx4090", reasons: []Reason{ReasonLabeled, ReasonGPUCountMismatch},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := Decide(mustConfig(t, tc.config), "node-1", tc.node, tc.caller)
			if d.Action != tc.action || d.Value != tc.value || d.Replace != tc.replace {
				t.Errorf("action=%s value=%q replace=%v, want %s %q %v", d.Action, d.Value, d.Replace, tc.action, tc.value, tc.replace)
			}
			var reasons []Reason
			for _, f := range d.Findings {
				reasons = append(reasons, f.Reason)
				if len(f.Message) > 256 || strings.HasPrefix(strings.ToLower(f.Message), "warning") {
					t.Errorf("message breaks the warning rules: %q", f.Message)
				}
			}
			if strings.Join(reasonStrings(reasons), ",") != strings.Join(reasonStrings(tc.reasons), ",") {
				t.Errorf("reasons = %v, want %v", reasons, tc.reasons)
			}
		})
	}
}

func reasonStrings(rs []Reason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

func TestDecideWarningNamesTheFix(t *testing.T) {
	d := Decide(DefaultConfig(), "ip-10-0-12-34.ec2.internal", gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge"}, "8"), Mutating)
	w := d.Warnings()
	if len(w) != 2 {
		t.Fatalf("warnings: %q", w)
	}
	for _, want := range []string{"ip-10-0-12-34.ec2.internal", "nvidia.com/gpu: 8", "node.kubernetes.io/instance-type=p4d.24xlarge", "kubectl label node ip-10-0-12-34.ec2.internal skypilot.co/accelerator=a100"} {
		if !strings.Contains(w[0], want) {
			t.Errorf("warning %q lacks %q", w[0], want)
		}
	}
	if !strings.Contains(w[1], `kubectl -n gpu-label-webhook patch configmap gpu-label-webhook --type merge -p '{"data":{"autoLabel":"true"}}'`) {
		t.Errorf("opt-in hint: %q", w[1])
	}
}

func TestDecideLongNodeNameStaysUnderTheWarningLimit(t *testing.T) {
	name := strings.Repeat("n", 253)
	d := Decide(DefaultConfig(), name, gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge"}, "8"), Mutating)
	for _, w := range d.Warnings() {
		if len(w) > 256 {
			t.Errorf("%d bytes: %q", len(w), w)
		}
	}
}

// Reinvocation, and another webhook running after ours, must not make the label flap: the
// node as patched is left alone.
func TestDecideIsIdempotent(t *testing.T) {
	cfg := mustConfig(t, map[string]string{KeyAutoLabel: "true", KeyOverwrite: "true"})
	labels := map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", DefaultLabelKey: "V100"}
	d := Decide(cfg, "n", gpuNode(labels, ""), Mutating)
	if d.Action != ActionLabel {
		t.Fatalf("first pass: %s", d.Action)
	}
	labels[DefaultLabelKey] = d.Value
	if d2 := Decide(cfg, "n", gpuNode(labels, ""), Mutating); d2.Action != ActionNone {
		t.Errorf("second pass: %s %v", d2.Action, d2.Findings)
	}
}

func TestDecideNamesTheSlicesEvidence(t *testing.T) {
	d := Decide(DefaultConfig(), "dgx-1", draNode(map[string]string{"feature.node.kubernetes.io/pci-10de.present": "true"}, "NVIDIA H100 80GB HBM3", 8), Mutating)
	if w := d.Warnings(); len(w) == 0 || !strings.Contains(w[0], "8 GPUs in ResourceSlices of gpu.nvidia.com, gpu.nvidia.com/productName=NVIDIA H100 80GB HBM3") {
		t.Errorf("warnings: %q", w)
	}
}

// Each caller that only warns tells its own way to the label: the audit webhook is no place
// to label, while the advisory check, run where the mutating webhook may well be installed,
// points at the next status report and at the label command.
func TestOptInHintByCaller(t *testing.T) {
	node := gpuNode(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge"}, "8")
	hint := func(config map[string]string, c Caller) string {
		d := Decide(mustConfig(t, config), "node-1", node, c)
		if len(d.Findings) != 2 || d.Findings[1].Reason != ReasonLabelMissing {
			t.Fatalf("findings %+v", d.Findings)
		}
		return d.Findings[1].Message
	}
	on := map[string]string{KeyAutoLabel: "true"}
	for _, tc := range []struct {
		config    map[string]string
		caller    Caller
		want, not string
	}{
		{on, Audit, "warn-only audit webhook", "webhook label"},
		{on, Check, "webhook label", "audit"},
		{nil, Check, `"autoLabel":"true"`, "audit"},
		{nil, Audit, `"autoLabel":"true"`, "audit webhook"},
	} {
		got := hint(tc.config, tc.caller)
		if !strings.Contains(got, tc.want) || strings.Contains(got, tc.not) {
			t.Errorf("caller %d, config %v: %q, want it to say %q and not %q", tc.caller, tc.config, got, tc.want, tc.not)
		}
	}
}
