// Package report turns decisions into what the CLI prints: one record per node, as a table,
// JSON or YAML. `explain`, `check` and `label` all print these records.
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// Node is what the webhook would do with one node, and why.
type Node struct {
	Name        string `json:"name"`
	GPU         bool   `json:"gpu"`
	Kind        string `json:"kind,omitempty"`
	GPUResource string `json:"gpuResource"`
	GPUCount    int64  `json:"gpuCount"`
	// GPUResourceType is what one unit of GPUResource is: gpu, slice, replica, memory, share
	// (resources.tsv); only a gpu resource's count is of GPUs.
	GPUResourceType  string             `json:"gpuResourceType,omitempty"`
	ExpectedGPUCount int64              `json:"expectedGPUCount"`
	InstanceType     string             `json:"instanceType"`
	Accelerator      string             `json:"accelerator"`
	Source           string             `json:"source"`
	CurrentLabel     string             `json:"currentLabel"`
	Action           admit.Action       `json:"action"`
	Warnings         []string           `json:"warnings"`
	Findings         []admit.Finding    `json:"findings"`
	Evidence         []gpuinfo.Evidence `json:"evidence"`
	// Result is set by `label`: labeled, would-label, unchanged, failed.
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
	// DRAGPUs are the physical GPUs the node's ResourceSlices publish, DRADrivers the drivers.
	DRAGPUs    int64    `json:"draGPUs,omitempty"`
	DRADrivers []string `json:"draDrivers,omitempty"`
}

// Input makes the inference input from a Node and the devices its ResourceSlices publish.
func Input(n *corev1.Node, devices []gpuinfo.Device) gpuinfo.Node {
	return gpuinfo.Node{Labels: n.Labels, Capacity: quantities(n.Status.Capacity), Allocatable: quantities(n.Status.Allocatable), Devices: devices}
}

// Slices are a cluster's ResourceSlices, trimmed and filed by the node they are for, as the
// commands read them beside the nodes.
type Slices struct {
	kb       *gpuinfo.KB
	byNode   map[string][]*resourcev1.ResourceSlice
	selected []*resourcev1.ResourceSlice // for the nodes a selector or their devices choose
}

// NewSlices files slices (trimming them in place) for Devices.
func NewSlices(kb *gpuinfo.KB, slices []*resourcev1.ResourceSlice) *Slices {
	s := &Slices{kb: kb, byNode: map[string][]*resourcev1.ResourceSlice{}}
	for _, rs := range slices {
		kb.TrimSlice(rs)
		switch node, selected := gpuinfo.SliceNode(rs); {
		case node != "":
			s.byNode[node] = append(s.byNode[node], rs)
		case selected:
			s.selected = append(s.selected, rs)
		}
	}
	return s
}

// Devices are what the slices publish for the node; a nil *Slices has none.
func (s *Slices) Devices(n *corev1.Node) []gpuinfo.Device {
	if s == nil {
		return nil
	}
	own := s.byNode[n.Name]
	if len(own)+len(s.selected) == 0 {
		return nil
	}
	return s.kb.NodeDevices(n.Name, n.Labels, append(slices.Clip(own), s.selected...))
}

func quantities(l corev1.ResourceList) map[string]resource.Quantity {
	out := make(map[string]resource.Quantity, len(l))
	for k, v := range l {
		out[string(k)] = v
	}
	return out
}

// Decide runs the webhook's decision on a Node, with the devices its ResourceSlices publish,
// and makes its record.
func Decide(cfg *admit.Config, n *corev1.Node, devices []gpuinfo.Device, caller admit.Caller) (admit.Decision, Node) {
	d := admit.Decide(cfg, n.Name, Input(n, devices), caller)
	in := d.Inference
	r := Node{
		Name: n.Name, GPU: in.GPU(), Kind: string(in.Kind), GPUResource: in.Resource, GPUCount: in.Count, GPUResourceType: string(in.ResourceType),
		ExpectedGPUCount: in.ExpectedCount, InstanceType: in.InstanceType, DRAGPUs: in.DeviceCount, DRADrivers: in.DeviceDrivers, Accelerator: d.Value,
		Source: string(in.Source), CurrentLabel: d.Current, Action: d.Action,
		Warnings: d.Warnings(), Findings: d.Findings, Evidence: in.Evidence,
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	if r.Findings == nil {
		r.Findings = []admit.Finding{}
	}
	if r.Evidence == nil {
		r.Evidence = []gpuinfo.Evidence{}
	}
	return d, r
}

// shownBy is the evidence that named the model or, for a GPU of unknown model, showed the GPU.
// A generic row's evidence is shown with the label it read (generic:crusoe.ai/accelerator),
// so a reader sees which unknown convention named the model.
func (r *Node) shownBy() string {
	if r.Source == "" && r.GPU && len(r.Evidence) > 0 {
		return withKey(r.Evidence[0])
	}
	if r.Source == string(gpuinfo.SourceGeneric) {
		for _, e := range r.Evidence {
			if e.Source == gpuinfo.SourceGeneric && e.Model != "" {
				return withKey(e) // the first that names a model is the one resolve chose
			}
		}
	}
	return r.Source
}

func withKey(e gpuinfo.Evidence) string {
	if e.Source == gpuinfo.SourceGeneric {
		return e.Source.String() + ":" + e.Key
	}
	return e.Source.String()
}

// Status is the one-word state of a node in the table.
func (r *Node) Status() string {
	if !r.GPU {
		if r.Kind == string(gpuinfo.KindAccelerator) {
			return "not-a-gpu"
		}
		return "no-gpu"
	}
	if r.Result != "" {
		return r.Result
	}
	for _, f := range r.Findings {
		switch f.Reason {
		case admit.ReasonLabelMissing:
			return "unlabeled"
		case admit.ReasonModelUnknown:
			return "model-unknown"
		case admit.ReasonLabelMismatch:
			return "label-wrong"
		case admit.ReasonLabelInvalid:
			return "label-invalid"
		case admit.ReasonLabeled:
			return "will-label"
		case admit.ReasonGPUCountMismatch:
			return "gpus-missing"
		}
	}
	return "ok"
}

// Write prints records in the format asked for: table, json or yaml.
func Write(w io.Writer, format string, nodes []Node) error {
	switch format {
	case "json":
		bw := bufio.NewWriter(w)
		if err := jsonList(bw, nodes, ""); err != nil {
			return err
		}
		bw.WriteString("\n")
		return bw.Flush()
	case "yaml":
		bw := bufio.NewWriter(w)
		if len(nodes) == 0 {
			bw.WriteString("[]\n")
		}
		if err := yamlList(bw, nodes); err != nil {
			return err
		}
		return bw.Flush()
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "NODE\tINSTANCE-TYPE\tGPUS\tINFERRED\tFROM\tLABEL\tSTATUS")
		for _, n := range nodes {
			// reported/expected; "-" where the device plugin has reported nothing yet, dra:N
			// for the GPUs a node's ResourceSlices publish
			gpus := "-"
			switch {
			case n.GPUCount > 0 && (n.GPUResourceType == "" || n.GPUResourceType == string(gpuinfo.ResourceGPU)):
				gpus = fmt.Sprintf("%d", n.GPUCount)
			case n.GPUCount > 0:
				// slices, replicas, memory or compute units, which are not GPUs
				gpus = fmt.Sprintf("%s:%d", n.GPUResourceType, n.GPUCount)
			case n.DRAGPUs > 0:
				gpus = fmt.Sprintf("dra:%d", n.DRAGPUs)
			}
			if n.ExpectedGPUCount > 0 {
				gpus += fmt.Sprintf("/%d", n.ExpectedGPUCount)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, dash(n.InstanceType), gpus, dash(n.Accelerator), dash(n.shownBy()), dash(n.CurrentLabel), n.Status())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, n := range nodes {
			for _, warn := range n.Warnings {
				fmt.Fprintf(w, "  %s\n", warn)
			}
			if n.Error != "" {
				fmt.Fprintf(w, "  %s: %s\n", n.Name, n.Error)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown output format %q: want table, json or yaml", format)
}

// jsonList writes nodes as the indented JSON array json.Encoder writes, one record at a time,
// so a fleet's output is never one buffer; prefix is the array's own indentation.
func jsonList(w *bufio.Writer, nodes []Node, prefix string) error {
	if len(nodes) == 0 {
		w.WriteString("[]")
		return nil
	}
	w.WriteString("[\n")
	for i := range nodes {
		b, err := json.MarshalIndent(&nodes[i], prefix+"  ", "  ")
		if err != nil {
			return err
		}
		w.WriteString(prefix + "  ")
		w.Write(b)
		if i < len(nodes)-1 {
			w.WriteString(",")
		}
		w.WriteString("\n")
	}
	w.WriteString(prefix + "]")
	return nil
}

// yamlList writes nodes as the items of a YAML sequence, one record at a time; each is written
// as a list of one, so it wraps at the columns it has in the whole document.
func yamlList(w *bufio.Writer, nodes []Node) error {
	for i := range nodes {
		b, err := yaml.Marshal(nodes[i : i+1])
		if err != nil {
			return err
		}
		w.Write(b)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return strings.TrimSpace(s)
}
