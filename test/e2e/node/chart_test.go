//go:build e2e

package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

const release = "glw"

// helm runs the helm CLI built by make tools as cluster-admin, with homes of its own.
func helm(t *testing.T, c *Cluster, args ...string) (string, error) {
	t.Helper()
	home := filepath.Join(c.Dir, "helm")
	cmd := exec.Command(filepath.Join(c.Root, "bin", "k8s", "helm"), args...)
	cmd.Env = append(cmd.Environ(), "KUBECONFIG="+c.AdminKubeconfig, "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustHelm(t *testing.T, c *Cluster, args ...string) string {
	t.Helper()
	out, err := helm(t, c, args...)
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, out)
	}
	return out
}

// The chart on a real node: installed with its defaults (but for a CA made at install: no
// cert-manager runs here) under the GKE-style priority limit, where the Deployment's own pods
// start only by the quota the chart ships; the webhook serves on 10250 in the pods' network,
// reached through the Service. `helm test` passes, and fails when the webhook is gone. Then
// `helm upgrade` to hostNetwork while nodes join leaves no node unlabeled; the apiserver reaches
// the webhook at the node's address, on ports beside the kubelet's 10250; the scenarios again;
// and once more from a fresh install with hostNetwork.
func TestChartOnRealNode(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	if err := CheckRoutes(); err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(c.Root, manifests.ChartDir)
	ns := manifests.Namespace
	// The README's first step: a namespace that enforces restricted.
	if _, err := c.Kubectl(ctx, "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "label", "namespace", ns, manifests.PodSecurityEnforce+"=restricted"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	notes := mustHelm(t, c, "install", release, chart, "-n", ns, "--set", "certificates.mode=self-signed")
	waitRollout(t, c)
	t.Logf("helm install to both pods ready in %v", time.Since(began).Round(time.Millisecond))
	if !strings.Contains(notes, "helm test "+release) {
		t.Errorf("NOTES:\n%s", notes)
	}
	defaults := &webhookInstall{name: "defaults: ", replicas: 2, port: int(manifests.PodPorts.Webhook)}

	t.Run("defaults: system-cluster-critical pods admitted by the chart's quota, serving on 10250 behind the Service", func(t *testing.T) {
		checkPods(t, c, "restricted", defaults.replicas)
		q, err := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, manifests.Name+"-critical-pods", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The quota controller counts the pods it admitted.
		eventually(t, c, "the quota to count the webhook's pods", time.Minute, func() bool {
			q, err = c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, q.Name, metav1.GetOptions{})
			used := q.Status.Used["pods"]
			return err == nil && used.Value() == int64(defaults.replicas)
		})
		waitEndpoints(t, c, defaults.replicas, defaults.port)
		waitAutoLabel(t, c, false)
	})
	runScenarios(t, c, defaults)

	t.Run("helm test passes, and fails when the webhook is not installed or not serving", func(t *testing.T) {
		helmTest(t, c, true, "answered a dry-run review")
		if _, err := c.Kubectl(ctx, "-n", ns, "scale", "deployment/"+manifests.Name, "--replicas=0"); err != nil {
			t.Fatal(err)
		}
		eventually(t, c, "the webhook's pods to be gone", 2*time.Minute, func() bool { return len(webhookPods(t, c)) == 0 })
		helmTest(t, c, false, "has NO ready endpoints")
		if _, err := c.Kubectl(ctx, "-n", ns, "scale", "deployment/"+manifests.Name, fmt.Sprintf("--replicas=%d", defaults.replicas)); err != nil {
			t.Fatal(err)
		}
		waitRollout(t, c)
		if _, err := c.Kubectl(ctx, "delete", "mutatingwebhookconfiguration", manifests.MutatingName); err != nil {
			t.Fatal(err)
		}
		helmTest(t, c, false, "mutating webhook not installed")
		// helm upgrade puts back what the release owns.
		mustHelm(t, c, "upgrade", release, chart, "-n", ns, "--reuse-values")
		waitEndpoints(t, c, defaults.replicas, defaults.port)
		helmTest(t, c, true, "answered a dry-run review")
	})

	hostNet := &webhookInstall{name: "hostNetwork: ", replicas: 1, port: int(manifests.HostNetworkPorts.Webhook)}
	t.Run("helm upgrade to hostNetwork while nodes join: no node left unlabeled", func(t *testing.T) {
		optIn(t, c, true)
		// What NOTES say the node's network needs.
		if _, err := c.Kubectl(ctx, "label", "namespace", ns, manifests.PodSecurityEnforce+"=privileged", "--overwrite"); err != nil {
			t.Fatal(err)
		}
		var out string
		joined := joinWhile(t, c, "upgrade", 20, func() {
			var err error
			if out, err = helm(t, c, "upgrade", release, chart, "-n", ns, "--reuse-values", "--set", "config.autoLabel=true",
				"--set", "hostNetwork.enabled=true", "--set", fmt.Sprintf("replicas=%d", hostNet.replicas)); err != nil {
				t.Errorf("helm upgrade: %v\n%s", err, out)
			}
		})
		if want := fmt.Sprintf("on TCP %d", hostNet.port); !strings.Contains(out, want) {
			t.Errorf("NOTES lack %q:\n%s", want, out)
		}
		waitRollout(t, c)
		waitEndpoints(t, c, hostNet.replicas, hostNet.port)
		byCreate, byStatus := 0, 0
		for _, j := range joined {
			if j.label == "a100" {
				byCreate++
				continue
			}
			if got := j.reportStatus(t); got != "a100" {
				t.Errorf("%s joined %v into the upgrade unlabeled, and its next status report left it %q; want a100", j.name, j.at, got)
			}
			byStatus++
		}
		t.Logf("of %d nodes joining during the upgrade, %d were labeled in their CREATE, %d by their next status report", len(joined), byCreate, byStatus)
	})

	t.Run("hostNetwork: the apiserver reaches the webhook at the node's address, beside the kubelet's 10250", func(t *testing.T) {
		checkPods(t, c, "privileged", hostNet.replicas)
		list, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + manifests.Name})
		if err != nil {
			t.Fatal(err)
		}
		var addrs []string
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				addrs = append(addrs, e.Addresses...)
			}
		}
		if !slices.Equal(addrs, []string{NodeIP}) {
			t.Errorf("the Service's endpoints are %v, want the node's address %s", addrs, NodeIP)
		}
		// Each port answers as its owner: the kubelet on 10250, the webhook on its own.
		webhookName := manifests.Name + "." + ns + ".svc"
		for port, webhook := range map[int]bool{kubeletPort: false, hostNet.port: true} {
			conn, err := tls.Dial("tcp", NodeIP+":"+strconv.Itoa(port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // who answers, not whether to trust it
			if err != nil {
				t.Errorf("%s:%d: %v", NodeIP, port, err)
				continue
			}
			cert := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			if slices.Contains(cert.DNSNames, webhookName) != webhook {
				t.Errorf("%s:%d answers with a certificate for %q %v; the webhook's: %v", NodeIP, port, cert.Subject.CommonName, cert.DNSNames, webhook)
			}
		}
		if !nodeReady(getNode(t, c, nodeName)) {
			t.Error("the node is not Ready")
		}
	})
	runScenarios(t, c, hostNet)

	t.Run("helm test passes on the node's network", func(t *testing.T) { helmTest(t, c, true, "1 of 1 answered") })

	t.Run("helm uninstall leaves nothing behind", func(t *testing.T) {
		mustHelm(t, c, "uninstall", release, "-n", ns, "--wait")
		reg := c.Client.AdmissionregistrationV1()
		if _, err := reg.MutatingWebhookConfigurations().Get(ctx, manifests.MutatingName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the webhook configuration outlived the uninstall: %v", err)
		}
		if _, err := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, manifests.Name+"-critical-pods", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the quota outlived the uninstall: %v", err)
		}
		eventually(t, c, "the webhook's pods to be gone", 2*time.Minute, func() bool { return len(webhookPods(t, c)) == 0 })
	})

	t.Run("installed afresh with hostNetwork, the kubelet's CREATE is labeled", func(t *testing.T) {
		mustHelm(t, c, "install", release, chart, "-n", ns, "--set", "certificates.mode=self-signed", "--set", "config.autoLabel=true",
			"--set", "hostNetwork.enabled=true", "--set", fmt.Sprintf("replicas=%d", hostNet.replicas))
		defer mustHelm(t, c, "uninstall", release, "-n", ns, "--wait")
		waitRollout(t, c)
		checkPods(t, c, "privileged", hostNet.replicas)
		waitEndpoints(t, c, hostNet.replicas, hostNet.port)
		waitAutoLabel(t, c, true)
		if err := c.Reregister(ctx, map[string]string{instanceType: "p4d.24xlarge"}); err != nil {
			t.Fatal(err)
		}
		if got := getNode(t, c, nodeName).Labels[admit.DefaultLabelKey]; got != "a100" {
			t.Errorf("label %q, want a100", got)
		}
		if by, want := labeledBy(t, c, nodeName), "system:node:"+nodeName+" create"; by != want {
			t.Errorf("the label was added to %q; want the kubelet's own CREATE (%s)", by, want)
		}
	})
}

// helmTest runs `helm test` and checks it passes or fails as wanted, printing the check's
// report that says so, and that the test's objects are gone after it either way.
func helmTest(t *testing.T, c *Cluster, pass bool, says string) {
	t.Helper()
	out, err := helm(t, c, "test", release, "-n", manifests.Namespace, "--timeout", "2m")
	if (err == nil) != pass || !strings.Contains(out, says) {
		t.Fatalf("helm test: %v (want passing %v), and the output lacks %q:\n%s", err, pass, says, out)
	}
	t.Logf("helm test (%v): %s", err, lastLine(out, "Webhook:"))
	ctx := context.Background()
	rbac := c.Client.RbacV1()
	gets := map[string]func() error{
		"ServiceAccount": func() error {
			_, err := c.Client.CoreV1().ServiceAccounts(manifests.Namespace).Get(ctx, manifests.CheckName, metav1.GetOptions{})
			return err
		},
		"Pod": func() error {
			_, err := c.Client.CoreV1().Pods(manifests.Namespace).Get(ctx, manifests.CheckName, metav1.GetOptions{})
			return err
		},
		"Role": func() error {
			_, err := rbac.Roles(manifests.Namespace).Get(ctx, manifests.CheckName, metav1.GetOptions{})
			return err
		},
		"RoleBinding": func() error {
			_, err := rbac.RoleBindings(manifests.Namespace).Get(ctx, manifests.CheckName, metav1.GetOptions{})
			return err
		},
		"ClusterRole": func() error {
			_, err := rbac.ClusterRoles().Get(ctx, manifests.CheckName, metav1.GetOptions{})
			return err
		},
		"ClusterRoleBinding": func() error {
			_, err := rbac.ClusterRoleBindings().Get(ctx, manifests.CheckName, metav1.GetOptions{})
			return err
		},
	}
	for kind, get := range gets {
		eventually(t, c, "the test's "+kind+" to be removed", time.Minute, func() bool { return apierrors.IsNotFound(get()) })
	}
}

func lastLine(out, prefix string) string {
	lines := strings.Split(out, "\n")
	for _, l := range slices.Backward(lines) {
		if i := strings.Index(l, prefix); i >= 0 {
			return l[i:]
		}
	}
	return "(no " + prefix + " line)"
}
