// Package skypilot says what SkyPilot will see when it reads a cluster's nodes: which GPU label
// scheme and which GPU resource it picks for the whole cluster, and which nodes that leaves
// invisible or unschedulable. It mirrors SkyPilot's own rules, read from its source:
//
//	skypilot-org/skypilot:sky/provision/kubernetes/utils.py
//
// at commit 6daea0f7f0eceb96cf1c2a7a5db7aaba8c74581b and at a later master copy (the one that
// adds Nebius and the one-pass formatter selector; the search index did not expose its
// commit). Where the two differ, the later one is followed and the difference noted.
// The package is pure: it reads per-node facts and does no I/O.
package skypilot

import "strings"

// Source names where the rules were read, for messages and the README.
const Source = "skypilot-org/skypilot:sky/provision/kubernetes/utils.py"

// DRAUpstream is SkyPilot's open proposal to count GPUs from ResourceSlices: retire the
// GPUsManagedByDRA finding once SkyPilot's release does.
const DRAUpstream = "skypilot-org/skypilot#10275, pull request #10276"

// Label keys SkyPilot's formatters read.
const (
	KeySkyPilot     = "skypilot.co/accelerator"
	KeyGKE          = "cloud.google.com/gke-accelerator"
	KeyGKETPU       = "cloud.google.com/gke-tpu-accelerator"
	KeyKarpenter    = "karpenter.k8s.aws/instance-gpu-name"
	KeyGFD          = "nvidia.com/gpu.product"
	KeyCoreWeave    = "gpu.nvidia.com/class"
	KeyNebius       = "nebius.com/gpu-name"
	ResourceAMD     = "amd.com/gpu"
	ResourceNVIDIA  = "nvidia.com/gpu"
	ResourceTPU     = "google.com/tpu"
	CustomKeyEnvVar = "CUSTOM_GPU_RESOURCE_KEY"
)

// Formatter is one of SkyPilot's GPU label formatters: the label keys it reads and which
// values it accepts.
type Formatter struct {
	// Name is SkyPilot's class name without "LabelFormatter".
	Name string
	// Tool is who sets these labels.
	Tool string
	Keys []string
	// Invalid says why SkyPilot rejects a value, "" when it accepts it.
	Invalid func(value string) string
	// Fixed is a value SkyPilot would accept in place of an invalid one, "" to remove the label.
	Fixed func(value string) string
}

// Formatters is SkyPilot's LABEL_FORMATTER_REGISTRY, in its order: the first formatter with a
// valid label anywhere is the cluster's scheme. The 6daea0f7 copy lacks Nebius; the later
// master appends it.
var Formatters = []Formatter{
	{Name: "SkyPilot", Tool: "SkyPilot", Keys: []string{KeySkyPilot}, Invalid: mustBeLower, Fixed: strings.ToLower},
	{Name: "GKE", Tool: "GKE", Keys: []string{KeyGKE, KeyGKETPU}, Invalid: gkeInvalid, Fixed: func(string) string { return "" }},
	// Karpenter's formatter inherits SkyPilot's, lowercase rule included.
	{Name: "Karpenter", Tool: "Karpenter", Keys: []string{KeyKarpenter}, Invalid: mustBeLower, Fixed: strings.ToLower},
	{Name: "GFD", Tool: "GPU Feature Discovery", Keys: []string{KeyGFD}, Invalid: anyValue},
	{Name: "CoreWeave", Tool: "CoreWeave", Keys: []string{KeyCoreWeave}, Invalid: anyValue},
	{Name: "Nebius", Tool: "Nebius", Keys: []string{KeyNebius}, Invalid: mustBeUpper, Fixed: strings.ToUpper},
}

// Reads says whether the formatter reads the label key.
func (f *Formatter) Reads(key string) bool {
	for _, k := range f.Keys {
		if k == key {
			return true
		}
	}
	return false
}

// ReadsLabel says whether any formatter reads the label key: the analysis reads no other
// label, so `check` keeps only these of each node (a fleet's labels are mostly other tools').
func ReadsLabel(key string) bool {
	for i := range Formatters {
		if Formatters[i].Reads(key) {
			return true
		}
	}
	return false
}

// ReadsResource says whether the analysis reads a resource of a node's capacity or
// allocatable: the GPU resources SkyPilot can pick, TPUs, and CUSTOM_GPU_RESOURCE_KEY's value.
func ReadsResource(key, customKey string) bool {
	switch key {
	case ResourceAMD, ResourceNVIDIA, ResourceTPU:
		return true
	}
	return customKey != "" && key == customKey
}

func mustBeLower(v string) string {
	if v != strings.ToLower(v) {
		return "not all lowercase"
	}
	return ""
}

func mustBeUpper(v string) string {
	if v != strings.ToUpper(v) {
		return "not all uppercase"
	}
	return ""
}

func anyValue(string) string { return "" }

// gkeTPUTypes is GKE_TPU_ACCELERATOR_TO_GENERATION's keys: the TPU values the GKE formatter
// accepts, after normalize_tpu_accelerator_name.
var gkeTPUTypes = map[string]bool{
	"tpu-v4-podslice": true, "tpu-v5-lite-device": true, "tpu-v5-lite-podslice": true,
	"tpu-v5p-slice": true, "tpu-v6e-slice": true,
}

// gkeTPUNames maps the GCP TPU name prefixes SkyPilot normalises (tpu-v6e-8) to GKE's types.
var gkeTPUNames = []struct{ prefix, gke string }{
	{"tpu-v6e-", "tpu-v6e-slice"}, {"tpu-v5p-", "tpu-v5p-slice"}, {"tpu-v5litepod-", "tpu-v5-lite-podslice"},
	{"tpu-v5lite-", "tpu-v5-lite-device"}, {"tpu-v4-", "tpu-v4-podslice"},
}

// IsGKETPU mirrors is_tpu_on_gke: a GKE TPU type, or a GCP TPU name that normalises to one.
func IsGKETPU(v string) bool {
	for _, n := range gkeTPUNames {
		if rest, ok := strings.CutPrefix(v, n.prefix); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			return true
		}
	}
	return gkeTPUTypes[v]
}

// gkeInvalid mirrors GKELabelFormatter.get_accelerator_from_label_value: NVIDIA values start
// with nvidia-, TPU values are GKE TPU types, anything else raises.
func gkeInvalid(v string) string {
	if strings.HasPrefix(v, "nvidia-") || IsGKETPU(v) || v == "" {
		return ""
	}
	return "neither an nvidia- GPU name nor a GKE TPU type"
}
