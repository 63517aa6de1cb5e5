package review

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

// strictObject decodes the object with the strict JSON v2 decoder, for the oracle. Capacity
// is read as strings and parsed with the same guard the skimmer uses: resource.Quantity's own
// decoder would compute for minutes on a huge exponent.
type strictObject struct{ objectIn }

type strictNode struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Status struct {
		Capacity    map[string]string `json:"capacity"`
		Allocatable map[string]string `json:"allocatable"`
	} `json:"status"`
}

// strictQuantities parses the accelerator resources of a resource list, as the skimmer does.
func strictQuantities(in map[string]string) (map[string]resource.Quantity, error) {
	if in == nil {
		return nil, nil
	}
	out := map[string]resource.Quantity{}
	for k, v := range in {
		if gpuinfo.ResourceKind(k) == "" {
			continue // the decision reads only accelerator resources
		}
		q, err := gpuinfo.ParseQuantity(v)
		if err != nil {
			return nil, err
		}
		out[k] = q
	}
	return out, nil
}

func (o *strictObject) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		return err
	case '{':
		o.present = true
		var n strictNode
		if err := jsonv2.UnmarshalDecode(dec, &n); err != nil {
			return err
		}
		o.node.Metadata.Name, o.node.Metadata.Labels = n.Metadata.Name, n.Metadata.Labels
		var err error
		if o.node.Status.Capacity, err = strictQuantities(n.Status.Capacity); err != nil {
			return err
		}
		o.node.Status.Allocatable, err = strictQuantities(n.Status.Allocatable)
		return err
	}
	o.present = true
	o.err = fmt.Errorf("not an object")
	return dec.SkipValue()
}

type strictReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		reviewRequest
		Object strictObject `json:"object"`
	} `json:"request"`
}

// decodeReviewStrict is the oracle: a full, validating decode of the same fields.
func decodeReviewStrict(body []byte) (*reviewIn, error) {
	var r strictReview
	if err := jsonv2.Unmarshal(body, &r, jsontext.AllowDuplicateNames(false)); err != nil {
		return nil, err
	}
	out := &reviewIn{APIVersion: r.APIVersion, Kind: r.Kind}
	if r.Request != nil {
		out.Request = &requestIn{reviewRequest: r.Request.reviewRequest, Object: r.Request.Object.objectIn}
	}
	return out, nil
}

// same compares what the decision reads from two decodes (the skimmer reads only the kind
// and resource names of the request's kind and resource, not their group and version).
func same(a, b *reviewIn) bool {
	if a.APIVersion != b.APIVersion || a.Kind != b.Kind || (a.Request == nil) != (b.Request == nil) {
		return false
	}
	if a.Request == nil {
		return true
	}
	ra, rb := a.Request, b.Request
	if ra.UID != rb.UID || ra.Name != rb.Name || ra.Operation != rb.Operation || ra.Kind.Kind != rb.Kind.Kind ||
		ra.Resource.Resource != rb.Resource.Resource || !reflect.DeepEqual(ra.DryRun, rb.DryRun) ||
		ra.Object.present != rb.Object.present || (ra.Object.err == nil) != (rb.Object.err == nil) {
		return false
	}
	na, nb := ra.Object.node, rb.Object.node
	return na.Metadata.Name == nb.Metadata.Name && reflect.DeepEqual(na.Metadata.Labels, nb.Metadata.Labels) &&
		sameQuantities(na.Status.Capacity, nb.Status.Capacity) && sameQuantities(na.Status.Allocatable, nb.Status.Allocatable)
}

func sameQuantities(a, b map[string]resource.Quantity) bool {
	if len(a) != len(b) {
		return false
	}
	for k, q := range a {
		if q2, ok := b[k]; !ok || q.Cmp(q2) != 0 {
			return false
		}
	}
	return true
}

func TestSkimMatchesStrictDecode(t *testing.T) {
	bodies := map[string]string{
		"kubelet create": string(testnode.Review("u1", admissionv1.Create, "", testnode.Realistic("n1", "p4d.24xlarge", 0), nil, "system:node:n1", false)),
		"status update":  string(testnode.Review("u2", admissionv1.Update, "status", testnode.Realistic("n1", "p4d.24xlarge", 8), testnode.Realistic("n1", "p4d.24xlarge", 0), "system:node:n1", true)),
		"escapes":        `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a\"b\\","kind":{"kind":"Node"},"resource":{"resource":"nodes"},"operation":"CREATE","object":{"metadata":{"name":"n\u00e9","labels":{"k\/x":"v\"\\","e":""}},"status":{"capacity":{"nvidia.com/gpu":"8"}}}}}`,
		"nulls":          `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":null,"dryRun":null,"object":{"metadata":null,"status":{"capacity":null}}}}`,
		"not an object":  `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":[1,{"a":"]"}],"oldObject":{"x":[[["}"]]]}}}`,
		"whitespace":     " {\n\t\"apiVersion\" : \"admission.k8s.io/v1\" ,\r\n\"kind\":\"AdmissionReview\", \"request\" : { \"uid\" : \"x\" , \"object\" : { \"metadata\" : { \"labels\" : { \"a\" : \"b\" } } } } } \n",
		"numbers":        `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","n":-1.5e+3,"t":true,"f":false,"object":{"spec":{"x":0}}}}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			want, err := decodeReviewStrict([]byte(body))
			if err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			var got reviewIn
			if err := skimReview([]byte(body), &got); err != nil {
				t.Fatalf("skim: %v", err)
			}
			if !same(&got, want) {
				t.Error("the skimmer and the strict decoder read different fields")
			}
		})
	}
}

func TestSkimRejects(t *testing.T) {
	valid := string(testnode.Review("u1", admissionv1.Create, "", testnode.Realistic("n1", "p4d.24xlarge", 0), nil, "admin", false))
	for name, body := range map[string]string{
		"truncated":         valid[:len(valid)-3],
		"truncated string":  `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x`,
		"trailing data":     valid + `{}`,
		"bad literal":       `{"kind":tru}`,
		"unbalanced":        `{"request":{"oldObject":[}]}}`,
		"control character": "{\"kind\":\"a\x01b\"}",
		"missing colon":     `{"kind" "x"}`,
		"bad capacity":      `{"request":{"object":{"status":{"capacity":{"nvidia.com/gpu":"lots"}}}}}`,
		"too deep":          `{"request":{"oldObject":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}}`,
		"not JSON":          `<xml/>`,
	} {
		t.Run(name, func(t *testing.T) {
			var r reviewIn
			if err := skimReview([]byte(body), &r); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// FuzzSkim holds the skimmer to the strict decoder: whatever the strict decoder accepts, the
// skimmer reads the same; nothing makes it panic.
func FuzzSkim(f *testing.F) {
	f.Add(testnode.Review("u1", admissionv1.Create, "", testnode.Realistic("n1", "p4d.24xlarge", 8), nil, "admin", false))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a\"b","object":{"metadata":{"labels":{"k":"v\\"}}}}}`))
	f.Add([]byte(`{"request":{"object":"x","oldObject":[1,2,{"a":null}]}}`))
	f.Add([]byte(`{"request":{"uid":"x","object":{"status":{"capacity":{"nvidia.com/gpu":"66666666666666666666E66666666666"}}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var got reviewIn
		skimErr := skimReview(body, &got)
		want, err := decodeReviewStrict(body)
		if err != nil {
			return // invalid JSON: the skimmer may refuse it or read it; it must only not panic
		}
		if skimErr != nil {
			t.Fatalf("strict decode accepted what the skimmer refused (%v): %q", skimErr, body)
		}
		if !same(&got, want) {
			t.Fatalf("the skimmer and the strict decoder read %.200q differently", body)
		}
	})
}

// TestScanString holds the word-at-a-time test to a byte loop: every byte value, at every
// position of strings of every length up to three words.
func TestScanString(t *testing.T) {
	naive := func(b []byte) (escaped, control bool) {
		for _, c := range b {
			if c < 0x20 {
				return escaped, true
			}
			escaped = escaped || c == '\\'
		}
		return escaped, false
	}
	for n := 1; n <= 24; n++ {
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				for _, fill := range []byte{'a', 0xff, ' ', 0x80} {
					b := bytes.Repeat([]byte{fill}, n)
					b[pos] = byte(c)
					ge, gc := scanString(b)
					we, wc := naive(b)
					if gc != wc || (!wc && ge != we) {
						t.Fatalf("scanString(%q) = %v, %v; want %v, %v", b, ge, gc, we, wc)
					}
				}
			}
		}
	}
}
