package gpuinfo

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Label keys the code refers to by name; labels.tsv lists every key inference reads.
const (
	LabelGFDProduct       = "nvidia.com/gpu.product"
	LabelGFDPresent       = "nvidia.com/gpu.present"
	LabelGFDCount         = "nvidia.com/gpu.count"
	LabelGFDMemory        = "nvidia.com/gpu.memory"
	LabelGKEAccelerator   = "cloud.google.com/gke-accelerator"
	LabelKarpenterGPUName = "karpenter.k8s.aws/instance-gpu-name"
	LabelKarpenterGPUMem  = "karpenter.k8s.aws/instance-gpu-memory"
	LabelKarpenterGPUCnt  = "karpenter.k8s.aws/instance-gpu-count"
	LabelKarpenterAccName = "karpenter.k8s.aws/instance-accelerator-name"
	LabelEKSGPUName       = "eks.amazonaws.com/instance-gpu-name"
	LabelEKSGPUMem        = "eks.amazonaws.com/instance-gpu-memory"
	LabelEKSGPUCnt        = "eks.amazonaws.com/instance-gpu-count"
	LabelCoreWeaveClass   = "gpu.nvidia.com/class"
	LabelAMDProduct       = "amd.com/gpu.product-name"
	LabelAMDProductBeta   = "beta.amd.com/gpu.product-name"
	LabelInstanceType     = "node.kubernetes.io/instance-type"
	LabelInstanceTypeBeta = "beta.kubernetes.io/instance-type"
)

// countLabels give the number of devices where the instance-type tables do not, in order.
var countLabels = []string{LabelKarpenterGPUCnt, LabelEKSGPUCnt, "karpenter.azure.com/sku-gpu-count", "aliyun.accelerator/nvidia_count"}

// Source names the evidence that decided a model: a convention's source in labels.tsv, or one
// of the sources below that are not labels. The conventions' order is the order of trust.
type Source string

func (s Source) String() string { return string(s) }

const (
	SourceGFD          Source = "gpu-feature-discovery"
	SourceGKE          Source = "gke"
	SourceKarpenter    Source = "karpenter"
	SourceEKS          Source = "eks-auto-mode"
	SourceCoreWeave    Source = "coreweave"
	SourceAMD          Source = "amd-node-labeller"
	SourceNFD          Source = "node-feature-discovery"
	SourceConfig       Source = "config-instance-type"
	SourceInstanceType Source = "instance-type"
	// SourceResource is a device plugin resource that names its model (KubeVirt's
	// nvidia.com/GA100_A100_SXM4_40GB); it is the device's own report and comes first.
	SourceResource Source = "device-plugin-resource"
)

// Node is what inference reads of a Node.
type Node struct {
	Labels      map[string]string
	Capacity    map[string]resource.Quantity
	Allocatable map[string]resource.Quantity // read when Capacity shows no accelerator
	// Devices are what DRA drivers publish for the node in ResourceSlices (NodeDevices).
	Devices []Device
	// OwnLabel is the label the webhook writes (its config's labelKey): its own output, never
	// read as evidence, whatever its key says.
	OwnLabel string
}

// Evidence is one source's opinion of the model.
type Evidence struct {
	Source Source `json:"source"`
	Key    string `json:"key"`
	Value  string `json:"value"`
	Model  string `json:"model"`
	model  *Model
	names  bool // the evidence could have named a model: one it does not name is unrecognised
}

// Unrecognised says the evidence names a model the tables do not know.
func (e Evidence) Unrecognised() bool { return e.model == nil && e.names }

// Inference is what the knowledge base concludes about a node.
type Inference struct {
	// Kind is "gpu", "accelerator" (not a GPU), or "" for a node with no accelerator evidence.
	Kind Kind
	// Resource is the capacity resource that showed the device, and Count its quantity.
	Resource string
	Count    int64
	// ResourceType is what one unit of Resource is (resources.tsv's kind): only a gpu
	// resource's Count is a number of physical GPUs, and only as PhysicalCount says.
	ResourceType ResourceType
	// MIG says the node reports MIG slices or partitions of its GPUs (a slice resource, or a
	// MIG product); Shared that it reports shared or virtual replicas, or GPU memory or compute
	// units of a sharing scheduler. Either way Count is not a number of physical GPUs.
	MIG, Shared bool
	// InstanceType is the node's instance type label; ExpectedCount the devices the tables
	// say it has (0 when unknown or fractional).
	InstanceType  string
	ExpectedCount int64
	// DeviceCount is the number of physical GPUs the node's ResourceSlices publish, and
	// DeviceDrivers the DRA drivers that publish them. SlicesOnly says nothing on the Node
	// object shows an accelerator: only its slices do.
	DeviceCount   int64
	DeviceDrivers []string
	SlicesOnly    bool
	// Model is the chosen model, nil when no evidence names one. Derived is set when the model
	// was made from a product string the tables do not know.
	Model   *Model
	Derived bool
	Source  Source
	// Evidence lists every opinion found, most trusted first; Conflicts those that disagree
	// with the chosen model.
	Evidence  []Evidence
	Conflicts []Evidence
}

// GPU says whether the node has a GPU.
func (in Inference) GPU() bool { return in.Kind == KindGPU }

// Value is the label value for the node's model, "" when the model is unknown.
func (in Inference) Value() string {
	if in.Model == nil {
		return ""
	}
	return in.Model.LabelValue()
}

// Infer reads a node's labels and capacity and says what accelerator it has.
func (kb *KB) Infer(n Node) Inference {
	var in Inference
	in.readCapacity(n.Capacity)
	if in.Kind == "" {
		// Some device plugins and node images leave capacity out of a status patch.
		in.readCapacity(n.Allocatable)
	}
	if r := resources.lookup(in.Resource); r != nil && IsNamedResource(r) {
		in.add(SourceResource, "status.capacity", in.Resource, kb.matchProduct(in.Resource[len(r.Name):]), true)
	}

	l := n.Labels
	in.InstanceType = l[LabelInstanceType]
	if in.InstanceType == "" {
		in.InstanceType = l[LabelInstanceTypeBeta]
	}
	var buf [32]hit
	for _, h := range kb.hits(l, n.OwnLabel, buf[:0]) {
		kb.read(&in, kb.conventions[h.row], h.key, l[h.key], l)
	}
	if in.ExpectedCount == 0 {
		for _, k := range countLabels {
			if in.ExpectedCount = firstCount(l[k]); in.ExpectedCount > 0 {
				break
			}
		}
	}

	// MIG profiles are the least trusted evidence, read once every label has been.
	capacity := n.Capacity
	if in.Resource != "" && !hasKey(capacity, in.Resource) {
		capacity = n.Allocatable
	}
	kb.readMIG(&in, capacity, l)

	if len(n.Devices) > 0 {
		onNode := in.Kind != "" || len(in.Evidence) > 0
		kb.readDevices(&in, n.Devices)
		in.SlicesOnly = !onNode && (in.DeviceCount > 0 || len(in.Evidence) > 0)
	}

	in.resolve()
	if in.Kind == "" {
		switch {
		case in.Model != nil:
			in.Kind = in.Model.Kind
		case len(in.Evidence) > 0 || in.DeviceCount > 0:
			in.Kind = KindGPU
		}
	}
	return in
}

// read applies one convention to one label and records what it shows.
func (kb *KB) read(in *Inference, c *Convention, key, value string, l map[string]string) {
	var m *Model
	shows := c.Presence // the label alone shows an accelerator node
	names := true       // the reader names models, so a value it cannot read is worth saying
	src := c.Source
	if c.Values != nil { // lowering the value costs an allocation where it has capitals
		if vm := c.Values[strings.ToLower(value)]; vm != nil {
			in.add(src, key, value, vm, true)
			return
		}
	}
	switch c.read {
	case readNVML:
		product, mig, shared := splitProduct(value)
		in.MIG = in.MIG || mig
		in.Shared = in.Shared || shared
		if kb.notGPU(tokens(product)) {
			break // a display adapter, an NVSwitch, a NIC: a GPU node, no model
		}
		if m = kb.matchProduct(product); m != nil {
			m = kb.variant(m, productMemory(value, mig, l[c.Arg]))
		} else if m = kb.deriveModel(product); m != nil {
			in.Derived = true
		}
	case readProduct:
		m = kb.matchProduct(value)
	case readName:
		m = kb.matchName(value, l[c.Arg])
	case readCloud:
		m = kb.matchCloud(value)
	case readInstanceType:
		it, ok := kb.LookupInstanceType(value)
		if !ok || slices.ContainsFunc(in.Evidence, func(e Evidence) bool { return e.Value == value && e.model == it.Model }) {
			break // the beta label repeats the instance type: one opinion, not two
		}
		m, shows = it.Model, true
		if it.Cloud == "config" {
			src = SourceConfig
		}
		if in.ExpectedCount == 0 {
			in.ExpectedCount = it.ExpectedCount()
		}
	case readTypeName:
		m, shows = kb.readTypeName(in, value)
		names = false
	case readPCIID:
		m, shows = kb.pciGPU("", c.Arg, value)
	case readPCIKey:
		m, _ = kb.pciGPU("", c.Arg, strings.TrimPrefix(key, c.Key))
	case readIntelPCIKey:
		// gpu.intel.com/device-id.<class>-<device>.present; the .count beside it says no more
		rest, ok := strings.CutSuffix(strings.TrimPrefix(key, c.Key), ".present")
		if !ok {
			return
		}
		class, device, _ := strings.Cut(rest, "-")
		m, _ = kb.pciGPU(class, c.Arg, device)
	case readNFDPCI:
		if value != "true" {
			return
		}
		class, vendor, device, ok := parseNFDPCI(strings.TrimPrefix(key, c.Key))
		if !ok {
			return
		}
		m, shows = kb.pciGPU(class, vendor, device)
		names = device != ""
	case readPresent:
		shows, names = value != "false" && value != "0", false
	case readNone:
		return
	case readGeneric:
		m, shows, names = kb.readGeneric(c, key, value)
	}
	if m != nil || shows {
		in.add(src, key, value, m, names)
	}
}

// readCapacity finds the accelerator resources in capacity. A GPU resource wins over the
// others, in resources.tsv's order of kinds; among several of a kind an exact name wins, then
// the first by name, so the choice does not depend on map order.
func (in *Inference) readCapacity(capacity map[string]resource.Quantity) {
	var chosen *Resource
	for name, q := range capacity {
		r := resources.lookup(name)
		if r == nil || q.Sign() <= 0 {
			continue
		}
		switch r.Type {
		case ResourceSlice:
			in.MIG = true
		case ResourceReplica, ResourceMemory, ResourceShare:
			in.Shared = true
		}
		if chosen == nil || before(r, name, chosen, in.Resource) {
			chosen = r
			in.Kind, in.Resource, in.ResourceType, in.Count = r.NodeKind(), name, r.Type, deviceCount(q)
		}
	}
}

// before orders the resources of a node: by kind, exact names first, then by name.
func before(r *Resource, name string, than *Resource, thanName string) bool {
	if a, b := slices.Index(resourceTypes, r.Type), slices.Index(resourceTypes, than.Type); a != b {
		return a < b
	}
	if a, b := r.Match == "exact", than.Match == "exact"; a != b {
		return a
	}
	return name < thanName
}

// PhysicalCount is the number of physical GPUs the device plugin reports, 0 where its
// resources do not say it: a slice, replica, memory or share resource, or a MIG or shared
// product, means a count of nvidia.com/gpu or amd.com/gpu beside them counts something else
// too (HAMi's split count, AMD's partitions, MIG-enabled GPUs left out).
func (in *Inference) PhysicalCount() int64 {
	if in.ResourceType != ResourceGPU || in.MIG || in.Shared {
		return 0
	}
	return in.Count
}

// ParseQuantity parses a capacity quantity, first refusing what resource.ParseQuantity would
// spend minutes on: a decimal exponent of more than two digits (1E66666666666) or a string
// longer than any real quantity. Device counts never have exponents.
func ParseQuantity(s string) (resource.Quantity, error) {
	if len(s) > 40 {
		return resource.Quantity{}, fmt.Errorf("quantity %.40q... is longer than 40 characters", s)
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp := strings.TrimLeft(s[i+1:], "+-")
		if len(exp) > 2 && strings.Trim(exp, "0123456789") == "" {
			return resource.Quantity{}, fmt.Errorf("quantity %q: exponent out of range", s)
		}
	}
	return resource.ParseQuantity(s)
}

// deviceCount reads a device quantity as a whole number, rounded up, without materialising
// it: Value() on a quantity such as 1E66666666666 computes every digit and never returns.
// Counts beyond int64 read as MaxInt64.
func deviceCount(q resource.Quantity) int64 {
	if n, ok := q.AsInt64(); ok {
		return n
	}
	f := math.Ceil(q.AsApproximateFloat64())
	switch {
	case math.IsNaN(f) || f <= 0:
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	}
	return int64(f)
}

func (in *Inference) add(src Source, key, value string, m *Model, names bool) {
	e := Evidence{Source: src, Key: key, Value: value, model: m, names: names}
	if m != nil {
		e.Model = m.Name
	}
	in.Evidence = append(in.Evidence, e)
}

// resolve picks the most trusted evidence that names a model, takes a more specific name
// from evidence about the same chip, and records the rest that disagree.
func (in *Inference) resolve() {
	var chosen *Evidence
	for i := range in.Evidence {
		e := &in.Evidence[i]
		if e.model == nil {
			continue
		}
		switch {
		case chosen == nil:
			chosen = e
		case e.model == chosen.model || chosen.model.Refines == e.model.Name:
		case e.model.Refines == chosen.model.Name:
			chosen = e
		default:
			in.Conflicts = append(in.Conflicts, *e)
		}
	}
	if chosen != nil {
		in.Model, in.Source = chosen.model, chosen.Source
		if chosen.Source != SourceGFD {
			in.Derived = false
		}
	}
}

// splitProduct removes GPU Feature Discovery's MIG and sharing suffixes from a product name.
func splitProduct(v string) (product string, mig, shared bool) {
	product = v
	if i := indexFoldASCII(product, "-MIG-"); i >= 0 {
		product, mig = product[:i], true
	}
	if s, ok := strings.CutSuffix(product, "-SHARED"); ok {
		product, shared = s, true
	}
	return product, mig, shared
}

// indexFoldASCII finds an ASCII substring, ignoring ASCII case, by byte offset in s itself:
// upper-casing s first would change the length of non-ASCII text and misplace the offset.
func indexFoldASCII(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return i
		}
	}
	return -1
}

// lowerASCII lower-cases the ASCII letters of s, as CEL's lowerAscii does, and returns s
// itself when it has none in upper case (label keys mostly have none).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// MatchProduct finds the model a product string (NVML name, CoreWeave class, AMD product
// name, PCI device name) names: the first model, in table order, all of whose tokens the
// string contains.
func (kb *KB) MatchProduct(s string) *Model { return kb.matchProduct(s) }

func (kb *KB) matchProduct(s string) *Model {
	toks := tokens(s)
	for _, m := range kb.models {
		for _, set := range m.match {
			if containsAll(toks, set) {
				return m
			}
		}
	}
	return nil
}

// matchCloud reads a cloud's accelerator name (GKE's nvidia-tesla-t4): a known value, or the
// model it names once the vendor prefixes are removed.
func (kb *KB) matchCloud(v string) *Model {
	v = strings.ToLower(v)
	if m := kb.byAlias[v]; m != nil {
		return m
	}
	return kb.matchProduct(strings.TrimPrefix(strings.TrimPrefix(v, "nvidia-"), "tesla-"))
}

// matchName reads a provisioner's model name (Karpenter's a100) and, where the name has
// memory variants, picks the one whose memory is nearest the provisioner's memory label.
func (kb *KB) matchName(name, memory string) *Model {
	key := strings.ToLower(name)
	m := kb.byAlias[key]
	if m == nil {
		m = kb.byName[key]
	}
	if m == nil {
		return kb.matchProduct(name)
	}
	mem, _ := strconv.ParseInt(memory, 10, 64)
	return kb.variant(m, mem)
}

// variant picks, among a model and its memory variants, the one whose memory is nearest
// memMiB; a model without variants, or memMiB <= 0, stays as it is.
func (kb *KB) variant(m *Model, memMiB int64) *Model {
	if memMiB <= 0 {
		return m
	}
	base := m.VariantOf
	if base == "" {
		base = m.Name
	}
	best := m
	for _, v := range kb.variants[strings.ToLower(base)] {
		if abs(v.MemoryMiB-memMiB) < abs(best.MemoryMiB-memMiB) {
			best = v
		}
	}
	return best
}

// migMemSlices is how many of a GPU's eight memory slices each MIG compute-slice count gets
// (NVIDIA's MIG user guide: A100 40GB 2g.10gb, 3g.20gb, 4g.20gb, 7g.40gb). A 1g profile gets
// one or two (the A100 40GB's 1g.5gb and 1g.10gb; 1g.10gb is also the A100 80GB's one-slice
// profile), so it tells no memory: mig_profiles.tsv, TestMIGProfilesNameOnlyUnambiguousSets.
var migMemSlices = map[string]int64{"2": 2, "3": 4, "4": 4, "7": 8}

// productMemory is the whole GPU's memory in MiB, where the product string does not say it:
// from the MIG profile (1g.5gb is an eighth of a 40 GB A100), or from GFD's memory label,
// which under MIG is one slice's memory and so is used only without MIG.
func productMemory(product string, mig bool, memoryLabel string) int64 {
	if mig {
		i := indexFoldASCII(product, "-MIG-")
		g, rest, ok := strings.Cut(product[i+len("-MIG-"):], "g.")
		gb, ok2 := strings.CutSuffix(strings.ToLower(rest), "gb")
		n, err := strconv.ParseInt(gb, 10, 64)
		if slices := migMemSlices[g]; ok && ok2 && err == nil && slices > 0 && n > 0 && n < 1<<20 {
			return n * 1024 * 8 / slices
		}
		return 0
	}
	n, _ := strconv.ParseInt(memoryLabel, 10, 64)
	return n
}

// deriveModel names a GPU the tables do not know the way SkyPilot's labeler does: the
// product string without its vendor words (NVIDIA-GeForce-RTX-4090 becomes RTX4090), and only
// where what is left has the shape of an NVIDIA GPU family (families.tsv): never a display
// adapter (NVIDIA-DGX-Display), an NVSwitch or a NIC.
func (kb *KB) deriveModel(product string) *Model {
	s := strings.ToUpper(product)
	for _, cut := range []string{"NVIDIA-", "NVIDIA ", "GEFORCE-", "GEFORCE ", "TESLA-", "TESLA ", "QUADRO-", "QUADRO "} {
		s = strings.ReplaceAll(s, cut, "")
	}
	s = strings.ReplaceAll(strings.ReplaceAll(s, "RTX-", "RTX"), "RTX ", "RTX")
	if !kb.looksLikeGPU("nvidia", tokens(s)) {
		return nil
	}
	name := SanitizeLabelValue(s)
	if name == "" {
		return nil
	}
	return &Model{Name: name, Vendor: "nvidia", Kind: KindGPU, Source: "derived from the GPU Feature Discovery product name"}
}

// SanitizeLabelValue turns s into a valid, lowercase label value, or "" when nothing is left.
func SanitizeLabelValue(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b = append(b, c+('a'-'A'))
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
			b = append(b, c)
		case c == ' ':
			b = append(b, '-')
		}
	}
	if len(b) > validation.LabelValueMaxLength {
		b = b[:validation.LabelValueMaxLength]
	}
	out := strings.Trim(string(b), "-._")
	if len(validation.IsValidLabelValue(out)) > 0 {
		return ""
	}
	return out
}

// tokens splits s into upper-case runs of letters and digits.
func tokens(s string) []string {
	return strings.FieldsFunc(strings.ToUpper(s), func(r rune) bool {
		return (r < 'A' || r > 'Z') && (r < '0' || r > '9')
	})
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return len(want) > 0
}

func firstCount(vals ...string) int64 {
	for _, v := range vals {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}
