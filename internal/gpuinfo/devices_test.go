package gpuinfo

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// fixtureSlices are testdata/resourceslices.yaml: the drivers' documented ResourceSlices.
var fixtureSlices = sync.OnceValues(func() ([]*resourcev1.ResourceSlice, error) {
	b, err := os.ReadFile("testdata/resourceslices.yaml")
	if err != nil {
		return nil, err
	}
	var list struct {
		metav1.TypeMeta
		Items []*resourcev1.ResourceSlice `json:"items"`
	}
	return list.Items, yaml.UnmarshalStrict(b, &list)
})

// driverSlices returns a copy of the fixture slices, for a test to change.
func driverSlices(t *testing.T) []*resourcev1.ResourceSlice {
	t.Helper()
	items, err := fixtureSlices()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*resourcev1.ResourceSlice, len(items))
	for i, s := range items {
		out[i] = s.DeepCopy()
	}
	return out
}

// sliceOf returns a copy of the fixture slice published for node.
func sliceOf(t *testing.T, node string) *resourcev1.ResourceSlice {
	t.Helper()
	for _, s := range driverSlices(t) {
		if s.Spec.NodeName != nil && *s.Spec.NodeName == node && s.Spec.Driver != "compute-domain.nvidia.com" {
			return s
		}
	}
	t.Fatalf("no fixture slice for %s", node)
	return nil
}

// The drivers' documented slices, each on its node with nothing else: model, GPU count, and
// whether the node is a GPU node at all.
func TestInferFromDriverSlices(t *testing.T) {
	tests := map[string]struct {
		node   string
		want   string
		count  int64
		source Source
		gpu    bool
	}{
		"NVIDIA's two A100 PCIe 40GB are two a100":                               {"dra-a100", "a100", 2, "nvidia-dra-driver", true},
		"fourteen MIG slices of two A100 80GB are two a100-80gb":                 {"dra-a100-mig", "a100-80gb", 2, "nvidia-dra-driver", true},
		"an H100 published whole and for passthrough is one h100":                {"dra-h100", "h100", 1, "nvidia-dra-driver", true},
		"AMD's MI300X OAM is mi300x":                                             {"k8s-gpu-dra-driver-cluster-worker", "mi300x", 1, "amd-dra-driver", true},
		"eight CPX partitions of one MI300X are one mi300x":                      {"amd-cpx", "mi300x", 1, "amd-dra-driver", true},
		"Intel's Arc Pro B60 is a GPU of unknown model, the integrated one none": {"rpl-s", "", 1, "intel-dra-driver", true},
	}
	kb := Default()
	all := driverSlices(t)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			devs := kb.NodeDevices(tc.node, nil, all)
			in := kb.Infer(Node{Devices: devs})
			source := in.Source
			if in.Model == nil && len(in.Evidence) > 0 {
				source = in.Evidence[0].Source
			}
			if in.GPU() != tc.gpu || in.Value() != tc.want || in.DeviceCount != tc.count || source != tc.source {
				t.Errorf("gpu=%v value=%q count=%d source=%q, want %v %q %d %q (evidence %+v)",
					in.GPU(), in.Value(), in.DeviceCount, source, tc.gpu, tc.want, tc.count, tc.source, in.Evidence)
			}
			if len(in.Conflicts) > 0 || in.Count != 0 || in.Resource != "" {
				t.Errorf("conflicts %+v, capacity %s %d", in.Conflicts, in.Resource, in.Count)
			}
		})
	}
}

// An NVML product name in a slice has spaces where GPU Feature Discovery's has hyphens; over
// every product token set the tables know, both name the same model.
func TestDriverProductNamesAsGFDDoes(t *testing.T) {
	kb := Default()
	for _, m := range kb.Models() {
		for _, set := range m.Match() {
			for _, memory := range []string{"", "81920Mi"} {
				spaced := "NVIDIA " + strings.Join(set, " ")
				gfd := kb.Infer(Node{Labels: labels(LabelGFDProduct, strings.ReplaceAll(spaced, " ", "-"), LabelGFDMemory, strings.TrimSuffix(memory, "Mi"))})
				dra := kb.Infer(Node{Devices: []Device{nvidiaGPU(t, spaced, memory)}})
				if dra.Value() != gfd.Value() || dra.Value() == "" {
					t.Errorf("%q memory %q: slice names %q, GFD %q", spaced, memory, dra.Value(), gfd.Value())
				}
			}
		}
	}
}

// nvidiaGPU is one device as NVIDIA's driver publishes a whole GPU, read through NodeDevices.
func nvidiaGPU(t *testing.T, product, memory string) Device {
	t.Helper()
	s := sliceOf(t, "dra-a100")
	d := &s.Spec.Devices[0]
	d.Attributes["productName"] = resourcev1.DeviceAttribute{StringValue: ptr.To(product)}
	if memory == "" {
		delete(d.Capacity, "memory")
	} else {
		d.Capacity["memory"] = resourcev1.DeviceCapacity{Value: mustQuantity(memory)}
	}
	s.Spec.Devices = s.Spec.Devices[:1]
	devs := Default().NodeDevices("dra-a100", nil, []*resourcev1.ResourceSlice{s})
	if len(devs) != 1 {
		t.Fatalf("%d devices", len(devs))
	}
	return devs[0]
}

// The memory capacity picks the variant where the product name does not tell it, as GFD's
// memory label does; where the name tells it, the name wins.
func TestDriverMemoryPicksTheVariant(t *testing.T) {
	tests := map[string]struct{ product, memory, want string }{
		"A100 SXM4 40GB is a100":                              {"NVIDIA A100-SXM4-40GB", "40Gi", "a100"},
		"A100 SXM4 80GB is a100-80gb":                         {"NVIDIA A100-SXM4-80GB", "80Gi", "a100-80gb"},
		"an A100 of 80 GiB whose name says no memory":         {"NVIDIA A100-SXM4", "80Gi", "a100-80gb"},
		"an A100 of 40 GiB whose name says no memory":         {"NVIDIA A100-SXM4", "40Gi", "a100"},
		"a V100 of 32 GiB":                                    {"Tesla V100-SXM2", "32Gi", "v100-32gb"},
		"an unknown GeForce is named as SkyPilot's labeler":   {"NVIDIA GeForce RTX 3080", "10Gi", "rtx3080"},
		"an H100 of 80 GiB stays h100 (no memory variants)":   {"NVIDIA H100 80GB HBM3", "81559Mi", "h100"},
		"GB200 as the driver's mock names it (mock-nvml)":     {"NVIDIA GB200", "", "gb200"},
		"L40S as the driver's mock names it (mock-nvml)":      {"NVIDIA L40S", "", "l40s"},
		"T4 as the driver's mock names it (mock-nvml)":        {"NVIDIA T4", "", "t4"},
		"B200 as the driver's mock names it (mock-nvml)":      {"NVIDIA B200", "", "b200"},
		"A100 40GB as the driver's mock names it (mock-nvml)": {"NVIDIA A100-SXM4-40GB", "", "a100"},
	}
	kb := Default()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(Node{Devices: []Device{nvidiaGPU(t, tc.product, tc.memory)}})
			if in.Value() != tc.want || in.DeviceCount != 1 {
				t.Errorf("value %q count %d, want %q 1 (evidence %+v)", in.Value(), in.DeviceCount, tc.want, in.Evidence)
			}
		})
	}
}

// Only a complete pool counts, at its newest generation: a driver republishing its pool
// leaves old and new slices side by side for a moment, and a pool of several slices is
// complete only when all are there.
func TestPoolGenerations(t *testing.T) {
	gen := func(g, count int64, gpus int) *resourcev1.ResourceSlice {
		s := sliceOf(t, "dra-a100")
		s.Spec.Pool.Generation, s.Spec.Pool.ResourceSliceCount = g, count
		s.Spec.Devices = s.Spec.Devices[:gpus]
		return s
	}
	tests := map[string]struct {
		slices []*resourcev1.ResourceSlice
		count  int64
	}{
		"the newest generation wins over an older one still there": {[]*resourcev1.ResourceSlice{gen(1, 1, 2), gen(2, 1, 1)}, 1},
		"so does it when listed first":                             {[]*resourcev1.ResourceSlice{gen(2, 1, 1), gen(1, 1, 2)}, 1},
		"a pool of two slices counts both":                         {[]*resourcev1.ResourceSlice{gen(4, 2, 1), gen(4, 2, 1)}, 2},
		"a pool missing one of its two slices counts none":         {[]*resourcev1.ResourceSlice{gen(4, 2, 2)}, 0},
		"an incomplete newest generation hides the older complete": {[]*resourcev1.ResourceSlice{gen(1, 1, 2), gen(2, 2, 1)}, 0},
		"more slices than the pool says is not a complete pool":    {[]*resourcev1.ResourceSlice{gen(1, 1, 1), gen(1, 1, 2)}, 0},
	}
	kb := Default()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// Two slices of a pool are two GPUs here: each repeats gpu-0, whose UUID counts once.
			for i, s := range tc.slices {
				for j := range s.Spec.Devices {
					s.Spec.Devices[j].Attributes["uuid"] = resourcev1.DeviceAttribute{StringValue: ptr.To(s.Name + string(rune('a'+i)) + string(rune('0'+j)))}
				}
			}
			in := kb.Infer(Node{Devices: kb.NodeDevices("dra-a100", nil, tc.slices)})
			if in.DeviceCount != tc.count {
				t.Errorf("count %d, want %d", in.DeviceCount, tc.count)
			}
		})
	}
}

// A slice is a node's by nodeName, by a node selector that matches the node, or device by
// device; devices every node reaches are no node's own, and other drivers' devices are not
// GPUs.
func TestSliceBinding(t *testing.T) {
	byName := func(name string) *resourcev1.ResourceSlice {
		s := sliceOf(t, "dra-h100")
		s.Spec.NodeName = ptr.To(name)
		return s
	}
	bySelector := func(sel corev1.NodeSelectorTerm) *resourcev1.ResourceSlice {
		s := byName("")
		s.Spec.NodeName, s.Spec.NodeSelector = nil, &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{sel}}
		return s
	}
	perDevice := func(names ...string) *resourcev1.ResourceSlice {
		s := sliceOf(t, "dra-a100")
		s.Spec.NodeName, s.Spec.PerDeviceNodeSelection = nil, ptr.To(true)
		for i := range s.Spec.Devices {
			s.Spec.Devices[i].NodeName = ptr.To(names[i])
		}
		return s
	}
	allNodes := byName("")
	allNodes.Spec.NodeName, allNodes.Spec.AllNodes = nil, ptr.To(true)
	var computeDomain *resourcev1.ResourceSlice
	for _, s := range driverSlices(t) {
		if s.Spec.Driver == "compute-domain.nvidia.com" {
			computeDomain = s
		}
	}
	computeDomain.Spec.NodeName = ptr.To("n1")
	tests := map[string]struct {
		slice *resourcev1.ResourceSlice
		count int64
	}{
		"a slice of the node's name":            {byName("n1"), 1},
		"a slice of another node's name":        {byName("n2"), 0},
		"a selector on the node's name":         {bySelector(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}), 1},
		"a selector on another node's name":     {bySelector(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}}}}), 0},
		"a selector on a label the node has":    {bySelector(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "rack", Operator: corev1.NodeSelectorOpIn, Values: []string{"r7"}}}}), 1},
		"a selector on a label it does not":     {bySelector(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "rack", Operator: corev1.NodeSelectorOpIn, Values: []string{"r8"}}}}), 0},
		"an invalid selector":                   {bySelector(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "rack", Operator: "Near"}}}), 0},
		"devices bound one by one, one of them": {perDevice("n1", "n2"), 1},
		"devices bound one by one, both":        {perDevice("n1", "n1"), 2},
		"devices any node reaches":              {allNodes, 0},
		"compute-domain.nvidia.com channels":    {computeDomain, 0},
	}
	kb := Default()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(Node{Labels: labels("rack", "r7"), Devices: kb.NodeDevices("n1", labels("rack", "r7"), []*resourcev1.ResourceSlice{tc.slice})})
			if in.DeviceCount != tc.count || (tc.count > 0) != in.GPU() {
				t.Errorf("count %d gpu %v, want %d", in.DeviceCount, in.GPU(), tc.count)
			}
		})
	}
}

// Slices are the least trusted evidence: they name the model where no label does (a node
// with only Node Feature Discovery's vendor label, as the NVIDIA driver's chart selects
// nodes), and a label that names another model wins and the disagreement is reported.
func TestSlicesBesideLabels(t *testing.T) {
	kb := Default()
	h100 := kb.NodeDevices("dra-h100", nil, driverSlices(t))
	tests := map[string]struct {
		labels   map[string]string
		want     string
		source   Source
		conflict bool
	}{
		"NFD's vendor label alone: the slices name it":     {labels("feature.node.kubernetes.io/pci-10de.present", "true"), "h100", "nvidia-dra-driver", false},
		"NFD's class and vendor label: the slices name it": {labels("feature.node.kubernetes.io/pci-0302_10de.present", "true"), "h100", "nvidia-dra-driver", false},
		"GFD agrees":                                     {labels(LabelGFDProduct, "NVIDIA-H100-80GB-HBM3"), "h100", SourceGFD, false},
		"GKE's A3 Mega refines the slices' H100":         {labels(LabelGKEAccelerator, "nvidia-h100-mega-80gb"), "h100-mega", SourceGKE, false},
		"an instance type of another GPU wins, reported": {labels(LabelInstanceType, "p4d.24xlarge"), "a100", SourceInstanceType, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := kb.Infer(Node{Labels: tc.labels, Devices: h100})
			if in.Value() != tc.want || in.Source != tc.source || (len(in.Conflicts) > 0) != tc.conflict || in.DeviceCount != 1 {
				t.Errorf("value %q source %q conflicts %+v count %d, want %q %q conflict %v", in.Value(), in.Source, in.Conflicts, in.DeviceCount, tc.want, tc.source, tc.conflict)
			}
		})
	}
}

// A watch keeps slices trimmed to what NodeDevices reads, and reads them the same.
func TestTrimSliceKeepsWhatInferenceReads(t *testing.T) {
	kb := Default()
	nodes := []string{"dra-a100", "dra-a100-mig", "dra-h100", "k8s-gpu-dra-driver-cluster-worker", "amd-cpx", "rpl-s"}
	trimmed := driverSlices(t)
	for _, s := range trimmed {
		kb.TrimSlice(s)
		if len(s.OwnerReferences) > 0 || len(s.Spec.SharedCounters) > 0 {
			t.Errorf("%s: metadata or counters kept", s.Name)
		}
		for _, d := range s.Spec.Devices {
			for name := range d.Attributes {
				if !slices.Contains([]resourcev1.QualifiedName{"type", "uuid", "parentUUID", "productName", "vendorID", "deviceID", "pciAddr", "parentPciAddr", "pciId", "resource.kubernetes.io/pciBusID"}, name) {
					t.Errorf("%s/%s: kept attribute %s", s.Name, d.Name, name)
				}
			}
			if len(d.Capacity) > 1 {
				t.Errorf("%s/%s: kept capacity %v", s.Name, d.Name, d.Capacity)
			}
		}
		if s.Spec.Driver == "compute-domain.nvidia.com" && s.Spec.Devices != nil {
			t.Errorf("%s: kept another driver's devices", s.Name)
		}
	}
	for _, n := range nodes {
		want, got := kb.NodeDevices(n, nil, driverSlices(t)), kb.NodeDevices(n, nil, trimmed)
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: trimmed reads %+v, untrimmed %+v", n, got, want)
		}
	}
}

// An attribute qualified with the driver's own domain is the same attribute as its bare name.
func TestQualifiedAttributes(t *testing.T) {
	s := sliceOf(t, "dra-h100")
	s.Spec.Devices = s.Spec.Devices[:1]
	d := &s.Spec.Devices[0]
	for _, name := range []resourcev1.QualifiedName{"type", "productName", "uuid"} {
		d.Attributes["gpu.nvidia.com/"+name] = d.Attributes[name]
		delete(d.Attributes, name)
	}
	kb := Default()
	in := kb.Infer(Node{Devices: kb.NodeDevices("dra-h100", nil, []*resourcev1.ResourceSlice{kb.TrimSlice(s)})})
	if in.Value() != "h100" || in.DeviceCount != 1 {
		t.Errorf("value %q count %d", in.Value(), in.DeviceCount)
	}
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

func TestDeviceConventionsParse(t *testing.T) {
	t.Parallel()
	base := EmbeddedTables()
	tests := map[string]string{
		"an unknown kind":                "s\tgpu.example.com\tgpu\twhole\tuuid\tproductName\tnvml\tmemory\t10de\t-\tdoc",
		"a partition without its parent": "s\tgpu.example.com\tmig\tpartition\t-\tproductName\tnvml\t-\t10de\t-\tdoc",
		"a product without a reader":     "s\tgpu.example.com\tgpu\tgpu\tuuid\tproductName\t-\tmemory\t10de\t-\tdoc",
		"an unknown reader":              "s\tgpu.example.com\tgpu\tgpu\tuuid\tproductName\tregex\tmemory\t10de\t-\tdoc",
		"a vendor that makes no GPUs":    "s\tgpu.example.com\tgpu\tgpu\tuuid\tproductName\tproduct\tmemory\t1af4\t-\tdoc",
		"a driver that is no DNS name":   "s\tGPU_Driver\tgpu\tgpu\tuuid\tproductName\tproduct\tmemory\t10de\t-\tdoc",
		"no documentation":               "s\tgpu.example.com\tgpu\tgpu\tuuid\tproductName\tproduct\tmemory\t10de\t-\t",
		"a type listed twice":            string(base.Devices) + "\nnvidia\tgpu.nvidia.com\tgpu\tgpu\tuuid\tproductName\tnvml\tmemory\t10de\t-\tdoc",
	}
	for name, row := range tests {
		t.Run(name, func(t *testing.T) {
			tables := base
			tables.Devices = []byte(row)
			if _, err := Parse(tables); err == nil {
				t.Errorf("parsed %q", row)
			}
		})
	}
}
