// Package review is the webhook's wire: it reads AdmissionReviews of Nodes over HTTP, asks
// admit for the decision, and writes the response, the warnings, the label patch, the Events
// and the metrics that go with it. It never denies a write.
package review

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// MaxBodyBytes bounds a review's size. The apiserver's own limit on an object is 3 MiB and a
// review of an UPDATE carries two of them.
const MaxBodyBytes = 7 << 20

// HTTPHandler serves the AdmissionReview protocol over HTTP for an admission.Handler.
//
// It stands in for controller-runtime's admission.Webhook.ServeHTTP, which answers a
// malformed review with HTTP 200 and allowed: false: on Nodes that would deny a kubelet's
// write. This one answers bad input with an HTTP 4xx error, which the apiserver treats as a
// webhook failure and, under failurePolicy: Ignore, lets the write through; and it never
// sends allowed: false.
type HTTPHandler struct {
	Handler  *Handler
	Endpoint string
	Metrics  *metrics.Metrics // optional
	Log      *slog.Logger     // optional
	MaxBytes int64            // 0 means MaxBodyBytes
}

func (rh *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status, err := rh.serve(w, r)
	rh.Metrics.ObserveLatency(rh.Endpoint, time.Since(start))
	if err != nil {
		rh.Metrics.Request(rh.Endpoint, "", OutcomeError)
		if rh.Log != nil {
			rh.Log.Warn("bad admission request", "endpoint", rh.Endpoint, "status", status, "remote", r.RemoteAddr, "err", err)
		}
		http.Error(w, err.Error(), status)
	}
}

func (rh *HTTPHandler) serve(w http.ResponseWriter, r *http.Request) (int, error) {
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
	buf := bodyPool.Get().(*[]byte)
	body, err := readBody(w, r, limit, (*buf)[:0])
	if cap(body) <= maxPooledBody {
		*buf = body[:0]
		defer bodyPool.Put(buf)
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", limit)
		}
		return http.StatusBadRequest, fmt.Errorf("reading request body: %w", err)
	}
	var review reviewIn
	if err := decodeReview(body, &review); err != nil {
		return http.StatusBadRequest, err
	}
	req := review.Request
	resp, _ := rh.Handler.review(&req.reviewRequest, &req.Object.node, req.Object.err)
	out := appendReview(make([]byte, 0, 512), req.UID, resp.Patch, resp.Warnings)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return http.StatusOK, nil
}

var reviewAPIVersion = admissionv1.SchemeGroupVersion.String()

// appendReview writes the response review. It always allows, whatever a handler said: a Node
// write is never denied. The shape is small and fixed, so it is written out directly; strings
// are quoted by the JSON encoder's own quoting.
func appendReview(b []byte, uid types.UID, patch []byte, warnings []string) []byte {
	b = append(b, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":`...)
	b, _ = jsontext.AppendQuote(b, string(uid))
	b = append(b, `,"allowed":true`...)
	if len(patch) > 0 {
		b = append(b, `,"patchType":"JSONPatch","patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, patch)
		b = append(b, '"')
	}
	if len(warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b, _ = jsontext.AppendQuote(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

// reviewRequest is the part of an AdmissionRequest the webhook reads.
type reviewRequest struct {
	UID       types.UID                   `json:"uid"`
	Kind      metav1.GroupVersionKind     `json:"kind"`
	Resource  metav1.GroupVersionResource `json:"resource"`
	Name      string                      `json:"name"`
	Operation admissionv1.Operation       `json:"operation"`
	DryRun    *bool                       `json:"dryRun"`
}

// reviewIn is what the webhook reads of an AdmissionReview (see skimReview).
type reviewIn struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Request    *requestIn `json:"request"`
}

type requestIn struct {
	reviewRequest
	Object objectIn `json:"object"`
}

// objectIn is what was read of the request's object. An object that is not a JSON object
// keeps its error here: it is answered with a warning, not a failed request.
type objectIn struct {
	node    nodeFields
	err     error
	present bool
}

// decodeReview reads an admission.k8s.io/v1 AdmissionReview and checks it carries a request.
func decodeReview(body []byte, review *reviewIn) error {
	if len(body) == 0 {
		return errors.New("empty body: want an admission.k8s.io/v1 AdmissionReview")
	}
	if err := skimReview(body, review); err != nil {
		return err
	}
	return checkReview(review)
}

func checkReview(review *reviewIn) error {
	if review.APIVersion != reviewAPIVersion || review.Kind != "AdmissionReview" {
		return fmt.Errorf("unsupported review %q %q: want apiVersion admission.k8s.io/v1, kind AdmissionReview", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return errors.New("AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return errors.New("AdmissionReview request has no uid")
	}
	if !review.Request.Object.present {
		review.Request.Object.err = errNoObject
	}
	return nil
}

// bodyPool recycles request buffers: nothing read from a body outlives its request (every
// string the decision keeps is copied out of it), and a 15 KB buffer per request is most of
// what the handler would otherwise allocate.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody keeps an unusually large review's buffer out of the pool.
const maxPooledBody = 256 << 10

// readBody reads the request body, up to limit bytes, into buf; it grows buf once to the
// Content-Length the client announced (the apiserver always does).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf []byte) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n > 0 && n <= limit && int64(cap(buf)) < n+1 {
		buf = make([]byte, 0, n+1) // one more, to see a body longer than announced
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
