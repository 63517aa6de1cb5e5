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
	mv, sv, okv := kb.spotModel(vt)
	mk, sk, okk := kb.spotModel(kt)
	switch {
	case !okv || !okk || (sv != nil && sk != nil && !kb.sameChip(sv, sk)):
		m = nil // two models, in one string or between key and value: neither
	case mv != nil:
		m = kb.statedVariant(mv, vt)
	case mk != nil:
		m = kb.statedVariant(mk, kt)
	}
	matched := (sv != nil && sv.Kind == KindGPU) || (sk != nil && sk.Kind == KindGPU)
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

// uniqueModel is the model a string's tokens name when exactly one does, and every token of
// the string is accounted for: a token of the model's, its memory, or a word that qualifies a
// model without changing it (families.tsv's plain rows: SXM, PCIe, NVIDIA, the words of
// label keys). A model matches by one of its token sets, or by one token that is its compact
// spelling (Akash's rtx4090); every other model that matches must be one the first contains
// (the A100 in "A100 80GB", the H100 in "H100 NVL"). ok is false where two unrelated models
// match; a token of a device that is not a GPU (NVSwitch) names none.
func (kb *KB) uniqueModel(toks []string) (m *Model, ok bool) {
	m, _, ok = kb.spotModel(toks)
	return m, ok
}

// spotModel is uniqueModel that also gives the model a spelling stands for whose family the
// string does not settle (rtx6000 without its memory), so key and value can be compared.
func (kb *KB) spotModel(toks []string) (m, spotted *Model, ok bool) {
	var set []string
	take := func(o *Model, s []string) bool {
		switch {
		case m == nil:
			m, set = o, s
		case o == m:
			set = append(slices.Clip(set), s...)
		case containsAll(set, s):
		default:
			return false
		}
		return true
	}
	for _, o := range kb.models {
		for _, s := range o.match {
			if containsAll(toks, s) {
				if !take(o, s) {
					return nil, nil, false
				}
				break
			}
		}
	}
	// compact spellings over up to three tokens (rtx4090, RTX6000 Ada), the longest first; a
	// spelling stands for its family (rtx6000 for the Quadro and the Ada), which the stated
	// memory must settle
	mem := tokenMemory(toks)
	unsettled := false
	for i := 0; i < len(toks); i++ {
		for j := min(len(toks), i+3); j > i; j-- {
			o, found := kb.typeNames[strings.ToLower(strings.Join(toks[i:j], ""))]
			if !found {
				continue
			}
			if o == nil {
				return nil, nil, false // a spelling two models share
			}
			if spotted == nil {
				spotted = o
			}
			if o = kb.settle(o, mem); o == nil {
				unsettled = true
			} else if !take(o, toks[i:j]) {
				return nil, nil, false
			}
			i = j - 1
			break
		}
	}
	if unsettled {
		return nil, spotted, true
	}
	if m != nil {
		spotted = m
	}
	if m == nil || kb.notGPU(toks) {
		return nil, spotted, true
	}
	for _, t := range toks {
		if !slices.Contains(set, t) && tokenMemory([]string{t}) == 0 && !kb.plain(t) {
			return nil, spotted, true // a word the model does not account for (Navi, 4090 D)
		}
	}
	return m, m, true
}

// sameChip says two spotted models may be the same device: one stands in the other's family.
func (kb *KB) sameChip(a, b *Model) bool {
	return a == b || slices.Contains(kb.families[a], b) || slices.Contains(kb.families[b], a)
}

// settle is the one model of o's family (the models a spelling of o may stand for) that has
// the memory mem, or o where it has no family; nil where the family stays unsettled.
func (kb *KB) settle(o *Model, mem int64) *Model {
	fam := kb.families[o]
	if len(fam) <= 1 {
		return o
	}
	var out *Model
	for _, f := range fam {
		if mem > 0 && memoryClose(f.MemoryMiB, mem) {
			if out != nil {
				return nil
			}
			out = f
		}
	}
	return out
}

// notGPU says a token is one of a device that is not a GPU (families.tsv's not rows).
func (kb *KB) notGPU(toks []string) bool {
	for _, s := range kb.shapes {
		if s.kind == shapeNot && slices.ContainsFunc(toks, s.Pattern.MatchString) {
			return true
		}
	}
	return false
}

// plain says a token qualifies a model without changing it (families.tsv's plain rows).
func (kb *KB) plain(t string) bool {
	for _, s := range kb.shapes {
		if s.kind == shapePlain && s.Pattern.MatchString(t) {
			return true
		}
	}
	return false
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
	case mem > 0 && !memoryClose(m.MemoryMiB, mem):
		// the string's memory is another variant's, or none the model has
		for _, v := range vars {
			if memoryClose(v.MemoryMiB, mem) {
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
	kind    shapeKind
	Pattern *regexp.Regexp
	Source  string
}

type shapeKind string

const (
	shapeGPU   shapeKind = "gpu"   // a GPU family's shape
	shapeNot   shapeKind = "not"   // a token of a device that is not a GPU
	shapePlain shapeKind = "plain" // a token that qualifies a model without changing it
)

func parseShapes(data []byte) ([]*shape, error) {
	var out []*shape
	err := eachRow(data, 4, func(line int, f []string) error {
		s := &shape{Vendor: f[0], kind: shapeKind(f[1]), Source: f[3]}
		switch s.kind {
		case shapeGPU, shapeNot, shapePlain:
		default:
			return fmt.Errorf("kind %q is not gpu, not or plain", f[1])
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
	if kb.notGPU(toks) {
		return false
	}
	for _, s := range kb.shapes {
		if s.Vendor != vendor || s.kind != shapeGPU {
			continue
		}
		for i := range toks {
			// a shape may span two tokens (GTX 1080)
			if s.Pattern.MatchString(toks[i]) || (i+1 < len(toks) && s.Pattern.MatchString(toks[i]+" "+toks[i+1])) {
				return true
			}
		}
	}
	return false
}

// SourceGeneric is the evidence of the generic rows of labels.tsv.
const SourceGeneric Source = "generic"
