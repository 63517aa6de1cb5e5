//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

// podOf is the pod a Deployment's ReplicaSet would create.
func podOf(ns string, tmpl corev1.PodTemplateSpec) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "dry-run-", Namespace: ns, Labels: tmpl.Labels}, Spec: tmpl.Spec}
}

// dryRun creates the pod with a server dry-run: every admission plugin judges it, nothing is stored.
func dryRun(t *testing.T, pod *corev1.Pod) error {
	t.Helper()
	_, err := cluster.Client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// The apiserver here admits the critical priority classes only in namespaces holding a quota
// for them, as GKE does. The chart installed with its defaults: the pods its Deployment would
// create are admitted (a server dry-run of its pod template, which quota admission judges),
// and without the quota it ships they are refused. Pod Security too, as the namespace's label
// says: the default and OpenShift pods pass "restricted", the host-network pod only "privileged".
func TestInstallAdmission(t *testing.T) {
	ctx := context.Background()
	h := newHelm(t)
	makeRoomForChart(t)
	crds, err := cluster.CertManagerCRDs()
	if err != nil {
		t.Fatal(err)
	}
	h.must(t, filepath.Join(cluster.Root, "bin", "k8s", "kubectl"), "apply", "--server-side", "-f", crds)
	h.must(t, filepath.Join(cluster.Root, "bin", "k8s", "kubectl"), "wait", "--for=condition=Established", "--timeout=60s", "crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io")

	const ns = "gke-e2e"
	// What the README says to run first: the namespace, enforcing restricted.
	if _, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{manifests.PodSecurityEnforce: "restricted"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
	notes := string(h.helm(t, "install", "glw", h.chart, "--namespace", ns))
	defer h.run(t, h.bin, "uninstall", "glw", "--namespace", ns)
	for _, want := range []string{"Priority: system-cluster-critical, admitted here by the ResourceQuota", "helm test glw -n " + ns, "--set config.autoLabel=true", "pass Pod Security \"restricted\""} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, notes)
		}
	}

	// No controller-manager runs here: set the quota's status as its quota controller would.
	quotas := cluster.Client.CoreV1().ResourceQuotas(ns)
	q, err := quotas.Get(ctx, manifests.Name+"-critical-pods", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's quota: %v", err)
	}
	q.Status = corev1.ResourceQuotaStatus{Hard: q.Spec.Hard, Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}
	if _, err := quotas.UpdateStatus(ctx, q, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, manifests.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Spec.PriorityClassName != manifests.PriorityClass {
		t.Fatalf("priority class %q", d.Spec.Template.Spec.PriorityClassName)
	}
	if err := dryRun(t, podOf(ns, d.Spec.Template)); err != nil {
		t.Errorf("with the chart's quota, the Deployment's pod is refused: %v", err)
	}

	// Each variant's pods, as the chart renders them, against the namespace's Pod Security.
	variant := func(t *testing.T, set ...string) (*corev1.Pod, *corev1.Pod) {
		args := []string{"template", "glw", h.chart, "--namespace", ns, "--kube-version", "1.37.2"}
		for _, kv := range set {
			args = append(args, "--set", kv)
		}
		objs := objects(t, h.helm(t, args...))
		var dep appsv1.Deployment
		var test corev1.Pod
		for key, into := range map[string]any{"Deployment " + ns + "/" + manifests.Name: &dep, "Pod " + ns + "/" + manifests.CheckName: &test} {
			b, _ := json.Marshal(objs[key])
			if err := json.Unmarshal(b, into); err != nil {
				t.Fatal(err)
			}
		}
		test.Namespace, test.Name, test.GenerateName = ns, "", "dry-run-test-"
		return podOf(ns, dep.Spec.Template), &test
	}
	for name, set := range map[string][]string{"defaults": nil, "openshift": {"openshift=true"}} {
		t.Run(name+" pass restricted", func(t *testing.T) {
			webhook, test := variant(t, set...)
			for _, p := range []*corev1.Pod{webhook, test} {
				if err := dryRun(t, p); err != nil {
					t.Errorf("%s refused: %v", p.GenerateName, err)
				}
			}
		})
	}
	t.Run("hostNetwork needs a privileged namespace", func(t *testing.T) {
		webhook, _ := variant(t, "hostNetwork.enabled=true")
		err := dryRun(t, webhook)
		if err == nil || !strings.Contains(err.Error(), "hostNetwork=true") {
			t.Fatalf("a host-network pod in a restricted namespace: %v", err)
		}
		t.Logf("in a restricted namespace: %v", err)
		label := func(level string) {
			h.must(t, filepath.Join(cluster.Root, "bin", "k8s", "kubectl"), "label", "namespace", ns, manifests.PodSecurityEnforce+"="+level, "--overwrite")
		}
		label("privileged") // as NOTES and the README say
		defer label("restricted")
		if err := dryRun(t, webhook); err != nil {
			t.Errorf("a host-network pod in a privileged namespace: %v", err)
		}
	})

	// Without the quota the chart ships, the same pod is refused.
	h.helm(t, "upgrade", "glw", h.chart, "--namespace", ns, "--reuse-values", "--set", "resourceQuota.enabled=false")
	if _, err := quotas.Get(ctx, manifests.Name+"-critical-pods", metav1.GetOptions{}); err == nil {
		t.Fatal("resourceQuota.enabled=false left the quota")
	}
	err = dryRun(t, podOf(ns, d.Spec.Template))
	if err == nil || !strings.Contains(err.Error(), "insufficient quota to match these scopes") {
		t.Fatalf("without the quota, the Deployment's pod: %v; want refused by quota admission", err)
	}
	t.Logf("without the chart's quota: %v", err)
}

// check --require-webhook from an admin's terminal: 0 with the webhook registered and
// answering (this apiserver's webhook asks for its client certificate, which check notes), 3
// once it is gone.
func TestCheckRequireWebhook(t *testing.T) {
	ctx := context.Background()
	registerMutating(t)
	admin, err := cluster.KubeconfigFile("require-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	out, code := webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=none", "--require-webhook", "--probe")
	if code != 0 || !strings.Contains(out, "1 of 1 answered") || !strings.Contains(out, "asks for a client certificate") {
		t.Errorf("registered: exit %d\n%s", code, out)
	}
	if err := cluster.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	defer registerMutating(t)
	out, code = webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=none", "--require-webhook")
	if code != 3 || !strings.Contains(out, "the webhook is not working: mutating webhook not installed") {
		t.Errorf("unregistered: exit %d\n%s", code, out)
	}
	if _, code := webhookCLI(t, "check", "--kubeconfig", admin, "-l", "pool=none"); code != 0 {
		t.Errorf("without --require-webhook: exit %d", code)
	}
}
