//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

// loopbackCert is a test-only Certificate: the overlay's serving Certificate plus the
// 127.0.0.1 address the apiserver dials here (no Service, no cluster DNS), issued by the
// overlay's own CA Issuer, so the CA that cainjector injects must verify it.
const loopbackCert = manifests.Name + "-e2e-loopback"

// loadLabel marks the nodes the load creates, so that one call deletes them all.
const loadLabel = "e2e.gpu-label-webhook/load"

// The cert-manager overlay for real: cert-manager's controller and cainjector issue the
// serving certificate, inject its CA into the webhook configuration, the webhook serves
// the issued certificate to the apiserver, and a renewal under load fails no admission call.
func TestCertManager(t *testing.T) {
	ctx := context.Background()
	cm, err := cluster.StartCertManager(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Stop()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cm.Logs())
		}
	})
	scheme := runtime.NewScheme()
	if err := cmv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cmc, err := crclient.New(cluster.Admin, crclient.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	defer cleanupCertManager(t, cmc)

	// The overlay as kustomize renders it: its issuers and Certificates, and the base's
	// webhook configuration (the Service's address, no caBundle) with the annotation.
	objs := manifests.CertManager()
	var serving *cmv1.Certificate
	for _, o := range objs {
		obj := o.(crclient.Object)
		if c, ok := obj.(*cmv1.Certificate); ok && c.Spec.SecretName == manifests.TLSSecretName {
			serving = c.DeepCopy()
		}
		if err := cmc.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	if serving == nil {
		t.Fatal("the overlay has no Certificate for " + manifests.TLSSecretName)
	}
	loop := serving.DeepCopy()
	loop.ObjectMeta = metav1.ObjectMeta{Name: loopbackCert, Namespace: manifests.Namespace}
	loop.Spec.SecretName = loopbackCert + "-tls"
	loop.Spec.IPAddresses = []string{"127.0.0.1"}
	if err := cmc.Create(ctx, loop); err != nil {
		t.Fatal(err)
	}
	mwc := manifests.Mutating("", nil)
	mwc.Annotations = map[string]string{manifests.InjectCAAnnotation: manifests.InjectCAFrom}
	mwcs := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := mwcs.Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cluster.Unregister(ctx) }()

	var secret *corev1.Secret
	if !t.Run("issues the overlay's serving certificate", func(t *testing.T) {
		for _, name := range []string{manifests.Name + "-ca", serving.Name, loopbackCert} {
			waitCertReady(t, cmc, name)
		}
		secret = getSecret(t, manifests.TLSSecretName)
		leaf, pool := parseTLSSecret(t, secret)
		if !equalSets(leaf.DNSNames, serving.Spec.DNSNames) {
			t.Errorf("DNS names %v, want %v", leaf.DNSNames, serving.Spec.DNSNames)
		}
		for _, name := range serving.Spec.DNSNames {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("not a serving certificate for %s under the Secret's CA: %v", name, err)
			}
		}
		if _, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]); err != nil {
			t.Errorf("tls.crt and tls.key are not a pair: %v", err)
		}
	}) {
		return
	}

	var caBundle []byte
	if !t.Run("injects the CA into the webhook configuration", func(t *testing.T) {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			got, err := mwcs.Get(ctx, manifests.MutatingName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if b := got.Webhooks[0].ClientConfig.CABundle; len(b) > 0 {
				caBundle = b
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !bytes.Equal(caBundle, secret.Data["ca.crt"]) {
			t.Fatalf("caBundle %q, want the serving Secret's ca.crt %q", caBundle, secret.Data["ca.crt"])
		}
	}) {
		return
	}

	// The webhook mounts the loopback Certificate's Secret as a pod mounts its Secret.
	certDir, err := os.MkdirTemp(cluster.Dir, "cert-manager-certs-")
	if err != nil {
		t.Fatal(err)
	}
	loopSecret := getSecret(t, loop.Spec.SecretName)
	if err := env.WriteSecretVolume(certDir, loopSecret.Data); err != nil {
		t.Fatal(err)
	}
	setConfig(t, map[string]string{admit.KeyAutoLabel: "false"})
	served, err := cluster.StartWebhookWithCerts(certDir, caBundle)
	if err != nil {
		t.Fatal(err)
	}
	defer served.Stop()
	t.Cleanup(func() {
		if t.Failed() {
			logs := served.Logs()
			t.Logf("webhook log (last 4000 bytes):\n%s", logs[max(0, len(logs)-4000):])
		}
	})

	if !t.Run("the apiserver calls the webhook with the issued certificate", func(t *testing.T) {
		if got := servedCert(t, served.URL, caBundle); !got.Equal(leafOf(t, loopSecret)) {
			t.Fatalf("the webhook serves serial %v, not the loopback Secret's", got.SerialNumber)
		}
		// Point the overlay's configuration at the process, keeping the injected caBundle:
		// the apiserver verifies the webhook against what cainjector put there.
		got, err := mwcs.Get(ctx, manifests.MutatingName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got.Webhooks[0].ClientConfig.Service = nil
		got.Webhooks[0].ClientConfig.URL = manifests.ClientConfig(review.PathMutate, served.URL, nil).URL
		if _, err := mwcs.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // the apiserver's webhook informer sees the change
		before := servedRequests(t, served)
		cs, w := client(t, cluster.Admin)
		if _, err := cs.CoreV1().Nodes().Create(ctx, node("cm-p4d", map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge", loadLabel: "true"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(w.all(), "kubectl label node cm-p4d "+admit.DefaultLabelKey+"=a100") {
			t.Errorf("warnings: %q", w.all())
		}
		if after := servedRequests(t, served); after <= before {
			t.Errorf("the webhook served %v requests before the create and %v after", before, after)
		}
	}) {
		return
	}

	t.Run("renewal under load fails no admission call", func(t *testing.T) {
		renewUnderLoad(t, cmc, served, certDir, caBundle, loopSecret)
	})

	// The Helm chart's default mode, installed as a user would, gets the same: its
	// Certificates issued and its CA injected into the configuration it registers.
	t.Run("the chart in cert-manager mode is issued and injected", func(t *testing.T) {
		h := newHelm(t)
		makeRoomForChart(t)
		const ns, release = "helm-cert-manager", "glw-cm"
		h.helm(t, "install", release, h.chart, "--namespace", ns, "--create-namespace")
		defer func() {
			if out, err := h.run(t, h.bin, "uninstall", release, "--namespace", ns); err != nil {
				t.Errorf("helm uninstall: %v\n%s", err, out)
			}
			// No garbage collector here: what the Certificates made stays unless deleted.
			if err := cmc.DeleteAllOf(ctx, &cmv1.CertificateRequest{}, crclient.InNamespace(ns)); err != nil {
				t.Error(err)
			}
		}()
		for _, name := range []string{manifests.Name + "-ca", manifests.Name + "-serving"} {
			waitCertReadyIn(t, cmc, ns, name)
		}
		secret, err := cluster.Client.CoreV1().Secrets(ns).Get(ctx, manifests.TLSSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			got, err := mwcs.Get(ctx, manifests.MutatingName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, secret.Data["ca.crt"]) && len(secret.Data["ca.crt"]) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("caBundle %d bytes, not the chart's CA after a minute", len(got.Webhooks[0].ClientConfig.CABundle))
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// renewUnderLoad creates GPU nodes without pause from two clients while cert-manager renews
// the webhook's certificate and the new Secret reaches the webhook's folder; every create
// must carry the webhook's warning, and the apiserver must count no failed webhook call.
func renewUnderLoad(t *testing.T, cmc crclient.Client, served *env.Webhook, certDir string, caBundle []byte, old *corev1.Secret) {
	ctx := context.Background()
	failOpenBefore := apiserverMetric(t, "apiserver_admission_webhook_fail_open_count")
	rejectedBefore := apiserverMetric(t, "apiserver_admission_webhook_rejection_count")

	stop := make(chan struct{})
	var creates, failures atomic.Int64
	var mu sync.Mutex
	var problems []string
	var wg sync.WaitGroup
	for worker := range 2 {
		cfg := rest.CopyConfig(cluster.Admin)
		cfg.QPS, cfg.Burst = 200, 200 // client-side throttling would hide the load
		cs, w := client(t, cfg)
		wg.Go(func() {
			// Bounded: at most 60s or 3000 nodes per client, whatever the renewal does.
			deadline := time.Now().Add(time.Minute)
			for i := 0; i < 3000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("cm-load-%d-%d", worker, i)
				_, err := cs.CoreV1().Nodes().Create(ctx, node(name, map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge", loadLabel: "true"}), metav1.CreateOptions{})
				creates.Add(1)
				warned := strings.Contains(strings.Join(w.Take(), "\n"), "kubectl label node "+name+" ")
				if err != nil || !warned {
					failures.Add(1)
					mu.Lock()
					problems = append(problems, fmt.Sprintf("%s: err %v, warned %v", name, err, warned))
					mu.Unlock()
				}
			}
		})
	}

	// What `cmctl renew` does: mark the Certificate Issuing, with the reason it uses.
	time.Sleep(time.Second) // load before the renewal
	crt := &cmv1.Certificate{}
	if err := cmc.Get(ctx, crclient.ObjectKey{Namespace: manifests.Namespace, Name: loopbackCert}, crt); err != nil {
		t.Fatal(err)
	}
	revision := *crt.Status.Revision
	now := metav1.Now()
	crt.Status.Conditions = append(crt.Status.Conditions, cmv1.CertificateCondition{
		Type: cmv1.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, LastTransitionTime: &now,
		Reason: "ManuallyTriggered", Message: "renewal triggered by the e2e test", ObservedGeneration: crt.Generation,
	})
	renewStart := time.Now()
	if err := cmc.Status().Update(ctx, crt); err != nil {
		t.Fatal(err)
	}

	var renewed *corev1.Secret
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && renewed == nil {
		if err := cmc.Get(ctx, crclient.ObjectKeyFromObject(crt), crt); err != nil {
			t.Fatal(err)
		}
		if crt.Status.Revision != nil && *crt.Status.Revision > revision && certReady(crt) {
			s := getSecret(t, old.Name)
			if !bytes.Equal(s.Data[corev1.TLSCertKey], old.Data[corev1.TLSCertKey]) {
				renewed = s
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if renewed == nil {
		close(stop)
		wg.Wait()
		t.Fatalf("not renewed within a minute: revision %v, conditions %+v", crt.Status.Revision, crt.Status.Conditions)
	}
	issued := time.Since(renewStart)
	if bytes.Equal(renewed.Data[corev1.TLSPrivateKeyKey], old.Data[corev1.TLSPrivateKeyKey]) {
		t.Error("the renewal kept the private key; the overlay's rotationPolicy is Always")
	}

	// The kubelet would now update the mounted Secret; the webhook's watcher must pick it up.
	if err := env.WriteSecretVolume(certDir, renewed.Data); err != nil {
		t.Fatal(err)
	}
	want := leafOf(t, renewed)
	var switched time.Duration
	copied := time.Now()
	for time.Since(copied) < 30*time.Second {
		if servedCert(t, served.URL, caBundle).Equal(want) {
			switched = time.Since(copied)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // load after the switch, on the new certificate
	close(stop)
	wg.Wait()
	if switched == 0 {
		t.Errorf("the webhook still serves the old certificate 30s after the new one was written")
	}
	t.Logf("renewed in %v, served %v after the files changed; %d creates during the rotation, %d failed",
		issued.Round(time.Millisecond), switched.Round(time.Millisecond), creates.Load(), failures.Load())
	if creates.Load() < 20 {
		t.Errorf("only %d creates ran during the rotation: no load to speak of", creates.Load())
	}
	if failures.Load() > 0 {
		t.Errorf("%d of %d creates failed or came back without the webhook's warning: %v", failures.Load(), creates.Load(), problems[:min(len(problems), 10)])
	}
	freshConnection(t, served)
	if d := apiserverMetric(t, "apiserver_admission_webhook_fail_open_count") - failOpenBefore; d != 0 {
		t.Errorf("the apiserver failed open on %v webhook calls", d)
	}
	if d := apiserverMetric(t, "apiserver_admission_webhook_rejection_count") - rejectedBefore; d != 0 {
		t.Errorf("the apiserver counted %v webhook rejections or errors", d)
	}
}

// freshConnection makes the apiserver dial the webhook anew after the renewal: the load's
// connections may predate it, but a webhook configuration the apiserver has not seen gets a
// client of its own. It is the audit overlay's configuration, whose caBundle cainjector
// fills; the call succeeds only if the renewed certificate verifies under the injected CA.
func freshConnection(t *testing.T, served *env.Webhook) {
	ctx := context.Background()
	vwcs := cluster.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	audit := manifests.Audit(served.URL, nil)
	audit.Annotations = map[string]string{manifests.InjectCAAnnotation: manifests.InjectCAFrom}
	if _, err := vwcs.Create(ctx, audit, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		got, err := vwcs.Get(ctx, manifests.AuditName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Webhooks[0].ClientConfig.CABundle) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // the apiserver's webhook informer sees it
	validate := func() float64 {
		v, err := served.Metric(`gpu_label_webhook_requests_total{endpoint="validate"`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := validate()
	cs, _ := client(t, cluster.Admin)
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("cm-after-renewal", map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge", loadLabel: "true"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if validate() <= before {
		t.Error("the apiserver did not call the webhook on a new connection after the renewal")
	}
}

// cleanupCertManager removes what the test made, so later tests see the cluster they expect.
func cleanupCertManager(t *testing.T, cmc crclient.Client) {
	ctx := context.Background()
	if err := cluster.Client.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: loadLabel}); err != nil {
		t.Error(err)
	}
	for _, o := range append(manifests.CertManager(), &cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: loopbackCert, Namespace: manifests.Namespace}}) {
		if err := cmc.Delete(ctx, o.(crclient.Object)); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
	for _, s := range []string{manifests.Name + "-ca", manifests.TLSSecretName, loopbackCert + "-tls"} {
		if err := cluster.Client.CoreV1().Secrets(manifests.Namespace).Delete(ctx, s, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
	// This control plane runs no garbage collector, so what the Certificates own stays: their
	// CertificateRequests (a Certificate of the same name would collide with revision 1) and
	// any next private key.
	if err := cmc.DeleteAllOf(ctx, &cmv1.CertificateRequest{}, crclient.InNamespace(manifests.Namespace)); err != nil {
		t.Error(err)
	}
	if err := cluster.Client.CoreV1().Secrets(manifests.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "cert-manager.io/next-private-key"}); err != nil {
		t.Error(err)
	}
}

func certReady(c *cmv1.Certificate) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == cmv1.CertificateConditionReady {
			return cond.Status == cmmeta.ConditionTrue && cond.ObservedGeneration == c.Generation
		}
	}
	return false
}

func waitCertReady(t *testing.T, cmc crclient.Client, name string) {
	t.Helper()
	waitCertReadyIn(t, cmc, manifests.Namespace, name)
}

func waitCertReadyIn(t *testing.T, cmc crclient.Client, namespace, name string) {
	t.Helper()
	c := &cmv1.Certificate{}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if err := cmc.Get(context.Background(), crclient.ObjectKey{Namespace: namespace, Name: name}, c); err != nil {
			t.Fatal(err)
		}
		if certReady(c) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("Certificate %s not Ready within a minute: %+v", name, c.Status.Conditions)
}

func getSecret(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	s, err := cluster.Client.CoreV1().Secrets(manifests.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// parseTLSSecret returns a cert-manager Secret's leaf and a pool of its ca.crt.
func parseTLSSecret(t *testing.T, s *corev1.Secret) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatalf("Secret %s: no CA in ca.crt", s.Name)
	}
	return leafOf(t, s), pool
}

func leafOf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(s.Data[corev1.TLSCertKey])
	if block == nil {
		t.Fatalf("Secret %s: no certificate in tls.crt", s.Name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// servedCert is the certificate the webhook presents, verified as the apiserver verifies it:
// against caBundle, for the address it dials.
func servedCert(t *testing.T, url string, caBundle []byte) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caBundle)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("the webhook's certificate does not verify under the injected CA: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func servedRequests(t *testing.T, w *env.Webhook) float64 {
	t.Helper()
	v, err := w.Metric("gpu_label_webhook_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			return false
		}
	}
	return true
}
