package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

const workers = 16

// parallel runs fn(i) for i in [0, n) from the workers and returns the elapsed time and the
// first error.
func parallel(n int, fn func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// throughAPIServer creates GPU nodes through a real apiserver with and without the webhook
// registered, alternating, and then sends routine status updates that the matchConditions
// must keep from the webhook.
func throughAPIServer(r results, quick bool) error {
	ctx := context.Background()
	cluster, err := env.StartStack(ctx, env.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	hook := cluster.Hook
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.QPS, cfg.Burst = 5000, 5000
	cfg.WarningHandler = rest.NoWarnings{} // thousands of nodes are warned about in the warn-only mode
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	create := func(prefix string, n int) (time.Duration, error) {
		return parallel(n, func(i int) error {
			node := testnode.Realistic(fmt.Sprintf("%s-%05d", prefix, i), "p4d.24xlarge", 0)
			node.UID = ""
			_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
			return err
		})
	}
	perPhase, rounds, updates := 1000, 2, 10000
	if quick {
		perPhase, rounds, updates = 100, 1, 500
	}
	if _, err := create("warmup", 100); err != nil {
		return err
	}
	// Modes, run in turn each round so that drifts of the machine touch all of them: the
	// default install (labels, one Event per labeled node), labeling without Events, and
	// warn-only without Events (the cost of the call alone, without the apiserver applying a
	// patch).
	modes := []struct {
		name   string
		config map[string]string // nil: webhook not registered
	}{
		{"without", nil},
		{"with", map[string]string{admit.KeyAutoLabel: "true"}},
		{"label_no_events", map[string]string{admit.KeyAutoLabel: "true", admit.KeyEvents: "false"}},
		{"warn_only_no_events", map[string]string{admit.KeyAutoLabel: "false", admit.KeyEvents: "false"}},
	}
	elapsed := map[string]time.Duration{}
	for round := 0; round < rounds; round++ {
		for _, m := range modes {
			if m.config == nil {
				if err := cluster.Unregister(ctx); err != nil {
					return err
				}
			} else {
				if err := cluster.SetConfigAndWait(ctx, hook, m.config); err != nil {
					return err
				}
				if err := cluster.RegisterMutating(ctx, hook); err != nil {
					return err
				}
			}
			d, err := create(fmt.Sprintf("%s-%d", strings.ReplaceAll(m.name, "_", "-"), round), perPhase)
			if err != nil {
				return err
			}
			elapsed[m.name] += d
		}
	}
	if err := cluster.SetConfigAndWait(ctx, hook, map[string]string{admit.KeyAutoLabel: "true"}); err != nil {
		return err
	}
	with, without := elapsed["with"], elapsed["without"]
	for _, m := range modes[2:] {
		r["apiserver_create_time_ratio_"+m.name] = round(elapsed[m.name].Seconds() / without.Seconds())
	}
	labeled, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: admit.DefaultLabelKey + "=a100"})
	if err != nil {
		return err
	}
	if got, want := len(labeled.Items), 2*perPhase*rounds; got != want {
		return fmt.Errorf("%d nodes labeled through the webhook, want %d", got, want)
	}
	r["apiserver_nodes_per_mode"] = perPhase * rounds
	r["apiserver_create_seconds_with"] = round(with.Seconds())
	r["apiserver_create_seconds_without"] = round(without.Seconds())
	r["apiserver_create_time_ratio"] = round(with.Seconds() / without.Seconds())

	// Routine status reports: half from labeled GPU nodes, half from CPU nodes.
	if _, err := parallel(50, func(i int) error {
		node := testnode.Realistic(fmt.Sprintf("cpu-%03d", i), "m5.large", 0)
		node.UID = ""
		_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	targets := make([]string, 0, 100)
	for i := 0; i < 50; i++ {
		targets = append(targets, fmt.Sprintf("cpu-%03d", i), labeled.Items[i].Name)
	}
	callsBefore, err := hook.Metric("gpu_label_webhook_requests_total")
	if err != nil {
		return err
	}
	exclBefore, err := apiserverMetric(cs, "apiserver_admission_match_condition_exclusions_total")
	if err != nil {
		return err
	}
	d, err := parallel(updates, func(i int) error {
		p := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","lastHeartbeatTime":"%s"}]}}`,
			time.Unix(1764300000+int64(i), 0).UTC().Format(time.RFC3339))
		_, err := cs.CoreV1().Nodes().Patch(ctx, targets[i%len(targets)], types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{}, "status")
		return err
	})
	if err != nil {
		return err
	}
	callsAfter, err := hook.Metric("gpu_label_webhook_requests_total")
	if err != nil {
		return err
	}
	exclAfter, err := apiserverMetric(cs, "apiserver_admission_match_condition_exclusions_total")
	if err != nil {
		return err
	}
	r["ignored_updates"] = updates
	r["ignored_updates_seconds"] = round(d.Seconds())
	r["ignored_updates_webhook_calls"] = int64(callsAfter - callsBefore)
	r["apiserver_match_condition_exclusions"] = int64(exclAfter - exclBefore)
	return nil
}

// apiserverMetric sums a metric from the apiserver's own /metrics.
func apiserverMetric(cs kubernetes.Interface, name string) (float64, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return 0, err
	}
	return env.SumMetric(bytes.NewReader(raw), name)
}
