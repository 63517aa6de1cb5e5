package manifests

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// The webhook's matchConditions: the apiserver calls the webhook only for a node that shows
// GPU evidence and that might need the label now. Everything else (the routine status
// reports of labeled nodes and of CPU nodes) never leaves the apiserver.

// celResources is true when a GPU resource shows in capacity, or in allocatable, with a
// non-zero quantity; the names come from the same lists gpuinfo reads.
func celResources() string {
	// The regular expression only where the cheap prefix test passes: this runs on every key.
	named := fmt.Sprintf("(k.startsWith('nvidia.com/') && k.matches(%s))", rawQuote(gpuinfo.NamedResourcePattern))
	return celResourcesShown(gpuinfo.GPUResourceNames(), gpuinfo.GPUResourcePrefixes(), named)
}

// celResourcesShown is true when capacity or allocatable has a non-zero quantity of a
// resource of these names or prefixes, or one the extra tests on k accept.
func celResourcesShown(names, prefixes []string, extra ...string) string {
	var tests []string
	for _, r := range names {
		tests = append(tests, fmt.Sprintf("k == %s", quote(r)))
	}
	for _, p := range prefixes {
		tests = append(tests, fmt.Sprintf("k.startsWith(%s)", quote(p)))
	}
	tests = append(tests, extra...)
	var fields []string
	for _, f := range []string{"capacity", "allocatable"} {
		fields = append(fields, fmt.Sprintf("(has(object.status.%s) && object.status.%s.exists(k, (%s) && object.status.%s[k] != '0'))",
			f, f, strings.Join(tests, " || "), f))
	}
	return fmt.Sprintf("(has(object.status) && (%s))", strings.Join(fields, " || "))
}

// celGPULabels is true when a label that shows an accelerator node is present: another
// tool's GPU label, or a PCI label of a device that may be a GPU.
func celGPULabels() string {
	kb := gpuinfo.Default()
	tests := []string{fmt.Sprintf("k in %s", list(kb.GPULabelKeys()))}
	for _, p := range kb.GPULabelPrefixes() {
		tests = append(tests, fmt.Sprintf("k.startsWith(%s)", quote(p)))
	}
	tests = append(tests, fmt.Sprintf("(k.startsWith(%s) && k.matches(%s))", quote(nfdPrefix), rawQuote(kb.NFDGPUPattern())))
	tests = append(tests, celGenericLabel(kb))
	tests = append(tests, fmt.Sprintf("(k == %s && object.metadata.labels[k].matches(%s))", quote(gpuinfo.LabelMIGConfig), rawQuote(gpuinfo.MIGConfigPattern)))
	return fmt.Sprintf("object.metadata.labels.exists(k, %s)", strings.Join(tests, " || "))
}

// celGenericLabel is true for a label the generic reader may read: its key holds one of the
// generic rows' words, no other row claims it, and its value is not one that shows nothing.
// It holds more keys than inference takes (an accelerator key's value may name no GPU): a
// node the webhook then leaves alone. The cheap word test comes first, as it runs on every key.
func celGenericLabel(kb *gpuinfo.KB) string {
	var words []string
	for _, w := range kb.GenericLabelWords() {
		words = append(words, fmt.Sprintf("k.lowerAscii().contains(%s)", quote(w)))
	}
	exact, prefixes := kb.ClaimedLabelKeys()
	return fmt.Sprintf("((%s) && !(k in %s) && !%s.exists(p, k.startsWith(p)) && !(object.metadata.labels[k].lowerAscii() in %s))",
		strings.Join(words, " || "), list(exact), list(prefixes), list(append([]string{""}, gpuinfo.GenericOffValues()...)))
}

// celInstanceType is true when the instance type is one the tables list with a GPU.
func celInstanceType() string {
	var names []string
	for _, it := range gpuinfo.Default().InstanceTypes() {
		if it.Model.Kind == gpuinfo.KindGPU {
			names = append(names, strings.ToLower(it.Name))
		}
	}
	sort.Strings(names)
	var tests []string
	for _, key := range []string{gpuinfo.LabelInstanceType, gpuinfo.LabelInstanceTypeBeta} {
		tests = append(tests, fmt.Sprintf("(%s in object.metadata.labels && object.metadata.labels[%s].lowerAscii() in %s)", quote(key), quote(key), list(names)))
	}
	return strings.Join(tests, " || ")
}

// GPUEvidenceExpression is the first match condition.
func GPUEvidenceExpression() string {
	return fmt.Sprintf("%s || (has(object.metadata.labels) && (%s || %s))", celResources(), celGPULabels(), celInstanceType())
}

// MayNeedLabelExpression is the second: a CREATE, a node without the label, or a change of
// labels or capacity on an UPDATE.
func MayNeedLabelExpression(labelKey string) string {
	labels := func(o string) string { return fmt.Sprintf("(has(%s.metadata.labels) ? %s.metadata.labels : {})", o, o) }
	capacity := func(o string) string {
		return fmt.Sprintf("(has(%s.status) && has(%s.status.capacity) ? %s.status.capacity : {})", o, o, o)
	}
	return fmt.Sprintf("request.operation == 'CREATE' || oldObject == null || !has(object.metadata.labels) || !(%s in object.metadata.labels) || %s != %s || %s != %s",
		quote(labelKey), labels("object"), labels("oldObject"), capacity("object"), capacity("oldObject"))
}

// NotLabelCommandExpression is the third: the request is not a patch of `webhook label`, which
// decided the label with the same tables (its field manager, admit.LabelFieldManager, tells).
func NotLabelCommandExpression() string {
	return fmt.Sprintf("!(has(request.options) && request.options != null && has(request.options.fieldManager) && request.options.fieldManager == %s)", quote(admit.LabelFieldManager))
}

const nfdPrefix = "feature.node.kubernetes.io/pci-"

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "\\'") + "'" }

// rawQuote makes a CEL raw string, in which a regular expression's backslashes stay as they are.
func rawQuote(s string) string { return "r'" + s + "'" }

func list(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
