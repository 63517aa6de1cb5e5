package manifests

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// The webhook's matchConditions: the apiserver calls the webhook only for a node that shows
// GPU evidence and that might need the label now. Everything else (the routine status
// reports of labeled nodes and of CPU nodes) never leaves the apiserver.

// celCapacity is true when a GPU resource shows in capacity with a non-zero quantity; the
// names come from the same lists gpuinfo reads.
func celCapacity() string {
	var tests []string
	for _, r := range gpuinfo.GPUResourceNames() {
		tests = append(tests, fmt.Sprintf("k == %s", quote(r)))
	}
	for _, p := range gpuinfo.GPUResourcePrefixes() {
		tests = append(tests, fmt.Sprintf("k.startsWith(%s)", quote(p)))
	}
	return fmt.Sprintf("(has(object.status) && has(object.status.capacity) && object.status.capacity.exists(k, (%s) && object.status.capacity[k] != '0'))",
		strings.Join(tests, " || "))
}

// celGPULabels is true when another tool's GPU label is present.
func celGPULabels() string {
	return fmt.Sprintf("object.metadata.labels.exists(k, k in %s)", list(gpuinfo.GPULabelKeys))
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
	return fmt.Sprintf("%s || (has(object.metadata.labels) && (%s || %s))", celCapacity(), celGPULabels(), celInstanceType())
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

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "\\'") + "'" }

func list(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
