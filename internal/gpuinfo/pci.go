package gpuinfo

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

//go:generate sh -c "go run ./internal/pcigen -pciids /usr/share/misc/pci.ids -source 'pci.ids 2023.04.10 (Debian package pci.ids)' -extra data/pci_extra.tsv > data/pci_ids.tsv"

// PCI vendor IDs of the GPU makers whose devices the PCI table lists.
const (
	VendorNVIDIA = "10de"
	VendorAMD    = "1002"
	VendorIntel  = "8086"
)

var gpuVendors = []string{VendorNVIDIA, VendorAMD, VendorIntel}

// PCIDevice is one row of pci_ids.tsv: a device of the public PCI ID repository and the model
// it is, if any.
type PCIDevice struct {
	Vendor, Device string // four lowercase hex digits each
	Name           string // the device's name in pci.ids
	Model          *Model // nil for a GPU SkyPilot has no name for, and for display adapters
	Display        bool   // a display adapter, never an accelerator (DGX Display, ASPEED)
	Source         string
}

func (kb *KB) parsePCI(data []byte) error {
	kb.pci = map[string]*PCIDevice{}
	return eachRow(data, 5, func(line int, f []string) error {
		d := &PCIDevice{Vendor: f[0], Device: f[1], Name: f[2], Source: f[4]}
		if !isHex4(d.Vendor) || !isHex4(d.Device) {
			return fmt.Errorf("vendor %q and device %q must be four lowercase hex digits", d.Vendor, d.Device)
		}
		switch f[3] {
		case "display":
			d.Display = true
		case "-":
		default:
			if d.Model = kb.byName[strings.ToLower(f[3])]; d.Model == nil {
				return fmt.Errorf("device %s:%s: unknown model %q", d.Vendor, d.Device, f[3])
			}
		}
		if d.Name == "" || d.Source == "" {
			return fmt.Errorf("device %s:%s needs its pci.ids name and a source", d.Vendor, d.Device)
		}
		if kb.pci[d.Vendor+d.Device] != nil {
			return fmt.Errorf("device %s:%s listed twice", d.Vendor, d.Device)
		}
		kb.pci[d.Vendor+d.Device] = d
		return nil
	})
}

// PCIDevices lists the PCI table, sorted by vendor and device.
func (kb *KB) PCIDevices() []*PCIDevice {
	out := make([]*PCIDevice, 0, len(kb.pci))
	for _, d := range kb.pci {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Vendor+out[i].Device < out[j].Vendor+out[j].Device })
	return out
}

// LookupPCI finds a device by vendor and device ID; the ID may be upper case or start with 0x.
func (kb *KB) LookupPCI(vendor, device string) (*PCIDevice, bool) {
	device = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(device)), "0x")
	d, ok := kb.pci[vendor+device]
	return d, ok
}

// accelClasses are the PCI classes of compute devices: 3D controller (0302), display
// controller (0380, AMD Instinct, Intel Data Center GPUs) and processing accelerators (12xx).
// A VGA controller (0300) of AMD or Intel is as often an integrated or on-board display as a
// GPU, so without a device ID the table knows it counts for NVIDIA only.
func accelClass(class string) bool {
	return class == "0302" || class == "0380" || strings.HasPrefix(class, "12")
}

// pciGPU says what a PCI device seen on a node is: a GPU (with its model where the table
// names one) or nothing. class and device may be "" when the label does not carry them.
func (kb *KB) pciGPU(class, vendor, device string) (m *Model, gpu bool) {
	if !isGPUVendor(vendor) || (class != "" && !strings.HasPrefix(class, "03") && !strings.HasPrefix(class, "12")) {
		return nil, false
	}
	if device != "" {
		if d, ok := kb.LookupPCI(vendor, device); ok {
			return d.Model, !d.Display
		}
	}
	return nil, vendor == VendorNVIDIA || accelClass(class)
}

// parseNFDPCI reads the rest of a Node Feature Discovery PCI label key after "pci-":
// the fields NFD is configured to label (deviceLabelFields: class, vendor, device, ... in that
// order, four hex digits each) joined by '_', then ".present". Without the class field the
// vendor comes first, which a class never equals.
func parseNFDPCI(rest string) (class, vendor, device string, ok bool) {
	rest, ok = strings.CutSuffix(rest, ".present")
	if !ok {
		return "", "", "", false
	}
	f := strings.Split(rest, "_")
	for _, x := range f {
		if !isHex4(x) {
			return "", "", "", false
		}
	}
	if !isGPUVendor(f[0]) {
		class, f = f[0], f[1:]
	}
	if len(f) == 0 {
		return "", "", "", false
	}
	vendor = f[0]
	if len(f) > 1 {
		device = f[1]
	}
	return class, vendor, device, true
}

// NFDGPUPattern is a regular expression (RE2, as CEL's matches() takes it) for the Node
// Feature Discovery PCI label keys that may show a GPU: every key inference calls a GPU
// matches it. The webhook's matchConditions use it, so a node whose only PCI labels are a
// BMC's display adapter or an integrated GPU never reaches the webhook.
func (kb *KB) NFDGPUPattern() string {
	var amdIntel []string
	for _, d := range kb.PCIDevices() {
		if d.Vendor != VendorNVIDIA && !d.Display {
			amdIntel = append(amdIntel, d.Vendor+"_"+d.Device)
		}
	}
	const (
		prefix = `^feature\.node\.kubernetes\.io/pci-`
		hex    = `[0-9a-f]{4}`
		tail   = `(_` + hex + `)*\.present$`
	)
	vendors := strings.Join([]string{VendorAMD, VendorIntel}, "|")
	return prefix + "(" +
		// NVIDIA: any display or accelerator class, or none.
		`((03|12)[0-9a-f]{2}_)?` + VendorNVIDIA +
		// AMD and Intel: a compute class,
		`|(0302|0380|12[0-9a-f]{2})_(` + vendors + `)` +
		// or a device the table calls a GPU, with or without a class.
		`|((03|12)[0-9a-f]{2}_)?(` + strings.Join(amdIntel, "|") + `)` +
		")" + tail
}

func isGPUVendor(v string) bool { return slices.Contains(gpuVendors, v) }

func isHex4(s string) bool {
	if len(s) != 4 {
		return false
	}
	for i := 0; i < 4; i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ReadPCIIDs reads the device lines of a pci.ids file (the public PCI ID repository's format: a
// vendor line starts with four hex digits, its device lines with one tab and four hex
// digits, subsystem lines with two tabs) into vendor+device -> name.
func ReadPCIIDs(r io.Reader) (map[string]string, error) {
	names := map[string]string{}
	vendor := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" || line[0] == '#':
		case line[0] != '\t':
			vendor, _, _ = strings.Cut(line, "  ")
		case len(line) > 1 && line[1] != '\t':
			if id, name, ok := strings.Cut(line[1:], "  "); ok {
				names[vendor+id] = strings.TrimSpace(name)
			}
		}
	}
	return names, sc.Err()
}
