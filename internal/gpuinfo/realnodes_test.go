package gpuinfo

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

func quantities(l corev1.ResourceList) map[string]resource.Quantity {
	out := map[string]resource.Quantity{}
	for k, v := range l {
		out[string(k)] = v
	}
	return out
}

// Every label set of testdata/real-nodes.yaml, as a public issue or provider page shows it,
// gives the value and the deciding source its annotations say.
func TestRealNodes(t *testing.T) {
	b, err := os.ReadFile("testdata/real-nodes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var list corev1.NodeList
	if err := yaml.UnmarshalStrict(b, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) < 30 {
		t.Fatalf("only %d nodes", len(list.Items))
	}
	kb := Default()
	for _, n := range list.Items {
		t.Run(n.Name, func(t *testing.T) {
			a := n.Annotations
			if a["fixture/from"] == "" {
				t.Fatal("no fixture/from: say where the label set was read")
			}
			in := kb.Infer(Node{Labels: n.Labels, Capacity: quantities(n.Status.Capacity), Allocatable: quantities(n.Status.Allocatable)})
			if a["fixture/want"] == "not-a-gpu" {
				if in.Kind != "" {
					t.Errorf("kind %q from %+v, want no accelerator", in.Kind, in.Evidence)
				}
				return
			}
			// A node whose model is unknown is named by the first evidence that showed its GPU.
			source := string(in.Source)
			if in.Model == nil && len(in.Evidence) > 0 {
				source = string(in.Evidence[0].Source)
			}
			if !in.GPU() || in.Value() != a["fixture/want"] || source != a["fixture/source"] {
				t.Errorf("gpu=%v value=%q source=%q, want %q from %q (evidence %+v)", in.GPU(), in.Value(), source, a["fixture/want"], a["fixture/source"], in.Evidence)
			}
			if len(in.Conflicts) > 0 {
				t.Errorf("conflicts: %+v", in.Conflicts)
			}
		})
	}
}
