//go:build e2e

package node

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

// nfdVendor is the label Node Feature Discovery gives a node with an NVIDIA PCI device as the GPU
// operator configures it (the vendor alone): what NVIDIA's DRA driver's kubelet plugin is
// scheduled by.
const nfdVendor = "feature.node.kubernetes.io/pci-10de.present"

var h100 = NVIDIAGPU{Product: "NVIDIA H100 80GB HBM3", Architecture: "Hopper", ComputeCapability: "9.0.0", Memory: resource.MustParse("81559Mi")}

// TestDRADriverOnRealNode checks what users of NVIDIA's DRA driver meet, with the webhook
// installed as the README says and opted in: the kubelet registers a node whose GPUs no device
// plugin reports, and NFD gives it only its vendor label, so the webhook warns of a GPU of
// unknown model; then the driver's kubelet plugin registers with the kubelet and publishes the
// node's eight H100s in ResourceSlices, and the kubelet's next status report is labeled h100 from
// them. A cluster of its own: a device is a device plugin's or DRA's, never both, and the
// checkpoint TestRealNode's device plugin leaves has the kubelet report nvidia.com/gpu at 0 for
// five minutes after each start.
func TestDRADriverOnRealNode(t *testing.T) {
	ctx := context.Background()
	c := startCluster(t)
	install(t, c)
	optIn(t, c, true)
	n := getNode(t, c, nodeName)
	if q, ok := n.Status.Capacity["nvidia.com/gpu"]; ok {
		t.Fatalf("the node reports nvidia.com/gpu %s: a device plugin's GPUs, not DRA's", q.String())
	}
	if v, ok := n.Labels[admit.DefaultLabelKey]; ok {
		t.Fatalf("labeled %q with no GPU evidence", v)
	}

	// nfd-master labels the node with its own identity; the webhook warns it of a GPU of
	// unknown model, and the kubelet's status reports stay unlabeled while nothing names it.
	nfd, err := c.UserConfig("system:serviceaccount:node-feature-discovery:nfd-master", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	warn := &env.Warnings{}
	nfdClient, err := env.Client(nfd, warn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nfdClient.CoreV1().Nodes().Patch(ctx, nodeName, types.MergePatchType, []byte(`{"metadata":{"labels":{"`+nfdVendor+`":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(warn.All(), "\n"); !strings.Contains(w, "node "+nodeName+" has GPUs") || !strings.Contains(w, "its model is unknown") {
		t.Errorf("NFD's label was answered with the warnings %q; want one of a GPU of unknown model", w)
	}
	reports := kubeletStatusReports(t, c)
	eventually(t, c, "a status report of the kubelet after NFD's label", 30*time.Second, func() bool {
		return kubeletStatusReports(t, c) > reports
	})
	if v, ok := getNode(t, c, nodeName).Labels[admit.DefaultLabelKey]; ok {
		t.Fatalf("labeled %q before any slice", v)
	}

	began := time.Now()
	d, err := c.StartDRADriver(ctx, NVIDIAPool(nodeName, h100, 8))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the DRA driver's log:\n%s", d.Log())
		}
	})
	eventually(t, c, "the kubelet to register the DRA driver", 30*time.Second, d.Registered)
	registered := time.Since(began)
	select {
	case <-d.KubeletWatching():
	case <-time.After(30 * time.Second):
		t.Fatalf("the kubelet never connected to the driver's DRA socket to watch its devices' health\n%s", d.Log())
	}
	eventually(t, c, "the driver's 8 ResourceSlices of one GPU each, owned by the node", 30*time.Second, func() bool {
		list, err := c.Client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName + ",spec.driver=" + NVIDIADriver})
		if err != nil {
			t.Fatal(err)
		}
		owned := 0
		for _, s := range list.Items {
			if len(s.Spec.Devices) == 1 && s.Spec.Pool.Name == nodeName && slices.ContainsFunc(s.OwnerReferences, func(o metav1.OwnerReference) bool {
				return o.Kind == "Node" && o.UID == n.UID
			}) {
				owned++
			}
		}
		return owned == 8 && len(list.Items) == 8
	})
	if errs := d.Errors(); len(errs) > 0 {
		t.Fatalf("the driver met errors: %v\n%s", errs, d.Log())
	}
	published := time.Since(began)

	eventually(t, c, "the kubelet's next status report to be labeled h100 from the slices", time.Minute, func() bool {
		return getNode(t, c, nodeName).Labels[admit.DefaultLabelKey] == "h100"
	})
	t.Logf("from the driver's start: registered by the kubelet in %v, its slices in the API in %v, the node labeled in %v (status reports every %v)",
		registered.Round(time.Millisecond), published.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), kubeletStatusReportFrequency)
	if by, want := labeledBy(t, c, nodeName), "system:node:"+nodeName+" patch status"; by != want {
		t.Errorf("the label was added to %q; want the kubelet's status report (%s)", by, want)
	}
	if q, ok := getNode(t, c, nodeName).Status.Capacity["nvidia.com/gpu"]; ok {
		t.Errorf("the node reports nvidia.com/gpu %s: the label did not come from the slices alone", q.String())
	}

	// What the driver made in the kubelet's plugin folders goes with it.
	d.Stop()
	for _, s := range d.Sockets {
		if _, err := os.Stat(s); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after the driver stopped (%v)", s, err)
		}
	}
}

// kubeletStatusReports counts the kubelet's nodes/status writes in the audit log so far.
func kubeletStatusReports(t *testing.T, c *Cluster) int {
	t.Helper()
	writes, err := c.NodeWrites(nodeName)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, w := range writes {
		if w.User == "system:node:"+nodeName && w.Subresource == "status" {
			n++
		}
	}
	return n
}
