//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

// objects reads a stream of YAML documents into objects keyed by kind, namespace and name.
func objects(t *testing.T, text []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(text), 4096)
	for {
		var o map[string]any
		if err := dec.Decode(&o); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatal(err)
		}
		if o == nil {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		ns, _ := md["namespace"].(string)
		name, _ := md["name"].(string)
		out[o["kind"].(string)+" "+ns+"/"+name] = o
	}
}

// helmCLI runs the helm CLI built by make tools, as a user would, with an admin kubeconfig
// and homes of its own.
type helmCLI struct {
	bin, chart string
	run        func(t *testing.T, name string, args ...string) ([]byte, error)
	must       func(t *testing.T, name string, args ...string) []byte
	helm       func(t *testing.T, args ...string) []byte
}

func newHelm(t *testing.T) *helmCLI {
	t.Helper()
	kc, err := cluster.KubeconfigFile("helm-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	h := &helmCLI{bin: filepath.Join(cluster.Root, "bin", "k8s", "helm"), chart: filepath.Join(cluster.Root, manifests.ChartDir)}
	h.run = func(t *testing.T, name string, args ...string) ([]byte, error) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(cmd.Environ(), "KUBECONFIG="+kc, "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		return cmd.CombinedOutput()
	}
	h.must = func(t *testing.T, name string, args ...string) []byte {
		t.Helper()
		out, err := h.run(t, name, args...)
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
		}
		return out
	}
	h.helm = func(t *testing.T, args ...string) []byte { t.Helper(); return h.must(t, h.bin, args...) }
	return h
}

// helmLabels are the labels the chart adds to every object and the overlays do not.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}

// withoutHelm drops what only Helm renders: its labels, and the `helm test` hook's objects.
func withoutHelm(objs map[string]map[string]any) map[string]map[string]any {
	for k, o := range objs {
		md := o["metadata"].(map[string]any)
		if a, _ := md["annotations"].(map[string]any); a["helm.sh/hook"] != nil {
			delete(objs, k)
			continue
		}
		labels := md["labels"].(map[string]any)
		for _, l := range helmLabels {
			delete(labels, l)
		}
	}
	return objs
}

// makeRoomForChart removes what the test stack installed that the chart owns by name (the
// mutating webhook configuration, the Events role in "default", the cluster role that reads
// ResourceSlices), and puts it back after.
func makeRoomForChart(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if err := cluster.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { registerMutating(t) })
	cs, _ := client(t, cluster.Admin)
	events := manifests.Name + "-events"
	if err := cs.RbacV1().RoleBindings(manifests.EventsNamespace).Delete(ctx, events, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.RbacV1().Roles(manifests.EventsNamespace).Delete(ctx, events, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, manifests.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.RbacV1().ClusterRoles().Delete(ctx, manifests.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.InstallBase(ctx); err != nil {
			t.Error(err)
		}
	})
}

// The Helm chart, as users run it with the helm CLI: lint clean, the default rendering is the
// cert-manager overlay's objects, a typo in values fails, and it installs, upgrades and
// uninstalls against the real apiserver.
func TestHelmChart(t *testing.T) {
	ctx := context.Background()
	h := newHelm(t)
	helmBin, chart, run, must, helm := h.bin, h.chart, h.run, h.must, h.helm
	t.Run("lint", func(t *testing.T) {
		helm(t, "lint", "--strict", chart)
	})
	// A chart does not own its namespace (helm install --create-namespace makes it); the
	// README says to label it restricted. Every other object is the overlay's, but for the
	// labels only Helm sets and the `helm test` hook.
	sameAsOverlay := func(t *testing.T, overlay string, set ...string) {
		args := []string{"template", manifests.Name, chart, "--namespace", manifests.Namespace, "--kube-version", "1.37.2"}
		for _, kv := range set {
			args = append(args, "--set", kv)
		}
		got := withoutHelm(objects(t, helm(t, args...)))
		want := objects(t, must(t, filepath.Join(cluster.Root, "bin", "k8s", "kubectl"), "kustomize", filepath.Join(cluster.Root, "manifests", overlay)))
		delete(want, "Namespace /"+manifests.Namespace)
		for k, w := range want {
			if !reflect.DeepEqual(got[k], w) {
				t.Errorf("%s differs:\nchart:   %v\noverlay: %v", k, got[k], w)
			}
		}
		for k := range got {
			if want[k] == nil {
				t.Errorf("the chart renders %s, the overlay does not", k)
			}
		}
	}
	t.Run("default rendering is the cert-manager overlay", func(t *testing.T) { sameAsOverlay(t, "overlays/cert-manager") })
	t.Run("policy mode is the policy overlay", func(t *testing.T) { sameAsOverlay(t, "overlays/policy", "policyMode=true") })
	t.Run("hostNetwork is the host-network overlay", func(t *testing.T) { sameAsOverlay(t, "overlays/host-network", "hostNetwork.enabled=true") })
	t.Run("openshift is the openshift overlay", func(t *testing.T) { sameAsOverlay(t, "overlays/openshift", "openshift=true") })
	t.Run("monitoring, dashboard and network policy are the observability overlay", func(t *testing.T) {
		sameAsOverlay(t, "overlays/observability", "serviceMonitor.enabled=true", "prometheusRule.enabled=true", "grafanaDashboard.enabled=true", "networkPolicy.enabled=true")
	})
	t.Run("a typo in values fails", func(t *testing.T) {
		for _, bad := range []string{"replicsa=3", "certificates.mode=letsencrypt", "config.autolabel=true"} {
			if out, err := run(t, helmBin, "template", "x", chart, "--kube-version", "1.37.2", "--set", bad); err == nil || !strings.Contains(string(out), "schema") {
				t.Errorf("--set %s: err %v\n%s", bad, err, out)
			}
		}
	})

	t.Run("install, upgrade, uninstall", func(t *testing.T) {
		// The chart registers the cluster's one mutating webhook configuration by name.
		makeRoomForChart(t)
		cs, _ := client(t, cluster.Admin)
		const ns = "helm-e2e"
		helm(t, "install", "glw", chart, "--namespace", ns, "--create-namespace", "--set", "certificates.mode=self-signed", "--wait=false")
		uninstalled := false
		defer func() {
			if !uninstalled {
				run(t, helmBin, "uninstall", "glw", "--namespace", ns)
			}
		}()
		secret, err := cs.CoreV1().Secrets(ns).Get(ctx, manifests.TLSSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, manifests.MutatingName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if w := mwc.Webhooks[0]; !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) || w.ClientConfig.Service.Namespace != ns {
			t.Errorf("webhook caBundle or service namespace do not match the install: %s", w.ClientConfig.Service.Namespace)
		}
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, manifests.Name, metav1.GetOptions{})
		if err != nil || *d.Spec.Replicas != 2 {
			t.Fatalf("deployment: %v %+v", err, d)
		}

		helm(t, "upgrade", "glw", chart, "--namespace", ns, "--reuse-values", "--set", "config.autoLabel=true", "--set", "replicas=3")
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, admit.DefaultConfigName, metav1.GetOptions{})
		if err != nil || cm.Data[admit.KeyAutoLabel] != "true" {
			t.Errorf("config after upgrade: %v %v", err, cm.Data)
		}
		again, err := cs.CoreV1().Secrets(ns).Get(ctx, manifests.TLSSecretName, metav1.GetOptions{})
		if err != nil || !bytes.Equal(again.Data["tls.crt"], secret.Data["tls.crt"]) {
			t.Errorf("the upgrade replaced the serving certificate: %v", err)
		}
		if d, err := cs.AppsV1().Deployments(ns).Get(ctx, manifests.Name, metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 3 {
			t.Errorf("replicas after upgrade: %v", err)
		}

		helm(t, "uninstall", "glw", "--namespace", ns)
		uninstalled = true
		if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, manifests.MutatingName, metav1.GetOptions{}); err == nil {
			t.Error("the webhook configuration outlived the uninstall")
		}
	})
}
