package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/configsrc"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

// naiveDefaulter is the idiomatic controller-runtime way to write the webhook, the baseline:
// a CustomDefaulter on *corev1.Node. controller-runtime decodes the whole Node, calls Default,
// marshals the result and diffs it against the request into a JSON patch.
type naiveDefaulter struct{ cfg *admit.Config }

var _ admission.CustomDefaulter = naiveDefaulter{}

func (d naiveDefaulter) Default(_ context.Context, obj runtime.Object) error {
	n := obj.(*corev1.Node)
	dec, _ := report.Decide(d.cfg, n, true)
	if dec.Action == admit.ActionLabel {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[d.cfg.LabelKey] = dec.Value
	}
	return nil
}

// handlers returns our handler and the baseline, both opted in to labeling.
func handlers() (ours, naive http.Handler) {
	cfg, err := admit.ParseConfig(map[string]string{admit.KeyAutoLabel: "true"})
	if err != nil {
		panic(err)
	}
	store := &configsrc.Store{}
	store.Set(cfg)
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return &review.HTTPHandler{Handler: &review.Handler{Config: store, Mutate: true}, Endpoint: "mutate"},
		admission.WithCustomDefaulter(scheme, &corev1.Node{}, naiveDefaulter{cfg})
}

// reviews are a realistic Node CREATE from a kubelet (~15 KB) and a status UPDATE carrying
// the object and the old object (~30 KB).
func reviews() (create, update []byte) {
	old := testnode.Realistic("ip-10-0-12-34.ec2.internal", "p4d.24xlarge", 0)
	cur := testnode.Realistic("ip-10-0-12-34.ec2.internal", "p4d.24xlarge", 8)
	create = testnode.Review("b1", admissionv1.Create, "", old, nil, "system:node:ip-10-0-12-34.ec2.internal", false)
	update = testnode.Review("b2", admissionv1.Update, "status", cur, old, "system:node:ip-10-0-12-34.ec2.internal", false)
	return create, update
}

// serve runs one review through a handler, as the HTTP server would.
func serve(h http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, review.PathMutate, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func benchHandler(h http.Handler, body []byte) testing.BenchmarkResult {
	return testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if rec := serve(h, body); rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}
