//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

// The apiserver metrics the shipped rules and dashboard read exist under those names in a
// real apiserver's /metrics: a webhook configuration of throwaway webhooks, each failing one
// way (failing open, failing closed, a match condition that errors), makes it count each.
func TestAPIServerExportsTheMetricsTheAlertsName(t *testing.T) {
	ctx := context.Background()
	dashboard, err := manifests.Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	text := string(dashboard)
	for _, g := range manifests.PrometheusRule().Spec.Groups {
		for _, r := range g.Rules {
			text += "\n" + r.Expr.String()
		}
	}
	var names []string
	for _, n := range regexp.MustCompile(`\bapiserver_[a-z_]+`).FindAllString(text, -1) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) < 4 {
		t.Fatalf("the rules and dashboard name only %v", names)
	}

	const ns, probe = "metrics-probe", "gpu-label-webhook.test/probe"
	cs, _ := client(t, cluster.Admin)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	// Nothing listens on port 1: every call fails at once.
	hook := func(name string, policy admissionregistrationv1.FailurePolicyType, conditions ...admissionregistrationv1.MatchCondition) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name:                    name + ".probe.gpu-label-webhook.test",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/validate")},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{probe: "1"}},
			FailurePolicy:           ptr.To(policy),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To(int32(1)),
			MatchConditions:         conditions,
		}
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-probe"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			hook("fail-open", admissionregistrationv1.Ignore),
			hook("fail-closed", admissionregistrationv1.Fail),
			// A map lookup of a missing key is an evaluation error.
			hook("match-error", admissionregistrationv1.Ignore, admissionregistrationv1.MatchCondition{Name: "errors", Expression: `object.data["absent"] == "x"`}),
		},
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, vwc.Name, metav1.DeleteOptions{})

	var missing []string
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Labels: map[string]string{probe: "1"}}, Data: map[string]string{"k": "v"}}
		_, _ = cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}) // rejected once the webhooks are in force
		raw, err := cluster.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		missing = missing[:0]
		for _, n := range names {
			if !strings.Contains(string(raw), "\n"+n+"{") {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			t.Logf("the apiserver exports %v", names)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("the apiserver's /metrics has no %v, which the rules or the dashboard name", missing)
}

// Every observability value of the chart renders what it says, and the rendered objects the
// apiserver knows without prometheus-operator's CRDs are accepted by it (server dry-run).
func TestHelmChartObservabilityValues(t *testing.T) {
	h := newHelm(t)
	render := func(t *testing.T, namespace string, set ...string) map[string]map[string]any {
		args := []string{"template", manifests.Name, h.chart, "--namespace", namespace, "--kube-version", "1.37.2"}
		for _, kv := range set {
			args = append(args, "--set", kv)
		}
		return withoutHelm(objects(t, h.helm(t, args...)))
	}
	dig := func(o map[string]any, path ...string) any {
		var v any = o
		for _, p := range path {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		return v
	}
	all := []string{"serviceMonitor.enabled=true", "prometheusRule.enabled=true", "grafanaDashboard.enabled=true", "networkPolicy.enabled=true"}

	t.Run("off by default", func(t *testing.T) {
		for k := range render(t, "glw") {
			for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap glw/" + manifests.DashboardName} {
				if strings.HasPrefix(k, kind) {
					t.Errorf("renders %s", k)
				}
			}
		}
	})
	t.Run("policy mode has no server to watch or guard", func(t *testing.T) {
		for k := range render(t, "glw", append(all, "policyMode=true")...) {
			if strings.HasPrefix(k, "ServiceMonitor") || strings.HasPrefix(k, "PrometheusRule") || strings.HasPrefix(k, "NetworkPolicy") {
				t.Errorf("policy mode renders %s", k)
			}
		}
	})
	t.Run("network policy CIDRs and metrics namespace", func(t *testing.T) {
		key := "NetworkPolicy " + manifests.Namespace + "/" + manifests.NetworkPolicyName
		got := render(t, manifests.Namespace, "networkPolicy.enabled=true", "networkPolicy.metricsNamespace=prom", "networkPolicy.apiserverCIDRs={172.16.0.0/28,10.1.0.0/16}")[key]
		b, err := manifests.Marshal(manifests.NetworkPolicy("prom", []string{"172.16.0.0/28", "10.1.0.0/16"}))
		if err != nil {
			t.Fatal(err)
		}
		if want := objects(t, b)[key]; !reflect.DeepEqual(got, want) {
			t.Errorf("chart:\n%v\nwant:\n%v", got, want)
		}
	})
	t.Run("rules select the release's namespace, carry the values' labels, keep Prometheus's templates", func(t *testing.T) {
		pr := render(t, "other", "prometheusRule.enabled=true", "prometheusRule.labels.release=kps")["PrometheusRule other/"+manifests.RuleName]
		if dig(pr, "metadata", "labels", "release") != "kps" {
			t.Errorf("labels %v", dig(pr, "metadata", "labels"))
		}
		b, _ := json.Marshal(pr)
		if s := string(b); !strings.Contains(s, `namespace=\"other\"`) || strings.Contains(s, `namespace=\"`+manifests.Namespace+`\"`) || !strings.Contains(s, "{{ $labels.pod }}") {
			t.Errorf("rule %s", s)
		}
	})
	t.Run("dashboard in Grafana's namespace with the sidecar's label and a folder", func(t *testing.T) {
		cm := render(t, "glw", "grafanaDashboard.enabled=true", "grafanaDashboard.namespace=grafana", "grafanaDashboard.annotations.grafana_folder=GPU")["ConfigMap grafana/"+manifests.DashboardName]
		want, err := manifests.Dashboard()
		if err != nil {
			t.Fatal(err)
		}
		if dig(cm, "data", manifests.DashboardFile) != string(want) || dig(cm, "metadata", "labels", manifests.DashboardLabel) != manifests.DashboardLabelValue ||
			dig(cm, "metadata", "annotations", "grafana_folder") != "GPU" {
			t.Errorf("dashboard ConfigMap %v", dig(cm, "metadata"))
		}
	})
	t.Run("lint with everything on", func(t *testing.T) {
		args := []string{"lint", "--strict", h.chart}
		for _, kv := range all {
			args = append(args, "--set", kv)
		}
		h.helm(t, args...)
	})
	t.Run("the apiserver accepts the policy and the dashboard", func(t *testing.T) {
		args := []string{"template", manifests.Name, h.chart, "--namespace", manifests.Namespace, "--kube-version", "1.37.2",
			"--show-only", "templates/networkpolicy.yaml", "--show-only", "templates/grafana-dashboard.yaml"}
		for _, kv := range all {
			args = append(args, "--set", kv)
		}
		f := filepath.Join(t.TempDir(), "objects.yaml")
		if err := os.WriteFile(f, h.helm(t, args...), 0o644); err != nil {
			t.Fatal(err)
		}
		out := h.must(t, filepath.Join(cluster.Root, "bin", "k8s", "kubectl"), "apply", "--dry-run=server", "-f", f)
		if !strings.Contains(string(out), "networkpolicy.networking.k8s.io/"+manifests.NetworkPolicyName) || !strings.Contains(string(out), "configmap/"+manifests.DashboardName) {
			t.Errorf("kubectl apply: %s", out)
		}
	})
}
