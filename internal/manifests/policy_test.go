package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
)

// policyEnv is the apiserver's own CEL environment for admission policies (the base
// environment with the Kubernetes libraries), with the policies' variables declared.
func policyEnv(t *testing.T) *cel.Env {
	t.Helper()
	set, err := environment.MustBaseEnvSet(version.MajorMinor(1, 37)).Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions: []cel.EnvOption{
			cel.Variable("object", cel.DynType), cel.Variable("oldObject", cel.DynType),
			cel.Variable("params", cel.DynType), cel.Variable("request", cel.DynType),
			cel.Variable("variables", cel.MapType(cel.StringType, cel.DynType)),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := set.Env(environment.NewExpressions)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

type policyEval struct {
	progs []cel.Program
	names []string
	apply cel.Program
	match []cel.Program // the match conditions: the policy runs only where all hold
}

func compilePolicy(t *testing.T) *policyEval {
	env := policyEnv(t)
	pe := &policyEval{}
	compile := func(expr string) cel.Program {
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("compile %.80q: %v", expr, iss.Err())
		}
		p, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, v := range PolicyVariables() {
		pe.progs = append(pe.progs, compile(v.Expression))
		pe.names = append(pe.names, v.Name)
	}
	pe.apply = compile(celApply)
	for _, mc := range MatchConditions(admit.DefaultLabelKey) {
		pe.match = append(pe.match, compile(mc.Expression))
	}
	return pe
}

// eval returns the policy's value for a node, and whether the label policy would write it;
// "" and false where the match conditions keep the policy from running.
func (pe *policyEval) eval(t *testing.T, obj map[string]any, data map[string]string) (string, bool) {
	t.Helper()
	vars := map[string]any{}
	in := map[string]any{"object": obj, "oldObject": nil, "request": map[string]any{"operation": "CREATE"}, "variables": vars,
		"params": map[string]any{"data": data}}
	for _, p := range pe.match {
		out, _, err := p.Eval(in)
		if err != nil {
			t.Fatalf("match condition: %v", err)
		}
		if !out.Value().(bool) {
			return "", false
		}
	}
	for i, p := range pe.progs {
		out, _, err := p.Eval(in)
		if err != nil {
			t.Fatalf("variable %s: %v", pe.names[i], err)
		}
		vars[pe.names[i]] = out.Value()
	}
	out, _, err := pe.apply.Eval(in)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return vars["value"].(string), out.Value().(bool)
}

// policyNodes are the nodes of the project's tables: the real-world label sets, a node of
// every instance type, and a node for every name, alias and product token set each
// convention reads.
func policyNodes(t *testing.T) []corev1.Node {
	b, err := os.ReadFile(filepath.Join("..", "gpuinfo", "testdata", "real-nodes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var list corev1.NodeList
	if err := yaml.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	nodes := list.Items
	add := func(labels map[string]string) {
		nodes = append(nodes, corev1.Node{})
		nodes[len(nodes)-1].Name = fmt.Sprintf("n%d", len(nodes))
		nodes[len(nodes)-1].Labels = labels
	}
	kb := gpuinfo.Default()
	for _, it := range kb.InstanceTypes() {
		add(map[string]string{gpuinfo.LabelInstanceType: it.Name})
		add(map[string]string{gpuinfo.LabelInstanceTypeBeta: strings.ToUpper(it.Name), "nvidia.com/gpu.machine": "x"})
	}
	for _, m := range kb.Models() {
		for _, set := range m.Match() {
			product := "NVIDIA-" + strings.Join(set, "-")
			add(map[string]string{gpuinfo.LabelGFDProduct: product})
			add(map[string]string{gpuinfo.LabelGFDProduct: product + "-MIG-1g.10gb"})
			add(map[string]string{gpuinfo.LabelGFDProduct: product, gpuinfo.LabelGFDMemory: "81920", gpuinfo.LabelInstanceType: "p4d.24xlarge"})
			add(map[string]string{gpuinfo.LabelCoreWeaveClass: strings.Join(set, "_")})
			add(map[string]string{"aliyun.accelerator/nvidia_name": product + "-SHARED"})
		}
		for _, a := range append([]string{strings.ToLower(m.Name)}, m.Aliases...) {
			add(map[string]string{gpuinfo.LabelKarpenterGPUName: a, gpuinfo.LabelKarpenterGPUMem: "32768"})
			add(map[string]string{gpuinfo.LabelEKSGPUName: strings.ToUpper(a), gpuinfo.LabelEKSGPUMem: "81920"})
			add(map[string]string{gpuinfo.LabelGKEAccelerator: a, gpuinfo.LabelInstanceType: "a3-megagpu-8g"})
			add(map[string]string{"k8s.amazonaws.com/accelerator": "nvidia-tesla-" + a})
			add(map[string]string{"nebius.com/gpu-name": strings.ToUpper(a)})
		}
	}
	for _, d := range kb.PCIDevices() {
		add(map[string]string{"amd.com/gpu.device-id": d.Device, gpuinfo.LabelInstanceType: "g4dn.xlarge"})
		add(map[string]string{"feature.node.kubernetes.io/pci-0302_" + d.Vendor + "_" + d.Device + ".present": "true", gpuinfo.LabelInstanceType: "p5.48xlarge"})
	}
	// Types no table lists, which the instance-type-name reader reads, on nodes whose device
	// plugin reports GPUs: every row's name with a suffix, the ml. name of every EC2 row, a
	// name beside each GFD product, and a sample of the CPU types of each cloud.
	withGPUs := func(labels map[string]string) {
		add(labels)
		nodes[len(nodes)-1].Status.Capacity = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}
	}
	for _, it := range kb.InstanceTypes() {
		withGPUs(map[string]string{gpuinfo.LabelInstanceType: it.Name + "-next"})
		if it.Cloud == "aws" {
			withGPUs(map[string]string{gpuinfo.LabelInstanceTypeBeta: "ml." + it.Name})
		}
	}
	for _, m := range kb.Models() {
		for _, set := range m.Match() {
			withGPUs(map[string]string{gpuinfo.LabelGFDProduct: "NVIDIA-H100-80GB-HBM3", gpuinfo.LabelInstanceType: "gpu-" + strings.Join(set, "-") + "x8"})
		}
	}
	b, err = os.ReadFile(filepath.Join("..", "gpuinfo", "testdata", "cpu-instance-types.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 3 && !strings.HasPrefix(line, "#") && i%10 == 0 {
			withGPUs(map[string]string{gpuinfo.LabelInstanceType: f[1]})
		}
	}
	// Every device-plugin resource, alone and beside a product and an instance type.
	for _, r := range gpuinfo.Resources() {
		for _, l := range []map[string]string{{}, {gpuinfo.LabelGFDProduct: "NVIDIA-A100-SXM4-80GB"}, {gpuinfo.LabelInstanceType: "p4d.24xlarge"}} {
			add(l)
			nodes[len(nodes)-1].Status.Capacity = corev1.ResourceList{corev1.ResourceName(resourceSample(r)): resource.MustParse("8")}
		}
	}
	add(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", "skypilot.co/accelerator": "A100"})
	add(map[string]string{gpuinfo.LabelInstanceType: "p4d.24xlarge", "skypilot.co/accelerator": "h100"})
	return nodes
}

// The generated CEL, run by the apiserver's own CEL environment, agrees with the webhook on
// every node of the project's tables: where it names a model, it is the webhook's; where it
// cannot tell, it names none. It labels exactly when the webhook would, for the nodes it names.
func TestPolicyAgreesWithTheWebhook(t *testing.T) {
	pe := compilePolicy(t)
	nodes := policyNodes(t)
	configs := []map[string]string{
		{admit.KeyAutoLabel: "true"},
		{admit.KeyAutoLabel: "true", admit.KeyOverwrite: "true"},
		{admit.KeyAutoLabel: "false"},
	}
	named, webhookNamed := 0, 0
	for ci, data := range configs {
		cfg, err := admit.ParseConfig(data)
		if err != nil {
			t.Fatal(err)
		}
		for i := range nodes {
			n := &nodes[i]
			raw, err := toMap(n)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := report.Decide(cfg, n, nil, admit.Mutating)
			value, apply := pe.eval(t, raw, data)
			nameable := value != "" && value != stop
			if ci == 0 {
				if d.Inference.GPU() && d.Value != "" {
					webhookNamed++
					if nameable {
						named++
					}
				}
			}
			if nameable && (value != d.Value || !d.Inference.GPU()) {
				t.Errorf("%s %v: policy names %q, the webhook %q (gpu %v, evidence %+v)", n.Name, n.Labels, value, d.Value, d.Inference.GPU(), d.Inference.Evidence)
				continue
			}
			if webhookApplies := d.Action == admit.ActionLabel; nameable && apply != webhookApplies {
				t.Errorf("%s %v config %v: policy labels %v, the webhook %v", n.Name, n.Labels, data, apply, webhookApplies)
			}
			if !nameable && apply {
				t.Errorf("%s: the policy labels a node it cannot name", n.Name)
			}
		}
	}
	if webhookNamed == 0 || named*100 < webhookNamed*80 {
		t.Errorf("the policy names %d of the %d nodes the webhook names", named, webhookNamed)
	}
	t.Logf("the policy names %d of the %d nodes the webhook names (%.1f%%), over %d nodes", named, webhookNamed, 100*float64(named)/float64(webhookNamed), len(nodes))
}

func toMap(v any) (map[string]any, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, yaml.Unmarshal(b, &m)
}

// The policies cannot read ResourceSlices. Over every node of the project's tables, with the
// devices of a DRA driver beside it (naming another model than most labels do), a policy
// never names another model than the webhook names with the slices: where the slices alone
// name the model (a node with only Node Feature Discovery's vendor label, as the NVIDIA
// driver's chart selects nodes), the policy leaves the node alone.
func TestPolicyLeavesNodesOnlySlicesNameAlone(t *testing.T) {
	pe := compilePolicy(t)
	cfg, err := admit.ParseConfig(map[string]string{admit.KeyAutoLabel: "true"})
	if err != nil {
		t.Fatal(err)
	}
	nodes := policyNodes(t)
	nodes = append(nodes, corev1.Node{})
	nodes[len(nodes)-1].Name, nodes[len(nodes)-1].Labels = "nfd-only", map[string]string{"feature.node.kubernetes.io/pci-10de.present": "true"}
	for _, product := range []string{"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "AMD Instinct MI300X"} {
		devices := []gpuinfo.Device{{Driver: "gpu.nvidia.com", Type: "gpu", Name: "gpu-0", GPU: "GPU-0", Product: product}}
		for i := range nodes {
			n := &nodes[i]
			raw, err := toMap(n)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := report.Decide(cfg, n, devices, admit.Mutating)
			value, apply := pe.eval(t, raw, map[string]string{admit.KeyAutoLabel: "true"})
			if value != "" && value != stop && value != d.Value {
				t.Errorf("%s %v with %q: policy names %q, the webhook %q", n.Name, n.Labels, product, value, d.Value)
			}
			if n.Name == "nfd-only" && (value != "" || apply || d.Value == "") {
				t.Errorf("%s with %q: policy %q (labels %v), webhook %q", n.Name, product, value, apply, d.Value)
			}
		}
	}
}
