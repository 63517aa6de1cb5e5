package admit

import (
	"maps"
	"slices"
	"strings"
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
		"EKS Auto Mode's GPU name names the model":                                   {key: gpuinfo.LabelEKSGPUName, value: "h100", want: "h100"},
		"CoreWeave's class names the model":                                          {key: gpuinfo.LabelCoreWeaveClass, value: "H100_NVLINK_80GB", want: "h100"},
		"AMD's labeller names the model":                                             {key: gpuinfo.LabelAMDProduct, value: "AMD_Instinct_MI300X", want: "mi300x"},
		"AMD's beta label names the model":                                           {key: gpuinfo.LabelAMDProductBeta, value: "AMD_Instinct_MI300X", want: "mi300x"},
		"the instance type names the model":                                          {key: gpuinfo.LabelInstanceType, value: "p5.48xlarge", want: "h100"},
		"the deprecated instance-type label names the model":                         {key: gpuinfo.LabelInstanceTypeBeta, value: "g6.xlarge", want: "l4"},
		"Karpenter's accelerator name is a Neuron device, left alone":                {key: gpuinfo.LabelKarpenterAccName, value: "inferentia2"},
		"GFD's presence label names no model, so there is nothing to write":          {key: gpuinfo.LabelGFDPresent, value: "true"},
		"GFD's count names no model":                                                 {key: gpuinfo.LabelGFDCount, value: "8"},
		"GFD's family names no model":                                                {key: "nvidia.com/gpu.family", value: "ampere"},
		"GFD's machine is looked up as an instance type":                             {key: "nvidia.com/gpu.machine", value: "p4d.24xlarge", want: "a100"},
		"Alibaba ACK's product names the model":                                      {key: "aliyun.accelerator/nvidia_name", value: "NVIDIA-A10", want: "a10"},
		"Karpenter for Azure's GPU name names the model":                             {key: "karpenter.azure.com/sku-gpu-name", value: "H200", want: "h200"},
		"Nebius's GPU name names the model":                                          {key: "nebius.com/gpu-name", value: "B200", want: "b200"},
		"DigitalOcean's GPU model names the model":                                   {key: "doks.digitalocean.com/gpu-model", value: "mi300x", want: "mi300x"},
		"cluster-autoscaler's accelerator label names the model":                     {key: "k8s.amazonaws.com/accelerator", value: "nvidia-tesla-t4", want: "t4"},
		"AMD's device ID names the model":                                            {key: "amd.com/gpu.device-id", value: "74a1", want: "mi300x"},
		"AMD's beta device ID names the model":                                       {key: "beta.amd.com/gpu.device-id", value: "74a1", want: "mi300x"},
		"AMD's legacy count label names the model":                                   {key: "beta.amd.com/gpu.device-id.740f", value: "4", want: "mi210"},
		"AMD's family names no model":                                                {key: "amd.com/gpu.family", value: "AI"},
		"NFD's PCI label with a device ID names the model":                           {key: "feature.node.kubernetes.io/pci-0302_10de_2330.present", value: "true", want: "h100"},
		"Intel's device-ID label: a GPU SkyPilot has no name for":                    {key: "gpu.intel.com/device-id.0380-0bd5.present", value: "true"},
		"Intel's presence label names no model":                                      {key: "intel.feature.node.kubernetes.io/gpu", value: "true"},
		"OKE's NVIDIA presence label names no model":                                 {key: "nvidia.com/gpu", value: "true"},
		"OKE's AMD presence label names no model":                                    {key: "amd.com/gpu", value: "true"},
		"a label key saying accelerator, as Crusoe's, is read by the generic reader": {key: "crusoe.ai/accelerator", value: "nvidia-h100-80gb-sxm-ib", want: "h100"},
		"a label key carrying the model, as Akash's, is read by the generic reader":  {key: "akash.network/capabilities.gpu.vendor.nvidia.model.l4", value: "1", want: "l4"},
		"AKS's vendor-only accelerator label names no model":                         {key: "kubernetes.azure.com/accelerator", value: "nvidia"},
		"the webhook's own label is its output, never evidence":                      {key: DefaultLabelKey, value: "h100"},
	}
	covered := map[string]bool{}
	for name, tc := range cases {
		covered[tc.key] = true
		t.Run(name, func(t *testing.T) {
			labels := map[string]string{tc.key: tc.value}
			for k, v := range tc.extra {
				labels[k] = v
			}
			d := Decide(cfg, "n1", gpuinfo.Node{Labels: labels}, Mutating)
			switch {
			case tc.want == "" && d.Action == ActionLabel:
				t.Errorf("labeled %s=%s, want left alone", DefaultLabelKey, d.Value)
			case tc.want != "" && (d.Action != ActionLabel || d.Value != tc.want):
				t.Errorf("action %s value %q, want label %q; findings %+v", d.Action, d.Value, tc.want, d.Findings)
			}
		})
	}
	// A convention added to the knowledge base must be added here too.
	for _, c := range gpuinfo.Default().Conventions() {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(covered)), func(k string) bool {
			return k == c.Key || c.Prefix && strings.HasPrefix(k, c.Key) || c.Contains && strings.Contains(k, c.Key)
		}) {
			t.Errorf("no case for %s", c.Key)
		}
	}
}

// A TPU node is an accelerator node, never labeled: SkyPilot names TPUs only by GKE's label.
func TestAutoLabelLeavesTPUsAlone(t *testing.T) {
	cfg := mustConfig(t, map[string]string{KeyAutoLabel: "true"})
	n := gpuNode(map[string]string{"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice"}, "")
	n.Capacity = tpuCapacity()
	if d := Decide(cfg, "tpu", n, Mutating); d.Action != ActionNone || d.Inference.Kind != gpuinfo.KindAccelerator {
		t.Errorf("TPU node: action %s kind %q", d.Action, d.Inference.Kind)
	}
}

func tpuCapacity() map[string]resource.Quantity {
	return map[string]resource.Quantity{"google.com/tpu": resource.MustParse("4")}
}
