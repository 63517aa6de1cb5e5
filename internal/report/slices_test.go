package report

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/skypilot"
)

func h100Slice(name string) *resourcev1.ResourceSlice {
	return &resourcev1.ResourceSlice{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: resourcev1.ResourceSliceSpec{
		Driver: "gpu.nvidia.com", Pool: resourcev1.ResourcePool{Name: name, Generation: 1, ResourceSliceCount: 1},
		Devices: []resourcev1.Device{{Name: "gpu-0", Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
			"type": {StringValue: ptr.To("gpu")}, "uuid": {StringValue: ptr.To(name + "-0")}, "productName": {StringValue: ptr.To("NVIDIA H100 80GB HBM3")}}}},
	}}
}

// The commands find each node's slices: those of its name, and those a selector binds to it.
func TestSlicesDevices(t *testing.T) {
	own := h100Slice("own")
	own.Spec.NodeName = ptr.To("n1")
	rack := h100Slice("rack")
	rack.Spec.NodeSelector = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "rack", Operator: corev1.NodeSelectorOpIn, Values: []string{"r7"}}}}}}
	everyone := h100Slice("everyone")
	everyone.Spec.AllNodes = ptr.To(true)
	s := NewSlices(gpuinfo.Default(), []*resourcev1.ResourceSlice{own, rack, everyone})
	for name, tc := range map[string]struct {
		node *corev1.Node
		want int
	}{
		"its own slice":                              {&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, 1},
		"its own and its rack's":                     {&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"rack": "r7"}}}, 2},
		"its rack's only":                            {&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{"rack": "r7"}}}, 1},
		"none: slices of all nodes count for no one": {&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n3"}}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if got := len(s.Devices(tc.node)); got != tc.want {
				t.Errorf("%d devices, want %d", got, tc.want)
			}
		})
	}
	if (*Slices)(nil).Devices(&corev1.Node{}) != nil {
		t.Error("no slices, yet devices")
	}
}

// check's SkyPilot section names a DRA node's GPUs, which SkyPilot does not count.
func TestCheckSeesDRAGPUs(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "dgx-1", Labels: map[string]string{"feature.node.kubernetes.io/pci-10de.present": "true", admit.DefaultLabelKey: "h100"}}}
	own := h100Slice("dgx-1")
	own.Spec.NodeName = ptr.To("dgx-1")
	s := NewSlices(gpuinfo.Default(), []*resourcev1.ResourceSlice{own})
	d, r := Decide(admit.DefaultConfig(), n, s.Devices(n), admit.Check)
	if r.DRAGPUs != 1 || r.Accelerator != "h100" || r.Status() != "ok" {
		t.Errorf("record %+v status %s", r, r.Status())
	}
	c := skypilot.Analyze([]skypilot.Node{SkyPilotNode(n, &d, "")}, skypilot.Options{})
	if _, ok := found(c)[skypilot.ReasonDRAManaged]; !ok {
		t.Errorf("findings %+v", c.Findings)
	}
}

func found(c skypilot.Cluster) map[skypilot.Reason][]string {
	out := map[skypilot.Reason][]string{}
	for _, f := range c.Findings {
		out[f.Reason] = f.Nodes
	}
	return out
}
