package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/configsrc"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
)

func newExplainCommand(s streams) *cobra.Command {
	var file, configFile, output string
	cmd := &cobra.Command{
		Use:   "explain -f FILE",
		Short: "Say what the webhook would do with the nodes in a file (kubectl get nodes,resourceslices -o yaml)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return withCode(ExitError, fmt.Errorf("-o %q: want table or json", output))
			}
			cfg, err := loadConfigFile(configFile)
			if err != nil {
				return withCode(ExitError, err)
			}
			in := s.in
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return withCode(ExitError, err)
				}
				defer f.Close()
				in = f
			}
			nodes, slices, readErr := ReadNodes(in)
			devices := report.NewSlices(gpuinfo.Default(), slices)
			records := make([]report.Node, 0, len(nodes))
			for i := range nodes {
				_, r := report.Decide(cfg, &nodes[i], devices.Devices(&nodes[i]), admit.Mutating)
				records = append(records, r)
			}
			if err := report.Write(s.out, output, records); err != nil {
				return withCode(ExitError, err)
			}
			if readErr != nil {
				return withCode(ExitFindings, readErr)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file of Node manifests, and of the ResourceSlices DRA drivers publish for them: one object, several documents, or a v1 List; - for standard input")
	cmd.Flags().StringVar(&configFile, "config", "", "the webhook's ConfigMap manifest (default: warn only, label key "+admit.DefaultLabelKey+")")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// loadConfigFile reads a ConfigMap manifest, or returns the defaults for "".
func loadConfigFile(path string) (*admit.Config, error) {
	if path == "" {
		return admit.DefaultConfig(), nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	data, err := configsrc.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	cfg, err := admit.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	cfg.Origin = path
	return cfg, nil
}

// ReadNodes reads every Node and ResourceSlice in a stream of YAML or JSON documents, each one
// object or a List of them (as `kubectl get nodes,resourceslices -o yaml` prints them). What
// it can read is returned even when some documents are bad; the error names each bad one.
func ReadNodes(r io.Reader) ([]corev1.Node, []*resourcev1.ResourceSlice, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var nodes []corev1.Node
	var slices []*resourcev1.ResourceSlice
	var errs []error
	// read takes one object; listKind is the kind of the List it is in ("" for none).
	read := func(where string, raw []byte, kind, apiVersion, listKind string) {
		switch {
		case kind == "Node" || (kind == "" && listKind == "NodeList"):
			n, err := decodeNode(raw)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				return
			}
			nodes = append(nodes, n)
		case kind == "ResourceSlice" || (kind == "" && listKind == "ResourceSliceList"):
			rs, err := decodeSlice(raw, apiVersion)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				return
			}
			slices = append(slices, rs)
		case listKind != "":
			errs = append(errs, fmt.Errorf("%s: kind %q is not a Node or a ResourceSlice", where, kind))
		default:
			errs = append(errs, fmt.Errorf("%s: kind %q is not a Node, a ResourceSlice or a List of them", where, kind))
		}
	}
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			errs = append(errs, fmt.Errorf("document %d: not YAML or JSON: %w", doc, err))
			break // the stream cannot be resynchronised after a syntax error
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Items      []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			errs = append(errs, fmt.Errorf("document %d: not an object: %w", doc, err))
			continue
		}
		switch head.Kind {
		case "List", "NodeList", "ResourceSliceList":
			for i, item := range head.Items {
				var k struct{ APIVersion, Kind string }
				_ = json.Unmarshal(item, &k)
				if k.APIVersion == "" && head.Kind != "List" {
					k.APIVersion = head.APIVersion
				}
				read(fmt.Sprintf("document %d, item %d", doc, i), item, k.Kind, k.APIVersion, head.Kind)
			}
		default:
			read(fmt.Sprintf("document %d", doc), raw, head.Kind, head.APIVersion, "")
		}
	}
	return nodes, slices, errors.Join(errs...)
}

// decodeSlice reads a ResourceSlice of resource.k8s.io/v1, or of v1beta2, which has the same
// shape; v1beta1's devices are shaped otherwise (basic:) and are refused by name.
func decodeSlice(raw []byte, apiVersion string) (*resourcev1.ResourceSlice, error) {
	switch apiVersion {
	case resourcev1.SchemeGroupVersion.String(), "resource.k8s.io/v1beta2":
	default:
		return nil, fmt.Errorf("ResourceSlice of %q: want %s or resource.k8s.io/v1beta2", apiVersion, resourcev1.SchemeGroupVersion)
	}
	var rs resourcev1.ResourceSlice
	if err := json.Unmarshal(raw, &rs); err != nil {
		return nil, fmt.Errorf("not a valid ResourceSlice: %w", err)
	}
	if rs.Spec.Driver == "" {
		return nil, errors.New("ResourceSlice has no spec.driver")
	}
	return &rs, nil
}

func decodeNode(raw []byte) (corev1.Node, error) {
	// Quantities first, through the guard: resource.Quantity's own decoder computes for
	// minutes on a huge exponent.
	var q struct {
		Status struct {
			Capacity, Allocatable map[string]any
		} `json:"status"`
	}
	_ = json.Unmarshal(raw, &q)
	for field, m := range map[string]map[string]any{"capacity": q.Status.Capacity, "allocatable": q.Status.Allocatable} {
		for k, v := range m {
			if s, ok := v.(string); ok {
				if _, err := gpuinfo.ParseQuantity(s); err != nil {
					return corev1.Node{}, fmt.Errorf("status.%s[%s]: %w", field, k, err)
				}
			}
		}
	}
	var n corev1.Node
	if err := json.Unmarshal(raw, &n); err != nil {
		return n, fmt.Errorf("not a valid Node: %w", err)
	}
	if n.Name == "" {
		return n, errors.New("Node has no metadata.name")
	}
	return n, nil
}
