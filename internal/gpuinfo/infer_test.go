package gpuinfo

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

func caps(kv ...string) map[string]resource.Quantity {
	out := map[string]resource.Quantity{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = resource.MustParse(kv[i+1])
	}
	return out
}

func labels(kv ...string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// Product names are as GPU Feature Discovery writes them (NVML's name with spaces made '-'),
// seen in GFD's README and issues and in SkyPilot's label-formatter tests.
func TestInferFromGFDProduct(t *testing.T) {
	tests := map[string]struct {
		product     string
		want        string
		mig, shared bool
		derived     bool
	}{
		"A100 SXM4 40GB is a100":                                   {product: "NVIDIA-A100-SXM4-40GB", want: "a100"},
		"A100 SXM4 80GB is a100-80gb":                              {product: "NVIDIA-A100-SXM4-80GB", want: "a100-80gb"},
		"A100 80GB PCIe is a100-80gb":                              {product: "NVIDIA-A100-80GB-PCIe", want: "a100-80gb"},
		"A100 PCIe 40GB is a100":                                   {product: "NVIDIA-A100-PCIE-40GB", want: "a100"},
		"V100 SXM2 16GB is v100":                                   {product: "Tesla-V100-SXM2-16GB", want: "v100"},
		"V100 SXM2 32GB is v100-32gb":                              {product: "Tesla-V100-SXM2-32GB", want: "v100-32gb"},
		"V100S PCIe is v100-32gb":                                  {product: "Tesla-V100S-PCIE-32GB", want: "v100-32gb"},
		"H100 HBM3 is h100":                                        {product: "NVIDIA-H100-80GB-HBM3", want: "h100"},
		"H100 NVL is h100-nvl, as SkyPilot's catalog names it":     {product: "NVIDIA-H100-NVL", want: "h100-nvl"},
		"H100 PCIe is h100":                                        {product: "NVIDIA-H100-PCIe", want: "h100"},
		"H200 is h200 not h100":                                    {product: "NVIDIA-H200", want: "h200"},
		"GH200 is gh200 not h200":                                  {product: "NVIDIA-GH200-480GB", want: "gh200"},
		"GB200 is gb200 not b200":                                  {product: "NVIDIA-GB200", want: "gb200"},
		"B200 is b200":                                             {product: "NVIDIA-B200", want: "b200"},
		"A10G is a10g not a10":                                     {product: "NVIDIA-A10G", want: "a10g"},
		"A10 is a10":                                               {product: "NVIDIA-A10", want: "a10"},
		"L4 is l4 not l40":                                         {product: "NVIDIA-L4", want: "l4"},
		"L40S is l40s":                                             {product: "NVIDIA-L40S", want: "l40s"},
		"T4 is t4":                                                 {product: "Tesla-T4", want: "t4"},
		"T4G on Graviton is t4g":                                   {product: "NVIDIA-T4G", want: "t4g"},
		"RTX 6000 Ada is rtx6000-ada":                              {product: "NVIDIA-RTX-6000-Ada-Generation", want: "rtx6000-ada"},
		"RTX A6000 is a6000":                                       {product: "NVIDIA-RTX-A6000", want: "a6000"},
		"RTX PRO 6000 Blackwell is rtxpro6000":                     {product: "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", want: "rtxpro6000"},
		"MIG slice keeps the physical model":                       {product: "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", want: "a100", mig: true},
		"MIG 7g.80gb on 80GB A100":                                 {product: "NVIDIA-A100-SXM4-80GB-MIG-7g.80gb", want: "a100-80gb", mig: true},
		"MIG 3g.40gb on H100 stays h100":                           {product: "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb", want: "h100", mig: true},
		"time-sliced product is shared":                            {product: "Tesla-T4-SHARED", want: "t4", shared: true},
		"GeForce RTX 4090 is rtx4090":                              {product: "NVIDIA-GeForce-RTX-4090", want: "rtx4090"},
		"GeForce RTX 3080 is derived as rtx3080":                   {product: "NVIDIA-GeForce-RTX-3080", want: "rtx3080", derived: true},
		"RTX 4000 Ada is rtx4000-ada":                              {product: "NVIDIA-RTX-4000-Ada-Generation", want: "rtx4000-ada"},
		"Quadro RTX 6000 is rtx6000":                               {product: "Quadro-RTX-6000", want: "rtx6000"},
		"H800 is h800 not h100":                                    {product: "NVIDIA-H800", want: "h800"},
		"H20 is h20 not h200":                                      {product: "NVIDIA-H20", want: "h20"},
		"A800 is a800":                                             {product: "NVIDIA-A800-SXM4-80GB", want: "a800"},
		"L20 is l20":                                               {product: "NVIDIA-L20", want: "l20"},
		"MIG 1g.5gb names a 40 GB A100 where the product does not": {product: "NVIDIA-A100-SXM4-MIG-1g.5gb", want: "a100", mig: true},
		// 1g.10gb is a profile of the A100 40GB as well as of the 80 GB (mig_profiles.tsv): it
		// tells no memory, so the product's own model stands.
		"MIG 1g.10gb tells no memory":             {product: "NVIDIA-A100-SXM4-MIG-1g.10gb", want: "a100", mig: true},
		"MIG 1g.10gb of a 40 GB A100 stays 40 GB": {product: "NVIDIA-A100-SXM4-40GB-MIG-1g.10gb", want: "a100", mig: true},
		"MIG 2g.20gb names an 80 GB A100":         {product: "NVIDIA-A100-SXM4-MIG-2g.20gb", want: "a100-80gb", mig: true},
		"Quadro RTX 8000 is derived":              {product: "Quadro-RTX-8000", want: "rtx8000", derived: true},
	}
	kb := Default()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(Node{Labels: labels(LabelGFDProduct, tc.product), Capacity: caps("nvidia.com/gpu", "8")})
			if got := in.Value(); got != tc.want {
				t.Errorf("value = %q, want %q", got, tc.want)
			}
			if !in.GPU() || in.Source != SourceGFD {
				t.Errorf("kind=%q source=%q, want gpu from GFD", in.Kind, in.Source)
			}
			if in.MIG != tc.mig || in.Shared != tc.shared || in.Derived != tc.derived {
				t.Errorf("mig=%v shared=%v derived=%v, want %v %v %v", in.MIG, in.Shared, in.Derived, tc.mig, tc.shared, tc.derived)
			}
		})
	}
}

// Values as GKE, Karpenter, EKS Auto Mode, CoreWeave and AMD's labeller set them (each
// tool's documentation of its labels).
func TestInferFromProvisionerLabels(t *testing.T) {
	tests := map[string]struct {
		labels map[string]string
		want   string
		source Source
	}{
		"GKE T4":                      {labels(LabelGKEAccelerator, "nvidia-tesla-t4"), "t4", SourceGKE},
		"GKE A100 40GB":               {labels(LabelGKEAccelerator, "nvidia-tesla-a100"), "a100", SourceGKE},
		"GKE A100 80GB":               {labels(LabelGKEAccelerator, "nvidia-a100-80gb"), "a100-80gb", SourceGKE},
		"GKE H100 Mega":               {labels(LabelGKEAccelerator, "nvidia-h100-mega-80gb"), "h100-mega", SourceGKE},
		"GKE H200":                    {labels(LabelGKEAccelerator, "nvidia-h200-141gb"), "h200", SourceGKE},
		"GKE L4":                      {labels(LabelGKEAccelerator, "nvidia-l4"), "l4", SourceGKE},
		"GKE B200":                    {labels(LabelGKEAccelerator, "nvidia-b200"), "b200", SourceGKE},
		"Karpenter a100 on p4d":       {labels(LabelKarpenterGPUName, "a100", LabelKarpenterGPUMem, "40960"), "a100", SourceKarpenter},
		"Karpenter a100 on p4de":      {labels(LabelKarpenterGPUName, "a100", LabelKarpenterGPUMem, "81920"), "a100-80gb", SourceKarpenter},
		"Karpenter v100 on p3dn":      {labels(LabelKarpenterGPUName, "v100", LabelKarpenterGPUMem, "32768"), "v100-32gb", SourceKarpenter},
		"Karpenter v100 on p3":        {labels(LabelKarpenterGPUName, "v100", LabelKarpenterGPUMem, "16384"), "v100", SourceKarpenter},
		"Karpenter a100 no memory":    {labels(LabelKarpenterGPUName, "a100"), "a100", SourceKarpenter},
		"Karpenter t4g on g5g":        {labels(LabelKarpenterGPUName, "t4g"), "t4g", SourceKarpenter},
		"Karpenter inferentia2":       {labels(LabelKarpenterAccName, "inferentia2"), "inferentia2", SourceKarpenter},
		"EKS Auto Mode a10g":          {labels(LabelEKSGPUName, "a10g", LabelEKSGPUMem, "22888"), "a10g", SourceEKS},
		"CoreWeave A100 NVLINK 80GB":  {labels(LabelCoreWeaveClass, "A100_NVLINK_80GB"), "a100-80gb", SourceCoreWeave},
		"CoreWeave H100 NVLINK 80GB":  {labels(LabelCoreWeaveClass, "H100_NVLINK_80GB"), "h100", SourceCoreWeave},
		"CoreWeave RTX A5000":         {labels(LabelCoreWeaveClass, "RTX_A5000"), "a5000", SourceCoreWeave},
		"AMD labeller MI300X":         {labels(LabelAMDProduct, "AMD_Instinct_MI300X_OAM"), "mi300x", SourceAMD},
		"AMD labeller MI250X (beta)":  {labels(LabelAMDProductBeta, "Instinct_MI250X_MI250"), "mi250x", SourceAMD},
		"instance type p4d":           {labels(LabelInstanceType, "p4d.24xlarge"), "a100", SourceInstanceType},
		"instance type p4de":          {labels(LabelInstanceType, "p4de.24xlarge"), "a100-80gb", SourceInstanceType},
		"instance type p3dn":          {labels(LabelInstanceType, "p3dn.24xlarge"), "v100-32gb", SourceInstanceType},
		"instance type g5g":           {labels(LabelInstanceType, "g5g.xlarge"), "t4g", SourceInstanceType},
		"instance type a3-megagpu":    {labels(LabelInstanceType, "a3-megagpu-8g"), "h100-mega", SourceInstanceType},
		"instance type a3-highgpu":    {labels(LabelInstanceType, "a3-highgpu-8g"), "h100", SourceInstanceType},
		"instance type Azure A100 v4": {labels(LabelInstanceType, "Standard_NC24ads_A100_v4"), "a100-80gb", SourceInstanceType},
		"beta instance type label":    {labels(LabelInstanceTypeBeta, "g4dn.xlarge"), "t4", SourceInstanceType},
		"instance type any case":      {labels(LabelInstanceType, "standard_nd96isr_h100_v5"), "h100", SourceInstanceType},
	}
	kb := Default()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(Node{Labels: tc.labels})
			if in.Value() != tc.want || in.Source != tc.source {
				t.Errorf("got %q from %q, want %q from %q", in.Value(), in.Source, tc.want, tc.source)
			}
			if len(in.Conflicts) != 0 {
				t.Errorf("conflicts: %+v", in.Conflicts)
			}
		})
	}
}

func TestInferTrustOrderAndConflicts(t *testing.T) {
	kb := Default()
	tests := map[string]struct {
		labels    map[string]string
		want      string
		source    Source
		conflicts []string
	}{
		"GFD wins over the instance type and the disagreement is reported": {
			labels: labels(LabelGFDProduct, "NVIDIA-A100-SXM4-80GB", LabelInstanceType, "p4d.24xlarge"),
			want:   "a100-80gb", source: SourceGFD, conflicts: []string{"A100"},
		},
		"A3 Mega: GFD's H100 and the instance type's H100-MEGA agree, the specific name wins": {
			labels: labels(LabelGFDProduct, "NVIDIA-H100-80GB-HBM3", LabelInstanceType, "a3-megagpu-8g"),
			want:   "h100-mega", source: SourceInstanceType,
		},
		"A3 Mega on GKE: both labels agree": {
			labels: labels(LabelGFDProduct, "NVIDIA-H100-80GB-HBM3", LabelGKEAccelerator, "nvidia-h100-mega-80gb"),
			want:   "h100-mega", source: SourceGKE,
		},
		"Karpenter's memory tells p4de apart and agrees with the table": {
			labels: labels(LabelKarpenterGPUName, "a100", LabelKarpenterGPUMem, "81920", LabelInstanceType, "p4de.24xlarge"),
			want:   "a100-80gb", source: SourceKarpenter,
		},
		"unknown GFD product still wins over the table, which is reported": {
			labels: labels(LabelGFDProduct, "NVIDIA-GeForce-RTX-4090", LabelInstanceType, "g4dn.xlarge"),
			want:   "rtx4090", source: SourceGFD, conflicts: []string{"T4"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(Node{Labels: tc.labels})
			if in.Value() != tc.want || in.Source != tc.source {
				t.Errorf("got %q from %q, want %q from %q", in.Value(), in.Source, tc.want, tc.source)
			}
			var got []string
			for _, c := range in.Conflicts {
				got = append(got, c.Model)
			}
			if !reflect.DeepEqual(got, tc.conflicts) {
				t.Errorf("conflicts = %v, want %v", got, tc.conflicts)
			}
		})
	}
}

func TestInferGPUEvidenceAndCounts(t *testing.T) {
	kb := Default()
	tests := map[string]struct {
		node          Node
		kind          Kind
		resource      string
		count, expect int64
		value         string
	}{
		"CPU node has no evidence": {
			node: Node{Labels: labels(LabelInstanceType, "m5.large"), Capacity: caps("cpu", "2", "memory", "8Gi")},
		},
		"zero GPUs is no evidence": {
			node: Node{Capacity: caps("nvidia.com/gpu", "0")},
		},
		"device plugin capacity alone: GPU, model unknown": {
			node: Node{Capacity: caps("nvidia.com/gpu", "8")}, kind: KindGPU, resource: "nvidia.com/gpu", count: 8,
		},
		"instance type alone before the device plugin": {
			node: Node{Labels: labels(LabelInstanceType, "p4d.24xlarge")}, kind: KindGPU, expect: 8, value: "a100",
		},
		"a GPU fell off the bus: 7 of 8": {
			node: Node{Labels: labels(LabelInstanceType, "p5.48xlarge"), Capacity: caps("nvidia.com/gpu", "7")},
			kind: KindGPU, resource: "nvidia.com/gpu", count: 7, expect: 8, value: "h100",
		},
		"fractional L4 has no expected count": {
			node: Node{Labels: labels(LabelInstanceType, "g6f.xlarge")}, kind: KindGPU, value: "l4",
		},
		"AMD capacity": {
			node: Node{Capacity: caps("amd.com/gpu", "8")}, kind: KindGPU, resource: "amd.com/gpu", count: 8,
		},
		"Intel GPU capacity": {
			node: Node{Capacity: caps("gpu.intel.com/i915", "1")}, kind: KindGPU, resource: "gpu.intel.com/i915", count: 1,
		},
		"Trainium is an accelerator, not a GPU": {
			node: Node{Labels: labels(LabelInstanceType, "trn1.32xlarge"), Capacity: caps("aws.amazon.com/neuron", "16", "aws.amazon.com/neuroncore", "32")},
			kind: KindAccelerator, resource: "aws.amazon.com/neuron", count: 16, expect: 16, value: "trainium",
		},
		"TPU is an accelerator": {
			node: Node{Capacity: caps("google.com/tpu", "4")}, kind: KindAccelerator, resource: "google.com/tpu", count: 4,
		},
		"GPU wins over a neuron resource": {
			node: Node{Capacity: caps("aws.amazon.com/neuron", "1", "nvidia.com/gpu", "1")}, kind: KindGPU, resource: "nvidia.com/gpu", count: 1,
		},
		"GFD present label alone": {
			node: Node{Labels: labels(LabelGFDPresent, "true")}, kind: KindGPU,
		},
		"Karpenter count when the table has no row": {
			node: Node{Labels: labels(LabelKarpenterGPUName, "l4", LabelKarpenterGPUCnt, "4", LabelInstanceType, "g6.99xlarge")},
			kind: KindGPU, expect: 4, value: "l4",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(tc.node)
			if in.Kind != tc.kind || in.Resource != tc.resource || in.Count != tc.count || in.ExpectedCount != tc.expect || in.Value() != tc.value {
				t.Errorf("got kind=%q resource=%q count=%d expected=%d value=%q", in.Kind, in.Resource, in.Count, in.ExpectedCount, in.Value())
			}
		})
	}
}

func TestMIGCapacity(t *testing.T) {
	in := Default().Infer(Node{Capacity: caps("nvidia.com/mig-1g.5gb", "7", "nvidia.com/gpu", "0")})
	if !in.GPU() || !in.MIG || in.Resource != "nvidia.com/mig-1g.5gb" || in.Count != 7 {
		t.Errorf("got %+v", in)
	}
}

func TestConfigRowsWinOverTable(t *testing.T) {
	kb, err := Default().WithInstanceTypes([]InstanceTypeRow{{Name: "p4d.24xlarge", Model: "A100-80GB", Count: 8}, {Name: "my-onprem", Model: "h100"}})
	if err != nil {
		t.Fatal(err)
	}
	in := kb.Infer(Node{Labels: labels(LabelInstanceType, "p4d.24xlarge")})
	if in.Value() != "a100-80gb" || in.Source != SourceConfig || in.ExpectedCount != 8 {
		t.Errorf("override: got %q from %q expect %d", in.Value(), in.Source, in.ExpectedCount)
	}
	in = kb.Infer(Node{Labels: labels(LabelInstanceType, "my-onprem")})
	if in.Value() != "h100" || in.ExpectedCount != 0 {
		t.Errorf("added: got %q expect %d", in.Value(), in.ExpectedCount)
	}
	if got := Default().Infer(Node{Labels: labels(LabelInstanceType, "p4d.24xlarge")}).Value(); got != "a100" {
		t.Errorf("the default knowledge base changed: %q", got)
	}
	kb, err = Default().WithInstanceTypes([]InstanceTypeRow{{Name: "lab-box", Model: "RTX9090"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := kb.Infer(Node{Labels: labels(LabelInstanceType, "lab-box")}).Value(); got != "rtx9090" {
		t.Errorf("a GPU the tables do not know: got %q", got)
	}
	if _, ok := Default().Model("RTX9090"); ok {
		t.Error("a config row changed the default knowledge base")
	}
	if _, err := Default().WithInstanceTypes([]InstanceTypeRow{{Name: "x", Model: "not a label!"}}); err == nil {
		t.Error("an invalid model name was accepted")
	}
}

// Every row of the embedded tables names a known model, makes a valid label value and has a
// positive count and a source.
func TestEmbeddedTables(t *testing.T) {
	kb := Default()
	if len(kb.Models()) < 40 {
		t.Errorf("only %d models", len(kb.Models()))
	}
	for _, m := range kb.Models() {
		if msgs := validation.IsValidLabelValue(m.LabelValue()); len(msgs) > 0 || m.LabelValue() != strings.ToLower(m.LabelValue()) {
			t.Errorf("model %s: label value %q: %v", m.Name, m.LabelValue(), msgs)
		}
		if m.Source == "" {
			t.Errorf("model %s has no source", m.Name)
		}
	}
	clouds := map[string]int{}
	for _, it := range kb.InstanceTypes() {
		clouds[it.Cloud]++
		if it.Count < 0 || it.Source == "" || it.Model == nil {
			t.Errorf("row %s: count %v source %q", it.Name, it.Count, it.Source)
		}
		if got, ok := kb.Model(it.Model.Name); !ok || got != it.Model {
			t.Errorf("row %s names unknown model %s", it.Name, it.Model.Name)
		}
		if len(validation.IsValidLabelValue(it.Name)) > 0 {
			t.Errorf("row %s is not a valid instance-type label value", it.Name)
		}
	}
	// Each cloud's share of the table, so that a lost block of rows fails here.
	for c, least := range map[string]int{"aws": 90, "gcp": 35, "azure": 70, "oci": 40, "nebius": 10, "coreweave": 12,
		"digitalocean": 30, "scaleway": 15, "ovhcloud": 30, "alibaba": 100, "linode": 13, "vultr": 30,
		"crusoe": 25, "lambda": 20, "ibm": 20, "hetzner": 2, "hyperstack": 20, "sagemaker": 40} {
		if clouds[c] < least {
			t.Errorf("%s has %d instance types, want at least %d", c, clouds[c], least)
		}
	}
}

func TestParseRejectsBadTables(t *testing.T) {
	good := "A100\tnvidia\tgpu\t40960\tA100\t-\t-\ta100\tsrc\n"
	tests := map[string]struct{ models, types string }{
		"wrong column count":     {models: "A100\tnvidia\n"},
		"bad kind":               {models: strings.Replace(good, "gpu", "fpga", 1)},
		"bad memory":             {models: strings.Replace(good, "40960", "lots", 1)},
		"invalid label value":    {models: strings.Replace(good, "A100\tnvidia", "A 100!\tnvidia", 1)},
		"unknown refines":        {models: strings.Replace(good, "A100\t-\t-", "A100\tH9\t-", 1)},
		"row with unknown model": {models: good, types: "aws\tp9\tH900\t8\t\tsrc\n"},
		"row with zero count":    {models: good, types: "aws\tp9\tA100\t0\t\tsrc\n"},
		"row listed twice":       {models: good, types: "aws\tp9\tA100\t8\t\tsrc\naws\tp9\tA100\t8\t\tsrc\n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(Tables{Models: []byte(tc.models), InstanceTypes: []byte(tc.types)}); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestSanitizeLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"RTX 4090":              "rtx-4090",
		"-x-":                   "x",
		"!!!":                   "",
		strings.Repeat("a", 80): strings.Repeat("a", 63),
	} {
		if got := SanitizeLabelValue(in); got != want {
			t.Errorf("SanitizeLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitProductKeepsOffsetsInNonASCIIText(t *testing.T) {
	// Found by FuzzInfer: upper-casing this string changes its length.
	product, mig, _ := splitProduct("NVIDIA-A100-\u0131\u0131\u0131-SXM4-80GB-mig-1g.10gb")
	if !mig || product != "NVIDIA-A100-\u0131\u0131\u0131-SXM4-80GB" {
		t.Errorf("got %q mig=%v", product, mig)
	}
	if i := indexFoldASCII("ab-Mig-", "-MIG-"); i != 2 {
		t.Errorf("index %d", i)
	}
}

// A word found in a key lower-cased by lowerASCII agrees with upper-casing both sides, on keys
// of either case.
func TestLowerASCII(t *testing.T) {
	for _, s := range []string{"", "gpu", "example.com/gpu-model", "Example.com/GPU", "gp", "g/pu", "x/Gpu", "aGPu", "ccloud.sap.com/nvidia-gpu", "accel/GP", "\u0131gpu", "GPU\u0131", "GpX/gpu"} {
		want := strings.Contains(strings.ToUpper(s), "GPU")
		if got := strings.Contains(lowerASCII(s), "gpu"); got != want {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
}

// Found by FuzzInfer: a quantity with a huge exponent must not be materialised.
func TestHugeAndFractionalCapacity(t *testing.T) {
	for q, want := range map[string]int64{"8": 8, "500m": 1, "1500m": 2, "66666666666666666666E66": math.MaxInt64, "9223372036854775807": math.MaxInt64, "1e18": 1e18} {
		done := make(chan int64, 1)
		go func() { done <- Default().Infer(Node{Capacity: caps("nvidia.com/gpu", q)}).Count }()
		select {
		case got := <-done:
			if got != want {
				t.Errorf("%s: count %d, want %d", q, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Infer did not return", q)
		}
	}
}

// Found by FuzzInfer: resource.ParseQuantity computes for minutes on a huge exponent.
func TestParseQuantityRefusesWhatWouldHang(t *testing.T) {
	for _, bad := range []string{"66666666666666666666E66666666666", "1e999", "1E-999", strings.Repeat("9", 41)} {
		done := make(chan error, 1)
		go func() { _, err := ParseQuantity(bad); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%.20q accepted", bad)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%.20q: did not return", bad)
		}
	}
	for _, good := range []string{"8", "1Ei", "2E", "1e3", "104845292Ki", "500m", "1E+18"} {
		if _, err := ParseQuantity(good); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
}

func FuzzInfer(f *testing.F) {
	f.Add(LabelGFDProduct, "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb", "nvidia.com/gpu", "8", "p4d.24xlarge")
	f.Add(LabelKarpenterGPUName, "a100", "amd.com/gpu", "1", "Standard_ND96isr_H100_v5")
	f.Add(LabelGKEAccelerator, "nvidia-tesla-", "nvidia.com/mig-1g.5gb", "-3", "")
	f.Add(LabelCoreWeaveClass, "\x00\xff", "google.com/tpu", "1e3", "x")
	f.Add(LabelGFDPresent, "true", "nvidia.com/gpu", "8", "gpu_8x_a100_80gb_sxm4-next")
	f.Add(LabelInstanceTypeBeta, "ml.p5.48xlarge", "amd.com/gpu", "8", "24x120x1l40s.8x.h100x1")
	kb := Default()
	f.Fuzz(func(t *testing.T, key, value, res, qty, instanceType string) {
		n := Node{Labels: map[string]string{key: value, LabelInstanceType: instanceType}}
		if q, err := ParseQuantity(qty); err == nil {
			n.Capacity = map[string]resource.Quantity{res: q}
		}
		a, b := kb.Infer(n), kb.Infer(n)
		if a.Value() != b.Value() || a.Kind != b.Kind || a.Count != b.Count || a.Source != b.Source {
			t.Fatalf("not deterministic: %+v vs %+v", a, b)
		}
		if v := a.Value(); v != "" && (len(validation.IsValidLabelValue(v)) > 0 || v != strings.ToLower(v)) {
			t.Fatalf("invalid label value %q", v)
		}
		if a.Model != nil && a.Kind == "" {
			t.Fatalf("model %s without kind", a.Model.Name)
		}
	})
}
