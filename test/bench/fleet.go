package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

// fleetGPULabel selects the fleet's GPU nodes: both labelers are given the same nodes.
const fleetGPULabel = "bench.gpu-label-webhook/gpu=true"

// fleet grows a fleet of kubelet-sized nodes (40% of them GPU nodes without the label) to
// each size in turn on a real apiserver, and at each size runs the CLI against its kubectl
// peer, alternating, keeping the faster of two runs of each: check against
// `kubectl get nodes -o json`, and label against `kubectl label` over the same GPU nodes.
// etcd runs with a backend quota and compaction that hold the largest fleet and its writes.
func fleet(r results, root string, quick bool) error {
	// From 1,000 nodes on, check's pages (500 nodes) are full: what its memory grows by
	// beyond the first size is what it keeps per node.
	sizes := []int{1000, 5000, 15000}
	if quick {
		sizes = []int{1000, 2000}
	}
	cluster, err := env.Start(env.Options{EtcdArgs: map[string]string{
		"quota-backend-bytes":       fmt.Sprint(8 << 30),
		"auto-compaction-mode":      "periodic",
		"auto-compaction-retention": "1m",
	}})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	kubeconfig, err := cluster.KubeconfigFile("bench-admin", "system:masters")
	if err != nil {
		return err
	}
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.QPS = -1
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	webhook, kubectl := filepath.Join(root, "bin", "webhook"), filepath.Join(root, "bin", "k8s", "kubectl")
	created := 0
	var firstRSS int64
	for _, size := range sizes {
		if _, err := parallel(size-created, func(i int) error {
			name := fmt.Sprintf("fleet-%05d", created+i)
			n := testnode.Realistic(name, "m5.large", 0)
			if (created+i)%5 < 2 {
				n = testnode.Realistic(name, "p4d.24xlarge", 8)
				n.Labels["bench.gpu-label-webhook/gpu"] = "true"
			}
			n.UID = ""
			_, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
			return err
		}); err != nil {
			return fmt.Errorf("creating the fleet: %w", err)
		}
		created = size
		key := fmt.Sprintf("fleet_%d_", size)
		var checkT, listT time.Duration
		var checkRSS, listRSS int64
		for i := 0; i < 2; i++ { // alternating, so that drifts of the machine touch both
			d, m, err := timed(webhook, "check", "--kubeconfig", kubeconfig, "-o", "json")
			if err != nil {
				return err
			}
			if i == 0 || d < checkT {
				checkT = d
			}
			checkRSS = max(checkRSS, m)
			if d, m, err = timed(kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"); err != nil {
				return err
			}
			if i == 0 || d < listT {
				listT = d
			}
			listRSS = max(listRSS, m)
		}
		r[key+"check_seconds"] = round(checkT.Seconds())
		r[key+"kubectl_get_seconds"] = round(listT.Seconds())
		r[key+"check_time_ratio_vs_kubectl_get"] = round(checkT.Seconds() / listT.Seconds())
		r[key+"check_rss_kib"] = checkRSS
		r[key+"kubectl_get_rss_kib"] = listRSS
		if firstRSS == 0 {
			firstRSS = checkRSS
			r["fleet_first_size"] = size
		}
		r["fleet_check_memory_slope_kib_per_node"] = round(float64(checkRSS-firstRSS) / float64(max(1, size-sizes[0])))

		// Each labeler labels the same GPU nodes once; kubectl removes the label after each.
		gpuNodes := (size*2 + 4) / 5
		labelT, _, err := timed(webhook, "label", "--kubeconfig", kubeconfig, "-l", fleetGPULabel)
		if err != nil {
			return err
		}
		if err := unlabel(kubectl, kubeconfig); err != nil {
			return err
		}
		kubectlT, _, err := timed(kubectl, "--kubeconfig", kubeconfig, "label", "nodes", "-l", fleetGPULabel, admit.DefaultLabelKey+"=a100")
		if err != nil {
			return err
		}
		if err := unlabel(kubectl, kubeconfig); err != nil {
			return err
		}
		r[key+"gpu_nodes"] = gpuNodes
		r[key+"label_seconds"] = round(labelT.Seconds())
		r[key+"kubectl_label_seconds"] = round(kubectlT.Seconds())
		r[key+"label_time_ratio_vs_kubectl_label"] = round(labelT.Seconds() / kubectlT.Seconds())
	}
	r["fleet_sizes"] = sizes
	return nil
}

// unlabel removes the label from the fleet's GPU nodes.
func unlabel(kubectl, kubeconfig string) error {
	_, _, err := timed(kubectl, "--kubeconfig", kubeconfig, "label", "nodes", "-l", fleetGPULabel, admit.DefaultLabelKey+"-")
	return err
}

// timed runs a command, its output discarded, and returns its wall time and peak RSS. The
// peak is the process's own VmHWM, read every 5 ms while it runs: the kernel's rusage figure
// for a child starts from this process's high-water mark at the fork (os/exec forks with the
// parent's memory shared until the exec), which after the apiserver part is hundreds of MB.
func timed(name string, args ...string) (time.Duration, int64, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for t := time.NewTicker(5 * time.Millisecond); ; {
			if v := hwmKiB(cmd.Process.Pid); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	d := time.Since(start)
	close(done)
	<-sampled
	if err != nil {
		return 0, 0, fmt.Errorf("%s %v: %w: %.2000s", filepath.Base(name), args[:min(3, len(args))], err, stderr.String())
	}
	return d, peak.Load(), nil
}

// hwmKiB reads a process's peak resident set size, 0 once it has exited.
func hwmKiB(pid int) int64 { return procStatusKiB(pid, "VmHWM:") }
