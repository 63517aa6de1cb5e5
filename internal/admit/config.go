// Package admit is what the webhook decides about a Node and why: the config that opts a
// cluster in, and Decide, which turns the knowledge base's inference into an action and its
// findings. It is pure: no I/O, no clients, no wire format.
package admit

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// Defaults of the opt-in ConfigMap.
const (
	DefaultLabelKey = "skypilot.co/accelerator"
	// LabelFieldManager is the field manager of `webhook label`'s patches, by which the
	// match conditions keep them from the webhook: the command made the same decision.
	LabelFieldManager = "gpu-label-webhook-label"
	DefaultConfigName = "gpu-label-webhook"
	DefaultNamespace  = "gpu-label-webhook"
)

// Keys of the opt-in ConfigMap.
const (
	KeyAutoLabel     = "autoLabel"
	KeyLabelKey      = "labelKey"
	KeyNodeSelector  = "nodeSelector"
	KeyInstanceTypes = "instanceTypes"
	KeyOverwrite     = "overwrite"
	KeyEvents        = "events"
)

// ConfigKeys lists every key the ConfigMap may hold, with its default and meaning; the README's
// reference and the generated ConfigMap come from it.
var ConfigKeys = []struct{ Key, Default, Doc string }{
	{KeyAutoLabel, "false", `"true" adds the label in the admission response; otherwise the webhook only warns`},
	{KeyLabelKey, DefaultLabelKey, "the label to check and write; a qualified name outside kubernetes.io and k8s.io"},
	{KeyNodeSelector, "", "a label selector; only matching nodes are labeled automatically, the rest are warned about"},
	{KeyInstanceTypes, "", "YAML map of extra or overriding instance types: `my-type: H100` or `my-type: {gpu: H100, count: 8}`"},
	{KeyOverwrite, "false", `"true" corrects a label whose value disagrees with the evidence`},
	{KeyEvents, "true", `"false" turns Kubernetes Events off`},
}

// Config is the webhook's parsed, validated configuration. It is immutable once built.
type Config struct {
	AutoLabel    bool
	LabelKey     string
	NodeSelector labels.Selector
	Overwrite    bool
	Events       bool
	// KB is the built-in knowledge base with the config's instance types added.
	KB *gpuinfo.KB
	// Where the config was read from, for messages: namespace/name, or a file.
	Origin string
}

// DefaultConfig is the config in force when no ConfigMap exists: warn only.
func DefaultConfig() *Config {
	return &Config{LabelKey: DefaultLabelKey, NodeSelector: labels.Everything(), Events: true, KB: gpuinfo.Default()}
}

// ParseConfig validates a ConfigMap's data. Every problem is reported, not only the first.
func ParseConfig(data map[string]string) (*Config, error) {
	c := DefaultConfig()
	var errs []error
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := strings.TrimSpace(data[k])
		var err error
		switch k {
		case KeyAutoLabel:
			c.AutoLabel, err = parseBool(v)
		case KeyOverwrite:
			c.Overwrite, err = parseBool(v)
		case KeyEvents:
			c.Events, err = parseBool(v)
		case KeyLabelKey:
			c.LabelKey, err = parseLabelKey(v)
		case KeyNodeSelector:
			c.NodeSelector, err = labels.Parse(v)
		case KeyInstanceTypes:
			c.KB, err = parseInstanceTypes(v)
		default:
			err = fmt.Errorf("unknown key (known: %s)", strings.Join(configKeyNames(), ", "))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func configKeyNames() []string {
	out := make([]string, len(ConfigKeys))
	for i, k := range ConfigKeys {
		out[i] = k.Key
	}
	return out
}

func parseBool(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", v)
	}
	return b, nil
}

// parseLabelKey accepts a qualified label key outside the prefixes the NodeRestriction
// admission plugin keeps for itself, so a kubelet's own writes to its Node still pass.
func parseLabelKey(v string) (string, error) {
	if v == "" {
		return DefaultLabelKey, nil
	}
	if msgs := validation.IsQualifiedName(v); len(msgs) > 0 {
		return "", fmt.Errorf("%q is not a valid label key: %s", v, strings.Join(msgs, "; "))
	}
	if prefix, _, ok := strings.Cut(v, "/"); ok {
		for _, reserved := range []string{"kubernetes.io", "k8s.io"} {
			if prefix == reserved || strings.HasSuffix(prefix, "."+reserved) {
				return "", fmt.Errorf("%q is under %s, which NodeRestriction reserves", v, reserved)
			}
		}
	}
	return v, nil
}

// instanceTypeValue is one entry of the instanceTypes key: a model name, or {gpu, count}.
type instanceTypeValue struct {
	GPU   string `json:"gpu"`
	Count int64  `json:"count"`
}

func (v *instanceTypeValue) UnmarshalJSON(b []byte) error {
	var s string
	if err := yaml.Unmarshal(b, &s); err == nil {
		v.GPU = s
		return nil
	}
	type plain instanceTypeValue
	return yaml.UnmarshalStrict(b, (*plain)(v))
}

func parseInstanceTypes(v string) (*gpuinfo.KB, error) {
	if v == "" {
		return gpuinfo.Default(), nil
	}
	var m map[string]instanceTypeValue
	if err := yaml.UnmarshalStrict([]byte(v), &m); err != nil {
		return nil, fmt.Errorf("not a YAML map of instance type to GPU: %w", err)
	}
	rows := make([]gpuinfo.InstanceTypeRow, 0, len(m))
	for name, it := range m {
		if it.Count < 0 {
			return nil, fmt.Errorf("%s: count %d is negative", name, it.Count)
		}
		rows = append(rows, gpuinfo.InstanceTypeRow{Name: name, Model: it.GPU, Count: it.Count})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return gpuinfo.Default().WithInstanceTypes(rows)
}
