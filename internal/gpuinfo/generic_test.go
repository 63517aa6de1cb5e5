package gpuinfo

import (
	"strings"
	"testing"
)

// Label sets copied from the page or issue each convention comes from, read by the generic
// rows alone (no other row knows these keys).
func TestGenericReader(t *testing.T) {
	tests := map[string]struct {
		labels map[string]string
		want   string // label value; "" for none
		gpu    bool
	}{
		// kubernetes/autoscaler cluster-autoscaler/cloudprovider/crusoecloud: GPULabel and its
		// availableGPUTypes; issue 20's CMK node
		"Crusoe's accelerator label names the H100 and its memory": {labels: labels("crusoe.ai/accelerator", "nvidia-h100-80gb-sxm-ib"), want: "h100", gpu: true},
		"Crusoe's 80 GB A100": {labels: labels("crusoe.ai/accelerator", "nvidia-a100-80gb-sxm-ib"), want: "a100-80gb", gpu: true},
		"Crusoe's L40S":       {labels: labels("crusoe.ai/accelerator", "nvidia-l40s-48gb"), want: "l40s", gpu: true},
		"Crusoe's a100 without its memory is an A100 of either variant": {labels: labels("crusoe.ai/accelerator", "nvidia-a100"), gpu: true},
		// an MLPerf submission's node selector on CMK (crusoe.ai/accelerator=amd-mi355x-288gb-roce)
		"Crusoe's MI355X":                     {labels: labels("crusoe.ai/accelerator", "amd-mi355x-288gb-roce"), want: "mi355x", gpu: true},
		"Crusoe's CPU node has no such label": {labels: labels("crusoe.ai/instance.type", "c1a.16x")},
		// sapcc/kubernikus#305: the V100 has a 16 and a 32 GB variant, and the value says neither
		"SAP's nvidia-gpu label names the V100 family, not its variant": {labels: labels("ccloud.sap.com/nvidia-gpu", "nvidia-tesla-v100"), gpu: true},
		// akash-network/website#172: one node's Akash capability labels, and GFD's present label
		"Akash's capability keys carry the RTX 4090": {labels: labels(
			"akash.network/capabilities.gpu.vendor.nvidia.model.rtx4090.interface.pcie", "8",
			"akash.network/capabilities.gpu.vendor.nvidia.model.rtx4090.ram.24Gi", "8",
			"akash.network/capabilities.gpu.vendor.nvidia.model.rtx4090", "8",
			"akash.network/capabilities.storage.class.beta3", "1",
			"akash.network", "true",
			"nvidia.com/gpu.present", "true"), want: "rtx4090", gpu: true},
		"Akash's H100 key with its memory":    {labels: labels("akash.network/capabilities.gpu.vendor.nvidia.model.h100.ram.80Gi", "8"), want: "h100", gpu: true},
		"Akash's a100 key without its memory": {labels: labels("akash.network/capabilities.gpu.vendor.nvidia.model.a100", "8"), gpu: true},
		// akash-network/community#608: a GTX 1660 Ti the tables do not know
		"Akash's unknown model is a GPU of unknown model": {labels: labels("akash.network/capabilities.gpu.vendor.nvidia.model.rtx1660ti", "1"), gpu: true},
		// coreweave/kubernetes-cloud docs/coreweave-kubernetes/label-selectors.md
		"CoreWeave's legacy model label":                      {labels: labels("gpu.nvidia.com/model", "GeForce_GTX_1070_Ti", "gpu.nvidia.com/vram", "8", "gpu.nvidia.com/count", "8"), gpu: true},
		"CoreWeave's legacy nvlink=false alone shows nothing": {labels: labels("gpu.nvidia.com/nvlink", "false")},
		// learn.microsoft.com azure/aks/use-labels; kubernetes/autoscaler#7203, #2987
		"AKS's accelerator=nvidia is a GPU node of unknown model": {labels: labels("kubernetes.azure.com/accelerator", "nvidia", "kubernetes.azure.com/agentpool", "gpunp"), gpu: true},
		"the legacy accelerator=nvidia":                           {labels: labels("accelerator", "nvidia"), gpu: true},
		// ROCm/gpu-operator helm-charts NodeFeatureRule amd-gpu-label-nfd-rule
		"AMD's NFD rule label for a virtual function": {labels: labels("feature.node.kubernetes.io/amd-vgpu", "true"), gpu: true},
		// issue 20: Intel's product label (models SkyPilot does not name)
		"Intel's Flex 170": {labels: labels("gpu.intel.com/product", "Flex_170"), gpu: true},
		"Intel's Max 1550": {labels: labels("gpu.intel.com/product", "Max_1550"), gpu: true},
		// negatives
		"an accelerator key with a TPU value is no GPU":   {labels: labels("example.com/accelerator", "tpu-v5-lite")},
		"an accelerator key with true alone is no GPU":    {labels: labels("example.com/accelerator", "true")},
		"an accelerator key with a count alone is no GPU": {labels: labels("example.com/accelerator-count", "4")},
		"a gpu key set to false":                          {labels: labels("example.com/gpu", "false")},
		"two models in one value name neither":            {labels: labels("example.com/gpu-models", "l4-and-l40s"), gpu: true},
		"key and value that disagree name neither":        {labels: labels("example.com/gpu.t4", "nvidia-l4"), gpu: true},
		"an NVSwitch name under a gpu key names no H100":  {labels: labels("example.com/gpu-device", "GH100 [H100 NVSwitch]"), gpu: true},
		"Gaudi under an accelerator key is no GPU":        {labels: labels("example.com/accelerator", "habana-gaudi")},
		// GKE docs: TPU node labels (cloud.google.com/gke-tpu-accelerator, gke-tpu-topology)
		"GKE's TPU node": {labels: labels("cloud.google.com/gke-tpu-accelerator", "tpu-v5-lite-podslice", "cloud.google.com/gke-tpu-topology", "2x4")},
		// aws/karpenter-provider-aws instance-types reference: inf2 and dl1
		"Karpenter's Inferentia node":                       {labels: labels("karpenter.k8s.aws/instance-accelerator-name", "inferentia2", "karpenter.k8s.aws/instance-accelerator-manufacturer", "aws", "karpenter.k8s.aws/instance-accelerator-count", "1"), want: "inferentia2"},
		"Karpenter's GPU manufacturer alone names no model": {labels: labels("karpenter.k8s.aws/instance-gpu-manufacturer", "nvidia")},
		"GFD's family and compute labels name no model":     {labels: labels("nvidia.com/gpu.family", "hopper", "nvidia.com/gpu.compute.major", "9", "nvidia.com/gpu.deploy.driver", "true"), gpu: true},
	}
	kb := Default()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(Node{Labels: tc.labels})
			if in.Value() != tc.want || in.GPU() != tc.gpu {
				t.Errorf("value %q gpu %v (kind %q), want %q %v; evidence %+v", in.Value(), in.GPU(), in.Kind, tc.want, tc.gpu, in.Evidence)
			}
			if tc.want != "" && in.Source != SourceGeneric && in.GPU() {
				t.Errorf("source %q, want %q", in.Source, SourceGeneric)
			}
		})
	}
}

// The generic rows are the least trusted: exact evidence wins, and a generic hit that
// disagrees is a conflict.
func TestGenericReaderInTheTrustOrder(t *testing.T) {
	kb := Default()
	in := kb.Infer(Node{Labels: labels(LabelGFDProduct, "NVIDIA-H100-80GB-HBM3", "crusoe.ai/accelerator", "nvidia-h200-141gb-sxm-ib")})
	if in.Value() != "h100" || in.Source != SourceGFD || len(in.Conflicts) != 1 || in.Conflicts[0].Source != SourceGeneric {
		t.Errorf("GFD wins over a generic label: %q from %q, conflicts %+v", in.Value(), in.Source, in.Conflicts)
	}
	in = kb.Infer(Node{Labels: labels(LabelInstanceType, "h100-80gb-sxm-ib.8x", "crusoe.ai/accelerator", "nvidia-h100-80gb-sxm-ib")})
	if in.Value() != "h100" || in.Source != SourceInstanceType || len(in.Conflicts) != 0 {
		t.Errorf("agreement: %q from %q, conflicts %+v", in.Value(), in.Source, in.Conflicts)
	}
}

// tableStrings are every product string, alias, PCI name and instance-type name the tables
// hold, with the model the tables give each (nil: a GPU the tables name no model for, or a
// display adapter, for which display is set).
type tableString struct {
	s       string
	model   *Model
	display bool
	from    string
}

func tableStrings(kb *KB) []tableString {
	var out []tableString
	for _, m := range kb.Models() {
		out = append(out, tableString{s: m.Name, model: m, from: "models.tsv name"})
		for _, a := range m.Aliases {
			out = append(out, tableString{s: a, model: m, from: "models.tsv alias"})
		}
		for _, set := range m.Match() {
			out = append(out, tableString{s: strings.Join(set, " "), model: kb.MatchProduct(strings.Join(set, " ")), from: "models.tsv match"})
		}
	}
	for _, d := range kb.PCIDevices() {
		out = append(out, tableString{s: d.Name, model: d.Model, display: d.Display, from: "pci_ids.tsv " + d.Vendor + ":" + d.Device})
	}
	for _, it := range kb.InstanceTypes() {
		out = append(out, tableString{s: it.Name, model: it.Model, from: "instance_types.tsv " + it.Cloud})
	}
	return out
}

// agrees says a generic reading of g does not disagree with the tables' m: the same model, or
// one resolve takes as the same chip (H100-MEGA refines H100).
func agrees(g, m *Model) bool {
	return g == nil || (m != nil && (g == m || m.Refines == g.Name || g.Refines == m.Name))
}

// Precision: over every string the tables hold, put in a label value under a generic key
// and in an Akash-style key, the generic reader names no model the tables do not give that
// string, and beside the exact evidence it never makes a conflict. Over every key of the
// known conventions that names no model, it names nothing. It logs the coverage it would
// give with the tables' readers removed.
func TestGenericReaderAgreesWithTheTables(t *testing.T) {
	kb := Default()
	var named, unknown, total int
	for _, ts := range tableStrings(kb) {
		for _, l := range []map[string]string{
			labels("example.com/gpu-model", ts.s),
			labels("example.com/accelerator", ts.s),
			labels("example.net/capabilities.gpu.model."+keyPart(ts.s), "1"),
		} {
			in := kb.Infer(Node{Labels: l})
			if !agrees(in.Model, ts.model) || (ts.display && in.Model != nil) {
				t.Errorf("%s %q under %v: generic reads %v, the tables say %v", ts.from, ts.s, l, in.Model, ts.model)
			}
		}
		if ts.model == nil {
			continue
		}
		total++
		in := kb.Infer(Node{Labels: labels("example.com/gpu-model", ts.s)})
		switch {
		case in.Model == ts.model:
			named++
		case in.Model == nil && in.GPU():
			unknown++
		}
	}
	// beside exact evidence for each model (GFD's product, Karpenter's name), no conflict
	for _, m := range kb.Models() {
		for _, ts := range tableStrings(kb) {
			if ts.model != m {
				continue
			}
			in := kb.Infer(Node{Labels: labels(LabelKarpenterGPUName, strings.ToLower(m.Name), "example.com/gpu-model", ts.s)})
			for _, c := range in.Conflicts {
				if c.Source == SourceGeneric {
					t.Errorf("%s %q beside Karpenter's %s: generic conflicts with %s", ts.from, ts.s, m.Name, in.Value())
				}
			}
		}
	}
	// the known keys that name no model, with every model's name as the value
	for _, key := range noModelKeys {
		for _, m := range kb.Models() {
			in := kb.Infer(Node{Labels: labels(key, m.LabelValue())})
			for _, e := range in.Evidence {
				if e.Source == SourceGeneric {
					t.Errorf("%s=%s is read by the generic reader: %+v", key, m.LabelValue(), e)
				}
			}
		}
	}
	t.Logf("with the tables' readers removed, the generic reader names %d of the tables' %d product strings, aliases and instance types right, shows %d more as GPUs of unknown model, 0 wrong",
		named, total, unknown)
	if named == 0 {
		t.Error("the generic reader names nothing")
	}
}

// keyPart makes a string a label key's name part, as Akash's keys hold the model.
func keyPart(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('.')
		}
	}
	return strings.Trim(b.String(), ".")
}

// noModelKeys are keys of known conventions that name no model, from each tool's docs.
var noModelKeys = []string{
	"nvidia.com/gpu.family", "nvidia.com/gpu.deploy.driver", "nvidia.com/gpu.deploy.device-plugin",
	"nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor", "nvidia.com/gpu.memory",
	"nvidia.com/gpu.replicas", "nvidia.com/gpu.sharing-strategy", "nvidia.com/mig.config",
	"nvidia.com/mig.strategy", "nvidia.com/gpu-driver-upgrade-state", "nvidia.com/cuda.driver.major",
	"cloud.google.com/gke-tpu-accelerator", "cloud.google.com/gke-tpu-topology",
	"cloud.google.com/gke-accelerator-count", "cloud.google.com/gke-gpu-sharing-strategy",
	"cloud.google.com/gke-gpu-partition-size", "cloud.google.com/gke-gpu-driver-version",
	"karpenter.k8s.aws/instance-gpu-manufacturer", "karpenter.k8s.aws/instance-gpu-count",
	"karpenter.k8s.aws/instance-gpu-memory", "karpenter.k8s.aws/instance-accelerator-manufacturer",
	"karpenter.k8s.aws/instance-accelerator-count", "eks.amazonaws.com/instance-gpu-manufacturer",
	"eks.amazonaws.com/instance-gpu-count", "eks.amazonaws.com/instance-gpu-memory",
	"karpenter.azure.com/sku-gpu-count", "karpenter.azure.com/sku-gpu-manufacturer",
	"amd.com/gpu.family", "amd.com/gpu.vram", "amd.com/gpu.cu-count", "amd.com/gpu.simd-count",
	"amd.com/gpu.driver-version", "beta.amd.com/gpu.family", "aliyun.accelerator/nvidia_count",
	"aliyun.accelerator/nvidia_mem",
}

// Every label key a reader takes as its argument, and every count label, is claimed by a row,
// so the generic reader never reads it.
func TestArgumentKeysAreClaimed(t *testing.T) {
	kb := Default()
	keys := append([]string(nil), countLabels...)
	for _, c := range kb.Conventions() {
		if strings.Contains(c.Arg, "/") {
			keys = append(keys, c.Arg)
		}
	}
	for _, k := range keys {
		for _, h := range kb.hits(map[string]string{k: "1"}, "", nil) {
			if kb.conventions[h.row].Contains {
				t.Errorf("%s is read by the generic reader", k)
			}
		}
	}
}

// The derived-name fallback names what has a GPU family's shape, and never a display
// adapter, an NVSwitch, a BMC or a NIC.
func TestDerivedNames(t *testing.T) {
	tests := map[string]struct {
		product string
		want    string // "" for a GPU node of unknown model
	}{
		// issue 20: GFD on a DGX Station
		"the DGX Station's display adapter":           {product: "NVIDIA-DGX-Display"},
		"an NVSwitch (pci.ids GH100 [H100 NVSwitch])": {product: "NVIDIA-H100-NVSwitch"},
		"a BMC's VGA controller":                      {product: "ASPEED-Graphics-Family"},
		"a ConnectX NIC":                              {product: "NVIDIA-ConnectX-7"},
		"a BlueField DPU":                             {product: "NVIDIA-BlueField-3"},
		"the GeForce RTX 3080":                        {product: "NVIDIA-GeForce-RTX-3080", want: "rtx3080"},
		"the Quadro RTX 8000":                         {product: "Quadro-RTX-8000", want: "rtx8000"},
		"the GeForce GTX 1080 Ti":                     {product: "NVIDIA-GeForce-GTX-1080-Ti", want: "gtx-1080-ti"},
		"an RTX A2000":                                {product: "NVIDIA-RTX-A2000", want: "rtxa2000"},
		"a future B400":                               {product: "NVIDIA-B400", want: "b400"},
		"a future GB400":                              {product: "NVIDIA-GB400", want: "gb400"},
		"the A2":                                      {product: "NVIDIA-A2", want: "a2"},
		"the Tesla T10":                               {product: "NVIDIA-T1000", want: "t1000"},
		"a product with no family":                    {product: "NVIDIA-Graphics-Device"},
	}
	kb := Default()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(Node{Labels: labels(LabelGFDProduct, tc.product)})
			if in.Value() != tc.want || !in.GPU() || in.Derived != (tc.want != "") {
				t.Errorf("%s: value %q gpu %v derived %v, want %q", tc.product, in.Value(), in.GPU(), in.Derived, tc.want)
			}
		})
	}
}

// Precision of the derived names: over every string the tables hold, as GFD would spell it,
// the fallback never names a display adapter or a string of a device the tables say is not a
// GPU, and a name it derives for a known GPU's string is logged against the table's.
func TestDerivedNamesAreGPUs(t *testing.T) {
	kb := Default()
	var same, other, none, total int
	for _, ts := range tableStrings(kb) {
		product := "NVIDIA-" + strings.Join(strings.Fields(ts.s), "-")
		m := kb.deriveModel(product)
		if ts.display || (ts.model != nil && ts.model.Kind != KindGPU) {
			if m != nil {
				t.Errorf("%s %q: derived %s from a device that is not a GPU", ts.from, ts.s, m.Name)
			}
			continue
		}
		if ts.model == nil || ts.model.Vendor != "nvidia" || strings.HasPrefix(ts.from, "instance_types") {
			continue
		}
		total++
		switch {
		case m == nil:
			none++
		case m.Name == ts.model.LabelValue():
			same++
		default:
			other++
		}
	}
	for _, d := range kb.PCIDevices() {
		if strings.Contains(strings.ToUpper(d.Name), "NVSWITCH") {
			if m := kb.deriveModel("NVIDIA-" + d.Name); m != nil {
				t.Errorf("%s: derived %s from an NVSwitch", d.Name, m.Name)
			}
		}
	}
	t.Logf("of the tables' %d NVIDIA GPU strings, the fallback alone derives the table's name for %d, another name (SkyPilot's labeler's spelling) for %d, none for %d; no display adapter, NVSwitch or non-GPU device",
		total, same, other, none)
	if same+other == 0 {
		t.Error("the fallback derives nothing")
	}
}
