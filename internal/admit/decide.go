package admit

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// Action is what the webhook does with a node.
type Action string

const (
	ActionNone  Action = "none"  // nothing to say
	ActionLabel Action = "label" // the label is added or corrected
	ActionWarn  Action = "warn"  // allowed, with warnings
)

// Reason names a finding; it is the reason of the Event and a value of the findings metric.
type Reason string

const (
	ReasonLabeled          Reason = "AcceleratorLabeled"
	ReasonLabelMissing     Reason = "AcceleratorLabelMissing"
	ReasonModelUnknown     Reason = "AcceleratorModelUnknown"
	ReasonLabelMismatch    Reason = "AcceleratorLabelMismatch"
	ReasonLabelInvalid     Reason = "AcceleratorLabelInvalid"
	ReasonEvidenceConflict Reason = "AcceleratorEvidenceConflict"
	ReasonGPUCountMismatch Reason = "GPUCountMismatch"
	// ReasonSlicesOnly: only the node's ResourceSlices show its GPUs, so the matchConditions
	// never send it to the webhook; the CLI says so.
	ReasonSlicesOnly Reason = "GPUsOnlyInResourceSlices"
)

// Finding is one thing the webhook has to say about a node.
type Finding struct {
	Reason  Reason `json:"reason"`
	Message string `json:"message"`
}

// Warning says whether the finding is a problem (a warning and a Warning Event) rather than
// news of a label the webhook set.
func (f Finding) Warning() bool { return f.Reason != ReasonLabeled }

// Decision is what the webhook does with one node, and why.
type Decision struct {
	Node      string
	Inference gpuinfo.Inference
	// Current is the node's value of the label key, HasLabel whether the key is present.
	Current  string
	HasLabel bool
	Action   Action
	// Value is the label value the evidence gives ("" when the model is unknown); with
	// ActionLabel it is the value written, and Replace says a wrong value is overwritten.
	Value    string
	Replace  bool
	Findings []Finding
}

// Warnings are the findings' messages as admission warnings.
func (d *Decision) Warnings() []string {
	var out []string
	for _, f := range d.Findings {
		if f.Warning() {
			out = append(out, f.Message)
		}
	}
	return out
}

// maxWarning keeps each message under the 256 characters the apiserver passes on whole.
const maxWarning = 250

// Caller says who asks for a decision: only the mutating webhook may label a node (and so
// do the commands that show or apply what it would do); the audit webhook and the advisory
// check only ever warn, and each tells its own way to have the node labeled.
type Caller uint8

const (
	// Mutating is the mutating webhook, and explain and label, which show or apply its decision.
	Mutating Caller = iota
	// Audit is the warn-only audit webhook.
	Audit
	// Check is the advisory check: it reports, and `label` applies the fix.
	Check
)

// Decide applies the config to one node for a caller. It has no side effects.
func Decide(cfg *Config, name string, node gpuinfo.Node, caller Caller) Decision {
	d := Decision{Node: name, Action: ActionNone}
	node.OwnLabel = cfg.LabelKey
	d.Inference = cfg.KB.Infer(node)
	if !d.Inference.GPU() {
		return d
	}
	in := &d.Inference
	d.Current, d.HasLabel = node.Labels[cfg.LabelKey]
	d.Value = in.Value()
	auto := caller == Mutating && cfg.AutoLabel && cfg.NodeSelector.Matches(labels.Set(node.Labels))
	key := cfg.LabelKey
	// The evidence is described only for a message that uses it: a correctly labeled node,
	// the common case on the admission path, needs none.
	evidence := func() string { return describeEvidence(in) }

	switch {
	case !d.HasLabel && d.Value != "":
		if auto {
			d.Action = ActionLabel
			d.add(ReasonLabeled, "labeled node %s %s=%s (%s)", name, key, d.Value, evidence())
		} else {
			d.add(ReasonLabelMissing, "node %s has GPUs (%s) but no %s label; fix: kubectl label node %s %s=%s",
				name, evidence(), key, name, key, d.Value)
			d.add(ReasonLabelMissing, "%s", cfg.optInHint(caller, node.Labels))
		}
	case !d.HasLabel:
		d.add(ReasonModelUnknown, "node %s has GPUs (%s) but its model is unknown; label it: kubectl label node %s %s=<model>, or add its instance type to the webhook config",
			name, evidence(), name, key)
	case !validValue(d.Current):
		if d.Value != "" && auto && cfg.Overwrite {
			d.Action, d.Replace = ActionLabel, true
			d.add(ReasonLabeled, "corrected node %s %s=%s (was %q, not a lowercase label value)", name, key, d.Value, d.Current)
		} else {
			d.add(ReasonLabelInvalid, "node %s label %s=%q is not a lowercase accelerator name; fix: kubectl label node %s %s=%s --overwrite",
				name, key, d.Current, name, key, orPlaceholder(d.Value))
		}
	case d.Value != "" && d.Current != d.Value:
		if auto && cfg.Overwrite {
			d.Action, d.Replace = ActionLabel, true
			d.add(ReasonLabeled, "corrected node %s %s=%s (was %s; %s)", name, key, d.Value, d.Current, evidence())
		} else {
			d.add(ReasonLabelMismatch, "node %s label %s=%s disagrees with the evidence (%s); fix: kubectl label node %s %s=%s --overwrite",
				name, key, d.Current, evidence(), name, key, d.Value)
		}
	}
	for _, c := range in.Conflicts {
		d.add(ReasonEvidenceConflict, "node %s: %s=%s says %s, but %s=%s says %s; using %s",
			name, c.Key, c.Value, c.Model, keyOf(in), valueOf(in), in.Model.Name, d.Value)
	}
	switch {
	// Only a count of physical GPUs is compared: slices, replicas and a sharing scheduler's
	// memory units are not GPUs, and beside them nvidia.com/gpu or amd.com/gpu counts more.
	case in.PhysicalCount() > 0 && in.ExpectedCount > in.PhysicalCount():
		d.add(ReasonGPUCountMismatch, "node %s reports %d %s but instance type %s has %d; check the GPUs and the device plugin",
			name, in.Count, in.Resource, in.InstanceType, in.ExpectedCount)
	case in.Count == 0 && in.DeviceCount > 0 && in.ExpectedCount > in.DeviceCount:
		d.add(ReasonGPUCountMismatch, "node %s publishes %d GPUs in ResourceSlices of %s but instance type %s has %d; check the GPUs and the DRA driver",
			name, in.DeviceCount, strings.Join(in.DeviceDrivers, ", "), in.InstanceType, in.ExpectedCount)
	}
	if in.SlicesOnly && !d.HasLabel {
		d.add(ReasonSlicesOnly, "node %s shows its GPUs only in ResourceSlices: nothing on the Node object does, so the webhook is never called for it; label it: kubectl label node %s %s=%s",
			name, name, key, orPlaceholder(d.Value))
	}
	if d.Action == ActionNone && len(d.Warnings()) > 0 {
		d.Action = ActionWarn
	}
	return d
}

func (d *Decision) add(r Reason, format string, args ...any) {
	d.Findings = append(d.Findings, Finding{Reason: r, Message: Warning(format, args...)})
}

// Warning formats an admission warning, shortened to fit the apiserver's limit.
func Warning(format string, args ...any) string {
	return truncate(fmt.Sprintf(format, args...), maxWarning)
}

// optInHint tells how to have nodes like this one labeled automatically.
func (c *Config) optInHint(caller Caller, nodeLabels map[string]string) string {
	switch {
	case c.AutoLabel && !c.NodeSelector.Matches(labels.Set(nodeLabels)):
		return fmt.Sprintf("auto-labeling is on, but this node does not match its nodeSelector %q", c.NodeSelector.String())
	case c.AutoLabel && caller == Audit:
		return "auto-labeling is on, but this is the warn-only audit webhook; install the mutating webhook to label nodes as they join"
	case c.AutoLabel && caller == Check:
		return "auto-labeling is on: the mutating webhook labels this node on its next write it is called for (its next status report); to label such nodes now: webhook label (kubectl gpu-label label)"
	case c.Origin != "" && !strings.Contains(c.Origin, "/"):
		return fmt.Sprintf(`to label new GPU nodes as they join, set autoLabel: "true" in %s`, c.Origin)
	}
	ns, name := DefaultNamespace, DefaultConfigName
	if a, b, ok := strings.Cut(c.Origin, "/"); ok {
		ns, name = a, b
	}
	return fmt.Sprintf(`to label new GPU nodes as they join: kubectl -n %s patch configmap %s --type merge -p '{"data":{"autoLabel":"true"}}'`, ns, name)
}

// describeEvidence says in a few words why the node is a GPU node and where the model came from.
func describeEvidence(in *gpuinfo.Inference) string {
	var parts []string
	switch {
	case in.Count > 0 && in.ResourceType == gpuinfo.ResourceGPU:
		parts = append(parts, fmt.Sprintf("%s: %d", in.Resource, in.Count))
	case in.Count > 0:
		parts = append(parts, fmt.Sprintf("%s: %d (%s units, not GPUs)", in.Resource, in.Count, in.ResourceType))
	case in.DeviceCount > 0:
		parts = append(parts, fmt.Sprintf("%d GPUs in ResourceSlices of %s", in.DeviceCount, strings.Join(in.DeviceDrivers, ", ")))
	}
	if in.Model != nil {
		parts = append(parts, fmt.Sprintf("%s=%s", keyOf(in), valueOf(in)))
	} else if in.InstanceType != "" {
		parts = append(parts, fmt.Sprintf("instance type %s not in the tables", in.InstanceType))
	} else if len(in.Evidence) > 0 {
		e := in.Evidence[0]
		if e.Unrecognised() {
			parts = append(parts, fmt.Sprintf("%s=%s not recognised", e.Key, e.Value))
		} else {
			parts = append(parts, fmt.Sprintf("%s=%s", e.Key, e.Value))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "GPU labels")
	}
	return strings.Join(parts, ", ")
}

// keyOf and valueOf name the label that decided the model.
func keyOf(in *gpuinfo.Inference) string {
	for _, e := range in.Evidence {
		if e.Source == in.Source {
			return e.Key
		}
	}
	return string(in.Source)
}

func valueOf(in *gpuinfo.Inference) string {
	for _, e := range in.Evidence {
		if e.Source == in.Source {
			return e.Value
		}
	}
	return ""
}

func validValue(v string) bool {
	return v != "" && v == strings.ToLower(v) && len(validation.IsValidLabelValue(v)) == 0
}

func orPlaceholder(v string) string {
	if v == "" {
		return "<model>"
	}
	return v
}

// truncate shortens s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
