package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/skypilot"
)

// SkyPilotNode is what the cluster analysis reads of a Node and the webhook's decision on it:
// only the labels and resources its rules read (customKey is CUSTOM_GPU_RESOURCE_KEY), so a
// fleet's worth costs a few hundred bytes a node, not the Node.
func SkyPilotNode(n *corev1.Node, d *admit.Decision, customKey string) skypilot.Node {
	var labels map[string]string // nil, not empty, for most nodes: no allocation
	for k, v := range n.Labels {
		if skypilot.ReadsLabel(k) {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	return skypilot.Node{
		Name: n.Name, Labels: labels,
		Capacity: counts(n.Status.Capacity, customKey), Allocatable: counts(n.Status.Allocatable, customKey),
		GPU: d.Inference.GPU(), Accelerator: d.Inference.Kind == gpuinfo.KindAccelerator, Value: d.Value,
		DRAGPUs: d.Inference.DeviceCount, DRADrivers: d.Inference.DeviceDrivers,
		Partial: partial(n.Status.Allocatable),
	}
}

// partial lists the GPU resources a node has some of whose units are not whole GPUs.
func partial(l corev1.ResourceList) []string {
	var out []string
	for k, q := range l {
		if r, ok := gpuinfo.LookupResource(string(k)); ok && r.Type != gpuinfo.ResourceGPU && r.Type != gpuinfo.ResourceAccelerator && q.Sign() > 0 {
			out = append(out, string(k))
		}
	}
	slices.Sort(out)
	return out
}

// counts reads the resources the analysis reads as whole numbers without materialising huge
// ones (Value() on 1E66666666666 never returns); what does not fit reads as MaxInt64.
func counts(l corev1.ResourceList, customKey string) map[string]int64 {
	var out map[string]int64
	for k, q := range l {
		if skypilot.ReadsResource(string(k), customKey) {
			if out == nil {
				out = map[string]int64{}
			}
			out[string(k)] = count(q)
		}
	}
	return out
}

func count(q resource.Quantity) int64 {
	if n, ok := q.AsInt64(); ok {
		return n
	}
	f := math.Ceil(q.AsApproximateFloat64())
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

// NoteCluster adds to a node's own finding what the cluster makes of it: an invalid value of
// SkyPilot's label is not one node's problem, it breaks every request. The webhook's wording
// is kept; the consequence is appended.
func NoteCluster(r *Node, c *skypilot.Cluster) {
	var note string
	for _, f := range c.About(r.Name) {
		switch f.Reason {
		case skypilot.ReasonInvalidValue:
			note = "; this breaks every SkyPilot GPU request in the cluster"
		case skypilot.ReasonSchemeIgnored:
			note = "; because of it SkyPilot ignores " + skypilot.KeySkyPilot + " on every node"
		}
	}
	if note == "" {
		return
	}
	for i, f := range r.Findings {
		if f.Reason == admit.ReasonLabelInvalid {
			old := f.Message
			r.Findings[i].Message += note
			if j := slices.Index(r.Warnings, old); j >= 0 {
				r.Warnings[j] = r.Findings[i].Message
			}
		}
	}
}

// Check is what `check -o json|yaml` prints: the node records and what SkyPilot will see.
type Check struct {
	Nodes   []Node           `json:"nodes"`
	Cluster skypilot.Cluster `json:"cluster"`
}

// WriteCheck prints check's output; note, if any, qualifies the cluster section (a selector
// limits the nodes read, not the nodes SkyPilot reads).
func WriteCheck(w io.Writer, format string, nodes []Node, c *skypilot.Cluster, note string) error {
	if nodes == nil {
		nodes = []Node{}
	}
	// Written as json.Encoder and yaml.Marshal would write a Check, but record by record.
	switch format {
	case "json":
		bw := bufio.NewWriter(w)
		bw.WriteString("{\n  \"nodes\": ")
		if err := jsonList(bw, nodes, "  "); err != nil {
			return err
		}
		cluster, err := json.MarshalIndent(c, "  ", "  ")
		if err != nil {
			return err
		}
		bw.WriteString(",\n  \"cluster\": ")
		bw.Write(cluster)
		bw.WriteString("\n}\n")
		return bw.Flush()
	case "yaml":
		cluster, err := yaml.Marshal(map[string]any{"cluster": c})
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(w)
		bw.Write(cluster)
		if len(nodes) == 0 {
			bw.WriteString("nodes: []\n")
		} else {
			bw.WriteString("nodes:\n")
		}
		if err := yamlList(bw, nodes); err != nil {
			return err
		}
		return bw.Flush()
	case "table", "":
		if err := Write(w, format, nodes); err != nil {
			return err
		}
		WriteCluster(w, c, note)
		return nil
	}
	return fmt.Errorf("unknown output format %q: want table, json or yaml", format)
}

// WriteCluster prints the "What SkyPilot will see" section.
func WriteCluster(w io.Writer, c *skypilot.Cluster, note string) {
	fmt.Fprintf(w, "\nWhat SkyPilot will see (its rules: %s)\n", skypilot.Source)
	if note != "" {
		fmt.Fprintf(w, "  %s\n", note)
	}
	if c.LabelScheme == "" {
		fmt.Fprintln(w, "  label scheme: none (no node has a label SkyPilot reads)")
	} else {
		fmt.Fprintf(w, "  label scheme: %s (%s), picked by node %s\n", c.LabelScheme, strings.Join(c.LabelKeys, ", "), c.DecidedBy)
	}
	fmt.Fprintf(w, "  GPU resource: %s (%s)\n", c.GPUResource, c.GPUResourceFrom)
	if len(c.Findings) == 0 {
		fmt.Fprintln(w, "  no findings: SkyPilot sees every GPU node")
		return
	}
	for _, f := range c.Findings {
		fmt.Fprintf(w, "  %s %s: %s\n", strings.ToUpper(string(f.Severity)), f.Reason, strings.Join(f.Nodes, ", "))
		fmt.Fprintf(w, "    %s\n", f.Message)
		fmt.Fprintf(w, "    fix: %s\n", f.Fix)
	}
}
