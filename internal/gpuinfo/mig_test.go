package gpuinfo

import (
	"regexp"
	"slices"
	"testing"
)

// The precision test of the MIG reader over the whole of mig_profiles.tsv: for every profile
// alone, and for every model's whole profile set and each pair of its profiles, the reader
// names a model exactly when one model alone lists them all; where the set is ambiguous (the
// A100 80GB and the H100 80GB share every name) it names none. And the memory the GFD reader
// takes from a MIG product suffix picks the same model among memory variants.
func TestMIGProfilesNameOnlyUnambiguousSets(t *testing.T) {
	kb := Default()
	listing := func(profiles []string) []*Model {
		var out []*Model
		for _, m := range kb.models {
			if !slices.ContainsFunc(profiles, func(p string) bool { return !slices.Contains(kb.mig[p], m) }) {
				out = append(out, m)
			}
		}
		return out
	}
	check := func(profiles []string) (named bool) {
		want := listing(profiles)
		got := kb.MIGModel(profiles)
		switch {
		case len(want) == 1 && got != want[0]:
			t.Errorf("%v: only %s lists them, the reader names %v", profiles, want[0].Name, got)
		case len(want) != 1 && got != nil:
			t.Errorf("%v: %d models list them, the reader names %s", profiles, len(want), got.Name)
		}
		return got != nil
	}
	byModel := map[*Model][]string{}
	for p, models := range kb.mig {
		for _, m := range models {
			byModel[m] = append(byModel[m], p)
		}
	}
	named, sets := 0, 0
	for p := range kb.mig {
		sets++
		if check([]string{p}) {
			named++
		}
	}
	for m, ps := range byModel {
		slices.Sort(ps)
		check(ps)
		for i := range ps {
			for j := i + 1; j < len(ps); j++ {
				check([]string{ps[i], ps[j]})
			}
			// The GFD reader's MIG product for this profile picks this model among its
			// memory variants, or a model with none.
			in := kb.Infer(Node{Labels: map[string]string{LabelGFDProduct: "NVIDIA-" + migProduct(m) + "-MIG-" + ps[i]}})
			if in.Model != nil && in.Model != m && (len(kb.variants[baseName(m)]) > 0) {
				t.Errorf("GFD product of %s with MIG %s names %s", m.Name, ps[i], in.Model.Name)
			}
		}
	}
	if kb.MIGModel([]string{"1g.10gb"}) != nil || kb.MIGModel([]string{"7g.80gb"}) != nil {
		t.Error("the A100 80GB and H100 80GB profiles name a model")
	}
	t.Logf("mig_profiles.tsv: %d profiles of %d models; %d profiles name a model alone", sets, len(byModel), named)
}

// migProduct is a product string the tables match to m: its first token set.
func migProduct(m *Model) string {
	if len(m.match) == 0 {
		return m.Name
	}
	return slices.Concat(m.match[0])[0] + "-" + joinTokens(m.match[0][1:])
}

func joinTokens(ts []string) string {
	out := ""
	for i, s := range ts {
		if i > 0 {
			out += "-"
		}
		out += s
	}
	return out
}

func baseName(m *Model) string {
	if m.VariantOf != "" {
		return lowerASCII(m.VariantOf)
	}
	return lowerASCII(m.Name)
}

// MIG-only nodes as the device plugin and the MIG manager leave them: a profile set one model
// alone lists names it; a shared one makes a GPU of unknown model; more trusted evidence wins.
func TestMIGOnlyNodes(t *testing.T) {
	tests := map[string]struct {
		node  Node
		model string
		gpu   bool
	}{
		// NVIDIA/k8s-device-plugin README.md (MIG strategy mixed) on an A100 40GB
		// (the A800 40GB offers the same profiles: mig-parted's configs for them)
		"mixed strategy, A100 40GB profiles: or an A800": {Node{Capacity: caps("nvidia.com/mig-1g.5gb", "7")}, "", true},
		"A100 40GB, two profiles: or an A800":            {Node{Capacity: caps("nvidia.com/mig-3g.20gb", "1", "nvidia.com/mig-2g.10gb", "2")}, "", true},
		"A100 80GB or H100: unknown":                     {Node{Capacity: caps("nvidia.com/mig-1g.10gb", "7")}, "", true},
		"1g.10gb: three models":                          {Node{Capacity: caps("nvidia.com/mig-1g.10gb", "2", "nvidia.com/mig-3g.40gb", "1")}, "", true},
		"1g.18gb: H200 or GH200 144G":                    {Node{Capacity: caps("nvidia.com/mig-1g.18gb", "7")}, "", true},
		"H200, two profiles":                             {Node{Capacity: caps("nvidia.com/mig-1g.18gb", "2", "nvidia.com/mig-2g.35gb", "1")}, "H200", true},
		"1g.12gb: H100 NVL, H800 NVL, GH200 or H20":      {Node{Capacity: caps("nvidia.com/mig-1g.12gb", "7")}, "", true},
		"B200":                              {Node{Capacity: caps("nvidia.com/mig-1g.45gb", "4")}, "B200", true},
		"1g.23gb: B200 or GB200":            {Node{Capacity: caps("nvidia.com/mig-1g.23gb", "7")}, "", true},
		"B300, balanced":                    {Node{Capacity: caps("nvidia.com/mig-1g.34gb", "2", "nvidia.com/mig-2g.67gb", "1", "nvidia.com/mig-3g.135gb", "1")}, "B300", true},
		"A30":                               {Node{Capacity: caps("nvidia.com/mig-1g.6gb", "4")}, "A30", true},
		"1g.24gb: H100 NVL or RTX PRO 6000": {Node{Capacity: caps("nvidia.com/mig-1g.24gb", "4")}, "", true},
		"a profile no source attributes":    {Node{Capacity: caps("nvidia.com/mig-7g.278gb", "1")}, "", true},
		"media extensions":                  {Node{Capacity: caps("nvidia.com/mig-1g.6gb.me", "1")}, "A30", true},
		// GPU operator docs (GPU Operator with MIG): the MIG manager's mig.config, with GFD's
		// family and memory labels and no product
		"mig.config all-1g.5gb on Ampere 40GB: A100 or A800": {Node{Labels: labels(LabelMIGConfig, "all-1g.5gb", "nvidia.com/gpu.family", "ampere", LabelGFDMemory, "4864")}, "", true},
		"mig.config all-1g.6gb on Ampere 24GB":               {Node{Labels: labels(LabelMIGConfig, "all-1g.6gb", "nvidia.com/gpu.family", "ampere", LabelGFDMemory, "5952")}, "A30", true},
		"mig.config all-1g.10gb":                             {Node{Labels: labels(LabelMIGConfig, "all-1g.10gb", "nvidia.com/gpu.family", "ampere")}, "", true},
		"mig.config all-balanced":                            {Node{Labels: labels(LabelMIGConfig, "all-balanced", "nvidia.com/gpu.family", "hopper")}, "", true},
		"mig.config all-disabled alone":                      {Node{Labels: labels(LabelMIGConfig, "all-disabled")}, "", false},
		"the product wins over the profile":                  {Node{Labels: labels(LabelGFDProduct, "NVIDIA-H100-80GB-HBM3", LabelMIGConfig, "all-1g.5gb")}, "H100", true},
	}
	for name, tc := range tests {
		in := Default().Infer(tc.node)
		if in.Value() != lowerASCII(tc.model) || in.GPU() != tc.gpu {
			t.Errorf("%s: model %q gpu %v, want %q %v (evidence %+v)", name, in.Value(), in.GPU(), tc.model, tc.gpu, in.Evidence)
		}
	}
	in := Default().Infer(Node{Labels: labels(LabelGFDProduct, "NVIDIA-H100-80GB-HBM3", LabelMIGConfig, "all-1g.6gb")})
	if len(in.Conflicts) != 1 || in.Conflicts[0].Source != SourceMIGProfile {
		t.Errorf("an H100 with A30 profiles: conflicts %+v", in.Conflicts)
	}
}

// The matchConditions' pattern for GFD's mig.config accepts exactly the values readMIG reads:
// every profile of the tables as all-<profile>, and none of the other configs.
func TestMIGConfigPattern(t *testing.T) {
	kb := Default()
	values := []string{"all-disabled", "all-balanced", "all-enabled", "all-1g.10gb+me", "all-1g.10gb.me", "all-", "all-1g.", "all-g.5gb",
		"all-12345g.5gb", "1g.5gb", "custom-config", "all-1g.5gb ", "ALL-1g.5gb", "all-1g.5GB", "all-2g.12345gb", "all-7g.80gb"}
	for p := range kb.mig {
		values = append(values, "all-"+p)
	}
	re := regexp.MustCompile(MIGConfigPattern)
	for _, v := range values {
		in := kb.Infer(Node{Labels: map[string]string{LabelMIGConfig: v}})
		if got, want := re.MatchString(v), in.GPU(); got != want {
			t.Errorf("%q: pattern %v, inference shows a GPU %v", v, got, want)
		}
	}
}
