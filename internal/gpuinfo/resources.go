package gpuinfo

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ResourceType is what one unit of a device plugin's resource is (resources.tsv's kind).
type ResourceType string

const (
	ResourceGPU         ResourceType = "gpu"         // a physical GPU
	ResourceSlice       ResourceType = "slice"       // a MIG instance or partition
	ResourceReplica     ResourceType = "replica"     // a shared or virtual replica
	ResourceMemory      ResourceType = "memory"      // a unit of GPU memory
	ResourceShare       ResourceType = "share"       // a unit of GPU compute
	ResourceAccelerator ResourceType = "accelerator" // not a GPU
)

var resourceTypes = []ResourceType{ResourceGPU, ResourceSlice, ResourceReplica, ResourceMemory, ResourceShare, ResourceAccelerator}

// Resource is one row of resources.tsv.
type Resource struct {
	Name   string
	Match  string // exact, prefix or model
	Vendor string
	Type   ResourceType
	Source string
}

// NodeKind is the kind of node the resource shows.
func (r *Resource) NodeKind() Kind {
	if r.Type == ResourceAccelerator {
		return KindAccelerator
	}
	return KindGPU
}

//go:embed data/resources.tsv
var resourcesTSV []byte

// resourceTable is resources.tsv, indexed: exact names, prefixes longest first, model rows.
type resourceTable struct {
	rows     []*Resource
	exact    map[string]*Resource
	prefixes []*Resource
	models   []*Resource
}

// resources is read once: ResourceKind runs on every capacity key of every review, before any
// knowledge base is at hand. Its tests check every row.
var resources = mustResources(resourcesTSV)

func mustResources(data []byte) *resourceTable {
	t, err := parseResources(data)
	if err != nil {
		panic(fmt.Sprintf("gpuinfo: resources.tsv: %v", err))
	}
	return t
}

func parseResources(data []byte) (*resourceTable, error) {
	t := &resourceTable{exact: map[string]*Resource{}}
	err := eachRow(data, 5, func(line int, f []string) error {
		r := &Resource{Name: f[0], Match: f[1], Vendor: f[2], Type: ResourceType(f[3]), Source: f[4]}
		if !slices.Contains(resourceTypes, r.Type) {
			return fmt.Errorf("kind %q is not one of %v", f[3], resourceTypes)
		}
		if r.Vendor == "" || r.Source == "" || r.Source == "-" {
			return fmt.Errorf("%s: a resource needs a vendor and a source", r.Name)
		}
		domain, rest, ok := strings.Cut(r.Name, "/")
		if !ok || len(validation.IsDNS1123Subdomain(domain)) > 0 {
			return fmt.Errorf("%s: not a domain-prefixed resource name", r.Name)
		}
		switch r.Match {
		case "exact":
			if len(validation.IsQualifiedName(r.Name)) > 0 {
				return fmt.Errorf("%s: not a valid resource name", r.Name)
			}
			if t.exact[r.Name] != nil {
				return fmt.Errorf("%s listed twice", r.Name)
			}
			t.exact[r.Name] = r
		case "prefix":
			t.prefixes = append(t.prefixes, r)
		case "model", "vgpu":
			if rest != "" {
				return fmt.Errorf("%s: a %s row is a domain and its slash", r.Name, r.Match)
			}
			t.models = append(t.models, r)
		default:
			return fmt.Errorf("%s: match %q is not exact, prefix, model or vgpu", r.Name, r.Match)
		}
		t.rows = append(t.rows, r)
		return nil
	})
	sort.SliceStable(t.prefixes, func(i, j int) bool { return len(t.prefixes[i].Name) > len(t.prefixes[j].Name) })
	// a vGPU type's name is a model name too: the vgpu rows are tried first
	sort.SliceStable(t.models, func(i, j int) bool { return t.models[i].Match == "vgpu" && t.models[j].Match != "vgpu" })
	return t, err
}

// lookup finds the row a capacity resource name matches, or nil.
func (t *resourceTable) lookup(name string) *Resource {
	if strings.IndexByte(name, '/') < 0 {
		return nil // cpu, memory, pods, hugepages-2Mi: the kubelet's own resources
	}
	if r := t.exact[name]; r != nil {
		return r
	}
	for _, r := range t.prefixes {
		if strings.HasPrefix(name, r.Name) {
			return r
		}
	}
	for _, r := range t.models {
		if rest, ok := strings.CutPrefix(name, r.Name); ok && isModelName(rest) && (r.Match != "vgpu" || vgpuProfile.MatchString(rest)) {
			return r
		}
	}
	return nil
}

// vgpuProfile matches the end of a vGPU type's name: '-', the frame buffer in GB (after the
// MIG slice for a MIG-backed type) and the profile's letter: -16Q, -1-18C.
var vgpuProfile = regexp.MustCompile(`-[0-9]+(-[0-9]+)?[A-Z]$`)

// IsNamedResource says a capacity resource name is read for the model it names (a model or
// vgpu row of resources.tsv).
func IsNamedResource(r *Resource) bool { return r.Match == "model" || r.Match == "vgpu" }

// isModelName says the rest of a resource name names a device model as NVIDIA's KubeVirt
// plugin writes it: upper-case letters and digits up to a '_' (GA100_A100_SXM4_40GB).
func isModelName(rest string) bool {
	if rest == "" || rest[0] < 'A' || rest[0] > 'Z' {
		return false
	}
	i := strings.IndexFunc(rest, func(r rune) bool { return (r < 'A' || r > 'Z') && (r < '0' || r > '9') })
	return i > 0 && rest[i] == '_'
}

// NamedResourcePattern matches the device plugin resources that name their model, as
// NVIDIA's KubeVirt GPU device plugin makes them from the PCI device name
// (nvidia.com/GA100_A100_SXM4_40GB) or the vGPU type (nvidia.com/GRID_T4-16Q). RE2, for CEL;
// TestNamedResourcePattern holds it to the model rows of resources.tsv.
const NamedResourcePattern = `^nvidia\.com/[A-Z][A-Z0-9]*_`

// LookupResource finds the resources.tsv row of a capacity resource name.
func LookupResource(name string) (*Resource, bool) {
	r := resources.lookup(name)
	return r, r != nil
}

// Resources lists resources.tsv's rows in table order.
func Resources() []*Resource { return slices.Clone(resources.rows) }

// ResourceKind tells whether a capacity resource name shows a GPU, another accelerator, or
// neither ("").
func ResourceKind(name string) Kind {
	if r := resources.lookup(name); r != nil {
		return r.NodeKind()
	}
	return ""
}

// GPUResourceNames and GPUResourcePrefixes list the capacity names that show a GPU node: every
// row but the accelerators', of match exact and prefix (NamedResourcePattern covers the model
// rows).
func GPUResourceNames() []string    { return resources.names("exact", KindGPU) }
func GPUResourcePrefixes() []string { return resources.names("prefix", KindGPU) }

// AcceleratorResourceNames and AcceleratorResourcePrefixes list the capacity names of
// accelerators that are not GPUs.
func AcceleratorResourceNames() []string    { return resources.names("exact", KindAccelerator) }
func AcceleratorResourcePrefixes() []string { return resources.names("prefix", KindAccelerator) }

func (t *resourceTable) names(match string, kind Kind) []string {
	var out []string
	for _, r := range t.rows {
		if r.Match == match && r.NodeKind() == kind {
			out = append(out, r.Name)
		}
	}
	return out
}
