package review

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/configsrc"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

// FuzzReview sends arbitrary bodies to both endpoints: the server never panics, answers every
// request, and never says allowed: false.
func FuzzReview(f *testing.F) {
	f.Add(testnode.Review("u", admissionv1.Create, "", testnode.Realistic("n", "p4d.24xlarge", 8), nil, "admin", false))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Node"},"resource":{"resource":"nodes"},"operation":"UPDATE","object":{"metadata":{"labels":{"skypilot.co/accelerator":"A100"}},"status":{"capacity":{"nvidia.com/gpu":"1e9"}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":[]}}`))
	f.Add([]byte(`null`))
	store := &configsrc.Store{}
	cfg, _ := admit.ParseConfig(map[string]string{admit.KeyAutoLabel: "true", admit.KeyOverwrite: "true"})
	store.Set(cfg)
	handlers := []http.Handler{
		&HTTPHandler{Handler: &Handler{Config: store, Mutate: true}},
		&HTTPHandler{Handler: &Handler{Config: store}},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range handlers {
			req := httptest.NewRequest(http.MethodPost, PathMutate, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK:
				var review admissionv1.AdmissionReview
				if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil || review.Response == nil {
					t.Fatalf("200 without a review: %s", rec.Body.Bytes())
				}
				if !review.Response.Allowed {
					t.Fatalf("denied: %s", rec.Body.Bytes())
				}
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
				if rec.Body.Len() == 0 {
					t.Fatal("error without a message")
				}
			default:
				t.Fatalf("status %d", rec.Code)
			}
		}
	})
}
