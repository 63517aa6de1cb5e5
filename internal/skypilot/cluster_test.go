package skypilot

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// gpu is an NVIDIA GPU node as the webhook sees it once the device plugin has reported.
func gpu(name, value string, labels map[string]string) Node {
	return Node{Name: name, Labels: labels, GPU: true, Value: value,
		Capacity: map[string]int64{ResourceNVIDIA: 8, "cpu": 96}, Allocatable: map[string]int64{ResourceNVIDIA: 8, "cpu": 95}}
}

func amd(name string, labels map[string]string) Node {
	return Node{Name: name, Labels: labels, GPU: true, Value: "mi300x",
		Capacity: map[string]int64{ResourceAMD: 8}, Allocatable: map[string]int64{ResourceAMD: 8}}
}

func tpu(name string) Node {
	return Node{Name: name, Accelerator: true,
		Labels:   map[string]string{KeyGKETPU: "tpu-v5-lite-podslice", "cloud.google.com/gke-tpu-topology": "2x2"},
		Capacity: map[string]int64{ResourceTPU: 4}, Allocatable: map[string]int64{ResourceTPU: 4}}
}

// dra is a GPU node whose eight GPUs NVIDIA's DRA driver publishes: nothing in its capacity.
func dra(name, value string, labels map[string]string) Node {
	return Node{Name: name, Labels: labels, GPU: true, Value: value, DRAGPUs: 8, DRADrivers: []string{"gpu.nvidia.com"}}
}

func cpu(name string) Node {
	return Node{Name: name, Labels: map[string]string{"node.kubernetes.io/instance-type": "m5.large"}}
}

func sky(v string) map[string]string { return map[string]string{KeySkyPilot: v} }

// found reduces findings to reason -> nodes, the part a fleet decides exactly.
func found(c Cluster) map[Reason][]string {
	out := map[Reason][]string{}
	for _, f := range c.Findings {
		out[f.Reason] = f.Nodes
	}
	return out
}

func TestAnalyze(t *testing.T) {
	for name, tc := range map[string]struct {
		nodes    []Node
		opts     Options
		scheme   string
		resource string
		// decidedBy, when set, is the node whose label must have picked the scheme.
		decidedBy string
		want      map[Reason][]string
	}{
		"an empty cluster has nothing to say": {
			scheme: "", resource: ResourceNVIDIA, want: map[Reason][]string{},
		},
		"a CPU-only cluster has no findings": {
			nodes:  []Node{cpu("c1"), cpu("c2")},
			scheme: "", resource: ResourceNVIDIA, want: map[Reason][]string{},
		},
		"a cluster labeled throughout with SkyPilot's label has no findings": {
			nodes:  []Node{gpu("g1", "h100", sky("h100")), gpu("g2", "a100-80gb", sky("a100-80gb")), cpu("c1")},
			scheme: "SkyPilot", resource: ResourceNVIDIA, want: map[Reason][]string{},
		},
		"a GKE cluster of GPUs and TPUs with only GKE's labels reads them and has no findings": {
			nodes:  []Node{gpu("g1", "l4", map[string]string{KeyGKE: "nvidia-l4"}), tpu("t1")},
			scheme: "GKE", resource: ResourceNVIDIA, want: map[Reason][]string{},
		},
		"an on-prem cluster with only GPU Feature Discovery's labels reads them and has no findings": {
			nodes:  []Node{gpu("g1", "h100", map[string]string{KeyGFD: "NVIDIA-H100-80GB-HBM3"})},
			scheme: "GFD", resource: ResourceNVIDIA, want: map[Reason][]string{},
		},
		"once one node has SkyPilot's label, nodes with only GKE, GFD or Karpenter labels are not seen": {
			nodes: []Node{
				gpu("a-sky", "h100", sky("h100")),
				gpu("b-gke", "l4", map[string]string{KeyGKE: "nvidia-l4"}),
				gpu("c-gfd", "h100", map[string]string{KeyGFD: "NVIDIA-H100-80GB-HBM3"}),
				gpu("d-karpenter", "a10g", map[string]string{KeyKarpenter: "a10g"}),
			},
			opts:   Options{WebhookLabels: true},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonOtherLabelsOnly: {"b-gke", "c-gfd", "d-karpenter"}},
		},
		"a GPU node with no label any scheme reads is not seen": {
			nodes:  []Node{gpu("a-sky", "h100", sky("h100")), gpu("b-eks", "h100", map[string]string{"node.kubernetes.io/instance-type": "p5.48xlarge"})},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonUnlabeled: {"b-eks"}},
		},
		"GPU nodes without any label SkyPilot reads break every GPU request": {
			nodes:  []Node{gpu("g1", "h100", nil), cpu("c1")},
			scheme: "", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonNoScheme: {"g1"}},
		},
		"one AMD node makes SkyPilot count amd.com/gpu, so every NVIDIA node shows 0 GPUs": {
			nodes:  []Node{gpu("a-nv", "h100", sky("h100")), amd("b-amd", sky("mi300x")), gpu("c-nv", "l4", sky("l4"))},
			scheme: "SkyPilot", resource: ResourceAMD,
			want: map[Reason][]string{ReasonMixedResources: {"a-nv", "c-nv"}},
		},
		"CUSTOM_GPU_RESOURCE_KEY overrides the choice, and the AMD nodes are the ones left out": {
			nodes:  []Node{gpu("a-nv", "h100", sky("h100")), amd("b-amd", sky("mi300x"))},
			opts:   Options{CustomResourceKey: ResourceNVIDIA},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonMixedResources: {"b-amd"}},
		},
		"an uppercase value anywhere breaks every request": {
			nodes:  []Node{gpu("a-ok", "h100", sky("h100")), gpu("b-upper", "a100-80gb", sky("A100-80GB"))},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonInvalidValue: {"b-upper"}},
		},
		"an uppercase value on the first node with the label makes SkyPilot ignore its label everywhere": {
			nodes: []Node{
				gpu("a-upper", "a100-80gb", sky("A100-80GB")),
				gpu("b-ok", "h100", sky("h100")),
				gpu("c-gke", "l4", map[string]string{KeyGKE: "nvidia-l4"}),
			},
			scheme: "GKE", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonSchemeIgnored: {"a-upper"}, ReasonOtherLabelsOnly: {"a-upper", "b-ok"}},
		},
		"an uppercase value on the only labeled node leaves no scheme, and every request fails": {
			nodes:  []Node{gpu("a-upper", "a100-80gb", sky("A100")), gpu("b", "h100", nil)},
			scheme: "", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonSchemeIgnored: {"a-upper"}},
		},
		"TPU nodes next to SkyPilot labels cannot be requested": {
			nodes:  []Node{gpu("a-sky", "h100", sky("h100")), tpu("t1"), tpu("t2")},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonTPUHidden: {"t1", "t2"}},
		},
		"a GPU node whose device plugin has not reported shows 0 GPUs": {
			nodes: []Node{
				gpu("a-sky", "h100", sky("h100")),
				{Name: "b-new", GPU: true, Value: "l4", Labels: sky("l4")},
			},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonNotReported: {"b-new"}},
		},
		"MIG slices and shared replicas are not waited for: SkyPilot never counts them": {
			nodes: []Node{
				gpu("a-sky", "h100", sky("h100")),
				{Name: "b-mig", GPU: true, Value: "a100-80gb", Labels: sky("a100-80gb"), Partial: []string{"nvidia.com/mig-1g.10gb", "nvidia.com/mig-3g.40gb"}},
				{Name: "c-shared", GPU: true, Value: "l4", Labels: sky("l4"), Partial: []string{"nvidia.com/gpu.shared"}},
				{Name: "d-new", GPU: true, Value: "l4", Labels: sky("l4")},
			},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonPartialOnly: {"b-mig", "c-shared"}, ReasonNotReported: {"d-new"}},
		},
		"when no node reports GPUs at all, every request fails": {
			nodes:  []Node{{Name: "a", GPU: true, Value: "h100", Labels: sky("h100")}, {Name: "b", GPU: true, Value: "l4", Labels: sky("l4")}},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonNoGPUResource: {"a", "b"}},
		},
		"GPUs managed by DRA are counted by nobody in SkyPilot, and no device plugin is to be waited for": {
			nodes:  []Node{gpu("a-sky", "h100", sky("h100")), dra("b-dra", "h100", sky("h100")), {Name: "c-new", GPU: true, Value: "l4", Labels: sky("l4")}},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonDRAManaged: {"b-dra"}, ReasonNotReported: {"c-new"}},
		},
		"a cluster of DRA GPUs only: every SkyPilot GPU request fails, for that reason": {
			nodes:  []Node{dra("a", "h100", sky("h100")), dra("b", "h100", sky("h100"))},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonNoGPUResource: {"a", "b"}, ReasonDRAManaged: {"a", "b"}},
		},
		"an unlabeled DRA node is still one SkyPilot does not see": {
			nodes:  []Node{gpu("a-sky", "h100", sky("h100")), dra("b-dra", "h100", map[string]string{"feature.node.kubernetes.io/pci-10de.present": "true"})},
			opts:   Options{WebhookLabels: true},
			scheme: "SkyPilot", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonUnlabeled: {"b-dra"}, ReasonDRAManaged: {"b-dra"}},
		},
		"the scheme is decided by the first nonempty label, in node-name order": {
			nodes:  []Node{gpu("c", "h100", sky("h100")), gpu("b", "h100", sky("h100")), gpu("a", "h100", sky(""))},
			scheme: "SkyPilot", resource: ResourceNVIDIA, decidedBy: "b", want: map[Reason][]string{},
		},
		"a GKE value SkyPilot cannot read makes it fall through to the next scheme": {
			nodes:  []Node{gpu("a", "h100", map[string]string{KeyGKE: "amd-mi300x", KeyGFD: "NVIDIA-H100-80GB-HBM3"})},
			scheme: "GFD", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonSchemeIgnored: {"a"}},
		},
		"Nebius values must be uppercase": {
			nodes:  []Node{gpu("a", "h100", map[string]string{KeyNebius: "H100"}), gpu("b", "h100", map[string]string{KeyNebius: "h100"})},
			scheme: "Nebius", resource: ResourceNVIDIA,
			want: map[Reason][]string{ReasonInvalidValue: {"b"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := Analyze(tc.nodes, tc.opts)
			if c.LabelScheme != tc.scheme || c.GPUResource != tc.resource {
				t.Errorf("scheme %q, resource %q; want %q, %q", c.LabelScheme, c.GPUResource, tc.scheme, tc.resource)
			}
			if tc.decidedBy != "" && c.DecidedBy != tc.decidedBy {
				t.Errorf("decided by %q, want %q", c.DecidedBy, tc.decidedBy)
			}
			if got := found(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("findings %v\nwant %v\n%+v", got, tc.want, c.Findings)
			}
			for _, f := range c.Findings {
				if f.Message == "" || f.Fix == "" || len(f.Nodes) == 0 {
					t.Errorf("finding without message, fix or nodes: %+v", f)
				}
			}
			if got := Analyze(reduced(tc.nodes, tc.opts.CustomResourceKey), tc.opts); !reflect.DeepEqual(got, c) {
				t.Errorf("with only what ReadsLabel and ReadsResource keep:\n%+v\nwant\n%+v", got, c)
			}
		})
	}
}

// reduced keeps of each node only the labels and resources the analysis reads, as `check` does.
func reduced(nodes []Node, customKey string) []Node {
	keep := func(m map[string]int64) map[string]int64 {
		out := map[string]int64{}
		for k, v := range m {
			if ReadsResource(k, customKey) {
				out[k] = v
			}
		}
		return out
	}
	out := make([]Node, len(nodes))
	for i, n := range nodes {
		out[i] = n
		out[i].Labels = map[string]string{}
		for k, v := range n.Labels {
			if ReadsLabel(k) {
				out[i].Labels[k] = v
			}
		}
		out[i].Capacity, out[i].Allocatable = keep(n.Capacity), keep(n.Allocatable)
	}
	return out
}

// The most severe finding comes first, with the exact fix, and the per-node lookup finds it.
func TestInvalidValueIsFirstWithItsFix(t *testing.T) {
	c := Analyze([]Node{
		gpu("a-ok", "h100", sky("h100")),
		gpu("b-upper", "a100-80gb", sky("A100-80GB")),
		gpu("c-other", "l4", map[string]string{KeyGKE: "nvidia-l4"}),
		tpu("d-tpu"),
	}, Options{WebhookLabels: true})
	if len(c.Findings) != 3 {
		t.Fatalf("%d findings: %+v", len(c.Findings), c.Findings)
	}
	f := c.Findings[0]
	if f.Severity != Critical || f.Reason != ReasonInvalidValue {
		t.Fatalf("first finding %+v", f)
	}
	if want := "kubectl label node b-upper skypilot.co/accelerator=a100-80gb --overwrite"; f.Fix != want {
		t.Errorf("fix %q, want %q", f.Fix, want)
	}
	if !strings.Contains(f.Message, "every SkyPilot GPU request in the cluster fails") {
		t.Errorf("message %q", f.Message)
	}
	if got := c.About("b-upper"); len(got) != 1 || got[0].Reason != ReasonInvalidValue {
		t.Errorf("About(b-upper) = %+v", got)
	}
	if c.Findings[1].Fix != "webhook label" {
		t.Errorf("fix for unseen nodes %q", c.Findings[1].Fix)
	}
	if c.Counted() != 2 {
		t.Errorf("counted %d, want 2 (the TPU advisory is not counted)", c.Counted())
	}
}

// The DRA finding names each node's GPUs and the upstream work that retires it, is advisory,
// and tells no one to wait for a device plugin; where every GPU is DRA's, NoGPUResource says
// why instead of asking for a device plugin.
func TestDRAFindings(t *testing.T) {
	c := Analyze([]Node{gpu("a", "h100", sky("h100")), dra("b", "h100", sky("h100"))}, Options{})
	f := c.Findings[0]
	if f.Reason != ReasonDRAManaged || f.Severity != Advisory || c.Counted() != 0 {
		t.Fatalf("%+v, counted %d", c.Findings, c.Counted())
	}
	for _, want := range []string{"b (8 in ResourceSlices of gpu.nvidia.com)", "counts 0 GPUs", "whatever their label"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message lacks %q: %s", want, f.Message)
		}
	}
	if !strings.Contains(f.Fix, DRAUpstream) || strings.Contains(f.Fix, "wait for the device plugin") {
		t.Errorf("fix %q", f.Fix)
	}
	c = Analyze([]Node{dra("a", "h100", sky("h100"))}, Options{})
	if f := c.Findings[0]; f.Reason != ReasonNoGPUResource || !strings.Contains(f.Message, DRAUpstream) || strings.Contains(f.Fix, "device plugin that reports") {
		t.Errorf("%+v", f)
	}
}

// Where `webhook label` does not write SkyPilot's key, or the model is unknown, the fix
// is a kubectl command per node.
func TestLabelFixWithoutTheWebhook(t *testing.T) {
	c := Analyze([]Node{gpu("a", "h100", sky("h100")), gpu("b", "", nil), gpu("c", "l4", nil)}, Options{})
	f := c.Findings[0]
	want := "kubectl label node b skypilot.co/accelerator=<model>; kubectl label node c skypilot.co/accelerator=l4"
	if f.Reason != ReasonUnlabeled || f.Fix != want {
		t.Errorf("%+v\nwant fix %q", f, want)
	}
}

func TestGKETPUValues(t *testing.T) {
	for v, want := range map[string]bool{
		"tpu-v5-lite-podslice": true, "tpu-v6e-slice": true, "tpu-v4-podslice": true, "tpu-v5p-slice": true,
		"tpu-v5-lite-device": true, "tpu-v6e-8": true, "tpu-v5litepod-4": true,
		"tpu-v6e-": false, "tpu-v7": false, "nvidia-l4": false, "": false,
	} {
		if IsGKETPU(v) != want {
			t.Errorf("IsGKETPU(%q) = %v", v, !want)
		}
	}
}

// The order of the input does not change the answer: SkyPilot reads nodes by name.
func TestOrderOfInputDoesNotMatter(t *testing.T) {
	nodes := []Node{gpu("b-upper", "a100-80gb", sky("A100")), gpu("a-ok", "h100", sky("h100")), amd("c", nil), tpu("d")}
	want := Analyze(nodes, Options{})
	slices.Reverse(nodes)
	if got := Analyze(nodes, Options{}); !reflect.DeepEqual(got, want) {
		t.Errorf("reversed input gives\n%+v\nwant\n%+v", got, want)
	}
}

// Bad input (nil maps, empty names, odd values) never panics.
func FuzzAnalyze(f *testing.F) {
	f.Add("n", KeySkyPilot, "A100", ResourceAMD, int64(1))
	f.Add("", KeyGKETPU, "tpu-v6e-", ResourceTPU, int64(-1))
	f.Fuzz(func(t *testing.T, name, key, value, resource string, count int64) {
		nodes := []Node{
			{Name: name, Labels: map[string]string{key: value}, Capacity: map[string]int64{resource: count}},
			{Name: name + "x", GPU: true},
			{},
		}
		c := Analyze(nodes, Options{WebhookLabels: true})
		for _, fd := range c.Findings {
			if len(fd.Nodes) == 0 {
				t.Errorf("finding without nodes: %+v", fd)
			}
		}
	})
}
