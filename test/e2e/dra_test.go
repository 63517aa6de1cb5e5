//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/skypilot"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

// nfdVendor is the label Node Feature Discovery gives a node with an NVIDIA PCI device, the
// one the NVIDIA DRA driver's chart schedules its kubelet plugin by.
const nfdVendor = "feature.node.kubernetes.io/pci-10de.present"

// draKubelet is a node as its kubelet and a DRA driver's kubelet plugin act on it: the kubelet
// registers it and reports its status, the plugin publishes its GPUs in ResourceSlices with
// the DRA library's slice controller, as kubelet plugins do, under the node's own identity.
type draKubelet struct {
	name    string
	kubelet kubernetes.Interface
	warn    *warnings
	slices  *resourceslice.Controller
}

func joinDRANode(t *testing.T, name string, labels map[string]string) *draKubelet {
	t.Helper()
	ctx := context.Background()
	kcfg, err := cluster.User("system:node:"+name, "system:nodes")
	if err != nil {
		t.Fatal(err)
	}
	kubelet, w := client(t, kcfg)
	n := node(name, labels)
	n.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("96"), corev1.ResourceMemory: resource.MustParse("1Ti")}
	if _, err := kubelet.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatalf("registration refused: %v", err)
	}
	return &draKubelet{name: name, kubelet: kubelet, warn: w}
}

// gpus is the pool NVIDIA's driver publishes for a node of count whole GPUs of one product and
// memory, its device entries as site/content/docs/reference/resourceslice-attributes.md
// documents them.
func gpus(node, product, memory string, count int) *resourceslice.DriverResources {
	var devices []resourcev1.Device
	for i := range count {
		devices = append(devices, resourcev1.Device{
			Name: fmt.Sprintf("gpu-%d", i),
			Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"type":              {StringValue: ptr.To("gpu")},
				"uuid":              {StringValue: ptr.To(fmt.Sprintf("GPU-%s-%d", node, i))},
				"productName":       {StringValue: ptr.To(product)},
				"brand":             {StringValue: ptr.To("Nvidia")},
				"driverVersion":     {VersionValue: ptr.To("580.126.20")},
				"cudaDriverVersion": {VersionValue: ptr.To("13.0.0")},
			},
			Capacity: map[resourcev1.QualifiedName]resourcev1.DeviceCapacity{"memory": {Value: resource.MustParse(memory)}},
		})
	}
	return &resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{node: {Slices: []resourceslice.Slice{{Devices: devices}}}}}
}

// publish starts, or updates, the node's slices; nil resources deletes them.
func (k *draKubelet) publish(t *testing.T, res *resourceslice.DriverResources) {
	t.Helper()
	if res == nil {
		res = &resourceslice.DriverResources{}
	}
	if k.slices != nil {
		k.slices.Update(res)
		return
	}
	kcfg, err := cluster.User("system:node:"+k.name, "system:nodes")
	if err != nil {
		t.Fatal(err)
	}
	plugin, _ := client(t, kcfg)
	c, err := resourceslice.StartController(context.Background(), resourceslice.Options{
		DriverName: "gpu.nvidia.com", KubeClient: plugin, Resources: res,
		Owner:     &resourceslice.Owner{APIVersion: "v1", Kind: "Node", Name: k.name},
		SyncDelay: ptr.To(100 * time.Millisecond),
	})
	if err != nil {
		t.Fatal(err)
	}
	k.slices = c
	t.Cleanup(c.Stop)
}

// published waits until the node's slices in the API hold n devices.
func (k *draKubelet) published(t *testing.T, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d devices published for %s", n, k.name), func() bool {
		list, err := cluster.Client.ResourceV1().ResourceSlices().List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + k.name})
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, s := range list.Items {
			got += len(s.Spec.Devices)
		}
		return got == n
	})
}

// report sends the kubelet's status report (the heartbeat patch of nodes/status kubelets send
// every nodeStatusReportFrequency) and returns the node as stored, or with dryRun as it would be.
func (k *draKubelet) report(t *testing.T, dryRun bool) *corev1.Node {
	t.Helper()
	p := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":%q,"reason":"KubeletReady"}]}}`, time.Now().UTC().Format(time.RFC3339))
	opts := metav1.PatchOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	n, err := k.kubelet.CoreV1().Nodes().Patch(context.Background(), k.name, types.StrategicMergePatchType, []byte(p), opts, "status")
	if err != nil {
		t.Fatalf("status report refused: %v", err)
	}
	return n
}

// webhookSees waits until a dry-run status report of the node comes back with want (the label
// value, "" for none): the webhook has seen its slices change.
func (k *draKubelet) webhookSees(t *testing.T, want string) {
	t.Helper()
	var last string
	eventually(t, fmt.Sprintf("the webhook labeling %s %q", k.name, want), func() bool {
		n := k.report(t, true)
		if now := fmt.Sprintf("%v %q", n.Labels, k.warn.Take()); now != last {
			last = now
			t.Logf("dry-run status report of %s: %s", k.name, now)
		}
		return n.Labels[admit.DefaultLabelKey] == want
	})
}

// A node whose GPUs a DRA driver manages joins with only Node Feature Discovery's vendor
// label: the webhook sees a GPU of unknown model. Its driver then publishes its slices; the
// kubelet's next status report is labeled from them. The webhook follows the slices as they
// change and go.
func TestDRANodeLabeledOnItsNextStatusReport(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	eventually(t, "gpu_label_webhook_resourceslices_synced 1", func() bool {
		v, err := hook.Metric("gpu_label_webhook_resourceslices_synced")
		return err == nil && v == 1
	})

	a := joinDRANode(t, "dra-a", nil)
	nfd, nfdWarn := client(t, cluster.Admin) // nfd-master's patch
	if _, err := nfd.CoreV1().Nodes().Patch(ctx, a.name, types.MergePatchType, []byte(`{"metadata":{"labels":{"`+nfdVendor+`":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := nfdWarn.all(); !strings.Contains(w, "node dra-a has GPUs") || !strings.Contains(w, "its model is unknown") {
		t.Errorf("NFD's label: warnings %q", w)
	}
	if n := a.report(t, false); n.Labels[admit.DefaultLabelKey] != "" {
		t.Fatalf("labeled before any slice: %v", n.Labels)
	}
	start := time.Now()
	a.publish(t, gpus(a.name, "NVIDIA H100 80GB HBM3", "81559Mi", 8))
	a.published(t, 8)
	inAPI := time.Since(start)
	var labeled *corev1.Node
	eventually(t, "a status report labeled from the slices", func() bool {
		labeled = a.report(t, false)
		return labeled.Labels[admit.DefaultLabelKey] != ""
	})
	t.Logf("the driver's slices were in the API %v after it published them, and a status report was labeled from them %v after", inAPI.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if v := labeled.Labels[admit.DefaultLabelKey]; v != "h100" {
		t.Errorf("labeled %q, want h100", v)
	}
	if v, _ := label(t, cluster.Client, a.name); v != "h100" {
		t.Errorf("stored label %q", v)
	}

	// A second node: the webhook reads each change of its slices before its status report.
	b := joinDRANode(t, "dra-b", map[string]string{nfdVendor: "true"})
	b.publish(t, gpus(b.name, "NVIDIA A100-SXM4-40GB", "40Gi", 8))
	b.published(t, 8)
	b.webhookSees(t, "a100")
	b.publish(t, gpus(b.name, "NVIDIA A100-SXM4-80GB", "80Gi", 8)) // the driver republishes: a new generation
	b.webhookSees(t, "a100-80gb")
	b.publish(t, nil) // the driver is gone and its slices with it
	b.published(t, 0)
	b.webhookSees(t, "")
	b.warn.Take()
	b.report(t, false)
	if w := strings.Join(b.warn.Take(), "\n"); !strings.Contains(w, "its model is unknown") {
		t.Errorf("without slices: warnings %q", w)
	}
	b.publish(t, gpus(b.name, "NVIDIA A100-SXM4-80GB", "80Gi", 7))
	b.webhookSees(t, "a100-80gb")
	if n := b.report(t, false); n.Labels[admit.DefaultLabelKey] != "a100-80gb" {
		t.Errorf("dra-b labeled %v", n.Labels)
	}
}

// A DRA node whose Node object shows no GPU at all never reaches the webhook (its
// matchConditions see no GPU evidence): check says so, and `webhook label` labels it. check's
// SkyPilot section says SkyPilot counts none of the DRA GPUs, in the table and in JSON, and
// asks no one to wait for a device plugin.
func TestCheckAndLabelOnADRAFleet(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	dev := joinDRANode(t, "drafleet-dev", map[string]string{"pool": "drafleet"})
	dev.publish(t, gpus(dev.name, "NVIDIA H100 80GB HBM3", "81559Mi", 4))
	dev.published(t, 4)
	if n := dev.report(t, false); n.Labels[admit.DefaultLabelKey] != "" {
		t.Fatalf("a node without GPU evidence reached the webhook: %v", n.Labels)
	}
	cs, _ := client(t, cluster.Admin)
	plain := node("drafleet-plugin", map[string]string{"pool": "drafleet", admit.DefaultLabelKey: "l4", "node.kubernetes.io/instance-type": "g6.xlarge"})
	created, err := cs.CoreV1().Nodes().Create(ctx, plain, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Capacity = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}
	created.Status.Allocatable = created.Status.Capacity
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	admin, err := cluster.KubeconfigFile("dra-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}

	out, code := webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=drafleet")
	if code != 0 {
		t.Fatalf("check exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"dra:4", "node drafleet-dev shows its GPUs only in ResourceSlices",
		"kubectl label node drafleet-dev skypilot.co/accelerator=h100",
		"drafleet-dev (4 in ResourceSlices of gpu.nvidia.com)", skypilot.DRAUpstream,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "wait for the device plugin") {
		t.Errorf("check asks to wait for a device plugin:\n%s", out)
	}
	if got := tableFindings(t, out)["advisory "+string(skypilot.ReasonDRAManaged)]; strings.Join(got, ",") != "drafleet-dev" {
		t.Errorf("table: DRA finding on %v:\n%s", got, out)
	}

	out, _ = webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=drafleet", "-o", "json")
	var doc struct {
		Nodes []struct {
			Name    string `json:"name"`
			DRAGPUs int64  `json:"draGPUs"`
		} `json:"nodes"`
		Cluster skypilot.Cluster `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	seen := false
	for _, f := range doc.Cluster.Findings {
		if f.Reason == skypilot.ReasonDRAManaged && f.Severity == skypilot.Advisory && strings.Join(f.Nodes, ",") == "drafleet-dev" {
			seen = true
		}
	}
	if !seen {
		t.Errorf("JSON findings %+v", doc.Cluster.Findings)
	}
	for _, n := range doc.Nodes {
		if n.Name == "drafleet-dev" && n.DRAGPUs != 4 {
			t.Errorf("JSON record %+v", n)
		}
	}

	out, code = webhookCLI(t, "label", "--kubeconfig", admin, "-l", "pool=drafleet")
	if code != 0 || !strings.Contains(out, "labeled 1") {
		t.Fatalf("label: exit %d:\n%s", code, out)
	}
	if v, _ := label(t, cs, dev.name); v != "h100" {
		t.Errorf("drafleet-dev = %q", v)
	}
}

// The webhook's ServiceAccount reads ResourceSlices and may do nothing else with them, nor
// with any other object of resource.k8s.io.
func TestSliceRBAC(t *testing.T) {
	ctx := context.Background()
	sa := "system:serviceaccount:" + manifests.Namespace + ":" + manifests.Name
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + manifests.Namespace}
	can := func(verb, res string) bool {
		r, err := cluster.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: sa, Groups: groups, ResourceAttributes: &authorizationv1.ResourceAttributes{Group: resourcev1.GroupName, Verb: verb, Resource: res},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	for _, verb := range []string{"get", "list", "watch"} {
		if !can(verb, "resourceslices") {
			t.Errorf("cannot %s resourceslices", verb)
		}
	}
	for _, a := range []struct{ verb, res string }{
		{"create", "resourceslices"}, {"update", "resourceslices"}, {"patch", "resourceslices"}, {"delete", "resourceslices"}, {"deletecollection", "resourceslices"},
		{"get", "resourceclaims"}, {"list", "resourceclaims"}, {"list", "deviceclasses"}, {"list", "resourceclaimtemplates"},
	} {
		if can(a.verb, a.res) {
			t.Errorf("can %s %s", a.verb, a.res)
		}
	}
}

// A webhook that cannot read the slices (its identity has no permission on them: the watch
// fails) says so in the log once and in its metric, and answers as it would without them.
func TestWebhookAnswersWhenSlicesCannotBeRead(t *testing.T) {
	ctx := context.Background()
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	kc, err := cluster.KubeconfigFile("system:serviceaccount:"+manifests.Namespace+":no-slices", "system:serviceaccounts", "system:serviceaccounts:"+manifests.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	// The base install's Roles, bound to this identity too: everything but the slices.
	for _, rb := range []struct{ ns, role string }{{manifests.Namespace, manifests.Name}, {manifests.EventsNamespace, manifests.Name + "-events"}} {
		body := fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"no-slices","namespace":%q},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":%q},"subjects":[{"kind":"ServiceAccount","name":"no-slices","namespace":%q}]}`, rb.ns, rb.role, manifests.Namespace)
		if err := cluster.Client.RbacV1().RESTClient().Post().Namespace(rb.ns).Resource("rolebindings").Body([]byte(body)).Do(ctx).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// A second --kubeconfig wins over the one StartWebhook gives.
	blind, err := cluster.StartWebhook("--kubeconfig", kc)
	if err != nil {
		t.Fatal(err)
	}
	defer blind.Stop()
	defer registerMutating(t)
	if err := cluster.RegisterMutating(ctx, blind); err != nil {
		t.Fatal(err)
	}
	checkAnswersWithoutSlices(t, blind, "blind", "cannot be read")
}

// checkAnswersWithoutSlices: w logs why it reads no slices, once, its metric says so, and it
// labels and warns as before: a p4d node by its instance type, a DRA node with slices as a GPU
// of unknown model.
func checkAnswersWithoutSlices(t *testing.T, w *env.Webhook, prefix, logged string) {
	t.Helper()
	ctx := context.Background()
	cs, warn := client(t, cluster.Admin)
	n, err := cs.CoreV1().Nodes().Create(ctx, node(prefix+"-p4d", map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[admit.DefaultLabelKey] != "a100" {
		t.Errorf("p4d labeled %v", n.Labels)
	}
	d := joinDRANode(t, prefix+"-dra", map[string]string{nfdVendor: "true"})
	d.publish(t, gpus(d.name, "NVIDIA H100 80GB HBM3", "81559Mi", 8))
	d.published(t, 8)
	warn.Take()
	if got := d.report(t, false); got.Labels[admit.DefaultLabelKey] != "" {
		t.Errorf("labeled from slices it cannot read: %v", got.Labels)
	}
	if v, err := w.Metric("gpu_label_webhook_resourceslices_synced"); err != nil || v != 0 {
		t.Errorf("resourceslices_synced = %v (%v)", v, err)
	}
	if c := strings.Count(w.Logs(), logged); c != 1 {
		t.Errorf("logged %q %d times:\n%s", logged, c, w.Logs())
	}
}

// On an apiserver that does not serve resource.k8s.io/v1, the webhook says so once, and
// labels as it always has.
func TestWebhookAnswersWhereSlicesAreNotServed(t *testing.T) {
	ctx := context.Background()
	stack, err := env.StartStack(ctx, env.Options{APIServerArgs: map[string]string{"runtime-config": "resource.k8s.io/v1=false"}})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	if err := stack.SetConfigAndWait(ctx, stack.Hook, map[string]string{admit.KeyAutoLabel: "true"}); err != nil {
		t.Fatal(err)
	}
	if err := stack.RegisterMutating(ctx, stack.Hook); err != nil {
		t.Fatal(err)
	}
	n, err := stack.Client.CoreV1().Nodes().Create(ctx, node("unserved-p4d", map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[admit.DefaultLabelKey] != "a100" {
		t.Errorf("labeled %v", n.Labels)
	}
	if v, err := stack.Hook.Metric("gpu_label_webhook_resourceslices_synced"); err != nil || v != 0 {
		t.Errorf("resourceslices_synced = %v (%v)", v, err)
	}
	if c := strings.Count(stack.Hook.Logs(), "ResourceSlices are not served"); c != 1 {
		t.Errorf("logged %d times:\n%s", c, stack.Hook.Logs())
	}
	admin, err := stack.KubeconfigFile("unserved-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	out, code := webhookCLI(t, "check", "--kubeconfig", admin)
	if code != 0 || !strings.Contains(out, "unserved-p4d") || strings.Contains(out, "ResourceSlices not read") {
		t.Errorf("check: exit %d:\n%s", code, out)
	}
}
