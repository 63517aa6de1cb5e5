package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

// webhookState is what check found of the webhook's install: the lines it prints, and the
// problems that keep new nodes from being labeled or warned about (fatal under
// --require-webhook).
type webhookState struct {
	lines    []string
	problems []string
}

func (w *webhookState) say(line string)  { w.lines = append(w.lines, line) }
func (w *webhookState) fail(line string) { w.say(line); w.problems = append(w.problems, line) }

func (w *webhookState) String() string { return "Webhook: " + strings.Join(w.lines, "; ") }

// target is one webhook configuration's client config, as the apiserver calls it.
type target struct {
	name    string
	config  admissionregistrationv1.WebhookClientConfig
	timeout time.Duration
}

// inspectWebhook says whether new nodes would be labeled: the webhook configurations exist,
// carry a CA bundle, and what they point at is there (the Service has ready endpoints); with
// probe, each endpoint answers a review over TLS the CA bundle verifies.
func inspectWebhook(ctx context.Context, cs kubernetes.Interface, probe bool) *webhookState {
	w := &webhookState{}
	reg := cs.AdmissionregistrationV1()
	var targets []target
	timeout := func(s *int32) time.Duration { return time.Duration(ptr.Deref(s, 10)) * time.Second }
	m, mErr := reg.MutatingWebhookConfigurations().Get(ctx, manifests.MutatingName, metav1.GetOptions{})
	if mErr == nil && len(m.Webhooks) > 0 {
		targets = append(targets, target{"mutating", m.Webhooks[0].ClientConfig, timeout(m.Webhooks[0].TimeoutSeconds)})
	}
	v, vErr := reg.ValidatingWebhookConfigurations().Get(ctx, manifests.AuditName, metav1.GetOptions{})
	if vErr == nil && len(v.Webhooks) > 0 {
		targets = append(targets, target{"audit", v.Webhooks[0].ClientConfig, timeout(v.Webhooks[0].TimeoutSeconds)})
	}
	switch {
	case len(targets) == 0:
		w.fail("mutating webhook not installed (" + reason(mErr) + "): new nodes are neither labeled nor warned about")
	case targets[0].name == "audit":
		w.say("mutating webhook not installed (" + reason(mErr) + ")")
	}
	for _, t := range targets {
		if len(t.config.CABundle) > 0 {
			w.say(t.name + " webhook installed, caBundle set")
		} else {
			w.fail(t.name + " webhook installed, caBundle EMPTY (the apiserver cannot verify it)")
		}
	}
	seen := map[string]bool{}
	for _, t := range targets {
		switch c := t.config; {
		case c.URL != nil:
			if seen[*c.URL] {
				continue
			}
			seen[*c.URL] = true
			w.say("calls " + *c.URL)
			if probe {
				u, err := url.Parse(*c.URL)
				if err != nil {
					w.fail(fmt.Sprintf("its URL %q: %v", *c.URL, err))
					continue
				}
				w.probed(ctx, []string{*c.URL}, u.Hostname(), t)
			}
		case c.Service != nil:
			key := c.Service.Namespace + "/" + c.Service.Name
			if seen[key] {
				continue
			}
			seen[key] = true
			w.serviceEndpoints(ctx, cs, t, probe)
		}
	}
	return w
}

// serviceEndpoints counts the Service's ready endpoints and, with probe, calls each one at
// the webhook's port, by the Service's DNS name as the serving certificate names it.
func (w *webhookState) serviceEndpoints(ctx context.Context, cs kubernetes.Interface, t target, probe bool) {
	svc := t.config.Service
	slices, err := cs.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc.Name})
	if err != nil {
		w.fail(fmt.Sprintf("service %s/%s endpoints unknown (%s)", svc.Namespace, svc.Name, reason(err)))
		return
	}
	var urls []string
	for _, s := range slices.Items {
		// The Service's port the configuration names is the one called https in the manifests.
		var port int32
		for _, p := range s.Ports {
			if p.Port != nil && (ptr.Deref(p.Name, "") == "https" || len(s.Ports) == 1) {
				port = *p.Port
			}
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
				urls = append(urls, "https://"+net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port)))+ptr.Deref(svc.Path, "/"))
			}
		}
	}
	if len(urls) == 0 {
		w.fail(fmt.Sprintf("service %s/%s has NO ready endpoints: the apiserver skips the webhook (failurePolicy: Ignore)", svc.Namespace, svc.Name))
		return
	}
	w.say(fmt.Sprintf("service %s/%s has %d ready endpoints", svc.Namespace, svc.Name, len(urls)))
	if probe {
		w.probed(ctx, urls, svc.Name+"."+svc.Namespace+".svc", t)
	}
}

// probed probes each URL and says how many answered.
func (w *webhookState) probed(ctx context.Context, urls []string, serverName string, t target) {
	answered := 0
	var notes []string
	for _, u := range urls {
		note, err := probeWebhook(ctx, u, serverName, t.config.CABundle, t.timeout)
		if err != nil {
			w.fail(fmt.Sprintf("%s does not answer a review: %v", u, err))
			continue
		}
		answered++
		if note != "" {
			notes = append(notes, note)
		}
	}
	if answered > 0 {
		line := fmt.Sprintf("%d of %d answered a dry-run review over TLS verified by the caBundle", answered, len(urls))
		if len(notes) > 0 {
			line += " (" + notes[0] + ")"
		}
		w.say(line)
	}
}

// probeNode is what a probe asks about: a node no rule labels or warns about.
const probeNode = manifests.Name + "-check-probe"

// probeWebhook sends a dry-run review of a CPU node to url, as the apiserver would: over TLS
// with the configuration's CA bundle for serverName. A webhook that asks for the apiserver's
// client certificate has shown its own certificate by then; that is noted, not failed.
func probeWebhook(ctx context.Context, url, serverName string, caBundle []byte, timeout time.Duration) (note string, err error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		return "", errors.New("the caBundle holds no certificate")
	}
	node, _ := json.Marshal(&corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: probeNode}})
	uid := uuid.NewUUID()
	body, _ := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: uid, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Node"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "nodes"},
			Name: probeNode, Operation: admissionv1.Create, DryRun: ptr.To(true), Object: runtime.RawExtension{Raw: node},
		},
	})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	// The handshake says whether the server asks for a client certificate; check has none to give.
	var asked atomic.Bool
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked.Store(true)
			return &tls.Certificate{}, nil
		}}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if asked.Load() {
			return "it asks for a client certificate, so no review was sent", nil
		}
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("not an AdmissionReview: %w", err)
	}
	if out.Response == nil || out.Response.UID != uid || !out.Response.Allowed {
		return "", fmt.Errorf("a wrong answer: %+v", out.Response)
	}
	return "", nil
}

func reason(err error) string {
	switch {
	case err == nil:
		return "no webhooks in it"
	case apierrors.IsNotFound(err):
		return "not found"
	case apierrors.IsForbidden(err):
		return "no permission to read"
	}
	return err.Error()
}
