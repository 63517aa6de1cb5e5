package gpuinfo

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The generic reader: the last and least trusted rows of labels.tsv, for the labels of
// clouds and tools no other row knows. A label whose key holds a row's word (gpu,
// accelerator) and that no other row claims is read with the product-token matcher, in its
// value and else in its key (Akash puts the model in the key). It names a model only where
// exactly one model's tokens match and, for a model with memory variants, the string states
// the memory that picks one; anything else shows at most a GPU node of unknown model.

// genericOff are the values that say a label's device is absent.
var genericOff = []string{"false", "0", "no", "none", "off", "disabled", "n/a", "unknown"}

// readGeneric reads one label of a generic row: the model it names, whether it shows a GPU
// node, and whether it names a product the tables do not know.
func (kb *KB) readGeneric(c *Convention, key, value string) (m *Model, shows, names bool) {
	v := strings.ToLower(value)
	if slices.Contains(genericOff, v) {
		return nil, false, false
	}
	_, name, _ := strings.Cut(key, "/")
	if name == "" {
		name = key
	}
	vt, kt := tokens(value), tokens(name)
	mv, okv := kb.uniqueModel(vt)
	mk, okk := kb.uniqueModel(kt)
	switch {
	case !okv || !okk || (mv != nil && mk != nil && mv != mk):
		m = nil // two models, in one string or between key and value: neither
	case mv != nil:
		m = kb.statedVariant(mv, vt)
	case mk != nil:
		m = kb.statedVariant(mk, kt)
	}
	matched := (mv != nil || mk != nil)
	// the row's word is gpu, or the key or value names a GPU vendor: a GPU node
	vendor := slices.ContainsFunc(c.vendors, func(w string) bool { return slices.Contains(vt, w) || slices.Contains(kt, w) })
	shows = len(c.vendors) == 0 || vendor || matched
	if m != nil && m.Kind != KindGPU {
		shows = true // an accelerator the tables know (Gaudi): its own kind decides
	}
	// a value that is more than a vendor, a boolean or a count names a product
	names = matched || (v != "true" && !isCount(v) && len(vt) > 0 && !onlyVendor(vt, c.vendors))
	return m, shows, names
}

// genericVendorWords are the tokens that name a vendor only; a value of these names no product.
var genericVendorWords = []string{"NVIDIA", "AMD", "INTEL"}

func onlyVendor(toks, vendors []string) bool {
	for _, t := range toks {
		if !slices.Contains(vendors, t) && !slices.Contains(genericVendorWords, t) {
			return false
		}
	}
	return true
}

func isCount(v string) bool {
	n, err := strconv.ParseInt(v, 10, 64)
	return err == nil && n > 0
}

// uniqueModel is the model a product string's tokens name when exactly one does: every other
// model that matches must be one the first contains (the A100 in "A100 80GB", the H100 in
// "H100 NVL"). ok is false where two unrelated models match.
func (kb *KB) uniqueModel(toks []string) (m *Model, ok bool) {
	var set []string
	for _, o := range kb.models {
		for _, s := range o.match {
			if !containsAll(toks, s) {
				continue
			}
			switch {
			case m == nil:
				m, set = o, s
			case o == m, containsAll(set, s):
			default:
				return nil, false
			}
			break
		}
	}
	return m, true
}

// statedVariant keeps a model only where no memory variant could hide behind it: a model
// with variants needs the string to state its memory (80GB, Akash's ram.80Gi), and the
// variant must have that memory.
func (kb *KB) statedVariant(m *Model, toks []string) *Model {
	base := m.VariantOf
	if base == "" {
		base = m.Name
	}
	vars := kb.variants[strings.ToLower(base)]
	mem := tokenMemory(toks)
	switch {
	case mem > 0 && !memoryClose(m.MemoryMiB, mem/1024):
		// the string's memory is another variant's, or none the model has
		for _, v := range vars {
			if memoryClose(v.MemoryMiB, mem/1024) {
				return v
			}
		}
		return nil
	case mem > 0 || len(vars) == 0:
		return m
	}
	return nil
}

// tokenMemory is the memory, in MiB, a token such as 80GB, 80G or 80GI states; 0 for none.
func tokenMemory(toks []string) int64 {
	for _, t := range toks {
		for _, unit := range []string{"GIB", "GB", "GI", "G"} {
			if n, ok := strings.CutSuffix(t, unit); ok {
				if g, err := strconv.ParseInt(n, 10, 64); err == nil && g > 0 && g < 1<<20 {
					return g * 1024
				}
				break
			}
		}
	}
	return 0
}

// shape is one row of families.tsv: what the name of a vendor's GPU looks like, or a word
// that marks a device that is not a GPU (a display adapter, an NVSwitch, a BMC, a NIC).
type shape struct {
	Vendor  string
	GPU     bool // a GPU family's shape; false: a word no GPU's name has
	Pattern *regexp.Regexp
	Source  string
}

func parseShapes(data []byte) ([]*shape, error) {
	var out []*shape
	err := eachRow(data, 4, func(line int, f []string) error {
		s := &shape{Vendor: f[0], Source: f[3]}
		switch f[1] {
		case "gpu":
			s.GPU = true
		case "not":
		default:
			return fmt.Errorf("kind %q is neither gpu nor not", f[1])
		}
		re, err := regexp.Compile(`^(?:` + f[2] + `)$`)
		if err != nil {
			return err
		}
		if s.Source == "" {
			return fmt.Errorf("a shape needs a source")
		}
		s.Pattern = re
		out = append(out, s)
		return nil
	})
	return out, err
}

// looksLikeGPU says a product's tokens, its vendor words removed, have the shape of one of
// the vendor's GPU families and no token of a device that is not a GPU.
func (kb *KB) looksLikeGPU(vendor string, toks []string) bool {
	gpu := false
	for _, s := range kb.shapes {
		if s.Vendor != vendor {
			continue
		}
		for i := range toks {
			// a shape may span two tokens (RTX 4090, RTX PRO)
			one := s.Pattern.MatchString(toks[i])
			two := i+1 < len(toks) && s.Pattern.MatchString(toks[i]+" "+toks[i+1])
			if !s.GPU && one {
				return false
			}
			gpu = gpu || (s.GPU && (one || two))
		}
	}
	return gpu
}
