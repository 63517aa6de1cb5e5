package review

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/configsrc"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

type recordedEvents struct {
	mu  sync.Mutex
	got []string
}

func (r *recordedEvents) Emit(node string, f admit.Finding) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, node+":"+string(f.Reason))
}

// serve starts the two webhooks over HTTPS, as the server mounts them.
func serve(t *testing.T, cfg map[string]string) (*httptest.Server, *recordedEvents) {
	t.Helper()
	store := &configsrc.Store{}
	store.Set(mustConfig(t, cfg))
	ev := &recordedEvents{}
	mux := http.NewServeMux()
	mux.Handle(PathMutate, &HTTPHandler{Handler: &Handler{Config: store, Mutate: true, Events: ev}, Endpoint: "mutate"})
	mux.Handle(PathValidate, &HTTPHandler{Handler: &Handler{Config: store, Events: ev}, Endpoint: "validate"})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv, ev
}

func post(t *testing.T, srv *httptest.Server, path string, body []byte) (*http.Response, admissionv1.AdmissionReview) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var review admissionv1.AdmissionReview
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &review); err != nil {
			t.Fatalf("response is not a review: %v: %s", err, raw)
		}
		if review.Response == nil || !review.Response.Allowed {
			t.Fatalf("response does not allow: %s", raw)
		}
	}
	return resp, review
}

// applied applies the response's patch to the node the request carried.
func applied(t *testing.T, node *corev1.Node, resp *admissionv1.AdmissionResponse) *corev1.Node {
	t.Helper()
	raw, _ := json.Marshal(node)
	if resp.Patch != nil {
		if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("patch type %v", resp.PatchType)
		}
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		if raw, err = p.Apply(raw); err != nil {
			t.Fatalf("patch does not apply: %v: %s", err, resp.Patch)
		}
	}
	var out corev1.Node
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestHandlerOverHTTPS(t *testing.T) {
	kubelet := "system:node:ip-10-0-12-34.ec2.internal"
	bare := testnode.Bare("bare", nil)
	bare.Labels = nil
	bare.Status.Capacity = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}
	bare.Labels = map[string]string{}
	noLabels := testnode.Bare("no-labels", nil)
	noLabels.Status.Capacity = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}
	noLabels.Labels = nil
	gfd := testnode.Bare("gfd", map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})

	p4d := testnode.Realistic("ip-10-0-12-34.ec2.internal", "p4d.24xlarge", 0)
	p4dStatus := testnode.Realistic("ip-10-0-12-34.ec2.internal", "p4d.24xlarge", 8)
	wrong := testnode.Realistic("wrong", "p4d.24xlarge", 8)
	wrong.Labels[admit.DefaultLabelKey] = "v100"
	cpu := testnode.Realistic("cpu", "m5.large", 0)

	tests := map[string]struct {
		cfg       map[string]string
		path      string
		body      []byte
		node      *corev1.Node
		wantLabel string // "" means the label must be absent
		warnings  bool
		events    []string
	}{
		"kubelet CREATE, default config: warned, not labeled, event": {
			path: PathMutate, body: testnode.Review("u1", admissionv1.Create, "", p4d, nil, kubelet, false), node: p4d,
			warnings: true, events: []string{p4d.Name + ":AcceleratorLabelMissing", p4d.Name + ":AcceleratorLabelMissing"},
		},
		"kubelet CREATE, opted in: labeled": {
			cfg: map[string]string{admit.KeyAutoLabel: "true"}, path: PathMutate, body: testnode.Review("u2", admissionv1.Create, "", p4d, nil, kubelet, false), node: p4d,
			wantLabel: "a100", events: []string{p4d.Name + ":AcceleratorLabeled"},
		},
		"kubelet status UPDATE, opted in: labeled": {
			cfg: map[string]string{admit.KeyAutoLabel: "true"}, path: PathMutate, body: testnode.Review("u3", admissionv1.Update, "status", p4dStatus, p4d, kubelet, false), node: p4dStatus,
			wantLabel: "a100", events: []string{p4dStatus.Name + ":AcceleratorLabeled"},
		},
		"node with empty labels map gets the key added": {
			cfg: map[string]string{admit.KeyAutoLabel: "true", admit.KeyInstanceTypes: "x: H100"}, path: PathMutate, body: testnode.Review("u4", admissionv1.Update, "status", withIT(bare, "x"), bare, kubelet, false), node: withIT(bare, "x"),
			wantLabel: "h100", events: []string{"bare:AcceleratorLabeled"},
		},
		"node with GPUs and no labels at all: model unknown, warned": {
			cfg: map[string]string{admit.KeyAutoLabel: "true"}, path: PathMutate, body: testnode.Review("u5", admissionv1.Create, "", noLabels, nil, kubelet, false), node: noLabels,
			warnings: true, events: []string{"no-labels:AcceleratorModelUnknown"},
		},
		"GFD label arriving on an UPDATE from kubectl": {
			cfg: map[string]string{admit.KeyAutoLabel: "true"}, path: PathMutate, body: testnode.Review("u6", admissionv1.Update, "", gfd, testnode.Bare("gfd", nil), "admin", false), node: gfd,
			wantLabel: "h100", events: []string{"gfd:AcceleratorLabeled"},
		},
		"dry-run: labeled in the response, no event": {
			cfg: map[string]string{admit.KeyAutoLabel: "true"}, path: PathMutate, body: testnode.Review("u7", admissionv1.Create, "", p4d, nil, "admin", true), node: p4d,
			wantLabel: "a100",
		},
		"audit endpoint never patches": {
			cfg: map[string]string{admit.KeyAutoLabel: "true", admit.KeyOverwrite: "true"}, path: PathValidate, body: testnode.Review("u8", admissionv1.Update, "", wrong, wrong, "admin", false), node: wrong,
			wantLabel: "v100", warnings: true, events: []string{"wrong:AcceleratorLabelMismatch"},
		},
		"wrong label corrected with overwrite": {
			cfg: map[string]string{admit.KeyAutoLabel: "true", admit.KeyOverwrite: "true"}, path: PathMutate, body: testnode.Review("u9", admissionv1.Update, "", wrong, wrong, "admin", false), node: wrong,
			wantLabel: "a100", events: []string{"wrong:AcceleratorLabeled"},
		},
		"events off": {
			cfg: map[string]string{admit.KeyEvents: "false"}, path: PathMutate, body: testnode.Review("u10", admissionv1.Create, "", p4d, nil, kubelet, false), node: p4d,
			warnings: true,
		},
		"CPU node: nothing at all": {
			cfg: map[string]string{admit.KeyAutoLabel: "true"}, path: PathMutate, body: testnode.Review("u11", admissionv1.Create, "", cpu, nil, kubelet, false), node: cpu,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, ev := serve(t, tc.cfg)
			resp, review := post(t, srv, tc.path, tc.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			var sent admissionv1.AdmissionReview
			_ = json.Unmarshal(tc.body, &sent)
			if review.Response.UID != sent.Request.UID {
				t.Errorf("uid %q, want %q", review.Response.UID, sent.Request.UID)
			}
			got := applied(t, tc.node, review.Response)
			if v, ok := got.Labels[admit.DefaultLabelKey]; v != tc.wantLabel || ok != (tc.wantLabel != "") {
				t.Errorf("label = %q (present %v), want %q", v, ok, tc.wantLabel)
			}
			for k, v := range tc.node.Labels {
				if k != admit.DefaultLabelKey && got.Labels[k] != v {
					t.Errorf("label %s changed", k)
				}
			}
			if (len(review.Response.Warnings) > 0) != tc.warnings {
				t.Errorf("warnings: %q", review.Response.Warnings)
			}
			if strings.Join(ev.got, ",") != strings.Join(tc.events, ",") {
				t.Errorf("events %v, want %v", ev.got, tc.events)
			}
		})
	}
}

func withIT(n *corev1.Node, it string) *corev1.Node {
	c := n.DeepCopy()
	c.Labels["node.kubernetes.io/instance-type"] = it
	return c
}

// A patch that creates metadata.labels applies to a node that has none.
func TestLabelPatchCreatesLabels(t *testing.T) {
	node := testnode.Bare("x", nil)
	node.Labels = nil
	resp := &admissionv1.AdmissionResponse{Patch: labelPatch(admit.DefaultLabelKey, "a100", false, false), PatchType: ptr.To(admissionv1.PatchTypeJSONPatch)}
	if got := applied(t, node, resp); got.Labels[admit.DefaultLabelKey] != "a100" {
		t.Errorf("labels %v", got.Labels)
	}
	if esc := escapeJSONPointer("a~b/c"); esc != "a~0b~1c" {
		t.Errorf("escape: %s", esc)
	}
}

// Every malformed request gets a clear answer: an HTTP 4xx error the apiserver ignores under
// failurePolicy: Ignore, or an allowing review with a warning. Never allowed: false.
func TestMalformedRequests(t *testing.T) {
	srv, _ := serve(t, map[string]string{admit.KeyAutoLabel: "true"})
	valid := string(testnode.Review("u1", admissionv1.Create, "", testnode.Realistic("n", "p4d.24xlarge", 8), nil, "admin", false))
	swap := func(old, new string) string { return strings.Replace(valid, old, new, 1) }
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	many := &strings.Builder{}
	many.WriteString(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"m","kind":{"version":"v1","kind":"Node"},"resource":{"version":"v1","resource":"nodes"},"operation":"CREATE","object":{"metadata":{"name":"n","labels":{`)
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(many, `"k%d":"v",`, i)
	}
	many.WriteString(`"node.kubernetes.io/instance-type":"p4d.24xlarge"}}}}}`)

	tests := map[string]struct {
		method, contentType, body string
		status                    int
		warning                   string
	}{
		"truncated JSON":              {body: valid[:len(valid)/2], status: 400},
		"empty body":                  {body: "", status: 400},
		"wrong method":                {method: http.MethodGet, status: 405},
		"wrong content type":          {contentType: "text/plain", status: 415},
		"body over the size limit":    {body: `{"x":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, status: 413},
		"review of another version":   {body: swap("admission.k8s.io/v1", "admission.k8s.io/v1beta1"), status: 400},
		"no request":                  {body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, status: 400},
		"no uid":                      {body: swap(`"uid":"u1"`, `"uid":""`), status: 400},
		"deeply nested JSON":          {body: deep, status: 400},
		"review of a Pod":             {body: swap(`"kind":"Node"`, `"kind":"Pod"`), status: 200, warning: "only reads Nodes"},
		"review of a ConfigMap":       {body: swap(`"resource":"nodes"`, `"resource":"configmaps"`), status: 200, warning: "only reads Nodes"},
		"object missing":              {body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"m","kind":{"version":"v1","kind":"Node"},"resource":{"version":"v1","resource":"nodes"},"operation":"CREATE"}}`, status: 200, warning: "no object"},
		"object that is not a node":   {body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"m","kind":{"version":"v1","kind":"Node"},"resource":{"version":"v1","resource":"nodes"},"operation":"CREATE","object":"just a string"}}`, status: 200, warning: "could not read the node"},
		"oldObject missing on UPDATE": {body: swap(`"operation":"CREATE"`, `"operation":"UPDATE"`), status: 200},
		"labels with invalid keys":    {body: swap(`"kubernetes.io/os":"linux"`, `"not a key!!":"not a value!!"`), status: 200},
		"10,000 labels":               {body: many.String(), status: 200},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			method, ct := tc.method, tc.contentType
			if method == "" {
				method = http.MethodPost
			}
			if ct == "" {
				ct = "application/json"
			}
			req, _ := http.NewRequest(method, srv.URL+PathMutate, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", ct)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			if tc.status != 200 {
				if len(bytes.TrimSpace(raw)) == 0 {
					t.Error("error without a message")
				}
				return
			}
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(raw, &review); err != nil || review.Response == nil || !review.Response.Allowed {
				t.Fatalf("not an allowing review: %s", raw)
			}
			if tc.warning != "" && !strings.Contains(strings.Join(review.Response.Warnings, "|"), tc.warning) {
				t.Errorf("warnings %q lack %q", review.Response.Warnings, tc.warning)
			}
		})
	}
}

// Handle serves callers that hold a decoded admission.Request (controller-runtime's own
// webhook server, for one): it decides exactly as the HTTP path does.
func TestHandleAsAdmissionHandler(t *testing.T) {
	store := &configsrc.Store{}
	store.Set(mustConfig(t, map[string]string{admit.KeyAutoLabel: "true"}))
	h := &Handler{Config: store, Mutate: true}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(testnode.Review("u", admissionv1.Create, "", testnode.Realistic("n", "p4d.24xlarge", 8), nil, "admin", false), &review); err != nil {
		t.Fatal(err)
	}
	resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: *review.Request})
	if !resp.Allowed || string(resp.Patch) != `[{"op":"add","path":"/metadata/labels/skypilot.co~1accelerator","value":"a100"}]` || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Errorf("response %+v", resp)
	}
	review.Request.Object.Raw = nil
	if resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: *review.Request}); !resp.Allowed || len(resp.Warnings) != 1 {
		t.Errorf("no object: %+v", resp)
	}
}

// The response review and the patch are written out by hand: they decode to exactly what was
// meant, whatever the strings hold.
func TestResponseEncoding(t *testing.T) {
	tricky := []string{"plain", `quote " and \ backslash`, "tab\tnewline\ncontrol\x01", "ünïcödé ✓", "</script>&"}
	for _, s := range tricky {
		out := appendReview(nil, types.UID(s), labelPatch("ex~ample.com/"+s, s, true, true), []string{s, "second"})
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(out, &review); err != nil {
			t.Fatalf("%q: %v: %s", s, err, out)
		}
		r := review.Response
		if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || string(r.UID) != s || !r.Allowed ||
			*r.PatchType != admissionv1.PatchTypeJSONPatch || len(r.Warnings) != 2 || r.Warnings[0] != s {
			t.Errorf("%q: %+v", s, review)
		}
		var ops []struct{ Op, Path, Value string }
		if err := json.Unmarshal(r.Patch, &ops); err != nil || len(ops) != 1 || ops[0].Op != "replace" ||
			ops[0].Path != "/metadata/labels/ex~0ample.com~1"+strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1") || ops[0].Value != s {
			t.Errorf("%q: patch %s", s, r.Patch)
		}
	}
	var bare admissionv1.AdmissionReview
	if err := json.Unmarshal(appendReview(nil, "u", nil, nil), &bare); err != nil || bare.Response.Patch != nil || bare.Response.Warnings != nil || !bare.Response.Allowed {
		t.Errorf("bare response: %+v %v", bare.Response, err)
	}
}

func mustConfig(t *testing.T, data map[string]string) *admit.Config {
	t.Helper()
	cfg, err := admit.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
