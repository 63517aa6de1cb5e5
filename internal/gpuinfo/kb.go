// Package gpuinfo is the webhook's knowledge of GPUs: which models exist, what the labels of
// other tools and the cloud instance types say about a node's accelerator, and which label
// value names it. It is pure: the tables are embedded data read once, and inference does no I/O.
package gpuinfo

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Kind tells GPUs from accelerators that are not GPUs (Neuron, Gaudi, TPU).
type Kind string

const (
	KindGPU         Kind = "gpu"
	KindAccelerator Kind = "accelerator"
)

// Model is one accelerator model, named as SkyPilot names it.
type Model struct {
	Name      string // canonical name, e.g. A100-80GB
	Vendor    string
	Kind      Kind
	MemoryMiB int64
	// Refines names the model that reports the same product string as this one; the two are
	// the same chip, so evidence for both is agreement and the more specific name wins.
	Refines string
	// VariantOf names the model this one differs from only by memory.
	VariantOf string
	Aliases   []string
	Source    string

	match [][]string // token sets, any one of which identifies the model in a product string
}

// Match returns the token sets any one of which names the model in a product string.
func (m *Model) Match() [][]string { return m.match }

// LabelValue is the value the webhook writes for the model: its name, lowercased.
func (m *Model) LabelValue() string { return strings.ToLower(m.Name) }

// InstanceType is one row of the instance-type table.
type InstanceType struct {
	Cloud string
	Name  string
	Model *Model
	// Count is the number of devices; a fraction for instances that get part of one GPU, and
	// 0 when the type name does not tell it.
	Count     float64
	MemoryMiB int64
	Source    string
}

// ExpectedCount is the whole number of devices the instance should report, or 0 when the
// instance has part of a device or the count is unknown.
func (it *InstanceType) ExpectedCount() int64 {
	if it.Count >= 1 && it.Count == math.Trunc(it.Count) {
		return int64(it.Count)
	}
	return 0
}

// KB is a parsed knowledge base. It is immutable once built and safe for concurrent use.
type KB struct {
	models        []*Model // in matching order
	byName        map[string]*Model
	byAlias       map[string]*Model
	variants      map[string][]*Model // base model name -> base and its memory variants
	instanceTypes map[string]*InstanceType
	typeNames     nameIndex                // compact model spellings, for reading instance-type names
	mig           migTable                 // mig_profiles.tsv: the models that list each MIG profile
	families      map[*Model][]*Model      // the models a name that spells a model may stand for
	overrides     map[string]*InstanceType // from the user's config; win over instanceTypes
	conventions   []*Convention            // in order of trust
	index         conventionIndex          // the conventions by the label keys they read
	shapes        []*shape                 // families.tsv: what a product the tables do not know must look like
	pci           map[string]*PCIDevice    // vendor+device -> device
	devices       []*DeviceConvention      // the DRA devices read, devices.tsv
}

// Tables are the knowledge base's data files' text.
type Tables struct {
	Models, InstanceTypes, Labels, PCI, Devices, Families []byte
}

var (
	//go:embed data/models.tsv
	modelsTSV []byte
	//go:embed data/instance_types.tsv
	instanceTypesTSV []byte
	//go:embed data/labels.tsv
	labelsTSV []byte
	//go:embed data/pci_ids.tsv
	pciTSV []byte
	//go:embed data/devices.tsv
	devicesTSV []byte
	//go:embed data/families.tsv
	familiesTSV []byte

	defaultKB = sync.OnceValues(func() (*KB, error) { return Parse(EmbeddedTables()) })
)

// EmbeddedTables are the tables built into the binary.
func EmbeddedTables() Tables {
	return Tables{Models: modelsTSV, InstanceTypes: instanceTypesTSV, Labels: labelsTSV, PCI: pciTSV, Devices: devicesTSV, Families: familiesTSV}
}

// Default returns the knowledge base built from the embedded tables. The tables are checked
// by tests, so an error here means a broken build; it panics rather than run without them.
func Default() *KB {
	kb, err := defaultKB()
	if err != nil {
		panic(fmt.Sprintf("gpuinfo: embedded tables: %v", err))
	}
	return kb
}

// Parse builds a knowledge base from the tables' text.
func Parse(t Tables) (*KB, error) {
	kb := &KB{
		byName:        map[string]*Model{},
		byAlias:       map[string]*Model{},
		variants:      map[string][]*Model{},
		instanceTypes: map[string]*InstanceType{},
	}
	err := eachRow(t.Models, 9, func(line int, f []string) error {
		m := &Model{Name: f[0], Vendor: f[1], Kind: Kind(f[2]), Refines: dash(f[5]), VariantOf: dash(f[6]), Source: f[8]}
		if m.Kind != KindGPU && m.Kind != KindAccelerator {
			return fmt.Errorf("kind %q is neither gpu nor accelerator", f[2])
		}
		mem, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || mem <= 0 {
			return fmt.Errorf("memory_mib %q is not a positive number", f[3])
		}
		m.MemoryMiB = mem
		if dash(f[4]) != "" {
			for _, alt := range strings.Split(f[4], "|") {
				m.match = append(m.match, tokens(alt))
			}
		}
		if msgs := validation.IsValidLabelValue(m.LabelValue()); len(msgs) > 0 {
			return fmt.Errorf("model %q does not make a valid label value: %s", m.Name, strings.Join(msgs, "; "))
		}
		key := strings.ToLower(m.Name)
		if kb.byName[key] != nil {
			return fmt.Errorf("model %q listed twice", m.Name)
		}
		kb.byName[key] = m
		for _, a := range strings.Split(dash(f[7]), ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if prev := kb.byAlias[a]; prev != nil {
				return fmt.Errorf("alias %q names both %s and %s", a, prev.Name, m.Name)
			}
			m.Aliases = append(m.Aliases, a)
			kb.byAlias[a] = m
		}
		kb.models = append(kb.models, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	for _, m := range kb.models {
		for _, ref := range []string{m.Refines, m.VariantOf} {
			if ref != "" && kb.byName[strings.ToLower(ref)] == nil {
				return nil, fmt.Errorf("models: %s refers to unknown model %q", m.Name, ref)
			}
		}
		if m.VariantOf != "" {
			base := strings.ToLower(m.VariantOf)
			if len(kb.variants[base]) == 0 {
				kb.variants[base] = []*Model{kb.byName[base]}
			}
			kb.variants[base] = append(kb.variants[base], m)
		}
	}
	kb.indexTypeNames()
	if kb.mig, err = kb.parseMIG(migProfilesTSV); err != nil {
		return nil, fmt.Errorf("mig profiles: %w", err)
	}
	err = eachRow(t.InstanceTypes, 6, func(line int, f []string) error {
		it, err := kb.newInstanceType(f[0], f[1], f[2], f[3], f[4], f[5])
		if err != nil {
			return err
		}
		key := strings.ToLower(it.Name)
		if kb.instanceTypes[key] != nil {
			return fmt.Errorf("instance type %q listed twice", it.Name)
		}
		kb.instanceTypes[key] = it
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("instance types: %w", err)
	}
	if kb.conventions, err = kb.parseConventions(t.Labels); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	kb.indexConventions()
	if err := kb.parsePCI(t.PCI); err != nil {
		return nil, fmt.Errorf("pci ids: %w", err)
	}
	if kb.devices, err = kb.parseDevices(t.Devices); err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	if kb.shapes, err = parseShapes(t.Families); err != nil {
		return nil, fmt.Errorf("families: %w", err)
	}
	return kb, nil
}

func (kb *KB) newInstanceType(cloud, name, model, count, memory, source string) (*InstanceType, error) {
	if name == "" {
		return nil, fmt.Errorf("empty instance type")
	}
	m := kb.byName[strings.ToLower(model)]
	if m == nil {
		return nil, fmt.Errorf("instance type %q: unknown accelerator %q", name, model)
	}
	it := &InstanceType{Cloud: cloud, Name: name, Model: m, Source: source}
	if count != "" && count != "-" { // unknown where one type name covers several sizes (Nebius platforms)
		c, err := strconv.ParseFloat(count, 64)
		if err != nil || c <= 0 || c > 1024 || math.IsNaN(c) {
			return nil, fmt.Errorf("instance type %q: count %q is not a positive number", name, count)
		}
		it.Count = c
	}
	var err error
	if memory != "" {
		if it.MemoryMiB, err = strconv.ParseInt(memory, 10, 64); err != nil || it.MemoryMiB <= 0 {
			return nil, fmt.Errorf("instance type %q: memory_mib %q is not a positive number", name, memory)
		}
	}
	return it, nil
}

// InstanceTypeRow is an instance type the user adds or overrides in the webhook's config.
type InstanceTypeRow struct {
	Name  string
	Model string // a model name (H100) or label value (h100)
	Count int64  // 0 when not given
}

// WithInstanceTypes returns a knowledge base in which rows add to or override the built-in
// instance-type table. The receiver is not changed.
func (kb *KB) WithInstanceTypes(rows []InstanceTypeRow) (*KB, error) {
	out := *kb
	out.overrides = make(map[string]*InstanceType, len(rows))
	for _, r := range rows {
		count := "-"
		if r.Count > 0 {
			count = strconv.FormatInt(r.Count, 10)
		}
		if _, known := kb.Model(r.Model); !known {
			// A GPU the tables do not know: the user names it, so it needs only a valid value.
			m := &Model{Name: r.Model, Kind: KindGPU, MemoryMiB: 1, Source: "webhook config"}
			if msgs := validation.IsValidLabelValue(m.LabelValue()); len(msgs) > 0 || m.Name == "" {
				return nil, fmt.Errorf("instance type %q: %q is not a known GPU nor a valid label value", r.Name, r.Model)
			}
			out.byName = maps.Clone(out.byName)
			out.byName[strings.ToLower(m.Name)] = m
		}
		it, err := out.newInstanceType("config", r.Name, r.Model, count, "", "webhook config")
		if err != nil {
			return nil, err
		}
		out.overrides[strings.ToLower(r.Name)] = it
	}
	return &out, nil
}

// Model looks a model up by canonical name or label value, case-insensitively.
func (kb *KB) Model(name string) (*Model, bool) {
	m, ok := kb.byName[strings.ToLower(name)]
	return m, ok
}

// Models lists the known models in matching order.
func (kb *KB) Models() []*Model { return kb.models }

// LookupInstanceType finds a row for an instance type; rows from the config win.
func (kb *KB) LookupInstanceType(name string) (*InstanceType, bool) {
	if name == "" {
		return nil, false
	}
	key := strings.ToLower(name)
	if it, ok := kb.overrides[key]; ok {
		return it, true
	}
	it, ok := kb.instanceTypes[key]
	return it, ok
}

// InstanceTypes lists every built-in and configured row, sorted by name.
func (kb *KB) InstanceTypes() []*InstanceType {
	seen := map[string]*InstanceType{}
	for k, it := range kb.instanceTypes {
		seen[k] = it
	}
	for k, it := range kb.overrides {
		seen[k] = it
	}
	out := make([]*InstanceType, 0, len(seen))
	for _, it := range seen {
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// eachRow calls fn for every non-comment line of a tab-separated table with n columns.
func eachRow(data []byte, n int, fn func(line int, fields []string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) != n {
			return fmt.Errorf("line %d: %d columns, want %d", line, len(f), n)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		if err := fn(line, f); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
	return sc.Err()
}

func dash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}
