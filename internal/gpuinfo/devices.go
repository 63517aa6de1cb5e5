package gpuinfo

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// DeviceConvention is one row of devices.tsv: a kind of device a DRA driver publishes in
// ResourceSlices, and the attributes that tell its model and which physical GPU it is.
type DeviceConvention struct {
	Source    Source
	Driver    string
	Type      string // the value of the device's type attribute
	Partition bool   // a part of a physical GPU, counted by its parent
	GPU       string // the attribute that names the physical GPU ("" for the device's name)
	Product   string // the attribute with the product name, "" for none
	NVML      bool   // the product is an NVML name: an unknown one is named as SkyPilot would
	Memory    string // the capacity with the whole GPU's memory, "" for none
	// PCIVendor is four hex digits, or (PCIVendorAttr) the attribute holding them.
	PCIVendor     string
	PCIVendorAttr bool
	PCIDevice     string // the attribute with the PCI device ID, "" for none
	Doc           string
}

func (kb *KB) parseDevices(data []byte) ([]*DeviceConvention, error) {
	var out []*DeviceConvention
	err := eachRow(data, 11, func(line int, f []string) error {
		c := &DeviceConvention{Source: Source(f[0]), Driver: f[1], Type: f[2], GPU: dash(f[4]), Product: dash(f[5]),
			Memory: dash(f[7]), PCIVendor: f[8], PCIDevice: dash(f[9]), Doc: f[10]}
		switch f[3] {
		case "gpu":
		case "partition":
			c.Partition = true
			if c.GPU == "" {
				return fmt.Errorf("a partition needs the attribute that names its parent GPU")
			}
		default:
			return fmt.Errorf("kind %q is neither gpu nor partition", f[3])
		}
		switch f[6] {
		case "nvml":
			c.NVML = true
		case "product", "-":
		default:
			return fmt.Errorf("reader %q is neither nvml nor product", f[6])
		}
		if (f[6] == "-") != (c.Product == "") {
			return fmt.Errorf("a product attribute and its reader go together")
		}
		if msgs := validation.IsDNS1123Subdomain(c.Driver); len(msgs) > 0 {
			return fmt.Errorf("driver %q: %s", c.Driver, strings.Join(msgs, "; "))
		}
		if !isHex4(c.PCIVendor) {
			c.PCIVendorAttr = true
		} else if !isGPUVendor(c.PCIVendor) {
			return fmt.Errorf("PCI vendor %s is not a GPU vendor the PCI table lists", c.PCIVendor)
		}
		if c.Source == "" || c.Type == "" || c.Doc == "" {
			return fmt.Errorf("a device convention needs a source, a type and where it is documented")
		}
		for _, prev := range out {
			if prev.Driver == c.Driver && prev.Type == c.Type {
				return fmt.Errorf("driver %s type %s listed twice", c.Driver, c.Type)
			}
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// DeviceConventions lists the kinds of DRA devices inference reads.
func (kb *KB) DeviceConventions() []*DeviceConvention { return kb.devices }

// deviceConvention finds the row for a driver's device type, nil when none reads it.
func (kb *KB) deviceConvention(driver, typ string) *DeviceConvention {
	for _, c := range kb.devices {
		if c.Driver == driver && c.Type == typ {
			return c
		}
	}
	return nil
}

func (kb *KB) readsDriver(driver string) bool {
	return slices.ContainsFunc(kb.devices, func(c *DeviceConvention) bool { return c.Driver == driver })
}

// Device is one device a DRA driver publishes for a node, as its devices.tsv row reads it.
type Device struct {
	Driver string `json:"driver"`
	Pool   string `json:"pool"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	// GPU names the physical GPU the device is, or is a partition of; "" for a partition that
	// does not name its parent, which then counts as no GPU.
	GPU       string `json:"gpu,omitempty"`
	Partition bool   `json:"partition,omitempty"`
	Product   string `json:"product,omitempty"`
	MemoryMiB int64  `json:"memoryMiB,omitempty"`
	PCIVendor string `json:"pciVendor,omitempty"`
	PCIDevice string `json:"pciDevice,omitempty"`
	conv      *DeviceConvention
}

// NodeDevices picks, from ResourceSlices, the devices a node has that devices.tsv reads. A
// pool counts only when it is complete: every slice of its newest generation is there (a
// driver republishing its pool leaves old and new slices side by side for a moment). A slice
// is the node's when its nodeName is the node's, when its node selector matches the node, or,
// with perDeviceNodeSelection, device by device. Devices that every node can reach (allNodes)
// are no node's own GPUs and are left out.
func (kb *KB) NodeDevices(node string, labels map[string]string, slices []*resourcev1.ResourceSlice) []Device {
	type poolKey struct{ driver, pool string }
	type pool struct {
		generation, want int64
		have             int64
	}
	var pools map[poolKey]*pool
	for _, s := range slices {
		if !kb.readsDriver(s.Spec.Driver) {
			continue
		}
		if pools == nil {
			pools = map[poolKey]*pool{}
		}
		k, p := poolKey{s.Spec.Driver, s.Spec.Pool.Name}, s.Spec.Pool
		switch cur := pools[k]; {
		case cur == nil || p.Generation > cur.generation:
			pools[k] = &pool{generation: p.Generation, want: p.ResourceSliceCount, have: 1}
		case p.Generation == cur.generation:
			cur.have++
		}
	}
	var out []Device
	var n *corev1.Node // made once, for node selectors
	matches := func(name *string, sel *corev1.NodeSelector) bool {
		switch {
		case name != nil:
			return *name == node
		case sel != nil:
			if n == nil {
				n = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: labels}}
			}
			ns, err := nodeaffinity.NewNodeSelector(sel)
			return err == nil && ns.Match(n)
		}
		return false
	}
	for _, s := range slices {
		p := pools[poolKey{s.Spec.Driver, s.Spec.Pool.Name}]
		if p == nil || s.Spec.Pool.Generation != p.generation || p.have != p.want {
			continue
		}
		perDevice := s.Spec.PerDeviceNodeSelection != nil && *s.Spec.PerDeviceNodeSelection
		if !perDevice && !matches(s.Spec.NodeName, s.Spec.NodeSelector) {
			continue
		}
		for i := range s.Spec.Devices {
			d := &s.Spec.Devices[i]
			if perDevice && !matches(d.NodeName, d.NodeSelector) {
				continue
			}
			if dev, ok := kb.readDevice(s.Spec.Driver, s.Spec.Pool.Name, d); ok {
				out = append(out, dev)
			}
		}
	}
	sortDevices(out)
	return out
}

// SliceNode says which node a slice is for: its nodeName, or selected for a slice whose nodes
// a node selector or its devices choose, which is read for every node. A slice every node
// reaches is neither: it names no node's own GPUs.
func SliceNode(s *resourcev1.ResourceSlice) (node string, selected bool) {
	switch {
	case s.Spec.NodeName != nil:
		return *s.Spec.NodeName, false
	case s.Spec.NodeSelector != nil, s.Spec.PerDeviceNodeSelection != nil && *s.Spec.PerDeviceNodeSelection:
		return "", true
	}
	return "", false
}

func sortDevices(devs []Device) {
	slices.SortFunc(devs, func(a, b Device) int {
		return cmp.Or(cmp.Compare(a.Driver, b.Driver), cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Name, b.Name))
	})
}

// readDevice reads one published device by its row; false when no row reads it.
func (kb *KB) readDevice(driver, pool string, d *resourcev1.Device) (Device, bool) {
	c := kb.deviceConvention(driver, attribute(driver, d.Attributes, "type"))
	if c == nil {
		return Device{}, false
	}
	dev := Device{Driver: driver, Pool: pool, Name: d.Name, Type: c.Type, Partition: c.Partition, conv: c}
	if c.GPU == "" {
		dev.GPU = d.Name
	} else {
		dev.GPU = attribute(driver, d.Attributes, c.GPU)
	}
	if c.Product != "" {
		dev.Product = attribute(driver, d.Attributes, c.Product)
	}
	if c.Memory != "" {
		if q, ok := capacity(driver, d.Capacity, c.Memory); ok {
			dev.MemoryMiB = deviceCount(q) >> 20
		}
	}
	dev.PCIVendor = c.PCIVendor
	if c.PCIVendorAttr {
		dev.PCIVendor = attribute(driver, d.Attributes, c.PCIVendor)
	}
	dev.PCIVendor = strings.TrimPrefix(strings.ToLower(dev.PCIVendor), "0x")
	if c.PCIDevice != "" {
		dev.PCIDevice = strings.TrimPrefix(strings.ToLower(attribute(driver, d.Attributes, c.PCIDevice)), "0x")
	}
	return dev, true
}

// attribute reads a string or version attribute by its name: bare (the driver's own domain
// is implied) or qualified with the driver's domain; a name with a domain is read as it is.
func attribute(driver string, attrs map[resourcev1.QualifiedName]resourcev1.DeviceAttribute, name string) string {
	a, ok := attrs[resourcev1.QualifiedName(name)]
	if !ok && !strings.Contains(name, "/") {
		a, ok = attrs[resourcev1.QualifiedName(driver+"/"+name)]
	}
	switch {
	case !ok:
		return ""
	case a.StringValue != nil:
		return *a.StringValue
	case a.VersionValue != nil:
		return *a.VersionValue
	}
	return ""
}

func capacity(driver string, caps map[resourcev1.QualifiedName]resourcev1.DeviceCapacity, name string) (resource.Quantity, bool) {
	c, ok := caps[resourcev1.QualifiedName(name)]
	if !ok {
		c, ok = caps[resourcev1.QualifiedName(driver+"/"+name)]
	}
	return c.Value, ok
}

// TrimSlice drops from a ResourceSlice, in place, everything NodeDevices does not read: the
// metadata but for the name, the devices of drivers and types devices.tsv does not list, and
// of the rest every attribute and capacity their row does not name, counters, taints and
// binding conditions. A watch holds slices in this form.
func (kb *KB) TrimSlice(s *resourcev1.ResourceSlice) *resourcev1.ResourceSlice {
	s.ObjectMeta = metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion}
	s.Spec.SharedCounters, s.Spec.PartitionTypeAttribute, s.Spec.SkipNodeOperations = nil, nil, nil
	kept := s.Spec.Devices[:0]
	if kb.readsDriver(s.Spec.Driver) {
		for _, d := range s.Spec.Devices {
			c := kb.deviceConvention(s.Spec.Driver, attribute(s.Spec.Driver, d.Attributes, "type"))
			if c == nil {
				continue
			}
			attrs := map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{}
			for _, name := range []string{"type", c.GPU, c.Product, c.PCIDevice} {
				keepAttribute(s.Spec.Driver, d.Attributes, attrs, name)
			}
			if c.PCIVendorAttr {
				keepAttribute(s.Spec.Driver, d.Attributes, attrs, c.PCIVendor)
			}
			var caps map[resourcev1.QualifiedName]resourcev1.DeviceCapacity
			if q, ok := capacity(s.Spec.Driver, d.Capacity, c.Memory); c.Memory != "" && ok {
				caps = map[resourcev1.QualifiedName]resourcev1.DeviceCapacity{resourcev1.QualifiedName(c.Memory): {Value: q}}
			}
			kept = append(kept, resourcev1.Device{Name: d.Name, Attributes: attrs, Capacity: caps,
				NodeName: d.NodeName, NodeSelector: d.NodeSelector, AllNodes: d.AllNodes})
		}
	}
	clear(s.Spec.Devices[len(kept):])
	s.Spec.Devices = kept
	if len(kept) == 0 {
		s.Spec.Devices = nil
	}
	return s
}

// keepAttribute copies one attribute under its bare name (qualified only when its domain is
// not the driver's).
func keepAttribute(driver string, from, to map[resourcev1.QualifiedName]resourcev1.DeviceAttribute, name string) {
	if name == "" {
		return
	}
	if a, ok := from[resourcev1.QualifiedName(name)]; ok {
		to[resourcev1.QualifiedName(name)] = a
	} else if a, ok := from[resourcev1.QualifiedName(driver+"/"+name)]; ok && !strings.Contains(name, "/") {
		to[resourcev1.QualifiedName(name)] = a
	}
}

// readDevices adds what a node's DRA devices say: one opinion per distinct product and PCI
// device of a driver, after every label's (see devices.tsv), and the number of physical GPUs.
func (kb *KB) readDevices(in *Inference, devs []Device) {
	var gpus []string // the distinct physical GPUs, as driver and name
	for i := range devs {
		d := &devs[i]
		c := d.conv
		if c == nil {
			if c = kb.deviceConvention(d.Driver, d.Type); c == nil {
				continue
			}
		}
		// A driver whose devices may be integrated GPUs or display adapters shows a GPU only
		// where the PCI table says so.
		var pciModel *Model
		switch {
		case d.PCIDevice != "":
			m, gpu := kb.pciGPU("", d.PCIVendor, d.PCIDevice)
			if !gpu {
				continue
			}
			pciModel = m
		case c.PCIDevice != "" && c.Product == "":
			continue
		}
		if d.Product != "" {
			m := kb.matchProduct(d.Product)
			if m != nil {
				m = kb.variant(m, d.MemoryMiB)
			} else if c.NVML {
				m = in.sameModel(kb.deriveModel(d.Product))
			}
			in.addOnce(c.Source, d.Driver+"/"+c.Product, d.Product, m, true)
		}
		if d.PCIDevice != "" {
			in.addOnce(c.Source, d.Driver+"/"+c.PCIDevice, d.PCIDevice, pciModel, true)
		}
		if key := d.Driver + "\x00" + d.GPU; d.GPU != "" && !slices.Contains(gpus, key) {
			gpus = append(gpus, key)
			if !slices.Contains(in.DeviceDrivers, d.Driver) {
				in.DeviceDrivers = append(in.DeviceDrivers, d.Driver)
			}
		}
	}
	in.DeviceCount = int64(len(gpus))
}

// addOnce records evidence unless the same key and value is recorded already: eight GPUs of
// one product are one opinion.
func (in *Inference) addOnce(src Source, key, value string, m *Model, names bool) {
	if slices.ContainsFunc(in.Evidence, func(e Evidence) bool { return e.Key == key && e.Value == value }) {
		return
	}
	in.add(src, key, value, m, names)
}

// sameModel returns the model already in the evidence that has m's name, so that a name made
// for an unknown product (GPU Feature Discovery's and a driver's) is one model, not two that
// disagree.
func (in *Inference) sameModel(m *Model) *Model {
	if m == nil {
		return nil
	}
	for _, e := range in.Evidence {
		if e.model != nil && e.model.Name == m.Name {
			return e.model
		}
	}
	return m
}
