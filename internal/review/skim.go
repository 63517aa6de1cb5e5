package review

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// skimReview reads an AdmissionReview the way the decision needs it, and no further: it
// parses the members on the path to the request's fields and to the object's name, labels
// and resources, and jumps over every other value (the old object, images, conditions,
// managedFields) by matching quotes and brackets, finding string ends with bytes.IndexByte.
// That is most of a 15 KB node, and skipping it this way costs a fraction of decoding it.
//
// It checks the syntax of what it reads and the nesting of what it skips, not every byte it
// skips (a scalar inside a skipped object is passed by unread): the apiserver's encoder never
// sends invalid JSON, and a body the skimmer cannot follow is an error (HTTP 400), never a
// wrong answer. A differential fuzz test holds it to
// the strict decoder (decodeReviewStrict) on every body the strict decoder accepts.
func skimReview(body []byte, review *reviewIn) error {
	s := skimmer{b: body}
	err := s.objectOrNull(func(key []byte) error {
		switch string(key) {
		case "apiVersion":
			return s.str(&review.APIVersion)
		case "kind":
			return s.str(&review.Kind)
		case "request":
			if s.null() {
				review.Request = nil
				return nil
			}
			if review.Request == nil {
				review.Request = new(requestIn)
			}
			return s.request(review.Request)
		}
		return s.skip()
	})
	if err == nil {
		s.ws()
		if s.i != len(s.b) {
			err = s.errorf("data after the review")
		}
	}
	return err
}

func (s *skimmer) request(r *requestIn) error {
	return s.object(func(key []byte) error {
		switch string(key) {
		case "uid":
			var v string
			err := s.str(&v)
			r.UID = types.UID(v)
			return err
		case "name":
			return s.str(&r.Name)
		case "operation":
			var v string
			err := s.str(&v)
			r.Operation = admissionv1.Operation(v)
			return err
		case "kind":
			return s.member("kind", &r.Kind.Kind)
		case "resource":
			return s.member("resource", &r.Resource.Resource)
		case "dryRun":
			return s.boolPtr(&r.DryRun)
		case "object":
			return s.node(&r.Object)
		}
		return s.skip()
	})
}

// node reads the request's object: only metadata.name, metadata.labels, status.capacity and
// status.allocatable.
func (s *skimmer) node(o *objectIn) error {
	s.ws()
	if s.null() {
		return nil
	}
	o.present = true
	if s.peek() != '{' {
		o.err = fmt.Errorf("the object is a JSON %s, not a Node", kindName(s.peek()))
		return s.skip()
	}
	return s.object(func(key []byte) error {
		switch string(key) {
		case "metadata":
			return s.objectOrNull(func(key []byte) error {
				switch string(key) {
				case "name":
					return s.str(&o.node.Metadata.Name)
				case "labels":
					return s.stringMap(&o.node.Metadata.Labels)
				}
				return s.skip()
			})
		case "status":
			return s.objectOrNull(func(key []byte) error {
				switch string(key) {
				case "capacity":
					return s.capacity(&o.node.Status.Capacity)
				case "allocatable":
					return s.capacity(&o.node.Status.Allocatable)
				}
				return s.skip()
			})
		}
		return s.skip()
	})
}

// capacity reads a resource list (capacity or allocatable), keeping only the accelerator
// resources the decision reads: cpu, memory, pods and the rest are checked to be strings and
// not parsed.
func (s *skimmer) capacity(m *map[string]resource.Quantity) error {
	if s.null() {
		*m = nil
		return nil
	}
	return s.object(func(key []byte) error {
		var v string
		if err := s.str(&v); err != nil || gpuinfo.ResourceKind(string(key)) == "" {
			return err
		}
		if *m == nil {
			*m = map[string]resource.Quantity{}
		}
		q, err := gpuinfo.ParseQuantity(v)
		if err != nil {
			return s.errorf("capacity %q: %v", key, err)
		}
		(*m)[string(key)] = q
		return nil
	})
}

// stringMap reads an object of strings (the labels) in one pass. The object is then copied
// once into one string, and keys and values are slices of it: one allocation instead of one
// per string, and a map sized up front.
func (s *skimmer) stringMap(m *map[string]string) error {
	if s.null() {
		*m = nil
		return nil
	}
	start := s.i
	var buf [2 * 64]span // a node's labels, mostly without a heap allocation
	spans := buf[:0]
	err := s.object(func([]byte) error {
		spans = append(spans, span{s.keyStart, s.keyEnd, s.keyDecoded})
		vstart, decoded, err := s.stringToken()
		spans = append(spans, span{vstart, s.i - 1, decoded})
		return err
	})
	if err != nil {
		return err
	}
	region := string(s.b[start:s.i])
	text := func(sp span) string {
		if sp.decoded != nil {
			return string(sp.decoded)
		}
		return region[sp.start-start : sp.end-start]
	}
	if *m == nil {
		*m = make(map[string]string, len(spans)/2)
	}
	for i := 0; i+1 < len(spans); i += 2 {
		(*m)[text(spans[i])] = text(spans[i+1])
	}
	return nil
}

// span is where a string's contents lie in the body, and its unescaped bytes when it had
// escapes.
type span struct {
	start, end int
	decoded    []byte
}

// member reads one string member of a small object ({"group":"","version":"v1","kind":"Node"}).
func (s *skimmer) member(name string, dst *string) error {
	return s.objectOrNull(func(key []byte) error {
		if string(key) == name {
			return s.str(dst)
		}
		return s.skip()
	})
}

// maxDepth bounds nesting, as the JSON decoders do.
const maxDepth = 10000

type skimmer struct {
	b []byte
	i int
	// Where the last key read by object starts and ends in b, and its decoded bytes when it
	// held escapes.
	keyStart, keyEnd int
	keyDecoded       []byte
}

var errTruncated = errors.New("unexpected end of JSON input")

func (s *skimmer) errorf(format string, args ...any) error {
	return fmt.Errorf("malformed AdmissionReview at byte %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *skimmer) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *skimmer) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// null consumes a null literal if one is next.
func (s *skimmer) null() bool {
	if s.peek() == 'n' && bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling fn with each key positioned at its value.
func (s *skimmer) object(fn func(key []byte) error) error {
	if s.peek() != '{' {
		return s.errorf("want an object")
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		key, err := s.rawString()
		if err != nil {
			return err
		}
		s.keyEnd = s.i - 1
		if s.peek() != ':' {
			return s.errorf("want ':'")
		}
		s.i++
		s.ws()
		if err := fn(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			return nil
		default:
			return s.errorf("want ',' or '}'")
		}
	}
}

func (s *skimmer) objectOrNull(fn func(key []byte) error) error {
	if s.null() {
		return nil
	}
	return s.object(fn)
}

// stringToken reads a string: its contents start at start and end before s.i-1; decoded
// holds the unescaped bytes when it has escapes, nil otherwise. A string the webhook keeps is
// checked as JSON requires: no control characters.
func (s *skimmer) stringToken() (start int, decoded []byte, err error) {
	if s.peek() != '"' {
		return 0, nil, s.errorf("want a string")
	}
	start = s.i + 1
	end, err := s.stringEnd(start)
	if err != nil {
		return 0, nil, err
	}
	s.i = end + 1
	escaped, control := scanString(s.b[start:end])
	if control {
		return 0, nil, s.errorf("control character in string")
	}
	if !escaped {
		return start, nil, nil
	}
	var v string
	if err := jsonv2.Unmarshal(s.b[start-1:end+1], &v); err != nil {
		return 0, nil, s.errorf("bad string: %v", err)
	}
	return start, []byte(v), nil
}

// scanString reports whether b holds a backslash or a control character. It reads eight
// bytes at a time, with the classic bit tests for a byte below 0x20 and for a byte equal to
// '\\' in a word (exact about whether there is one, which is all it asks); only a word they
// flag, and what follows it, is looked at byte by byte.
func scanString(b []byte) (escaped, control bool) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		y := x ^ (ones * '\\')
		if ((x-ones*0x20)&^x|(y-ones)&^y)&highs != 0 {
			break
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 {
			return escaped, true
		}
		escaped = escaped || c == '\\'
	}
	return escaped, false
}

// rawString reads a string and returns its bytes; without escapes they alias the body.
// It records the string's position as the last key.
func (s *skimmer) rawString() ([]byte, error) {
	start, decoded, err := s.stringToken()
	if err != nil {
		return nil, err
	}
	s.keyStart, s.keyDecoded = start, decoded
	if decoded != nil {
		return decoded, nil
	}
	return s.b[start : s.i-1], nil
}

func (s *skimmer) str(dst *string) error {
	if s.null() {
		*dst = ""
		return nil
	}
	b, err := s.rawString()
	if err != nil {
		return err
	}
	*dst = string(b)
	return nil
}

func (s *skimmer) boolPtr(dst **bool) error {
	s.ws()
	switch {
	case s.null():
		*dst = nil
	case bytes.HasPrefix(s.b[s.i:], []byte("true")):
		s.i += 4
		*dst = ptr.To(true)
	case bytes.HasPrefix(s.b[s.i:], []byte("false")):
		s.i += 5
		*dst = ptr.To(false)
	default:
		return s.errorf("want a boolean")
	}
	return nil
}

// stringEnd finds the closing quote of a string whose contents start at i: the first quote
// not escaped by an odd run of backslashes. It looks at nothing else, so skipping a string
// costs a few IndexByte calls.
func (s *skimmer) stringEnd(i int) (int, error) {
	for {
		j := bytes.IndexByte(s.b[i:], '"')
		if j < 0 {
			return 0, errTruncated
		}
		j += i
		k := j
		for k > i && s.b[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return j, nil
		}
		i = j + 1
	}
}

// skip jumps over one value of any kind. Inside an object or array it stops only at quotes
// and brackets: strings are jumped over whole, and the commas, colons and scalars between
// them are passed by without a look, as nothing in a skipped value is read.
func (s *skimmer) skip() error {
	if s.i >= len(s.b) {
		return errTruncated
	}
	switch c := s.b[s.i]; c {
	case '"':
		end, err := s.stringEnd(s.i + 1)
		if err != nil {
			return err
		}
		s.i = end + 1
		return nil
	case '{', '[':
	case '}', ']':
		return s.errorf("unexpected %q", c)
	default:
		// A number or a literal: up to the next delimiter.
		start := s.i
		for s.i < len(s.b) && !isDelimiter(s.b[s.i]) {
			s.i++
		}
		if !validScalar(s.b[start:s.i]) {
			return s.errorf("bad value %q", s.b[start:s.i])
		}
		return nil
	}
	depth := 0
	for i := s.i; i < len(s.b); i++ {
		switch s.b[i] {
		case '"':
			end, err := s.stringEnd(i + 1)
			if err != nil {
				return err
			}
			i = end
		case '{', '[':
			if depth++; depth > maxDepth {
				s.i = i
				return s.errorf("nested too deeply")
			}
		case '}', ']':
			if depth--; depth == 0 {
				s.i = i + 1
				return nil
			}
		}
	}
	return errTruncated
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ':', ' ', '\t', '\n', '\r', '"', '{', '[':
		return true
	}
	return false
}

// validScalar accepts the literals and anything shaped like a JSON number.
func validScalar(b []byte) bool {
	switch string(b) {
	case "true", "false", "null":
		return true
	case "":
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			return false
		}
	}
	return true
}

func kindName(c byte) string {
	switch c {
	case '"':
		return "string"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	}
	return "number"
}
