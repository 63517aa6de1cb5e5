package gpuinfo

import (
	"sort"
	"strconv"
	"strings"
)

// Reading instance-type names the tables do not list. Many clouds spell the GPU in the name
// (h200-141gb-sxm-ib.8x, gpu-h100x8-640gb, Standard_NC24lds_xl_RTXPRO6000BSE_v6,
// BM.GPU.B300.8), but so do CPU types by accident (t4g.micro), so a model token counts only
// with a second sign that the name is a GPU's: a gpu or NNvram token, Azure's N-series
// prefix, a count form (8x, h100x8, 8h100) or the GPU's memory right after the model. A
// token names a model only where no other model could hide behind it: A100 could be the
// 80 GB variant, H100 the NVL, L40 an L40S, so such a token needs the memory to tell which,
// else the node is a GPU of unknown model.

// SourceInstanceTypeName is the evidence of a model read from the instance type's name.
const SourceInstanceTypeName Source = "instance-type-name"

// sagemakerPrefix marks SageMaker's names for EC2 types (ml.p5.48xlarge is a p5.48xlarge).
const sagemakerPrefix = "ml."

// NameReading is what an instance type's name says of its accelerator.
type NameReading struct {
	// Model is the model the name spells, nil when it spells a family the name does not
	// settle (a100 without its memory) or none.
	Model *Model
	// GPU says the name spells an accelerator, with or without a model.
	GPU bool
	// Count is the device count from the name's count form, 0 when the name has none or
	// its forms disagree.
	Count int64
}

// nameIndex maps the compact spellings of models (lower case, letters and digits only) to
// the models, nil where two models share a spelling.
type nameIndex map[string]*Model

func (kb *KB) indexTypeNames() {
	kb.typeNames = nameIndex{}
	put := func(s string, m *Model) {
		k := compact(s)
		if k == "" {
			return
		}
		if prev, ok := kb.typeNames[k]; ok && prev != m {
			kb.typeNames[k] = nil
			return
		}
		kb.typeNames[k] = m
	}
	for _, m := range kb.models {
		put(m.Name, m)
		for _, a := range m.Aliases {
			put(a, m)
		}
		for _, set := range m.match {
			put(strings.Join(set, ""), m)
		}
	}
	kb.families = map[*Model][]*Model{}
	compacts, values := make([]string, len(kb.models)), make([]string, len(kb.models))
	for i, m := range kb.models {
		compacts[i], values[i] = compact(m.Name), m.LabelValue()
	}
	for i, m := range kb.models {
		kb.families[m] = kb.family(i, compacts, values)
	}
}

// family is the models a name that spells models[i] may stand for: the model, the models
// whose name adds a '-' suffix to its name (A100-80GB, H100-NVL) or letters only (L40S, T4g,
// A10G, MI250X), less those that refine it with the same memory (H100-MEGA is a platform,
// not another GPU).
func (kb *KB) family(i int, compacts, values []string) []*Model {
	m := kb.models[i]
	out := []*Model{m}
	base := values[i] + "-"
	for j, o := range kb.models {
		if j == i || o.Kind != m.Kind || o.Vendor != m.Vendor {
			continue
		}
		rest, ok := strings.CutPrefix(compacts[j], compacts[i])
		letters := ok && rest != "" && strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz") == ""
		if !letters && !strings.HasPrefix(values[j], base) {
			continue
		}
		if o.Refines == m.Name && memoryClose(o.MemoryMiB, m.MemoryMiB) {
			continue
		}
		out = append(out, o)
	}
	return out
}

// TypeNameSpellings are the compact spellings (lower case, letters and digits) the name
// reader finds models by: every name it reads as a model's contains one of them.
func (kb *KB) TypeNameSpellings() []string {
	out := make([]string, 0, len(kb.typeNames))
	for k := range kb.typeNames {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ReadInstanceTypeName reads an instance type's name alone, as inference does for a type
// the tables and the config do not list.
func (kb *KB) ReadInstanceTypeName(name string) NameReading {
	s := strings.ToLower(name)
	if rest, ok := strings.CutPrefix(s, sagemakerPrefix); ok {
		if it, ok := kb.LookupInstanceType(rest); ok {
			return NameReading{Model: it.Model, GPU: true, Count: it.ExpectedCount()}
		}
		s = rest
	}
	toks := strings.FieldsFunc(s, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') })
	spans := kb.modelSpans(toks)
	if len(spans) == 0 {
		return NameReading{}
	}
	fam := spans[0].family
	for _, sp := range spans[1:] {
		if !sameFamily(fam, sp.family) {
			return NameReading{} // two models in one name: read neither
		}
	}
	// the count forms must agree: -1 marks two that do not
	count := int64(0)
	agree := func(n int64) {
		switch {
		case n <= 0 || count == n:
		case count == 0:
			count = n
		default:
			count = -1
		}
	}
	for _, sp := range spans {
		agree(sp.count)
	}
	for _, t := range toks {
		agree(countToken(t))
	}
	mem := statedMemory(toks, spans[0].end)
	if !(count != 0 || mem > 0 || gpuMarker(toks)) {
		return NameReading{}
	}
	if count < 0 {
		count = 0
	}
	r := NameReading{GPU: true, Count: count}
	cands := fam
	if mem > 0 {
		cands = nil
		for _, m := range fam {
			if memoryClose(m.MemoryMiB, mem) || (count > 1 && memoryClose(m.MemoryMiB*count, mem)) {
				cands = append(cands, m)
			}
		}
	}
	if len(cands) == 1 {
		r.Model = cands[0]
	}
	return r
}

// span is a run of name tokens that spells a model, with the count glued to it.
type span struct {
	end    int // index of the span's last token
	family []*Model
	count  int64
}

// modelSpans finds the runs of up to three tokens that spell a model, alone or with a count
// glued to it (h100x8, mi300x1, 8h100, 24x120x1l40s); a longer run wins over the runs in it.
func (kb *KB) modelSpans(toks []string) []span {
	var out []span
	for i := range toks {
		best := span{end: -1}
		joined := ""
		for j := i; j < len(toks) && j < i+3; j++ {
			// a count form lies inside one token: 8 and l40 apart are no 8l40
			inLast := len(joined) + 1
			joined += toks[j]
			if m, n, ok := kb.spell(joined, inLast, j == i); ok {
				best = span{end: j, count: n}
				if m != nil {
					best.family = kb.families[m]
				}
			}
		}
		if best.end < 0 {
			continue
		}
		if len(out) > 0 && out[len(out)-1].end >= best.end {
			continue // inside the previous, longer span
		}
		out = append(out, best)
	}
	return out
}

// spell reads one compact string as a model, with a count glued after it (the model's
// spelling ending in the last token, at least minModel long) or, where prefix is set,
// before it; ok with a nil model where the spelling is two models'.
func (kb *KB) spell(s string, minModel int, prefix bool) (*Model, int64, bool) {
	if m, ok := kb.typeNames[s]; ok {
		return m, 0, true
	}
	// h100x8, l40sx1, and mi300x1 where the model's own x is the separator
	for k := len(s) - 1; k > 0; k-- {
		if s[k] < '0' || s[k] > '9' {
			model, digits := s[:k+1], s[k+1:]
			if digits == "" || len(model) < minModel {
				break
			}
			if strings.HasSuffix(model, "x") {
				if m, ok := kb.typeNames[model[:len(model)-1]]; ok {
					return m, wholeCount(digits), true
				}
				if m, ok := kb.typeNames[model]; ok {
					return m, wholeCount(digits), true
				}
			}
			break
		}
	}
	// 8h100, 8xh100, and IBM's vCPU x memory x count prefix: 24x120x1l40s
	for k := 1; prefix && k < len(s); k++ {
		if s[k-1] < '0' || s[k-1] > '9' {
			if s[k-1] != 'x' || k < 2 || s[k-2] < '0' || s[k-2] > '9' {
				break
			}
		}
		if m, ok := kb.typeNames[s[k:]]; ok && s[k] >= 'a' {
			prefix := strings.TrimSuffix(s[:k], "x")
			digits := prefix[strings.LastIndex(prefix, "x")+1:]
			return m, wholeCount(digits), true
		}
	}
	return nil, 0, false
}

// countToken reads a count-form token (Crusoe's .8x, Lambda's 8x, CoreWeave's -8x).
func countToken(t string) int64 {
	d, ok := strings.CutSuffix(t, "x")
	if !ok {
		return 0
	}
	return wholeCount(d)
}

func wholeCount(d string) int64 {
	n, err := strconv.ParseInt(d, 10, 64)
	if err != nil || n < 1 || n > 64 || d[0] == '0' {
		return 0
	}
	return n
}

// statedMemory is the memory, in MiB, the name gives right after the model (80gb, 141gb,
// Scaleway's -1-24G and -SXM-8-80G); 0 when it gives none.
func statedMemory(toks []string, end int) int64 {
	for i, skipped := end+1, 0; i < len(toks) && skipped <= 2; i++ {
		t := toks[i]
		if gb, ok := strings.CutSuffix(strings.TrimSuffix(t, "b"), "g"); ok {
			if n, err := strconv.ParseInt(gb, 10, 64); err == nil && n > 0 && n < 1<<20 {
				return n * 1024
			}
			return 0
		}
		if strings.Trim(t, "0123456789") != "" && !strings.HasPrefix(t, "sxm") && t != "pcie" {
			return 0
		}
		skipped++
	}
	return 0
}

// gpuMarker says a token calls the type a GPU's: gpu (gpu-h100x8, BM.GPU.B300.8), NNvram
// (Vultr), or the N-series of Azure's Standard_<series><vCPUs>... names.
func gpuMarker(toks []string) bool {
	for _, t := range toks {
		if t == "gpu" {
			return true
		}
		if n, ok := strings.CutSuffix(t, "vram"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
			return true
		}
	}
	if len(toks) > 1 && toks[0] == "standard" && strings.HasPrefix(toks[1], "n") {
		t, i := toks[1], 1
		for i < len(t) && i <= 3 && t[i] >= 'a' && t[i] <= 'z' {
			i++
		}
		return i < len(t) && t[i] >= '0' && t[i] <= '9'
	}
	return false
}

// memoryClose says a device of m MiB is what a name's n GB means: within 6% of n GiB, or of
// n decimal GB (L40S's 48 GB is 45776 MiB).
func memoryClose(m, n int64) bool {
	near := func(a, b float64) bool { return a > 0 && b > 0 && abs(int64(a-b)) <= int64(0.06*b) }
	return near(float64(m), float64(n)) || near(float64(m), float64(n)*1e9/(1<<30))
}

func sameFamily(a, b []*Model) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// compact lower-cases s and keeps its letters and digits.
func compact(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// readTypeName is the instance-type-name reader: the name of an instance type that neither
// the tables nor the config list, read once even where the beta label repeats it.
func (kb *KB) readTypeName(in *Inference, value string) (m *Model, shows bool) {
	if _, ok := kb.LookupInstanceType(value); ok {
		return nil, false
	}
	for _, e := range in.Evidence {
		if e.Source == SourceInstanceTypeName && strings.EqualFold(e.Value, value) {
			return nil, false
		}
	}
	r := kb.ReadInstanceTypeName(value)
	if in.ExpectedCount == 0 && r.Model != nil {
		in.ExpectedCount = r.Count
	}
	return r.Model, r.GPU
}
