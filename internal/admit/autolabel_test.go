package admit

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// Once auto-labeling is on, every GPU node whose model some convention the knowledge base
// reads can name gets SkyPilot's label, whatever the convention: with the label in use,
// SkyPilot sees no node by another tool's label alone. Nodes with accelerators that are not
// GPUs (TPU, Neuron) are left alone. Each node joins with that one label and no capacity yet.
func TestAutoLabelCoversEveryConvention(t *testing.T) {
	cfg := mustConfig(t, map[string]string{KeyAutoLabel: "true"})
	cases := map[string]struct {
		key, value string
		extra      map[string]string
		want       string // "" when the node must be left alone
	}{
		"GPU Feature Discovery's product names the model":                {key: gpuinfo.LabelGFDProduct, value: "NVIDIA-H100-80GB-HBM3", want: "h100"},
		"a GFD product the tables do not know is named as SkyPilot does": {key: gpuinfo.LabelGFDProduct, value: "NVIDIA-GeForce-RTX-4090", want: "rtx4090"},
		"GKE's accelerator label names the model":                        {key: gpuinfo.LabelGKEAccelerator, value: "nvidia-l4", want: "l4"},
		"Karpenter's GPU name, with its memory, names the variant": {key: gpuinfo.LabelKarpenterGPUName, value: "a100",
			extra: map[string]string{gpuinfo.LabelKarpenterGPUMem: "81920"}, want: "a100-80gb"},
		"EKS Auto Mode's GPU name names the model":                          {key: gpuinfo.LabelEKSGPUName, value: "h100", want: "h100"},
		"CoreWeave's class names the model":                                 {key: gpuinfo.LabelCoreWeaveClass, value: "H100_NVLINK_80GB", want: "h100"},
		"AMD's labeller names the model":                                    {key: gpuinfo.LabelAMDProduct, value: "AMD_Instinct_MI300X", want: "mi300x"},
		"AMD's beta label names the model":                                  {key: gpuinfo.LabelAMDProductBeta, value: "AMD_Instinct_MI300X", want: "mi300x"},
		"the instance type names the model":                                 {key: gpuinfo.LabelInstanceType, value: "p5.48xlarge", want: "h100"},
		"the deprecated instance-type label names the model":                {key: gpuinfo.LabelInstanceTypeBeta, value: "g6.xlarge", want: "l4"},
		"Karpenter's accelerator name is a Neuron device, left alone":       {key: gpuinfo.LabelKarpenterAccName, value: "inferentia2"},
		"GFD's presence label names no model, so there is nothing to write": {key: gpuinfo.LabelGFDPresent, value: "true"},
	}
	covered := map[string]bool{}
	for name, tc := range cases {
		covered[tc.key] = true
		t.Run(name, func(t *testing.T) {
			labels := map[string]string{tc.key: tc.value}
			for k, v := range tc.extra {
				labels[k] = v
			}
			d := Decide(cfg, "n1", gpuinfo.Node{Labels: labels}, true)
			switch {
			case tc.want == "" && d.Action == ActionLabel:
				t.Errorf("labeled %s=%s, want left alone", DefaultLabelKey, d.Value)
			case tc.want != "" && (d.Action != ActionLabel || d.Value != tc.want):
				t.Errorf("action %s value %q, want label %q; findings %+v", d.Action, d.Value, tc.want, d.Findings)
			}
		})
	}
	// A convention added to the knowledge base must be added here too.
	for _, key := range slices.Concat(gpuinfo.GPULabelKeys, []string{gpuinfo.LabelInstanceType, gpuinfo.LabelInstanceTypeBeta}) {
		if !covered[key] {
			t.Errorf("no case for %s", key)
		}
	}
}

// A TPU node is an accelerator node, never labeled: SkyPilot names TPUs only by GKE's label.
func TestAutoLabelLeavesTPUsAlone(t *testing.T) {
	cfg := mustConfig(t, map[string]string{KeyAutoLabel: "true"})
	n := gpuNode(map[string]string{"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice"}, "")
	n.Capacity = tpuCapacity()
	if d := Decide(cfg, "tpu", n, true); d.Action != ActionNone || d.Inference.Kind != gpuinfo.KindAccelerator {
		t.Errorf("TPU node: action %s kind %q", d.Action, d.Inference.Kind)
	}
}

func tpuCapacity() map[string]resource.Quantity {
	return map[string]resource.Quantity{"google.com/tpu": resource.MustParse("4")}
}
