// Command demo tells the webhook's story on a local control plane: a GPU node joins and is
// warned about, the admin opts in with one ConfigMap change, the next node joins labeled, an
// on-prem node is labeled once its device plugin and GPU Feature Discovery report, and
// `webhook check` finds the cluster clean. Run it with `make demo`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

func main() {
	keep := flag.Bool("keep", false, "leave the control plane running and print how to reach it")
	flag.Parse()
	if err := run(*keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> %s\033[0m\n", fmt.Sprintf(format, args...))
}

func run(keep bool) error {
	ctx := context.Background()
	step("Starting a local control plane (kube-apiserver and etcd, Node,RBAC authorization, NodeRestriction)")
	cluster, err := env.StartStack(ctx, env.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	hook := cluster.Hook
	if err := cluster.RegisterMutating(ctx, hook); err != nil {
		return err
	}
	fmt.Printf("webhook serving at %s, registered with failurePolicy: Ignore and matchConditions; config: autoLabel=false\n", hook.URL)

	admin, err := cluster.KubeconfigFile("demo-admin", "system:masters")
	if err != nil {
		return err
	}
	kubectl := func(args ...string) error {
		fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
		cmd := exec.Command(filepath.Join(cluster.Root, "bin", "k8s", "kubectl"), append([]string{"--kubeconfig", admin}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		return cmd.Run()
	}
	webhookCLI := func(args ...string) error {
		fmt.Printf("$ webhook %s\n", strings.Join(args, " "))
		cmd := exec.Command(filepath.Join(cluster.Root, "bin", "webhook"), append(args, "--kubeconfig", admin)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		return cmd.Run()
	}
	// kubelet joins as its own node identity, and reports the warnings it is sent.
	kubelet := func(name string) (kubernetes.Interface, *env.Warnings, error) {
		cfg, err := cluster.User("system:node:"+name, "system:nodes")
		if err != nil {
			return nil, nil, err
		}
		w := &env.Warnings{}
		cs, err := env.Client(cfg, w)
		return cs, w, err
	}
	join := func(name, instanceType string) (*corev1.Node, kubernetes.Interface, error) {
		cs, w, err := kubelet(name)
		if err != nil {
			return nil, nil, err
		}
		n := testnode.Realistic(name, instanceType, 0)
		n.UID = ""
		created, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			return nil, nil, err
		}
		fmt.Printf("kubelet registered node %s (%s)\n", name, instanceType)
		for _, warning := range w.Take() {
			fmt.Printf("  Warning: %s\n", warning)
		}
		return created, cs, nil
	}
	showNodes := func() error {
		return kubectl("get", "nodes", "-L", "node.kubernetes.io/instance-type,"+admit.DefaultLabelKey)
	}

	step("A GPU node joins an EKS-like cluster: p4d.24xlarge, no device plugin yet")
	first, firstKubelet, err := join("ip-10-0-1-17.ec2.internal", "p4d.24xlarge")
	if err != nil {
		return err
	}
	if err := showNodes(); err != nil {
		return err
	}
	time.Sleep(time.Second)
	if err := kubectl("get", "events", "-n", "default", "--field-selector", "involvedObject.name="+first.Name, "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message"); err != nil {
		return err
	}

	step("The admin opts in with one ConfigMap change (no restart)")
	before, _ := hook.Metric("gpu_label_webhook_config_reloads_total")
	if err := kubectl("-n", "gpu-label-webhook", "patch", "configmap", "gpu-label-webhook", "--type", "merge", "-p", `{"data":{"autoLabel":"true"}}`); err != nil {
		return err
	}
	if err := waitFor(func() bool { v, _ := hook.Metric("gpu_label_webhook_config_reloads_total"); return v > before }); err != nil {
		return fmt.Errorf("the webhook did not pick up the config: %w", err)
	}

	step("The next GPU node joins, from the autoscaler: labeled on its CREATE")
	second, secondKubelet, err := join("ip-10-0-2-33.ec2.internal", "p5.48xlarge")
	if err != nil {
		return err
	}
	if err := showNodes(); err != nil {
		return err
	}

	step("An on-prem node joins with an instance type no table knows")
	onprem, onpremKubelet, err := join("dgx-rack4-07", "dgx-a100-onprem")
	if err != nil {
		return err
	}
	fmt.Println("the device plugin reports 8 GPUs through nodes/status...")
	if err := reportGPUs(onpremKubelet, onprem.Name); err != nil {
		return err
	}
	fmt.Println("...then GPU Feature Discovery labels the product:")
	patch := `{"metadata":{"labels":{"nvidia.com/gpu.product":"NVIDIA-A100-SXM4-80GB","nvidia.com/gpu.present":"true"}}}`
	if err := kubectl("patch", "node", onprem.Name, "--type", "merge", "-p", patch); err != nil {
		return err
	}
	if err := showNodes(); err != nil {
		return err
	}

	step("The EKS nodes' device plugins report their GPUs; the first node, which joined before the opt-in, is labeled on that status report")
	for _, n := range []struct {
		name string
		cs   kubernetes.Interface
	}{{first.Name, firstKubelet}, {second.Name, secondKubelet}} {
		if err := reportGPUs(n.cs, n.name); err != nil {
			return err
		}
	}
	if err := showNodes(); err != nil {
		return err
	}

	step("The advisory check agrees: every GPU node is labeled, and SkyPilot sees every GPU")
	if err := webhookCLI("check"); err != nil {
		return err
	}
	// The step's title is a claim: hold the demo to it, so a change that breaks it fails here.
	if err := checkClean(filepath.Join(cluster.Root, "bin", "webhook"), admin); err != nil {
		return err
	}

	if keep {
		step("Leaving the control plane running")
		fmt.Printf("export KUBECONFIG=%s\nbin/k8s/kubectl get nodes -L %s\nPress Ctrl-C to stop.\n", admin, admit.DefaultLabelKey)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
	}
	step("Done; cleaning up")
	return nil
}

// reportGPUs is a kubelet's status report once its device plugin has registered: the GPUs in
// capacity and in allocatable, which is where SkyPilot counts them.
func reportGPUs(kubelet kubernetes.Interface, node string) error {
	patch := `{"status":{"capacity":{"nvidia.com/gpu":"8"},"allocatable":{"nvidia.com/gpu":"8"}}}`
	_, err := kubelet.CoreV1().Nodes().Patch(context.Background(), node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	return err
}

// checkClean reads `webhook check -o json`: every GPU node labeled and nothing SkyPilot would
// get wrong.
func checkClean(webhook, kubeconfig string) error {
	out, err := exec.Command(webhook, "check", "-o", "json", "--kubeconfig", kubeconfig).Output()
	if err != nil {
		return fmt.Errorf("webhook check -o json: %w", err)
	}
	var c report.Check
	if err := json.Unmarshal(out, &c); err != nil {
		return fmt.Errorf("webhook check -o json: %w", err)
	}
	var problems []string
	for _, n := range c.Nodes {
		if n.GPU && n.CurrentLabel == "" {
			problems = append(problems, n.Name+" is not labeled")
		}
		for _, f := range n.Findings {
			if f.Warning() {
				problems = append(problems, fmt.Sprintf("%s: %s", n.Name, f.Message))
			}
		}
	}
	for _, f := range c.Cluster.Findings {
		problems = append(problems, fmt.Sprintf("%s %s: %s", f.Severity, f.Reason, f.Message))
	}
	if len(problems) > 0 {
		return fmt.Errorf("the check contradicts the demo:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

func waitFor(cond func() bool) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out")
}
