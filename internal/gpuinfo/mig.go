package gpuinfo

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// SourceMIGProfile is the MIG profiles a node shows (the device plugin's mig-<profile>
// resources, GFD's mig.config all-<profile>), read with mig_profiles.tsv. It is the least
// trusted evidence: it names a model only where one model alone lists every profile shown.
const SourceMIGProfile Source = "mig-profile"

// LabelMIGConfig is the MIG layout the GPU operator's MIG manager applies (all-1g.5gb).
const LabelMIGConfig = "nvidia.com/mig.config"

// MIGConfigPattern matches the values of LabelMIGConfig that readMIG reads as a MIG profile
// (all-1g.10gb), for the webhook's matchConditions (RE2); TestMIGConfigPattern holds it to
// readMIG.
const MIGConfigPattern = `^all-[0-9]{1,4}g\.[0-9]{1,4}gb$`

//go:embed data/mig_profiles.tsv
var migProfilesTSV []byte

// migTable is mig_profiles.tsv: the models that list each profile.
type migTable map[string][]*Model

func (kb *KB) parseMIG(data []byte) (migTable, error) {
	t := migTable{}
	err := eachRow(data, 3, func(line int, f []string) error {
		m := kb.byName[strings.ToLower(f[0])]
		if m == nil {
			return fmt.Errorf("unknown model %q", f[0])
		}
		if p, ok := migProfile(f[1]); !ok || p != f[1] {
			return fmt.Errorf("%q is not a MIG profile name (<n>g.<n>gb)", f[1])
		}
		if f[2] == "" || f[2] == "-" {
			return fmt.Errorf("%s %s: no source", f[0], f[1])
		}
		if slices.Contains(t[f[1]], m) {
			return fmt.Errorf("%s %s listed twice", f[0], f[1])
		}
		t[f[1]] = append(t[f[1]], m)
		return nil
	})
	return t, err
}

// migProfile reads a MIG profile name (1g.10gb) from the start of s, without the suffixes
// that follow it (+me, .me).
func migProfile(s string) (string, bool) {
	g, rest, ok := strings.Cut(s, "g.")
	if !ok || !digits(g) {
		return "", false
	}
	i := strings.Index(rest, "gb")
	if i <= 0 || !digits(rest[:i]) {
		return "", false
	}
	return s[:len(g)+2+i+2], true
}

func digits(s string) bool {
	return s != "" && len(s) <= 4 && strings.Trim(s, "0123456789") == ""
}

// MIGModel is the model that alone lists every one of the profiles, or nil.
func (kb *KB) MIGModel(profiles []string) *Model {
	var only *Model
	for i, p := range profiles {
		models := kb.mig[p]
		if i == 0 {
			if len(models) != 1 {
				// several models list it, or none: only a later profile could narrow it,
				// and a model must list all of them, so check the whole set
				return kb.migCommon(profiles)
			}
			only = models[0]
			continue
		}
		if !slices.Contains(models, only) {
			return nil
		}
	}
	return only
}

// migCommon is the one model that lists every profile, or nil.
func (kb *KB) migCommon(profiles []string) *Model {
	var found *Model
	for _, m := range kb.mig[profiles[0]] {
		if !slices.ContainsFunc(profiles[1:], func(p string) bool { return !slices.Contains(kb.mig[p], m) }) {
			if found != nil {
				return nil
			}
			found = m
		}
	}
	return found
}

// readMIG records the MIG profiles a node shows: in capacity, and in GFD's mig.config. It is
// called once the other sources are read, so it runs only where MIG shows.
func (kb *KB) readMIG(in *Inference, capacity map[string]resource.Quantity, l map[string]string) {
	var profiles []string
	key := ""
	if in.MIG {
		for name, q := range capacity {
			if rest, ok := strings.CutPrefix(name, "nvidia.com/mig-"); ok && q.Sign() > 0 {
				if p, ok := migProfile(rest); ok && !slices.Contains(profiles, p) {
					profiles = append(profiles, p)
				}
			}
		}
		key = "status.capacity"
	}
	if len(profiles) == 0 {
		rest, ok := strings.CutPrefix(l[LabelMIGConfig], "all-")
		p, ok2 := migProfile(rest)
		if !ok || !ok2 || p != rest {
			return
		}
		profiles, key = []string{p}, LabelMIGConfig
	}
	slices.Sort(profiles)
	in.add(SourceMIGProfile, key, strings.Join(profiles, ","), kb.MIGModel(profiles), false)
}
