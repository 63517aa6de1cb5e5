//go:build e2e

package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

const (
	nodeName     = "gpu-node-1"
	instanceType = "node.kubernetes.io/instance-type"
	sandboxImage = "gpu-label-webhook.test/pause:1"
	// apiKubeletTaint keeps pods off the nodes the test registers through the API.
	apiKubeletTaint = "gpu-label-webhook.test/api-kubelet"
)

// TestRealNode installs the webhook the way the README tells a user, onto a cluster whose only
// node is a real kubelet running pods in containerd, and checks what users meet there: the
// kubelet's own writes are labeled or warned about, and nodes keep joining, labeled, while the
// webhook's pods come and go.
func TestRealNode(t *testing.T) {
	c := startCluster(t)
	began := time.Now()
	install(t, c)
	t.Logf("installed and both pods ready in %v", time.Since(began).Round(time.Millisecond))
	runScenarios(t, c, &webhookInstall{replicas: 2, port: int(manifests.PodPorts.Webhook)})
}

// startCluster starts the node's cluster with both images imported, and stops it (keeping the
// logs of a failed test) when the test ends.
func startCluster(t *testing.T) *Cluster {
	t.Helper()
	root, err := env.Root()
	if err != nil {
		t.Fatal(err)
	}
	images := []string{filepath.Join(root, "bin", "image", "pause.tar"), filepath.Join(root, "bin", "image", "gpu-label-webhook.tar")}
	for _, img := range images {
		if _, err := os.Stat(img); err != nil {
			t.Fatalf("%v: run make e2e-node, which builds the images", err)
		}
	}
	began := time.Now()
	c, err := Start(context.Background(), root, nodeName, sandboxImage, images, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s Ready %v after the start (etcd, apiserver, controllers, containerd, images, kubelet, kube-proxy)", nodeName, time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Logs(30))
			if dir, err := c.KeepLogs(filepath.Join(root, "bin", "e2e-node-logs")); err == nil {
				t.Logf("every component's whole log: %s", dir)
			}
		}
		began := time.Now()
		if err := c.Stop(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		t.Logf("torn down in %v (slow to stop: %v)", time.Since(began).Round(time.Millisecond), c.SlowStops)
	})
	return c
}

// webhookInstall is what the scenarios need to know of how the webhook was installed.
type webhookInstall struct {
	name     string // said before each scenario's name, when a test runs them on more than one install
	replicas int
	port     int // the webhook container's port, where the Service's traffic goes
	// baseline is the slowest CREATE seen with the webhook up, for comparison.
	baseline time.Duration
}

// scenario is one thing users meet on a node, run on each install that has the replicas it needs.
type scenario struct {
	name     string
	replicas int
	run      func(t *testing.T, c *Cluster, in *webhookInstall)
}

// runScenarios runs every scenario the install has the replicas for, in order.
func runScenarios(t *testing.T, c *Cluster, in *webhookInstall) {
	for _, s := range scenarios {
		if in.replicas < s.replicas {
			t.Logf("skipped with %d replica(s): %s", in.replicas, s.name)
			continue
		}
		t.Run(in.name+s.name, func(t *testing.T) { s.run(t, c, in) })
	}
}

var scenarios = []scenario{
	{"a kubelet of a p4d.24xlarge registering is warned about by default", 1, func(t *testing.T, c *Cluster, in *webhookInstall) {
		ctx := context.Background()
		optIn(t, c, false)
		if err := c.Reregister(ctx, map[string]string{instanceType: "p4d.24xlarge"}); err != nil {
			t.Fatal(err)
		}
		n := getNode(t, c, nodeName)
		if v, ok := n.Labels[admit.DefaultLabelKey]; ok {
			t.Fatalf("labeled %q without opting in", v)
		}
		// The kubelet's client logs the warnings the apiserver hands back.
		eventually(t, c, "the kubelet's log to show the webhook's warning", 30*time.Second, func() bool {
			return strings.Contains(c.KubeletLog(), admit.DefaultLabelKey+"=a100")
		})
		eventually(t, c, "an AcceleratorLabelMissing Event for the node", 30*time.Second, func() bool {
			return hasEvent(t, c, nodeName, admit.ReasonLabelMissing)
		})
	}},
	{"once opted in, a p4d.24xlarge is labeled a100 in the kubelet's CREATE", 1, func(t *testing.T, c *Cluster, in *webhookInstall) {
		ctx := context.Background()
		optIn(t, c, true)
		if err := c.Reregister(ctx, map[string]string{instanceType: "p4d.24xlarge"}); err != nil {
			t.Fatal(err)
		}
		n := getNode(t, c, nodeName)
		if got := n.Labels[admit.DefaultLabelKey]; got != "a100" {
			t.Fatalf("label %q, want a100", got)
		}
		if by, want := labeledBy(t, c, nodeName), "system:node:"+nodeName+" create"; by != want {
			t.Errorf("the label was added to %q; want the kubelet's own CREATE (%s)", by, want)
		}
	}},
	{"a device plugin's GPUs and GFD's labels: labeled by the kubelet's own status report", 1, func(t *testing.T, c *Cluster, in *webhookInstall) {
		ctx := context.Background()
		optIn(t, c, false)
		if err := c.Reregister(ctx, map[string]string{instanceType: "example.gpu-box.8x"}); err != nil {
			t.Fatal(err)
		}
		dp, err := StartDevicePlugin(ctx, "nvidia.com/gpu", 8)
		if err != nil {
			t.Fatal(err)
		}
		defer dp.Stop()
		eventually(t, c, "the kubelet to report 8 nvidia.com/gpu", time.Minute, func() bool {
			q := getNode(t, c, nodeName).Status.Capacity["nvidia.com/gpu"]
			return q.Value() == 8
		})
		eventually(t, c, "an AcceleratorModelUnknown Event: a GPU node the webhook cannot name yet", 30*time.Second, func() bool {
			return hasEvent(t, c, nodeName, admit.ReasonModelUnknown)
		})
		// GPU Feature Discovery labels the node with its own identity.
		gfd, err := c.UserConfig("system:serviceaccount:gpu-operator:node-feature-discovery", "system:masters")
		if err != nil {
			t.Fatal(err)
		}
		patch := `{"metadata":{"labels":{"nvidia.com/gpu.product":"NVIDIA-H100-80GB-HBM3","nvidia.com/gpu.count":"8","nvidia.com/gpu.memory":"81559"}}}`
		if _, err := clientFor(t, gfd).CoreV1().Nodes().Patch(ctx, nodeName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if v, ok := getNode(t, c, nodeName).Labels[admit.DefaultLabelKey]; ok {
			t.Fatalf("labeled %q while not opted in", v)
		}
		// The node-lifecycle controller patches a re-registered node to drop its not-ready
		// taints; a patch of its after the opt-in would carry the label instead of the kubelet's.
		eventually(t, c, "the node-lifecycle controller to lift the node's not-ready taints", time.Minute, func() bool {
			return !slices.ContainsFunc(getNode(t, c, nodeName).Spec.Taints, func(tn corev1.Taint) bool {
				return tn.Key == corev1.TaintNodeNotReady || tn.Key == corev1.TaintNodeUnreachable
			})
		})
		// Opting in changes no Node; the kubelet's next status report is what gets labeled.
		optIn(t, c, true)
		eventually(t, c, "the kubelet's next status report to be labeled h100", time.Minute, func() bool {
			return getNode(t, c, nodeName).Labels[admit.DefaultLabelKey] == "h100"
		})
		if by, want := labeledBy(t, c, nodeName), "system:node:"+nodeName+" patch status"; by != want {
			t.Errorf("the label was added to %q; want the kubelet's status report (%s)", by, want)
		}
	}},
	{"a webhook pod deleted while nodes join: every node labeled as it joins", 2, func(t *testing.T, c *Cluster, in *webhookInstall) {
		ctx := context.Background()
		optIn(t, c, true)
		pods := webhookPods(t, c)
		joined := joinWhile(t, c, "deleted", 12, func() {
			if _, err := c.Kubectl(ctx, "-n", manifests.Namespace, "delete", "pod", pods[0], "--wait=false"); err != nil {
				t.Error(err)
			}
		})
		for _, j := range joined {
			if j.label != "a100" {
				t.Errorf("%s joined %v after the deletion began and was labeled %q in its CREATE; want a100", j.name, j.at, j.label)
			}
			in.baseline = max(in.baseline, j.took)
		}
		waitRollout(t, c)
	}},
	{"a rolling update while nodes join: every node labeled as it joins", 2, func(t *testing.T, c *Cluster, in *webhookInstall) {
		ctx := context.Background()
		optIn(t, c, true)
		joined := joinWhile(t, c, "rolled", 20, func() {
			if _, err := c.Kubectl(ctx, "-n", manifests.Namespace, "rollout", "restart", "deployment/"+manifests.Name); err != nil {
				t.Error(err)
			}
		})
		for _, j := range joined {
			if j.label != "a100" {
				t.Errorf("%s joined %v into the rollout and was labeled %q in its CREATE; want a100", j.name, j.at, j.label)
			}
		}
		waitRollout(t, c)
	}},
	{"scaled to zero: nodes register at normal speed, then each is labeled by its first status report", 1, func(t *testing.T, c *Cluster, in *webhookInstall) {
		ctx := context.Background()
		optIn(t, c, true)
		if _, err := c.Kubectl(ctx, "-n", manifests.Namespace, "scale", "deployment/"+manifests.Name, "--replicas=0"); err != nil {
			t.Fatal(err)
		}
		eventually(t, c, "the webhook's pods to be gone", 2*time.Minute, func() bool { return len(webhookPods(t, c)) == 0 })
		waitEndpoints(t, c, 0, in.port)
		joined := joinWhile(t, c, fmt.Sprintf("down%d", in.port), 6, func() {})
		var slowest time.Duration
		var took []string
		for _, j := range joined {
			if j.label != "" {
				t.Errorf("%s was labeled %q with no webhook running", j.name, j.label)
			}
			slowest = max(slowest, j.took)
			took = append(took, j.took.Round(time.Millisecond).String())
		}
		t.Logf("CREATEs with the webhook down took %v", took)
		// Once kube-proxy's rules say the Service has no endpoints, failing open costs nothing:
		// the apiserver's dial is refused at once. (Before that, for the second or so the rules
		// lag, a dial goes to a pod address that is gone and waits the webhook's whole timeout.)
		timeout := time.Duration(*manifests.Mutating("", nil).Webhooks[0].TimeoutSeconds) * time.Second
		up := "not measured"
		if in.baseline > 0 {
			up = in.baseline.String()
		}
		t.Logf("CREATE with the webhook down: slowest %v (with the webhook up, as a pod was deleted: %s; its timeout %v)", slowest, up, timeout)
		if slowest > timeout/3 {
			t.Errorf("a CREATE with the webhook down took %v (its timeout %v): the apiserver waited on a webhook that is not there instead of being refused", slowest, timeout)
		}
		began := time.Now()
		if err := c.Reregister(ctx, map[string]string{instanceType: "p4d.24xlarge"}); err != nil {
			t.Fatal(err)
		}
		t.Logf("the real kubelet re-registered and was Ready in %v with the webhook down", time.Since(began).Round(time.Millisecond))
		if v, ok := getNode(t, c, nodeName).Labels[admit.DefaultLabelKey]; ok {
			t.Fatalf("labeled %q with no webhook running", v)
		}

		if _, err := c.Kubectl(ctx, "-n", manifests.Namespace, "scale", "deployment/"+manifests.Name, fmt.Sprintf("--replicas=%d", in.replicas)); err != nil {
			t.Fatal(err)
		}
		waitRollout(t, c)
		waitEndpoints(t, c, in.replicas, in.port)
		for _, j := range joined {
			if got := j.reportStatus(t); got != "a100" {
				t.Errorf("%s's first status report after the webhook came back left it labeled %q; want a100", j.name, got)
			}
		}
		eventually(t, c, "the real kubelet's next status report to be labeled a100", time.Minute, func() bool {
			return getNode(t, c, nodeName).Labels[admit.DefaultLabelKey] == "a100"
		})
		if by, want := labeledBy(t, c, nodeName), "system:node:"+nodeName+" patch status"; by != want {
			t.Errorf("the label was added to %q; want the kubelet's status report (%s)", by, want)
		}
	}},
}

// install runs what the README's "without cert-manager" row says, on a copy of manifests/:
// `webhook certs --dir manifests/overlays/self-signed/certs`, then
// `kubectl apply -k manifests/overlays/self-signed`; and waits for the Deployment.
func install(t *testing.T, c *Cluster) {
	t.Helper()
	ctx := context.Background()
	work := filepath.Join(c.Dir, "install")
	if err := os.CopyFS(work, os.DirFS(filepath.Join(c.Root, "manifests"))); err != nil {
		t.Fatal(err)
	}
	certsDir := filepath.Join(work, "overlays", "self-signed", "certs")
	_ = os.RemoveAll(certsDir) // a developer's own certificates, copied along
	if out, err := exec.Command(filepath.Join(c.Root, "bin", "webhook"), "certs", "--dir", certsDir).CombinedOutput(); err != nil {
		t.Fatalf("webhook certs: %v\n%s", err, out)
	}
	if err := CheckRoutes(); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "apply", "-k", filepath.Join(work, "overlays", "self-signed")); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("kubectl apply -k manifests/overlays/self-signed:\n%s", out)
	}
	waitRollout(t, c)
	checkPods(t, c, "restricted", 2)
	// The pods are ready only once they have read their ConfigMap, which they do with the
	// in-cluster credentials and the RBAC the manifests give them; the apiserver reaches them
	// through the Service. A dry-run CREATE shows the whole path answers.
	optIn(t, c, false)
}

// checkPods checks the namespace enforces level, and that the webhook's pods run on the node as
// the image's user, 65532, no root anywhere: as many processes as replicas.
func checkPods(t *testing.T, c *Cluster, level string, replicas int) {
	t.Helper()
	ctx := context.Background()
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, manifests.Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.Labels[manifests.PodSecurityEnforce]; got != level {
		t.Errorf("the namespace enforces %q Pod Security, want %s", got, level)
	}
	pods, err := c.Client.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + manifests.Name})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName != nodeName || p.Status.PodIP == "" || (p.Status.PodIP == NodeIP) != p.Spec.HostNetwork {
			t.Errorf("pod %s (hostNetwork %v) runs on %q at %q; want the real node, at the node's address only in its network", p.Name, p.Spec.HostNetwork, p.Spec.NodeName, p.Status.PodIP)
		}
	}
	// A replaced pod's process may take its grace period to go.
	var procs map[int]string
	eventually(t, c, fmt.Sprintf("the Deployment's %d webhook processes on the node", replicas), time.Minute, func() bool {
		procs = webhookProcesses(t)
		return len(procs) == replicas
	})
	for pid, uid := range procs {
		if uid != "65532" {
			t.Errorf("the webhook (pid %d) runs as uid %s, want 65532", pid, uid)
		}
	}
}

// webhookProcesses finds the containers' `/webhook serve` processes on this machine and
// returns each one's real user ID.
func webhookProcesses(t *testing.T) map[int]string {
	t.Helper()
	found := map[int]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(cmdline), "/webhook\x00serve\x00") {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
				found[pid] = f[1]
			}
		}
	}
	return found
}

func waitRollout(t *testing.T, c *Cluster) {
	t.Helper()
	if _, err := c.Kubectl(context.Background(), "-n", manifests.Namespace, "rollout", "status", "deployment/"+manifests.Name, "--timeout=2m"); err != nil {
		t.Fatalf("%v\n%s", err, describe(c))
	}
}

func describe(c *Cluster) string {
	out, _ := c.Kubectl(context.Background(), "-n", manifests.Namespace, "describe", "pods")
	logs, _ := c.Kubectl(context.Background(), "-n", manifests.Namespace, "logs", "-l", "app.kubernetes.io/name="+manifests.Name, "--tail=30", "--prefix")
	return out + "\n" + logs
}

// optIn sets autoLabel in the webhook's ConfigMap and waits until every webhook pod acts on it.
func optIn(t *testing.T, c *Cluster, on bool) {
	t.Helper()
	if _, err := c.Kubectl(context.Background(), "-n", manifests.Namespace, "patch", "configmap", admit.DefaultConfigName, "--type=merge",
		"-p", fmt.Sprintf(`{"data":{%q:"%t"}}`, admit.KeyAutoLabel, on)); err != nil {
		t.Fatal(err)
	}
	waitAutoLabel(t, c, on)
}

// waitAutoLabel waits until every webhook pod acts on autoLabel=on: a dry-run CREATE of a
// p4d.24xlarge, which goes through the webhook like any other, comes back labeled (or not)
// several times in a row, so each pod behind the Service has answered.
func waitAutoLabel(t *testing.T, c *Cluster, on bool) {
	t.Helper()
	ctx := context.Background()
	probe := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "dry-run-probe", Labels: map[string]string{instanceType: "p4d.24xlarge"}}}
	streak := 0
	eventually(t, c, fmt.Sprintf("every webhook pod to act on autoLabel=%t", on), time.Minute, func() bool {
		n, err := c.Client.CoreV1().Nodes().Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		want := map[bool]string{true: "a100", false: ""}[on]
		if err == nil && n.Labels[admit.DefaultLabelKey] == want {
			streak++
		} else {
			streak = 0
		}
		return streak >= 10
	})
}

func clientFor(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitEndpoints waits until the webhook's Service has ready endpoints and kube-proxy's rules
// send its traffic to exactly those: from then on the apiserver's calls meet the pods there are.
func waitEndpoints(t *testing.T, c *Cluster, ready, webhookPort int) {
	t.Helper()
	ctx := context.Background()
	var want []string
	eventually(t, c, fmt.Sprintf("the webhook's Service to have %d ready endpoints", ready), time.Minute, func() bool {
		list, err := c.Client.DiscoveryV1().EndpointSlices(manifests.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + manifests.Name})
		if err != nil {
			t.Fatal(err)
		}
		want = nil
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					want = append(want, e.Addresses[0]+":"+strconv.Itoa(webhookPort))
				}
			}
		}
		return len(want) == ready
	})
	slices.Sort(want)
	var got []string
	eventually(t, c, fmt.Sprintf("kube-proxy's rules to send the webhook's traffic to %v", want), time.Minute, func() bool {
		var err error
		if got, err = ProxiedTo(webhookPort); err != nil {
			t.Fatal(err)
		}
		return slices.Equal(got, want)
	})
}

func getNode(t *testing.T, c *Cluster, name string) *corev1.Node {
	t.Helper()
	n, err := c.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// labeledBy names the last write to the Node that the webhook added the accelerator label
// to, from the apiserver's audit log: "user verb subresource".
func labeledBy(t *testing.T, c *Cluster, name string) string {
	t.Helper()
	writes, err := c.NodeWrites(name)
	if err != nil {
		t.Fatal(err)
	}
	path := "/metadata/labels/" + strings.ReplaceAll(admit.DefaultLabelKey, "/", "~1")
	for _, w := range slices.Backward(writes) {
		if slices.ContainsFunc(w.Patches, func(p string) bool { return strings.Contains(p, path) }) {
			return strings.TrimSpace(w.User + " " + w.Verb + " " + w.Subresource)
		}
	}
	return fmt.Sprintf("no write (%d writes to %s in the audit log)", len(writes), name)
}

func hasEvent(t *testing.T, c *Cluster, nodeName string, reason admit.Reason) bool {
	t.Helper()
	list, err := c.Client.CoreV1().Events(manifests.EventsNamespace).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + nodeName})
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(list.Items, func(e corev1.Event) bool { return e.Reason == string(reason) })
}

func webhookPods(t *testing.T, c *Cluster) []string {
	t.Helper()
	list, err := c.Client.CoreV1().Pods(manifests.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + manifests.Name})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	return names
}

func eventually(t *testing.T, c *Cluster, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s\n%s", timeout, what, describe(c))
}

// joiner is a node that registered through the API with its own kubelet credentials.
type joiner struct {
	c     *Cluster
	name  string
	cs    kubernetes.Interface // as the node's kubelet
	label string               // the accelerator label its CREATE came back with
	took  time.Duration        // how long the CREATE took
	at    time.Duration        // when it joined, from the start of the disruption
}

// joinWhile registers n p4d.24xlarge nodes through the API, each as its own kubelet, one
// after another while disrupt runs, spread over the time the disruption takes to settle.
func joinWhile(t *testing.T, c *Cluster, prefix string, n int, disrupt func()) []*joiner {
	t.Helper()
	began := time.Now()
	var wg sync.WaitGroup
	wg.Go(disrupt)
	var joined []*joiner
	for i := range n {
		j := &joiner{c: c, name: fmt.Sprintf("%s-%d", prefix, i)}
		j.join(t)
		j.at = time.Since(began).Round(time.Millisecond)
		joined = append(joined, j)
		time.Sleep(time.Second)
	}
	wg.Wait()
	return joined
}

func (j *joiner) join(t *testing.T) {
	t.Helper()
	cfg, err := j.c.UserConfig("system:node:"+j.name, "system:nodes")
	if err != nil {
		t.Fatal(err)
	}
	j.cs = clientFor(t, cfg)
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: j.name, Labels: map[string]string{instanceType: "p4d.24xlarge", "kubernetes.io/hostname": j.name}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: apiKubeletTaint, Effect: corev1.TaintEffectNoSchedule}}},
		Status:     corev1.NodeStatus{Capacity: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}},
	}
	began := time.Now()
	got, err := j.cs.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{FieldManager: "kubelet"})
	j.took = time.Since(began)
	if err != nil {
		t.Fatalf("%s: %v", j.name, err)
	}
	j.label = got.Labels[admit.DefaultLabelKey]
}

// reportStatus sends a status report as the node's kubelet does (a heartbeat in a
// nodes/status patch) and returns the label the node has after it.
func (j *joiner) reportStatus(t *testing.T) string {
	t.Helper()
	now := metav1.Now()
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", LastHeartbeatTime: now, LastTransitionTime: now,
	}}}})
	got, err := j.cs.CoreV1().Nodes().Patch(context.Background(), j.name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: "kubelet"}, "status")
	if err != nil {
		t.Fatalf("%s: %v", j.name, err)
	}
	return got.Labels[admit.DefaultLabelKey]
}
