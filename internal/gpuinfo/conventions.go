package gpuinfo

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// A reader turns one label of a convention into evidence.
type reader string

const (
	readNVML         reader = "nvml"
	readProduct      reader = "product"
	readName         reader = "name"
	readCloud        reader = "cloud"
	readInstanceType reader = "instance-type"
	readTypeName     reader = "instance-type-name"
	readPCIID        reader = "pci-id"
	readPCIKey       reader = "pci-key"
	readNFDPCI       reader = "nfd-pci"
	readIntelPCIKey  reader = "intel-pci-key"
	readPresent      reader = "present"
	readNone         reader = "none"
	readGeneric      reader = "generic"
)

var readers = []reader{readNVML, readProduct, readName, readCloud, readInstanceType, readTypeName, readPCIID, readPCIKey, readNFDPCI, readIntelPCIKey, readPresent, readNone, readGeneric}

// Convention is one row of labels.tsv: a label another tool sets and how to read it.
type Convention struct {
	Source Source
	Key    string
	Prefix bool // Key is a prefix: every label that starts with it
	// Contains makes Key a word: every label whose key holds it, ASCII case ignored, and that
	// no other row claims (the generic reader's rows).
	Contains bool
	Arg      string // the reader's argument: a memory label key, or a PCI vendor ID
	// Values are the tool's own spellings of models, from VALUE=MODEL pairs in arg.
	Values map[string]*Model
	// Presence says the label alone shows an accelerator node: its tool sets it only there.
	Presence bool
	Doc      string // where the convention is documented
	read     reader
	vendors  []string // generic rows: the vendor tokens that show a GPU where the word alone does not
}

// Reader names how the convention's labels are read (labels.tsv's reader column).
func (c *Convention) Reader() string { return string(c.read) }

func (kb *KB) parseConventions(data []byte) ([]*Convention, error) {
	var out []*Convention
	err := eachRow(data, 7, func(line int, f []string) error {
		c := &Convention{Source: Source(f[0]), Key: f[1], Arg: dash(f[4]), Presence: f[5] == "gpu", Doc: f[6], read: reader(f[3])}
		if f[5] != "gpu" && f[5] != "-" {
			return fmt.Errorf("presence %q is neither gpu nor -", f[5])
		}
		switch f[2] {
		case "exact":
		case "prefix":
			c.Prefix = true
		case "contains":
			c.Contains = true
		default:
			return fmt.Errorf("match %q is not exact, prefix or contains", f[2])
		}
		if c.Contains != (c.read == readGeneric) {
			return fmt.Errorf("the generic reader reads contains rows, and only it")
		}
		if c.read == readNone && c.Presence {
			return fmt.Errorf("a key read by none shows nothing")
		}
		if !slices.Contains(readers, c.read) {
			return fmt.Errorf("unknown reader %q", f[3])
		}
		if c.Source == "" || c.Doc == "" {
			return fmt.Errorf("a convention needs a source and where it is documented")
		}
		key := strings.TrimSuffix(c.Key, ".")
		if c.Prefix {
			key = strings.TrimSuffix(key, "-")
		}
		check := validation.IsQualifiedName
		if d, ok := strings.CutSuffix(key, "/"); ok && c.Prefix {
			key, check = d, validation.IsDNS1123Subdomain // a whole key prefix: a domain
		}
		if msgs := check(key); len(msgs) > 0 {
			return fmt.Errorf("key %q: %s", c.Key, strings.Join(msgs, "; "))
		}
		if c.Contains {
			// the word and the vendor words that make a GPU node of it: lower case, as keys are
			c.Key = strings.ToLower(c.Key)
			if c.Arg != "" {
				c.vendors = strings.Split(strings.ToUpper(c.Arg), "|")
			}
		} else if strings.Contains(c.Arg, "=") {
			c.Values = map[string]*Model{}
			for _, pair := range strings.Split(c.Arg, ",") {
				v, name, _ := strings.Cut(pair, "=")
				m := kb.byName[strings.ToLower(name)]
				if m == nil {
					return fmt.Errorf("key %q: value %q names unknown model %q", c.Key, v, name)
				}
				c.Values[strings.ToLower(v)] = m
			}
			c.Arg = ""
		}
		switch c.read {
		case readPCIID, readPCIKey, readIntelPCIKey:
			if !isHex4(c.Arg) {
				return fmt.Errorf("reader %s needs a PCI vendor ID, not %q", c.read, c.Arg)
			}
		}
		for _, prev := range out {
			if prev.Key == c.Key && prev.read == c.read {
				return fmt.Errorf("key %q listed twice for reader %s", c.Key, c.read)
			}
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// Conventions lists the label conventions inference reads, most trusted first.
func (kb *KB) Conventions() []*Convention { return kb.conventions }

// GPULabelKeys are the label keys whose presence shows an accelerator node, and GPULabelPrefixes
// the key prefixes that do; with NFDGPUPattern and the instance-type tables they are what the
// webhook's matchConditions are generated from.
func (kb *KB) GPULabelKeys() []string     { return kb.presenceKeys(false) }
func (kb *KB) GPULabelPrefixes() []string { return kb.presenceKeys(true) }

func (kb *KB) presenceKeys(prefix bool) []string {
	var keys []string
	for _, c := range kb.conventions {
		if c.Presence && c.Prefix == prefix && !c.Contains {
			keys = append(keys, c.Key)
		}
	}
	return keys
}

// GenericLabelWords are the words whose presence in a label key the generic reader reads:
// with the other keys, what the webhook's matchConditions hold.
func (kb *KB) GenericLabelWords() []string {
	var words []string
	for _, c := range kb.conventions {
		if c.Contains {
			words = append(words, c.Key)
		}
	}
	return words
}

// conventionIndex finds the rows that read a label key without walking every row: by the
// key's domain (the part before '/', or the whole key) first, as most of a node's labels are
// of domains no row reads, then exact keys in a map and the domain's prefix rows; the generic
// rows' words are checked only for keys no other row claims.
type conventionIndex struct {
	domains map[string]*domainRows
	generic []int
}

type domainRows struct {
	exact  map[string][]int
	prefix []int
}

func (kb *KB) indexConventions() {
	ix := conventionIndex{domains: map[string]*domainRows{}}
	for i, c := range kb.conventions {
		if c.Contains {
			ix.generic = append(ix.generic, i)
			continue
		}
		d := ix.domains[domain(c.Key)]
		if d == nil {
			d = &domainRows{exact: map[string][]int{}}
			ix.domains[domain(c.Key)] = d
		}
		if c.Prefix {
			d.prefix = append(d.prefix, i)
		} else {
			d.exact[c.Key] = append(d.exact[c.Key], i)
		}
	}
	kb.index = ix
}

// domain is a key's prefix part, the whole key where it has none.
func domain(key string) string {
	d, _, ok := strings.Cut(key, "/")
	if !ok {
		return key
	}
	return d
}

// hit is one label a row reads: rows in trust order, and one row's labels in key order.
type hit struct {
	row int
	key string
}

func compareHits(a, b hit) int {
	if a.row != b.row {
		return a.row - b.row
	}
	return strings.Compare(a.key, b.key)
}

// hits appends the rows that read the node's labels, in trust order.
func (kb *KB) hits(l map[string]string, own string, out []hit) []hit {
	ix := &kb.index
	for k, v := range l {
		if k == own {
			continue
		}
		// an exact row reads a label with a value; a prefix row every label it matches
		claimed := false
		if d := ix.domains[domain(k)]; d != nil {
			exact := d.exact[k]
			claimed = len(exact) > 0
			if v != "" {
				for _, i := range exact {
					out = append(out, hit{i, k})
				}
			}
			for _, i := range d.prefix {
				if strings.HasPrefix(k, kb.conventions[i].Key) {
					out, claimed = append(out, hit{i, k}), true
				}
			}
		}
		if claimed || v == "" {
			continue
		}
		lower := lowerASCII(k)
		for _, i := range ix.generic {
			if strings.Contains(lower, kb.conventions[i].Key) {
				out = append(out, hit{i, k})
				break // one word is enough: the first generic row reads the key
			}
		}
	}
	slices.SortFunc(out, compareHits)
	return out
}

// ClaimedLabelKeys are the exact keys and the key prefixes of the rows that are not generic:
// a label they claim is never read by the generic reader.
func (kb *KB) ClaimedLabelKeys() (exact, prefixes []string) {
	for _, c := range kb.conventions {
		switch {
		case c.Contains:
		case c.Prefix:
			if !slices.Contains(prefixes, c.Key) {
				prefixes = append(prefixes, c.Key)
			}
		default:
			if !slices.Contains(exact, c.Key) {
				exact = append(exact, c.Key)
			}
		}
	}
	return exact, prefixes
}

// GenericOffValues are the values with which a generic row's label shows nothing.
func GenericOffValues() []string { return append([]string(nil), genericOff...) }
