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

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	Handler  *Handler
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
	body, err := readBody(w, r, limit)
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
	resp.Allowed = true // whatever a handler says, a Node write is never denied
	resp.Result = nil
	if err := resp.Complete(admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: req.UID}}); err != nil {
		// The patch could not be encoded: allow unchanged rather than fail.
		resp = admission.Allowed("")
		resp.UID = req.UID
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: reviewAPIVersion, Kind: "AdmissionReview"},
		Response: &resp.AdmissionResponse,
	})
	if err != nil {
		return http.StatusInternalServerError, fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return http.StatusOK, nil
}

var reviewAPIVersion = admissionv1.SchemeGroupVersion.String()

// reviewRequest is the part of an AdmissionRequest the webhook reads.
type reviewRequest struct {
	UID       types.UID                   `json:"uid"`
	Kind      metav1.GroupVersionKind     `json:"kind"`
	Resource  metav1.GroupVersionResource `json:"resource"`
	Name      string                      `json:"name"`
	Operation admissionv1.Operation       `json:"operation"`
	DryRun    *bool                       `json:"dryRun"`
}

// reviewIn is an AdmissionReview decoded in one pass: the object goes straight into the
// fields the decision needs and the old object is skipped, not copied.
type reviewIn struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		reviewRequest
		Object objectIn `json:"object"`
	} `json:"request"`
}

// objectIn decodes the request's object straight from the stream (one scan, no copy) and
// keeps, rather than returns, the error of an object that is not a JSON object: that is
// answered with a warning, not a failed request.
type objectIn struct {
	node    nodeFields
	err     error
	present bool
}

var _ jsonv2.UnmarshalerFrom = (*objectIn)(nil)

func (o *objectIn) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		return err
	case '{':
		o.present = true
		return jsonv2.UnmarshalDecode(dec, &o.node)
	}
	o.present = true
	o.err = fmt.Errorf("the object is a JSON %s, not a Node", dec.PeekKind())
	return dec.SkipValue()
}

// decodeOptions drop two checks the apiserver's own encoder makes needless, duplicate member
// names and invalid UTF-8 (measured: a 15 KB CREATE 49 to 44 us, a 30 KB UPDATE 89 to 66 us).
// The decode stays strict about syntax.
var decodeOptions = jsonv2.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// decodeReview reads an admission.k8s.io/v1 AdmissionReview and checks it carries a request.
func decodeReview(body []byte, review *reviewIn) error {
	if len(body) == 0 {
		return errors.New("empty body: want an admission.k8s.io/v1 AdmissionReview")
	}
	// JSON v2 validates as it decodes, in one pass, and skips what the struct does not name
	// (the old object, images, conditions) without copying it: the decode costs about a third
	// of encoding/json's validate-then-decode.
	if err := jsonv2.Unmarshal(body, review, decodeOptions); err != nil {
		return fmt.Errorf("malformed AdmissionReview: %w", err)
	}
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

// readBody reads the request body up to limit bytes, into a buffer sized from Content-Length
// when the client sent one (the apiserver does), so a large review is not copied as it grows.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength <= 0 || r.ContentLength > limit {
		return io.ReadAll(body)
	}
	buf := make([]byte, r.ContentLength+1) // one more, to see a body longer than announced
	n, err := io.ReadFull(body, buf)
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return buf[:n], nil
	case err != nil:
		return nil, err
	}
	// The body is longer than Content-Length said; read the rest within the limit.
	rest, err := io.ReadAll(body)
	return append(buf[:n], rest...), err
}
