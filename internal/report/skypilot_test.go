package report

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/skypilot"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

func withGPUs(n *corev1.Node, key string, count string) *corev1.Node {
	q := resource.MustParse(count)
	n.Status.Capacity = corev1.ResourceList{corev1.ResourceName(key): q}
	n.Status.Allocatable = corev1.ResourceList{corev1.ResourceName(key): q}
	return n
}

// check runs what `check` does on nodes, without the API.
func check(nodes ...*corev1.Node) ([]Node, skypilot.Cluster) {
	cfg := admit.DefaultConfig()
	var records []Node
	var seen []skypilot.Node
	for _, n := range nodes {
		d, r := Decide(cfg, n, nil, admit.Check)
		records = append(records, r)
		seen = append(seen, SkyPilotNode(n, &d, ""))
	}
	c := skypilot.Analyze(seen, skypilot.Options{WebhookLabels: true})
	for i := range records {
		NoteCluster(&records[i], &c)
	}
	return records, c
}

func TestNoteCluster(t *testing.T) {
	for name, tc := range map[string]struct {
		nodes []*corev1.Node
		node  string
		want  string // "" when the node's own wording must stay as it is
	}{
		"an uppercase value says it breaks every request": {
			nodes: []*corev1.Node{
				withGPUs(testnode.Bare("a", map[string]string{admit.DefaultLabelKey: "h100"}), "nvidia.com/gpu", "8"),
				withGPUs(testnode.Bare("b", map[string]string{admit.DefaultLabelKey: "A100-80GB", "node.kubernetes.io/instance-type": "p4de.24xlarge"}), "nvidia.com/gpu", "8"),
			},
			node: "b", want: "this breaks every SkyPilot GPU request in the cluster",
		},
		"an uppercase value on the first labeled node says SkyPilot ignores the label": {
			nodes: []*corev1.Node{
				withGPUs(testnode.Bare("a", map[string]string{admit.DefaultLabelKey: "H100"}), "nvidia.com/gpu", "8"),
				withGPUs(testnode.Bare("b", map[string]string{admit.DefaultLabelKey: "h100"}), "nvidia.com/gpu", "8"),
			},
			node: "a", want: "SkyPilot ignores skypilot.co/accelerator on every node",
		},
		"a missing label keeps the webhook's wording": {
			nodes: []*corev1.Node{
				withGPUs(testnode.Bare("a", map[string]string{admit.DefaultLabelKey: "h100"}), "nvidia.com/gpu", "8"),
				withGPUs(testnode.Bare("b", map[string]string{"node.kubernetes.io/instance-type": "p5.48xlarge"}), "nvidia.com/gpu", "8"),
			},
			node: "b",
		},
	} {
		t.Run(name, func(t *testing.T) {
			records, _ := check(tc.nodes...)
			for _, r := range records {
				if r.Name != tc.node {
					continue
				}
				all := strings.Join(r.Warnings, "\n")
				if tc.want == "" && strings.Contains(all, "SkyPilot") {
					t.Errorf("wording changed: %s", all)
				}
				if tc.want != "" && !strings.Contains(all, tc.want) {
					t.Errorf("warnings lack %q:\n%s", tc.want, all)
				}
				if tc.want != "" && !strings.Contains(r.Findings[0].Message, tc.want) {
					t.Errorf("finding lacks %q: %s", tc.want, r.Findings[0].Message)
				}
			}
		})
	}
}

// `check -o json` is an object: the node records beside the cluster.
func TestWriteCheckJSON(t *testing.T) {
	records, c := check(
		withGPUs(testnode.Bare("a", map[string]string{admit.DefaultLabelKey: "h100"}), "nvidia.com/gpu", "8"),
		withGPUs(testnode.Bare("b", map[string]string{"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}), "amd.com/gpu", "8"),
	)
	var buf bytes.Buffer
	if err := WriteCheck(&buf, "json", records, &c, ""); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Nodes   []map[string]any `json:"nodes"`
		Cluster struct {
			LabelScheme, GPUResource string
			Findings                 []skypilot.Finding
		} `json:"cluster"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, buf.String())
	}
	if len(got.Nodes) != 2 || got.Cluster.LabelScheme != "SkyPilot" || got.Cluster.GPUResource != "amd.com/gpu" {
		t.Errorf("got %+v", got)
	}
	reasons := map[skypilot.Reason]bool{}
	for _, f := range got.Cluster.Findings {
		reasons[f.Reason] = true
	}
	if len(reasons) != 2 || !reasons[skypilot.ReasonUnlabeled] || !reasons[skypilot.ReasonMixedResources] {
		t.Errorf("findings %+v", got.Cluster.Findings)
	}
	buf.Reset()
	if err := WriteCheck(&buf, "table", records, &c, "a note"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"What SkyPilot will see", "a note", "label scheme: SkyPilot (skypilot.co/accelerator), picked by node a", "GPU resource: amd.com/gpu", "WARNING NoAcceleratorLabel: b", "fix: webhook label"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestCount(t *testing.T) {
	for in, want := range map[string]int64{"8": 8, "0": 0, "500m": 1, "1E666": math.MaxInt64, "9E18": 9e18, "1E19": math.MaxInt64} {
		if got := count(resource.MustParse(in)); got != want {
			t.Errorf("count(%s) = %d, want %d", in, got, want)
		}
	}
}

// A MIG node under the mixed strategy reports slices, never nvidia.com/gpu: the cluster
// finding says why SkyPilot shows no GPUs there and how to make them count, not to wait.
func TestSlicesOnlyNode(t *testing.T) {
	_, c := check(
		withGPUs(testnode.Bare("a", map[string]string{admit.DefaultLabelKey: "h100"}), "nvidia.com/gpu", "8"),
		withGPUs(testnode.Bare("b", map[string]string{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/mig.strategy": "mixed"}), "nvidia.com/mig-1g.10gb", "7"),
	)
	var got *skypilot.Finding
	for i, f := range c.Findings {
		if f.Reason == skypilot.ReasonNotReported {
			t.Errorf("told to wait for the device plugin: %+v", f)
		}
		if f.Reason == skypilot.ReasonPartialOnly {
			got = &c.Findings[i]
		}
	}
	if got == nil || !slices.Equal(got.Nodes, []string{"b"}) || !strings.Contains(got.Message, "b (nvidia.com/mig-1g.10gb)") || !strings.Contains(got.Fix, "mig.strategy=single") {
		t.Fatalf("got %+v", c.Findings)
	}
}
