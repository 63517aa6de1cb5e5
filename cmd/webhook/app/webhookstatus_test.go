package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/component-helpers/auth/rbac/validation"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/certs"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

const checkNS = "glw"

// fakeWebhook serves reviews with a certificate for the Service's DNS name, as an installed
// webhook does; answer writes each response.
func fakeWebhook(t *testing.T, ca *certs.Pair, clientCA bool, answer func(w http.ResponseWriter, r *admissionv1.AdmissionReview)) int32 {
	t.Helper()
	serving, err := ca.Serving([]string{manifests.Name + "." + checkNS + ".svc"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serving.CertPEM(), serving.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		answer(w, &review)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	if clientCA {
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return int32(n)
}

func newCA(t *testing.T) *certs.Pair {
	t.Helper()
	ca, err := certs.NewCA("test-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func allow(w http.ResponseWriter, r *admissionv1.AdmissionReview) {
	_ = json.NewEncoder(w).Encode(&admissionv1.AdmissionReview{TypeMeta: r.TypeMeta, Response: &admissionv1.AdmissionResponse{UID: r.Request.UID, Allowed: true}})
}

// installed is a cluster holding the webhook's install: its configuration pointing at the
// Service, the ConfigMap, a GPU node, and an EndpointSlice of ready endpoints at port.
func installed(caBundle []byte, port int32, ready ...bool) []runtime.Object {
	mwc := manifests.Mutating("", caBundle)
	mwc.Webhooks[0].ClientConfig.Service.Namespace = checkNS
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: manifests.Name + "-abc", Namespace: checkNS, Labels: map[string]string{discoveryv1.LabelServiceName: manifests.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("metrics"), Port: ptr.To(int32(1))}, {Name: ptr.To("https"), Port: ptr.To(port)}},
	}
	for _, r := range ready {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)}})
	}
	return []runtime.Object{
		mwc, slice,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: admit.DefaultConfigName, Namespace: checkNS}, Data: map[string]string{admit.KeyAutoLabel: "true"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gpu-1", Labels: map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge"}}},
	}
}

func runCheck(t *testing.T, cs *fake.Clientset, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd := NewRootCommand(streams{out: &out, err: &out, name: DefaultName, kube: cs})
	cmd.SetArgs(append([]string{"check", "-n", checkNS}, args...))
	cmd.SetOut(&out)
	code := ExitOK
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		code = err.(*exitError).code
		out.WriteString(err.Error())
	}
	return out.String(), code
}

func TestCheckRequireWebhook(t *testing.T) {
	authority := newCA(t)
	ca := authority.CertPEM()
	port := fakeWebhook(t, authority, false, allow)
	wrongUID := func(w http.ResponseWriter, r *admissionv1.AdmissionReview) {
		r.Request.UID = "someone-else"
		allow(w, r)
	}
	wrongPort := fakeWebhook(t, authority, false, wrongUID)
	mTLSPort := fakeWebhook(t, authority, true, allow)
	otherCA := newCA(t).CertPEM()
	closed := func() int32 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return int32(l.Addr().(*net.TCPAddr).Port)
	}()
	tests := map[string]struct {
		objects []runtime.Object
		code    int
		says    string
	}{
		"installed, ready and answering":                   {installed(ca, port, true, true), ExitOK, "2 of 2 answered a dry-run review"},
		"not installed":                                    {installed(ca, port, true)[1:], ExitNoWebhook, "mutating webhook not installed (not found)"},
		"an empty caBundle":                                {installed(nil, port, true), ExitNoWebhook, "caBundle EMPTY"},
		"no ready endpoints":                               {installed(ca, port, false), ExitNoWebhook, "has NO ready endpoints"},
		"an endpoint nothing listens on":                   {installed(ca, closed, true), ExitNoWebhook, "does not answer a review"},
		"an answer for another request":                    {installed(ca, wrongPort, true), ExitNoWebhook, "a wrong answer"},
		"a certificate the caBundle does not verify":       {installed(otherCA, port, true), ExitNoWebhook, "certificate signed by unknown authority"},
		"a webhook asking for the apiserver's client cert": {installed(ca, mTLSPort, true), ExitOK, "asks for a client certificate"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, code := runCheck(t, fake.NewClientset(tc.objects...), "--require-webhook", "--probe")
			if code != tc.code || !strings.Contains(out, tc.says) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s", code, tc.code, tc.says, out)
			}
		})
	}
	t.Run("without --require-webhook the same problems exit 0", func(t *testing.T) {
		if out, code := runCheck(t, fake.NewClientset(installed(ca, port, false)...), "--probe"); code != ExitOK {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
}

// The helm test's ServiceAccount holds exactly what check reads: every API call check makes
// is allowed by its rules, and every rule is used by a call.
func TestCheckAccessIsWhatCheckReads(t *testing.T) {
	authority := newCA(t)
	ca := authority.CertPEM()
	objs := installed(ca, fakeWebhook(t, authority, false, allow), true)
	audit := manifests.Audit("", ca)
	audit.Webhooks[0].ClientConfig.Service.Namespace = checkNS
	cs := fake.NewClientset(append(objs, audit)...)
	args := manifests.CheckArgs[1:]
	for i, a := range args {
		if strings.HasPrefix(a, "--namespace=") {
			args[i] = "--namespace=" + checkNS
		}
	}
	if out, code := runCheck(t, cs, args...); code != ExitOK {
		t.Fatalf("check %v: exit %d\n%s", args, code, out)
	}
	var cluster, namespaced []rbacv1.PolicyRule
	for _, a := range cs.Actions() {
		r := rbacv1.PolicyRule{APIGroups: []string{a.GetResource().Group}, Resources: []string{a.GetResource().Resource}, Verbs: []string{a.GetVerb()}}
		if g, ok := a.(clienttesting.GetAction); ok {
			r.ResourceNames = []string{g.GetName()}
		}
		switch a.GetNamespace() {
		case "":
			cluster = append(cluster, r)
		case checkNS:
			namespaced = append(namespaced, r)
		default:
			t.Errorf("check read %s in %s", a.GetResource().Resource, a.GetNamespace())
		}
	}
	for scope, c := range map[string]struct{ granted, used []rbacv1.PolicyRule }{
		"cluster-wide":               {manifests.CheckClusterRules(), cluster},
		"in the webhook's namespace": {manifests.CheckNamespaceRules(), namespaced},
	} {
		if ok, missing := validation.Covers(c.granted, c.used); !ok {
			t.Errorf("%s, check needs more than the test's ServiceAccount has: %v", scope, missing)
		}
		if ok, unused := validation.Covers(c.used, c.granted); !ok {
			t.Errorf("%s, the test's ServiceAccount has more than check reads: %v", scope, unused)
		}
	}
}
