package report

import (
	"bytes"
	"encoding/json"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

// Records are written one at a time, and the bytes are those of encoding the whole document
// at once, as these functions did before they streamed.
func TestStreamedOutputIsTheWholeDocument(t *testing.T) {
	fleet, c := check(
		withGPUs(testnode.Bare("a", map[string]string{admit.DefaultLabelKey: "H100"}), "nvidia.com/gpu", "8"),
		withGPUs(testnode.Bare("b", map[string]string{"node.kubernetes.io/instance-type": "p5.48xlarge"}), "nvidia.com/gpu", "8"),
		testnode.Bare("c", map[string]string{"node.kubernetes.io/instance-type": "m5.large"}),
	)
	whole := func(format string, v any) string {
		if format == "yaml" {
			b, err := yaml.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	for name, nodes := range map[string][]Node{"no records": nil, "one record": fleet[:1], "a GPU fleet and a CPU node": fleet} {
		for _, format := range []string{"json", "yaml"} {
			t.Run(name+" as "+format, func(t *testing.T) {
				var got bytes.Buffer
				if err := Write(&got, format, nodes); err != nil {
					t.Fatal(err)
				}
				list := nodes
				if list == nil {
					list = []Node{}
				}
				if want := whole(format, list); got.String() != want {
					t.Errorf("Write:\n%s\nwant\n%s", got.String(), want)
				}
				got.Reset()
				if err := WriteCheck(&got, format, nodes, &c, ""); err != nil {
					t.Fatal(err)
				}
				if want := whole(format, Check{Nodes: list, Cluster: c}); got.String() != want {
					t.Errorf("WriteCheck:\n%s\nwant\n%s", got.String(), want)
				}
			})
		}
	}
}

// The table names the label a generic row read, for a model and for a GPU of unknown model.
func TestTableNamesTheGenericLabel(t *testing.T) {
	fleet, _ := check(
		testnode.Bare("crusoe", map[string]string{"crusoe.ai/accelerator": "nvidia-h100-80gb-sxm-ib"}),
		testnode.Bare("aks", map[string]string{"kubernetes.azure.com/accelerator": "nvidia"}),
	)
	var out bytes.Buffer
	if err := Write(&out, "table", fleet); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"h100       generic:crusoe.ai/accelerator", "generic:kubernetes.azure.com/accelerator"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("the table does not show %q:\n%s", want, out.String())
		}
	}
}
