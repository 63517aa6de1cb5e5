//go:build e2e

// End-to-end tests: a real kube-apiserver and etcd, the webhook as a real process, the
// generated webhook configurations, and clients acting as kubelets, admins and kubectl do.
package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

var (
	cluster *env.Cluster
	hook    *env.Webhook
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	stack, err := env.StartStack(context.Background(), env.Options{WebhookClientCert: true, LimitCriticalPriority: true})
	if err != nil {
		return 0, err
	}
	defer stack.Stop()
	cluster, hook = stack.Cluster, stack.Hook
	code := m.Run()
	if code != 0 {
		logs := hook.Logs()
		fmt.Fprintf(os.Stderr, "webhook log (last 4000 bytes):\n%s\n", logs[max(0, len(logs)-4000):])
	}
	return code, nil
}

// warnings are the warnings a client received.
type warnings struct{ env.Warnings }

func (w *warnings) all() string { return strings.Join(w.All(), "\n") }

// client returns a clientset for cfg that records warnings.
func client(t *testing.T, cfg *rest.Config) (kubernetes.Interface, *warnings) {
	t.Helper()
	w := &warnings{}
	cs, err := env.Client(cfg, &w.Warnings)
	if err != nil {
		t.Fatal(err)
	}
	return cs, w
}

func setConfig(t *testing.T, data map[string]string) {
	t.Helper()
	if err := cluster.SetConfigAndWait(context.Background(), hook, data); err != nil {
		t.Fatal(err)
	}
}

func registerMutating(t *testing.T) {
	t.Helper()
	if err := cluster.RegisterMutating(context.Background(), hook); err != nil {
		t.Fatal(err)
	}
}

func label(t *testing.T, cs kubernetes.Interface, name string) (string, bool) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := n.Labels[admit.DefaultLabelKey]
	return v, ok
}

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func events(t *testing.T, name string) []corev1.Event {
	t.Helper()
	list, err := cluster.Client.CoreV1().Events(manifests.EventsNamespace).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// apiserverMetric sums a metric from the apiserver's own /metrics.
func apiserverMetric(t *testing.T, name string) float64 {
	t.Helper()
	raw, err := cluster.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, err := env.SumMetric(strings.NewReader(string(raw)), name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func requests(t *testing.T) float64 {
	t.Helper()
	v, err := hook.Metric("gpu_label_webhook_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// 1. Default config: a GPU node joins, the client is warned, nothing is changed, an Event
// is recorded.
func TestDefaultConfigWarns(t *testing.T) {
	ctx := context.Background()
	setConfig(t, map[string]string{admit.KeyAutoLabel: "false"})
	registerMutating(t)
	cs, w := client(t, cluster.Admin)
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("warn-p4d", map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.all(), "kubectl label node warn-p4d skypilot.co/accelerator=a100") {
		t.Errorf("warnings: %q", w.all())
	}
	if _, ok := label(t, cs, "warn-p4d"); ok {
		t.Error("labeled without opt-in")
	}
	eventually(t, "an AcceleratorLabelMissing event", func() bool {
		for _, e := range events(t, "warn-p4d") {
			if e.Reason == string(admit.ReasonLabelMissing) && e.Type == corev1.EventTypeWarning && e.InvolvedObject.Kind == "Node" {
				return true
			}
		}
		return false
	})
}

// 2. Opting in through the ConfigMap takes effect without a restart: the next node is
// persisted labeled on its CREATE.
func TestOptInLabelsOnCreate(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	cs, _ := client(t, cluster.Admin)
	created, err := cs.CoreV1().Nodes().Create(ctx, node("optin-p4d", map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Labels[admit.DefaultLabelKey] != "a100" {
		t.Errorf("CREATE response labels: %v", created.Labels)
	}
	if v, _ := label(t, cs, "optin-p4d"); v != "a100" {
		t.Errorf("persisted label %q", v)
	}
	// The least trusted evidence still reaches the webhook through the matchConditions: the
	// MIG manager's config alone, whose profile only the A30 offers.
	created, err = cs.CoreV1().Nodes().Create(ctx, node("optin-mig-config", map[string]string{gpuinfo.LabelMIGConfig: "all-1g.6gb"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Labels[admit.DefaultLabelKey] != "a30" {
		t.Errorf("a node with only mig.config=all-1g.6gb: labels %v", created.Labels)
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, created.Name, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
}

// 3. The device plugin's capacity arrives on nodes/status, then GPU Feature Discovery's label
// on an update: the label appears with the right value.
func TestDevicePluginFlow(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	cs, _ := client(t, cluster.Admin)
	n, err := cs.CoreV1().Nodes().Create(ctx, node("onprem-1", map[string]string{"node.kubernetes.io/instance-type": "dell-xe9680"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Capacity = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8"), corev1.ResourceCPU: resource.MustParse("96")}
	if n, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Labels[admit.DefaultLabelKey]; ok {
		t.Fatal("labeled before the model is known")
	}
	patch := []byte(`{"metadata":{"labels":{"nvidia.com/gpu.product":"NVIDIA-H100-80GB-HBM3","nvidia.com/gpu.count":"8"}}}`)
	if n, err = cs.CoreV1().Nodes().Patch(ctx, "onprem-1", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if n.Labels[admit.DefaultLabelKey] != "h100" {
		t.Errorf("labels after GFD: %v", n.Labels)
	}
}

// 4. A kubelet with its own system:node identity registers its Node and reports status under
// the Node authorizer and NodeRestriction: it is labeled and nothing is refused.
func TestKubeletIdentity(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	const name = "ip-10-0-1-2.ec2.internal"
	kcfg, err := cluster.User("system:node:"+name, "system:nodes")
	if err != nil {
		t.Fatal(err)
	}
	kubelet, _ := client(t, kcfg)
	n := testnode.Realistic(name, "g5.48xlarge", 0)
	n.UID, n.ResourceVersion = "", ""
	created, err := kubelet.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubelet registration refused: %v", err)
	}
	if created.Labels[admit.DefaultLabelKey] != "a10g" {
		t.Errorf("labels on registration: %v", created.Labels[admit.DefaultLabelKey])
	}
	created.Status.Capacity["nvidia.com/gpu"] = resource.MustParse("8")
	if _, err := kubelet.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("kubelet status update refused: %v", err)
	}
	// Heartbeat-style strategic merge patch of conditions, as kubelets send.
	patch := []byte(`{"status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2026-11-28T12:00:00Z","reason":"KubeletReady"}]}}`)
	if _, err := kubelet.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("kubelet status patch refused: %v", err)
	}
}

// 5. Audit mode: only the validating configuration; nothing is ever changed, even opted in.
func TestAuditModeNeverMutates(t *testing.T) {
	ctx := context.Background()
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true", admit.KeyOverwrite: "true"})
	if err := cluster.RegisterAudit(ctx, hook); err != nil {
		t.Fatal(err)
	}
	defer cluster.Unregister(ctx)
	cs, w := client(t, cluster.Admin)
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("audit-p5", map[string]string{"node.kubernetes.io/instance-type": "p5.48xlarge"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := label(t, cs, "audit-p5"); ok {
		t.Error("audit mode labeled a node")
	}
	if !strings.Contains(w.all(), "skypilot.co/accelerator=h100") {
		t.Errorf("warnings: %q", w.all())
	}
}

// 6. A wrong label is warned about; with overwrite it is corrected.
func TestWrongLabel(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	cs, w := client(t, cluster.Admin)
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("wrong-1", map[string]string{"node.kubernetes.io/instance-type": "p4de.24xlarge", admit.DefaultLabelKey: "a100"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.all(), "disagrees") {
		t.Errorf("warnings: %q", w.all())
	}
	if v, _ := label(t, cs, "wrong-1"); v != "a100" {
		t.Errorf("changed without overwrite: %q", v)
	}
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true", admit.KeyOverwrite: "true"})
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "wrong-1", types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"ml"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if v, _ := label(t, cs, "wrong-1"); v != "a100-80gb" {
		t.Errorf("not corrected: %q", v)
	}
}

// 7. matchConditions: routine status updates of labeled and of CPU nodes never reach the
// webhook; an unlabeled GPU node made before the opt-in is labeled on its next status update.
func TestMatchConditions(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "false"})
	cs, _ := client(t, cluster.Admin)
	mk := func(name, it string, gpus int64) *corev1.Node {
		n := testnode.Realistic(name, it, gpus)
		n.UID, n.ResourceVersion = "", ""
		created, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return created
	}
	cpu := mk("mc-cpu", "m5.large", 0)
	labeled := mk("mc-labeled", "p5.48xlarge", 8)
	labeled.Labels[admit.DefaultLabelKey] = "h100"
	labeled, err := cs.CoreV1().Nodes().Update(ctx, labeled, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := mk("mc-before-optin", "g6.xlarge", 1)

	start := requests(t)
	exclusionsBefore := apiserverMetric(t, "apiserver_admission_match_condition_exclusions_total")
	for i := 0; i < 20; i++ {
		for _, n := range []*corev1.Node{cpu, labeled} {
			p := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2026-11-28T12:%02d:00Z","reason":"KubeletReady"}]}}`, i)
			if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{}, "status"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := requests(t); got != start {
		t.Errorf("routine status updates reached the webhook: %v requests", got-start)
	}
	if got := apiserverMetric(t, "apiserver_admission_match_condition_exclusions_total") - exclusionsBefore; got < 40 {
		t.Errorf("the apiserver counted %v match-condition exclusions for 40 updates", got)
	}

	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	p := `{"status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2026-11-28T13:00:00Z","reason":"KubeletReady"}]}}`
	n, err := cs.CoreV1().Nodes().Patch(ctx, before.Name, types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[admit.DefaultLabelKey] != "l4" {
		t.Errorf("pre-existing node not labeled on its status update: %v", n.Labels[admit.DefaultLabelKey])
	}
}

// 8. Server-side dry-run: the response shows the label, nothing is stored, no Event.
func TestDryRun(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	cs, _ := client(t, cluster.Admin)
	got, err := cs.CoreV1().Nodes().Create(ctx, node("dryrun-1", map[string]string{"node.kubernetes.io/instance-type": "a3-megagpu-8g"}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[admit.DefaultLabelKey] != "h100-mega" {
		t.Errorf("dry-run response labels %v", got.Labels)
	}
	time.Sleep(time.Second)
	if ev := events(t, "dryrun-1"); len(ev) != 0 {
		t.Errorf("dry-run wrote events: %v", ev)
	}
}

// 9. Faults: with the webhook stopped, and with one that accepts connections and never
// answers, node creates and status updates still succeed within the timeout.
func TestFailOpen(t *testing.T) {
	ctx := context.Background()
	cs, _ := client(t, cluster.Admin)

	// A listener that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	hanging := *hook
	hanging.URL = "https://" + ln.Addr().String()
	stopped := *hook
	ports, _ := env.FreePorts(1)
	stopped.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[0])

	for name, w := range map[string]*env.Webhook{"hanging": &hanging, "stopped": &stopped} {
		t.Run(name, func(t *testing.T) {
			if err := cluster.RegisterMutating(ctx, w); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			n, err := cs.CoreV1().Nodes().Create(ctx, node("failopen-"+name, map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge"}), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create failed: %v", err)
			}
			n.Status.Capacity = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}
			if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("status update failed: %v", err)
			}
			if d := time.Since(start); d > 2*(manifests.TimeoutSeconds+2)*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	registerMutating(t)
}

// 10. An invalid ConfigMap keeps the last good config and says so; deleting it returns to
// warn-only.
func TestConfigFaults(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	setConfig(t, map[string]string{admit.KeyAutoLabel: "maybe"})
	cs, w := client(t, cluster.Admin)
	n, err := cs.CoreV1().Nodes().Create(ctx, node("cfg-bad", map[string]string{"node.kubernetes.io/instance-type": "g6e.xlarge"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[admit.DefaultLabelKey] != "l40s" {
		t.Errorf("last good config not in force: %v", n.Labels)
	}
	if !strings.Contains(w.all(), "is invalid") {
		t.Errorf("no warning about the bad config: %q", w.all())
	}
	if v, _ := hook.Metric("gpu_label_webhook_config_valid"); v != 0 {
		t.Errorf("config_valid = %v", v)
	}
	setConfig(t, nil)
	n, err = cs.CoreV1().Nodes().Create(ctx, node("cfg-deleted", map[string]string{"node.kubernetes.io/instance-type": "g6e.xlarge"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Labels[admit.DefaultLabelKey]; ok {
		t.Error("labeled after the config was deleted")
	}
	setConfig(t, map[string]string{admit.KeyAutoLabel: "false"})
}

// The apiserver presents its client certificate to the webhook (every test here goes through
// that path); a client without one is refused.
func TestWebhookRequiresTheAPIServersCertificate(t *testing.T) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(hook.CA)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body := testnode.Review("x", admissionv1.Create, "", testnode.Bare("x", nil), nil, "admin", false)
	if resp, err := c.Post(hook.URL+review.PathMutate, "application/json", strings.NewReader(string(body))); err == nil {
		resp.Body.Close()
		t.Fatalf("served a client without a certificate: %s", resp.Status)
	}
	before := requests(t)
	cs, _ := client(t, cluster.Admin)
	registerMutating(t)
	if _, err := cs.CoreV1().Nodes().Create(context.Background(), node("mtls-1", map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if requests(t) <= before {
		t.Error("the apiserver's call did not reach the webhook")
	}
}

// The webhook's ServiceAccount holds only what it needs.
func TestLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	sa := "system:serviceaccount:" + manifests.Namespace + ":" + manifests.Name
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + manifests.Namespace}
	check := func(ns, verb, res string) bool {
		r, err := cluster.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: sa, Groups: groups, ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: res},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	for _, a := range []struct{ ns, verb, res string }{{manifests.Namespace, "get", "configmaps"}, {manifests.Namespace, "watch", "configmaps"}, {manifests.EventsNamespace, "create", "events"}} {
		if !check(a.ns, a.verb, a.res) {
			t.Errorf("cannot %s %s in %s", a.verb, a.res, a.ns)
		}
	}
	for _, a := range []struct{ ns, verb, res string }{{"", "patch", "nodes"}, {"", "update", "nodes"}, {"", "list", "nodes"}, {manifests.Namespace, "get", "secrets"}, {"", "list", "pods"}, {"default", "get", "configmaps"}, {"kube-system", "create", "events"}} {
		if check(a.ns, a.verb, a.res) {
			t.Errorf("can %s %s in %q", a.verb, a.res, a.ns)
		}
	}
}

// 11. Every overlay applies with server-side dry-run, and the Deployment's pod passes Pod
// Security "restricted".
func TestManifestsApply(t *testing.T) {
	kubectl := filepath.Join(cluster.Root, "bin", "k8s", "kubectl")
	kc, err := cluster.KubeconfigFile("e2e-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	crds, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Unregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer registerMutating(t)
	run := func(t *testing.T, args ...string) {
		t.Helper()
		out, err := exec.Command(kubectl, append([]string{"--kubeconfig", kc}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	run(t, "apply", "--server-side", "-f", filepath.Join(strings.TrimSpace(string(crds)), "deploy", "crds"))
	run(t, "wait", "--for=condition=Established", "crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io", "--timeout=60s")
	certDir := filepath.Join(cluster.Root, "manifests", "overlays", "self-signed", "certs")
	if out, err := exec.Command(filepath.Join(cluster.Root, "bin", "webhook"), "certs", "--dir", certDir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, overlay := range []string{"base", "overlays/cert-manager", "overlays/self-signed", "overlays/audit", "overlays/host-network", "overlays/openshift"} {
		t.Run(overlay, func(t *testing.T) {
			run(t, "apply", "--dry-run=server", "-k", filepath.Join(cluster.Root, "manifests", overlay))
		})
	}
	d := manifests.Deployment()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "restricted-check", Namespace: manifests.Namespace}, Spec: d.Spec.Template.Spec}
	pod.Spec.PriorityClassName = ""
	cs, w := client(t, cluster.Admin)
	if _, err := cs.CoreV1().Pods(manifests.Namespace).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("the webhook's pod is refused in a restricted namespace: %v", err)
	}
	if w.all() != "" {
		t.Errorf("warnings: %s", w.all())
	}
	loose := pod.DeepCopy()
	loose.Spec.Containers[0].SecurityContext = nil
	if _, err := cs.CoreV1().Pods(manifests.Namespace).Create(context.Background(), loose, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
		t.Error("the namespace does not enforce restricted")
	}
}

// webhookCLI runs bin/webhook with args and returns its output and exit code.
func webhookCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(cluster.Root, "bin", "webhook"), args...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// The advisory check and the one-shot fix, from an admin's terminal.
func TestCheckAndLabel(t *testing.T) {
	ctx := context.Background()
	if err := cluster.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	defer registerMutating(t)
	cs, _ := client(t, cluster.Admin)
	for name, labels := range map[string]map[string]string{
		"cl-labeled":   {"node.kubernetes.io/instance-type": "p4d.24xlarge", admit.DefaultLabelKey: "a100", "pool": "cl"},
		"cl-unlabeled": {"node.kubernetes.io/instance-type": "p5.48xlarge", "pool": "cl"},
		"cl-unknown":   {"nvidia.com/gpu.present": "true", "pool": "cl"},
		"cl-wrong":     {"node.kubernetes.io/instance-type": "g5.xlarge", admit.DefaultLabelKey: "t4", "pool": "cl"},
		"cl-cpu":       {"node.kubernetes.io/instance-type": "m5.large", "pool": "cl"},
	} {
		if _, err := cs.CoreV1().Nodes().Create(ctx, node(name, labels), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := cluster.KubeconfigFile("check-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	out, code := webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=cl")
	if code != 0 {
		t.Fatalf("check exit %d: %s", code, out)
	}
	for _, want := range []string{"cl-unlabeled", "unlabeled", "cl-unknown", "model-unknown", "cl-wrong", "label-wrong", "Fix the 1 that can be fixed: webhook label -l 'pool=cl'", "Webhook: mutating webhook not installed"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cl-cpu") {
		t.Errorf("check lists a CPU node:\n%s", out)
	}
	out, code = webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=cl", "-o", "json", "--fail-on-findings")
	var doc struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &doc); err != nil || code != 1 {
		t.Fatalf("check -o json: exit %d, %v:\n%s", code, err, out)
	}
	if len(doc.Nodes) != 5 {
		t.Errorf("%d records", len(doc.Nodes))
	}

	out, code = webhookCLI(t, "label", "--kubeconfig", admin, "-l", "pool=cl", "--dry-run")
	if code != 0 || !strings.Contains(out, "would label 1") {
		t.Errorf("label --dry-run: exit %d:\n%s", code, out)
	}
	if _, ok := label(t, cs, "cl-unlabeled"); ok {
		t.Error("--dry-run changed a node")
	}

	reader, err := cluster.KubeconfigFile("node-reader")
	if err != nil {
		t.Fatal(err)
	}
	grantNodeRead(t, "node-reader")
	out, code = webhookCLI(t, "check", "--kubeconfig", reader, "-l", "pool=cl")
	if code != 0 || !strings.Contains(out, "cl-unlabeled") {
		t.Errorf("check as a node reader: exit %d:\n%s", code, out)
	}
	out, code = webhookCLI(t, "label", "--kubeconfig", reader, "-l", "pool=cl")
	if code != 2 || !strings.Contains(out, "permission denied") {
		t.Errorf("label as a node reader: exit %d:\n%s", code, out)
	}

	out, code = webhookCLI(t, "label", "--kubeconfig", admin, "-l", "pool=cl")
	if code != 0 || !strings.Contains(out, "labeled 1") {
		t.Errorf("label: exit %d:\n%s", code, out)
	}
	if v, _ := label(t, cs, "cl-unlabeled"); v != "h100" {
		t.Errorf("cl-unlabeled = %q", v)
	}
	if v, _ := label(t, cs, "cl-wrong"); v != "t4" {
		t.Errorf("label without --overwrite changed cl-wrong to %q", v)
	}
	out, code = webhookCLI(t, "label", "--kubeconfig", admin, "-l", "pool=cl")
	if code != 0 || !strings.Contains(out, "labeled 0") {
		t.Errorf("second label run: exit %d:\n%s", code, out)
	}
	out, code = webhookCLI(t, "label", "--kubeconfig", admin, "-l", "pool=cl", "--overwrite")
	if code != 0 || !strings.Contains(out, "labeled 1") {
		t.Errorf("label --overwrite: exit %d:\n%s", code, out)
	}
	if v, _ := label(t, cs, "cl-wrong"); v != "a10g" {
		t.Errorf("cl-wrong = %q", v)
	}
}

func grantNodeRead(t *testing.T, user string) {
	t.Helper()
	ctx := context.Background()
	b := []byte(fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"%s"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view-nodes"},"subjects":[{"kind":"User","name":"%s","apiGroup":"rbac.authorization.k8s.io"}]}`, user, user))
	role := []byte(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"view-nodes"},"rules":[{"apiGroups":[""],"resources":["nodes"],"verbs":["get","list"]}]}`)
	for _, body := range [][]byte{role, b} {
		res := "clusterroles"
		if strings.Contains(string(body), "ClusterRoleBinding") {
			res = "clusterrolebindings"
		}
		if err := cluster.Client.RbacV1().RESTClient().Post().Resource(res).Body(body).Do(ctx).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// What SkyPilot will see of a mixed fleet: EKS instance types, GFD on-prem, GKE, an AMD node, a
// TPU node, an uppercase value and a node whose device plugin has not reported yet. check
// names exactly the cluster findings SkyPilot's rules give, in the table and in JSON, and
// --fail-on-findings fails; after `webhook label` and fixing the value only the advisories
// no label can fix remain, and it passes.
func TestSkyPilotClusterView(t *testing.T) {
	ctx := context.Background()
	if err := cluster.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	defer registerMutating(t)
	cs, _ := client(t, cluster.Admin)
	const it = "node.kubernetes.io/instance-type"
	type gpus struct {
		resource string
		count    string
	}
	fleet := map[string]struct {
		labels map[string]string
		gpus   gpus
	}{
		"sp-a-labeled": {map[string]string{it: "g5.xlarge", admit.DefaultLabelKey: "a10g"}, gpus{"nvidia.com/gpu", "1"}},
		"sp-b-eks":     {map[string]string{it: "p5.48xlarge"}, gpus{"nvidia.com/gpu", "8"}},
		"sp-c-upper":   {map[string]string{it: "p4de.24xlarge", admit.DefaultLabelKey: "A100-80GB"}, gpus{"nvidia.com/gpu", "8"}},
		"sp-d-gfd":     {map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}, gpus{"nvidia.com/gpu", "8"}},
		"sp-e-gke":     {map[string]string{it: "g2-standard-4", "cloud.google.com/gke-accelerator": "nvidia-l4"}, gpus{"nvidia.com/gpu", "1"}},
		"sp-f-amd":     {map[string]string{"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}, gpus{"amd.com/gpu", "8"}},
		"sp-g-tpu": {map[string]string{it: "ct5lp-hightpu-4t", "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
			"cloud.google.com/gke-tpu-topology": "2x2", "cloud.google.com/gke-accelerator-count": "4"}, gpus{"google.com/tpu", "4"}},
		"sp-h-new": {map[string]string{it: "g6.xlarge"}, gpus{}},
		"sp-i-cpu": {map[string]string{it: "m5.large"}, gpus{}},
	}
	for name, n := range fleet {
		n.labels["pool"] = "sp"
		created, err := cs.CoreV1().Nodes().Create(ctx, node(name, n.labels), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.gpus.resource == "" {
			continue
		}
		q := resource.MustParse(n.gpus.count)
		created.Status.Capacity = corev1.ResourceList{corev1.ResourceName(n.gpus.resource): q, corev1.ResourceCPU: resource.MustParse("8")}
		created.Status.Allocatable = created.Status.Capacity
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := cluster.KubeconfigFile("skypilot-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	nvidia := []string{"sp-a-labeled", "sp-b-eks", "sp-c-upper", "sp-d-gfd", "sp-e-gke"}
	advisories := map[string][]string{
		"advisory MixedGPUResources": nvidia,
		"advisory TPUNotRequestable": {"sp-g-tpu"},
		"advisory GPUsNotReported":   {"sp-h-new"},
	}
	want := map[string][]string{
		"critical InvalidLabelValue":  {"sp-c-upper"},
		"warning OtherToolLabelsOnly": {"sp-d-gfd", "sp-e-gke"},
		"warning NoAcceleratorLabel":  {"sp-b-eks", "sp-f-amd", "sp-h-new"},
	}
	for k, v := range advisories {
		want[k] = v
	}

	out, code := webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=sp")
	if code != 0 {
		t.Fatalf("check exit %d:\n%s", code, out)
	}
	if got := tableFindings(t, out); !reflect.DeepEqual(got, want) {
		t.Errorf("table findings\n%v\nwant\n%v\n%s", got, want, out)
	}
	for _, line := range []string{
		"label scheme: SkyPilot (skypilot.co/accelerator), picked by node sp-a-labeled",
		"GPU resource: amd.com/gpu (found in node sp-f-amd's capacity; SkyPilot looks for amd.com/gpu before nvidia.com/gpu)",
		"fix: kubectl label node sp-c-upper skypilot.co/accelerator=a100-80gb --overwrite",
		`node sp-c-upper label skypilot.co/accelerator="A100-80GB" is not a lowercase accelerator name; fix: kubectl label node sp-c-upper skypilot.co/accelerator=a100-80gb --overwrite; this breaks every SkyPilot GPU request in the cluster`,
		"only the nodes matching -l pool=sp are read here",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("check output lacks %q:\n%s", line, out)
		}
	}

	out, code = webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=sp", "-o", "json", "--fail-on-findings")
	if code != 1 {
		t.Errorf("check --fail-on-findings: exit %d, want 1", code)
	}
	if got := jsonFindings(t, out); !reflect.DeepEqual(got, want) {
		t.Errorf("JSON findings\n%v\nwant\n%v\n%s", got, want, out)
	}

	out, code = webhookCLI(t, "label", "--kubeconfig", admin, "-l", "pool=sp")
	if code != 0 || !strings.Contains(out, "labeled 5") {
		t.Fatalf("label: exit %d:\n%s", code, out)
	}
	patch := []byte(`{"metadata":{"labels":{"skypilot.co/accelerator":"a100-80gb"}}}`)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "sp-c-upper", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	out, code = webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=sp", "-o", "json", "--fail-on-findings")
	if code != 0 {
		t.Errorf("check --fail-on-findings after the fix: exit %d, want 0:\n%s", code, out)
	}
	if got := jsonFindings(t, out); !reflect.DeepEqual(got, advisories) {
		t.Errorf("JSON findings after the fix\n%v\nwant\n%v", got, advisories)
	}
}

// tableFindings reads "SEVERITY Reason: node, node" lines from check's SkyPilot section.
func tableFindings(t *testing.T, out string) map[string][]string {
	t.Helper()
	_, section, ok := strings.Cut(out, "What SkyPilot will see")
	if !ok {
		t.Fatalf("no SkyPilot section:\n%s", out)
	}
	got := map[string][]string{}
	for _, line := range strings.Split(section, "\n") {
		head, nodes, ok := strings.Cut(strings.TrimSpace(line), ": ")
		sev, reason, ok2 := strings.Cut(head, " ")
		if !ok || !ok2 || strings.Contains(reason, " ") || (sev != "CRITICAL" && sev != "WARNING" && sev != "ADVISORY") {
			continue
		}
		got[strings.ToLower(sev)+" "+reason] = strings.Split(nodes, ", ")
	}
	return got
}

func jsonFindings(t *testing.T, out string) map[string][]string {
	t.Helper()
	var doc struct {
		Nodes   []json.RawMessage `json:"nodes"`
		Cluster struct {
			Findings []struct {
				Severity, Reason string
				Nodes            []string
			} `json:"findings"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(doc.Nodes) != 9 {
		t.Errorf("%d node records, want 9", len(doc.Nodes))
	}
	got := map[string][]string{}
	for _, f := range doc.Cluster.Findings {
		got[f.Severity+" "+f.Reason] = f.Nodes
	}
	return got
}
