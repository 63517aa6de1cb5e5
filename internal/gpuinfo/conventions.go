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
)

var readers = []reader{readNVML, readProduct, readName, readCloud, readInstanceType, readTypeName, readPCIID, readPCIKey, readNFDPCI, readIntelPCIKey, readPresent}

// Convention is one row of labels.tsv: a label another tool sets and how to read it.
type Convention struct {
	Source Source
	Key    string
	Prefix bool   // Key is a prefix: every label that starts with it
	Arg    string // the reader's argument: a memory label key, or a PCI vendor ID
	// Values are the tool's own spellings of models, from VALUE=MODEL pairs in arg.
	Values map[string]*Model
	// Presence says the label alone shows an accelerator node: its tool sets it only there.
	Presence bool
	Doc      string // where the convention is documented
	read     reader
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
		default:
			return fmt.Errorf("match %q is neither exact nor prefix", f[2])
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
		if msgs := validation.IsQualifiedName(key); len(msgs) > 0 {
			return fmt.Errorf("key %q: %s", c.Key, strings.Join(msgs, "; "))
		}
		if strings.Contains(c.Arg, "=") {
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
		if c.Presence && c.Prefix == prefix {
			keys = append(keys, c.Key)
		}
	}
	return keys
}
