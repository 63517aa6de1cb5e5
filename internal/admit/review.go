package admit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// MaxBodyBytes bounds a review's size. The apiserver's own limit on an object is 3 MiB and a
// review of an UPDATE carries two of them.
const MaxBodyBytes = 7 << 20

// ReviewHandler serves the AdmissionReview protocol over HTTP for an admission.Handler.
//
// It stands in for controller-runtime's admission.Webhook.ServeHTTP, which answers a
// malformed review with HTTP 200 and allowed: false: on Nodes that would deny a kubelet's
// write. This one answers bad input with an HTTP 4xx error, which the apiserver treats as a
// webhook failure and, under failurePolicy: Ignore, lets the write through; and it never
// sends allowed: false.
type ReviewHandler struct {
	Handler  admission.Handler
	Endpoint string
	Metrics  *Metrics     // optional
	Log      *slog.Logger // optional
	MaxBytes int64        // 0 means MaxBodyBytes
}

func (rh *ReviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status, err := rh.serve(w, r)
	rh.Metrics.latency(rh.Endpoint, time.Since(start))
	if err != nil {
		rh.Metrics.request(rh.Endpoint, "", OutcomeError)
		if rh.Log != nil {
			rh.Log.Warn("bad admission request", "endpoint", rh.Endpoint, "status", status, "remote", r.RemoteAddr, "err", err)
		}
		http.Error(w, err.Error(), status)
	}
}

func (rh *ReviewHandler) serve(w http.ResponseWriter, r *http.Request) (int, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed: an AdmissionReview is sent with POST", r.Method)
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return http.StatusUnsupportedMediaType, fmt.Errorf("content type %q not supported: want application/json", r.Header.Get("Content-Type"))
	}
	limit := rh.MaxBytes
	if limit <= 0 {
		limit = MaxBodyBytes
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", limit)
		}
		return http.StatusBadRequest, fmt.Errorf("reading request body: %w", err)
	}
	req, err := decodeReview(body)
	if err != nil {
		return http.StatusBadRequest, err
	}
	resp := rh.Handler.Handle(r.Context(), admission.Request{AdmissionRequest: *req})
	resp.Allowed = true // whatever a handler says, a Node write is never denied
	resp.Result = nil
	if err := resp.Complete(admission.Request{AdmissionRequest: *req}); err != nil {
		// The patch could not be encoded: allow unchanged rather than fail.
		resp = admission.Allowed("")
		resp.UID = req.UID
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: reviewGVK.GroupVersion().String(), Kind: reviewGVK.Kind},
		Response: &resp.AdmissionResponse,
	})
	if err != nil {
		return http.StatusInternalServerError, fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return http.StatusOK, nil
}

var reviewGVK = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")

// decodeReview reads an admission.k8s.io/v1 AdmissionReview and checks it carries a request.
func decodeReview(body []byte) (*admissionv1.AdmissionRequest, error) {
	if len(body) == 0 {
		return nil, errors.New("empty body: want an admission.k8s.io/v1 AdmissionReview")
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("malformed AdmissionReview: %w", err)
	}
	if gvk := review.GroupVersionKind(); gvk != reviewGVK {
		return nil, fmt.Errorf("unsupported review %q %q: want apiVersion admission.k8s.io/v1, kind AdmissionReview", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("AdmissionReview request has no uid")
	}
	return review.Request, nil
}
