package review

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
)

// Paths the two webhooks are served on.
const (
	PathMutate   = "/mutate-v1-node"
	PathValidate = "/validate-v1-node"
)

// Outcomes of a request, as counted by the requests metric.
const (
	OutcomeLabeled = "labeled"
	OutcomeWarned  = "warned"
	OutcomeNone    = "none"
	OutcomeError   = "error"
)

// ConfigSource gives the config in force, and the error of a newer config that was rejected.
type ConfigSource interface {
	Load() (*admit.Config, error)
}

// EventSink receives what the webhook has to say about a node, to publish as an Event.
// It must not block.
type EventSink interface {
	Emit(node string, f admit.Finding)
}

// DeviceSource gives the devices DRA drivers publish for a node in ResourceSlices, nil when
// it knows none. It must not block.
type DeviceSource interface {
	NodeDevices(node string, labels map[string]string) []gpuinfo.Device
}

// Handler answers Node admission requests. With Mutate it labels nodes when the config opts
// in; without it is the warn-only audit webhook. It always allows.
type Handler struct {
	Config  ConfigSource
	Mutate  bool
	Devices DeviceSource     // optional
	Events  EventSink        // optional
	Metrics *metrics.Metrics // optional
}

var _ admission.Handler = (*Handler)(nil)

// nodeFields is the part of a Node the decision reads; decoding only this keeps the cost of a
// 15 KB node with images and conditions low.
type nodeFields struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Status struct {
		Capacity    map[string]resource.Quantity `json:"capacity"`
		Allocatable map[string]resource.Quantity `json:"allocatable"`
	} `json:"status"`
}

// Handle implements admission.Handler, for callers that hold a decoded admission.Request.
// The HTTP path (HTTPHandler) decodes the object straight into the fields it needs instead.
func (h *Handler) Handle(_ context.Context, req admission.Request) admission.Response {
	var n nodeFields
	var nodeErr error
	if len(req.Object.Raw) == 0 {
		nodeErr = errNoObject
	} else {
		nodeErr = json.Unmarshal(req.Object.Raw, &n)
	}
	resp, _ := h.review(&reviewRequest{
		UID: req.UID, Kind: req.Kind, Resource: req.Resource, Name: req.Name, Operation: req.Operation, DryRun: req.DryRun,
	}, &n, nodeErr)
	return resp
}

func (h *Handler) endpoint() string {
	if h.Mutate {
		return "mutate"
	}
	return "validate"
}

var errNoObject = errors.New("the request carries no object")

// review decides one request. node holds what was read of the object, nodeErr why it could
// not be read.
func (h *Handler) review(req *reviewRequest, n *nodeFields, nodeErr error) (admission.Response, string) {
	resp, outcome := h.decide(req, n, nodeErr)
	h.Metrics.Request(h.endpoint(), string(req.Operation), outcome)
	return resp, outcome
}

func (h *Handler) decide(req *reviewRequest, n *nodeFields, nodeErr error) (admission.Response, string) {
	resp := admission.Allowed("")
	cfg, cfgErr := h.Config.Load()
	if cfgErr != nil {
		resp.Warnings = append(resp.Warnings, admit.Warning("gpu-label-webhook: config %s is invalid, the last good config stays in force: %v", cfg.Origin, cfgErr))
	}
	if req.Kind.Kind != "Node" || req.Resource.Resource != "nodes" {
		resp.Warnings = append(resp.Warnings, fmt.Sprintf("gpu-label-webhook: ignored a %s %s; it only reads Nodes", req.Kind.Kind, req.Resource.Resource))
		return resp, OutcomeError
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return resp, OutcomeNone
	}
	if nodeErr == errNoObject {
		resp.Warnings = append(resp.Warnings, "gpu-label-webhook: the request carries no object; node left unchanged")
		return resp, OutcomeError
	}
	if nodeErr != nil {
		resp.Warnings = append(resp.Warnings, admit.Warning("gpu-label-webhook: could not read the node, left unchanged: %v", nodeErr))
		return resp, OutcomeError
	}
	name := n.Metadata.Name
	if name == "" {
		name = req.Name
	}
	node := gpuinfo.Node{Labels: n.Metadata.Labels, Capacity: n.Status.Capacity, Allocatable: n.Status.Allocatable}
	if h.Devices != nil {
		node.Devices = h.Devices.NodeDevices(name, n.Metadata.Labels)
	}
	caller := admit.Audit
	if h.Mutate {
		caller = admit.Mutating
	}
	d := admit.Decide(cfg, name, node, caller)
	resp.Warnings = append(resp.Warnings, d.Warnings()...)
	if d.Action == admit.ActionLabel {
		resp.Patch = labelPatch(cfg.LabelKey, d.Value, n.Metadata.Labels != nil, d.Replace)
		resp.PatchType = &jsonPatchType
	}
	for _, f := range d.Findings {
		h.Metrics.Finding(string(f.Reason))
		if h.Events != nil && cfg.Events && (req.DryRun == nil || !*req.DryRun) {
			h.Events.Emit(name, f)
		}
	}
	switch d.Action {
	case admit.ActionLabel:
		return resp, OutcomeLabeled
	case admit.ActionWarn:
		return resp, OutcomeWarned
	}
	return resp, OutcomeNone
}

var jsonPatchType = admissionv1.PatchTypeJSONPatch

// labelPatch is the JSON patch that sets one label: it adds the key, replaces a wrong value,
// or creates metadata.labels when the node has none. It is written out directly: one small,
// fixed shape, with keys and values quoted by the JSON encoder's own quoting.
func labelPatch(key, value string, haveLabels, replace bool) []byte {
	b := make([]byte, 0, 96+len(key)+len(value))
	if !haveLabels {
		b = append(b, `[{"op":"add","path":"/metadata/labels","value":{`...)
		b, _ = jsontext.AppendQuote(b, key)
		b = append(b, ':')
		b, _ = jsontext.AppendQuote(b, value)
		return append(b, "}}]"...)
	}
	op := "add"
	if replace {
		op = "replace"
	}
	b = append(b, `[{"op":"`+op+`","path":`...)
	b, _ = jsontext.AppendQuote(b, "/metadata/labels/"+escapeJSONPointer(key))
	b = append(b, `,"value":`...)
	b, _ = jsontext.AppendQuote(b, value)
	return append(b, "}]"...)
}

// escapeJSONPointer escapes a key for a JSON pointer (RFC 6901): ~ as ~0, / as ~1.
func escapeJSONPointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
