package admit

import (
	"strings"
	"testing"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

func TestParseConfig(t *testing.T) {
	tests := map[string]struct {
		data  map[string]string
		check func(t *testing.T, c *Config)
	}{
		"empty means defaults: warn only": {
			data: nil,
			check: func(t *testing.T, c *Config) {
				if c.AutoLabel || c.Overwrite || !c.Events || c.LabelKey != DefaultLabelKey || !c.NodeSelector.Empty() {
					t.Errorf("%+v", c)
				}
			},
		},
		"autoLabel true": {
			data:  map[string]string{KeyAutoLabel: "true"},
			check: func(t *testing.T, c *Config) { expect(t, c.AutoLabel) },
		},
		"autoLabel with spaces and capitals": {
			data:  map[string]string{KeyAutoLabel: " True "},
			check: func(t *testing.T, c *Config) { expect(t, c.AutoLabel) },
		},
		"labelKey": {
			data:  map[string]string{KeyLabelKey: "example.com/accelerator"},
			check: func(t *testing.T, c *Config) { expect(t, c.LabelKey == "example.com/accelerator") },
		},
		"nodeSelector": {
			data: map[string]string{KeyNodeSelector: "eks.amazonaws.com/nodegroup in (gpu-a,gpu-b)"},
			check: func(t *testing.T, c *Config) {
				expect(t, c.NodeSelector.String() == "eks.amazonaws.com/nodegroup in (gpu-a,gpu-b)")
			},
		},
		"overwrite and events": {
			data:  map[string]string{KeyOverwrite: "true", KeyEvents: "false"},
			check: func(t *testing.T, c *Config) { expect(t, c.Overwrite && !c.Events) },
		},
		"instanceTypes short and long forms": {
			data: map[string]string{KeyInstanceTypes: "my-type: H100\nother-type: {gpu: a100-80gb, count: 8}\n"},
			check: func(t *testing.T, c *Config) {
				it, ok := c.KB.LookupInstanceType("other-type")
				expect(t, ok && it.Model.Name == "A100-80GB" && it.ExpectedCount() == 8)
				it, ok = c.KB.LookupInstanceType("my-type")
				expect(t, ok && it.Model.Name == "H100" && it.ExpectedCount() == 0)
				_, ok = gpuinfo.Default().LookupInstanceType("my-type")
				expect(t, !ok)
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := ParseConfig(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func expect(t *testing.T, ok bool) {
	t.Helper()
	if !ok {
		t.Error("unexpected config")
	}
}

func TestParseConfigRejects(t *testing.T) {
	tests := map[string]struct {
		data map[string]string
		want string
	}{
		"bad bool":                    {map[string]string{KeyAutoLabel: "yes please"}, `autoLabel: "yes please" is not true or false`},
		"bad selector":                {map[string]string{KeyNodeSelector: "in in in ("}, "nodeSelector:"},
		"unknown key":                 {map[string]string{"autolabel": "true"}, "autolabel: unknown key"},
		"label key under kubernetes":  {map[string]string{KeyLabelKey: "node.kubernetes.io/accelerator"}, "NodeRestriction"},
		"label key under k8s.io":      {map[string]string{KeyLabelKey: "k8s.io/gpu"}, "NodeRestriction"},
		"invalid label key":           {map[string]string{KeyLabelKey: "not a key"}, "not a valid label key"},
		"instanceTypes not a map":     {map[string]string{KeyInstanceTypes: "- a\n- b"}, "instanceTypes: not a YAML map"},
		"instanceTypes unknown field": {map[string]string{KeyInstanceTypes: "x: {gpu: H100, cnt: 8}"}, "instanceTypes"},
		"instanceTypes negative":      {map[string]string{KeyInstanceTypes: "x: {gpu: H100, count: -1}"}, "negative"},
		"every error is reported":     {map[string]string{KeyAutoLabel: "maybe", KeyOverwrite: "perhaps"}, "overwrite"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
