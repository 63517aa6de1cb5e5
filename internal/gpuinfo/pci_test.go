package gpuinfo

import (
	"os"
	"strings"
	"testing"
)

// The rows read from Debian's pci.ids say what that file says: the same device under the
// same vendor, with the same name. CI installs the file (package pci.ids).
func TestPCITableMatchesPCIIDs(t *testing.T) {
	f, err := os.Open("/usr/share/misc/pci.ids")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must install pci.ids: %v", err)
		}
		t.Skipf("no pci.ids here (apt-get install pci.ids): %v", err)
	}
	defer f.Close()
	names, err := ReadPCIIDs(f)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, d := range Default().PCIDevices() {
		if !strings.HasPrefix(d.Source, "pci.ids 2023.04.10") {
			continue
		}
		checked++
		if got, ok := names[d.Vendor+d.Device]; !ok || got != d.Name {
			t.Errorf("%s:%s %q: pci.ids says %q (listed: %v)", d.Vendor, d.Device, d.Name, got, ok)
		}
	}
	if checked < 50 {
		t.Errorf("only %d rows cite pci.ids", checked)
	}
}

func TestPCITableRows(t *testing.T) {
	kb := Default()
	for _, d := range kb.PCIDevices() {
		if !isGPUVendor(d.Vendor) || !isHex4(d.Device) || d.Name == "" || d.Source == "" {
			t.Errorf("row %+v", d)
		}
		if d.Model != nil && d.Model.Vendor != map[string]string{VendorNVIDIA: "nvidia", VendorAMD: "amd", VendorIntel: "intel"}[d.Vendor] {
			t.Errorf("%s:%s %q names %s, of another vendor", d.Vendor, d.Device, d.Name, d.Model.Name)
		}
	}
	for id, want := range map[string]string{"10de20b5": "a100-80gb", "10de2330": "h100", "100274a1": "mi300x", "10de2335": "h200", "10de2901": "b200"} {
		if d, ok := kb.LookupPCI(id[:4], "0x"+strings.ToUpper(id[4:])); !ok || d.Model == nil || d.Model.LabelValue() != want {
			t.Errorf("%s: %+v, want %s", id, d, want)
		}
	}
	if m, gpu := kb.pciGPU("0300", VendorAMD, "1586"); m != nil || gpu {
		t.Errorf("an integrated APU is a GPU: %v %v", m, gpu)
	}
}
