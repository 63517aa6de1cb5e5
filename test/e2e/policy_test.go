//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
)

// Policy mode on the real apiserver: the generated policies install as the README says,
// warn about unlabeled GPU nodes with the fix, and once opted in label the real-world nodes
// of the project's tables exactly as the webhook would, or leave alone those they cannot name.
func TestPolicyMode(t *testing.T) {
	ctx := context.Background()
	if err := cluster.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	defer registerMutating(t)
	kubectl := filepath.Join(cluster.Root, "bin", "k8s", "kubectl")
	kc, err := cluster.KubeconfigFile("policy-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(kubectl, append([]string{"--kubeconfig", kc}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	run("apply", "-k", filepath.Join(cluster.Root, "manifests", "overlays", "policy"))
	defer run("delete", "--ignore-not-found",
		"validatingadmissionpolicy/"+manifests.AuditPolicyName, "validatingadmissionpolicybinding/"+manifests.AuditPolicyName,
		"mutatingadmissionpolicy/"+manifests.PolicyName, "mutatingadmissionpolicybinding/"+manifests.PolicyName)
	defer setConfig(t, map[string]string{})

	cs, w := client(t, cluster.Admin)
	// The apiserver loads new policies in the background: warn-only, a GPU node is warned
	// about with the fix once the audit policy is in force.
	probe := 0
	eventually(t, "the audit policy's warning", func() bool {
		probe++
		w.Take()
		name := fmt.Sprintf("pol-warn-%d", probe)
		if _, err := cs.CoreV1().Nodes().Create(ctx, node(name, map[string]string{"node.kubernetes.io/instance-type": "p5.48xlarge"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(w.all(), "node "+name+" has GPUs but no "+admit.DefaultLabelKey+" label; fix: kubectl label node "+name+" "+admit.DefaultLabelKey+"=h100")
	})
	firstWarned := probe
	if v, ok := label(t, cs, fmt.Sprintf("pol-warn-%d", probe)); ok {
		t.Errorf("warn-only policy labeled a node %q", v)
	}

	setConfig(t, map[string]string{admit.KeyAutoLabel: "true"})
	eventually(t, "the label policy", func() bool {
		probe++
		name := fmt.Sprintf("pol-probe-%d", probe)
		n, err := cs.CoreV1().Nodes().Create(ctx, node(name, map[string]string{"node.kubernetes.io/instance-type": "p4d.24xlarge"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Labels[admit.DefaultLabelKey] == "a100"
	})

	// A node that joined before the opt-in is labeled on its next status report.
	warned := fmt.Sprintf("pol-warn-%d", firstWarned)
	eventually(t, "a status report to label "+warned, func() bool {
		n, err := cs.CoreV1().Nodes().Get(ctx, warned, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Capacity = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}
		if n, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return n.Labels[admit.DefaultLabelKey] == "h100"
	})

	b, err := os.ReadFile(filepath.Join(cluster.Root, "internal", "gpuinfo", "testdata", "real-nodes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var list corev1.NodeList
	if err := yaml.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	cfg, err := admit.ParseConfig(map[string]string{admit.KeyAutoLabel: "true"})
	if err != nil {
		t.Fatal(err)
	}
	labeled, webhookLabels := 0, 0
	for _, fixture := range list.Items {
		want, _ := report.Decide(cfg, &fixture, nil, admit.Mutating)
		// As a kubelet does: register with labels, then report resources in a status update.
		n := node("pol-"+fixture.Name, fixture.Labels)
		created, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if len(fixture.Status.Capacity)+len(fixture.Status.Allocatable) > 0 {
			created.Status.Capacity, created.Status.Allocatable = fixture.Status.Capacity, fixture.Status.Allocatable
			if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("%s status: %v", n.Name, err)
			}
		}
		got, ok := label(t, cs, n.Name)
		if want.Action == admit.ActionLabel {
			webhookLabels++
		}
		switch {
		case ok && want.Action != admit.ActionLabel:
			t.Errorf("%s: the policy labeled %q, the webhook would not", fixture.Name, got)
		case ok && got != want.Value:
			t.Errorf("%s: the policy labeled %q, the webhook %q", fixture.Name, got, want.Value)
		case ok:
			labeled++
		}
	}
	t.Logf("the policy labeled %d of the %d real-world nodes the webhook labels", labeled, webhookLabels)
	if labeled*100 < webhookLabels*70 {
		t.Errorf("the policy labeled only %d of %d", labeled, webhookLabels)
	}

	// A node whose model no evidence tells is left alone and warned about.
	w.Take()
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("pol-unknown", map[string]string{"nvidia.com/gpu.present": "true"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v, ok := label(t, cs, "pol-unknown"); ok {
		t.Errorf("labeled a node of unknown model %q", v)
	}
	if !strings.Contains(w.all(), "node pol-unknown has GPUs but its model is unknown") {
		t.Errorf("warnings: %q", w.all())
	}
}

// Installed as kubectl-gpu_label on the PATH, the binary runs as a kubectl plugin through the
// real kubectl, and names itself the way kubectl does.
func TestKubectlPlugin(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(cluster.Root, "bin", "webhook"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kubectl-gpu_label"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	kc, err := cluster.KubeconfigFile("plugin-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		// kubectl takes no flags before a plugin's name: the plugin reads KUBECONFIG as kubectl does.
		cmd := exec.Command(filepath.Join(cluster.Root, "bin", "k8s", "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kc, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := kubectl("plugin", "list"); !strings.Contains(out, "kubectl-gpu_label") {
		t.Errorf("kubectl plugin list:\n%s", out)
	}
	if out := kubectl("gpu-label", "check", "--help"); !strings.Contains(out, "kubectl gpu-label check [flags]") {
		t.Errorf("help:\n%s", out)
	}
	if out := kubectl("gpu-label", "check", "-l", "pool=sp"); !strings.Contains(out, "What SkyPilot will see") {
		t.Errorf("check:\n%s", out)
	}
}
