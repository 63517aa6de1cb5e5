package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpu-label-webhook/gpu-label-webhook/certs"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
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
// registered, alternating, in bursts from many clients, and then runs a fleet's status churn.
func throughAPIServer(r results, quick bool, profileDir string) error {
	ctx := context.Background()
	var opts env.Options
	pprofURL := ""
	if profileDir != "" {
		ports, err := env.FreePorts(1)
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
		opts.WebhookArgs = []string{"--pprof-addr", addr}
		pprofURL = "http://" + addr + "/debug/pprof/profile?seconds=2"
	}
	cluster, err := env.StartStack(ctx, opts)
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
	// create makes n GPU nodes from the workers at once (a scale-up burst), appending each
	// create's latency to lat when it is given.
	var latMu sync.Mutex
	create := func(prefix string, n int, lat *[]time.Duration) (time.Duration, error) {
		return parallel(n, func(i int) error {
			node := testnode.Realistic(fmt.Sprintf("%s-%05d", prefix, i), "p4d.24xlarge", 0)
			node.UID = ""
			start := time.Now()
			_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
			if lat != nil {
				d := time.Since(start)
				latMu.Lock()
				*lat = append(*lat, d)
				latMu.Unlock()
			}
			return err
		})
	}
	perPhase, rounds := 500, 4
	if quick {
		perPhase, rounds = 100, 1
	}
	if _, err := create("warmup", 100, nil); err != nil {
		return err
	}
	// The null webhooks, the floor any webhook on this path stands on: one that allows
	// everything, and one that returns the same one-operation label patch ours does.
	nullPlain, nullPatch, stopNulls, err := nullWebhooks(cluster.Dir)
	if err != nil {
		return err
	}
	defer stopNulls()
	// Modes, run in turn each round so that drifts of the machine touch all of them: ours opted
	// in (labels, and an Event per labeled node as far as the Event client's rate allows),
	// labeling without Events, warn-only without Events (the call alone, with no patch for the
	// apiserver to apply), and the two null webhooks with the same registration.
	modes := []struct {
		name   string
		hook   *nullHook         // a null webhook instead of ours
		config map[string]string // ours, with this config; neither: no webhook registered
		policy []any             // admission policies instead of any webhook, opted in
	}{
		{name: "without"},
		{name: "with", config: map[string]string{admit.KeyAutoLabel: "true"}},
		{name: "label_no_events", config: map[string]string{admit.KeyAutoLabel: "true", admit.KeyEvents: "false"}},
		{name: "warn_only_no_events", config: map[string]string{admit.KeyAutoLabel: "false", admit.KeyEvents: "false"}},
		{name: "null_patch", hook: nullPatch},
		{name: "null", hook: nullPlain},
		// Policy mode: the generated policies, evaluated by the apiserver itself.
		{name: "policy_label", policy: append(manifests.AuditPolicy(), manifests.LabelPolicy()...)},
		{name: "policy_audit", policy: manifests.AuditPolicy()},
	}
	elapsed := map[string]time.Duration{}
	latencies := map[string]*[]time.Duration{}
	rssStart := rssKiB(hook.Pid())
	eventsBefore, err := eventCounts(hook)
	if err != nil {
		return err
	}
	procs := map[int]string{nullPlain.proc.cmd.Process.Pid: "null", nullPatch.proc.cmd.Process.Pid: "null"}
	exes := []string{"kube-apiserver", "etcd", "webhook", "self"}
	cpu := map[string]map[string]float64{}
	// The webhook's memory, sampled every 100 ms across all bursts: its peak in each round.
	var rssRound atomic.Int64
	rssPeak := make([]atomic.Int64, rounds)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for t := time.NewTicker(100 * time.Millisecond); ; {
			select {
			case <-stopSampling:
				t.Stop()
				return
			case <-t.C:
				if peak, v := &rssPeak[rssRound.Load()], rssKiB(hook.Pid()); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	for round := 0; round < rounds; round++ {
		rssRound.Store(int64(round))
		// Each round starts with another mode, so that none is always first after a switch.
		for i := range modes {
			m := modes[(i+round)%len(modes)]
			err := removePolicies(ctx, cluster.Admin)
			switch {
			case err != nil:
			case m.policy != nil:
				if err = cluster.SetConfigAndWait(ctx, hook, map[string]string{admit.KeyAutoLabel: "true"}); err == nil {
					if err = cluster.Unregister(ctx); err == nil {
						err = installPolicies(ctx, cluster.Admin, m.policy)
					}
				}
			case m.hook != nil:
				err = cluster.RegisterMutating(ctx, &m.hook.Webhook)
			case m.config != nil:
				if err = cluster.SetConfigAndWait(ctx, hook, m.config); err == nil {
					err = cluster.RegisterMutating(ctx, hook)
				}
			default:
				err = cluster.Unregister(ctx)
			}
			if err != nil {
				return err
			}
			before := cpuSeconds(procs, exes...)
			var profiled chan error
			if profileDir != "" && round == 0 {
				profiled = make(chan error, 2)
				go func(name string) { profiled <- apiserverProfile(cs, filepath.Join(profileDir, name+".pprof"), 2) }(m.name)
				go func(name string) { profiled <- saveURL(pprofURL, filepath.Join(profileDir, name+"-webhook.pprof")) }(m.name)
			}
			if latencies[m.name] == nil {
				latencies[m.name] = new([]time.Duration)
			}
			d, err := create(fmt.Sprintf("%s-%d", strings.ReplaceAll(m.name, "_", "-"), round), perPhase, latencies[m.name])
			if err != nil {
				return err
			}
			after := cpuSeconds(procs, exes...)
			if profiled != nil {
				if err := errors.Join(<-profiled, <-profiled); err != nil {
					return err
				}
			}
			elapsed[m.name] += d
			if cpu[m.name] == nil {
				cpu[m.name] = map[string]float64{}
			}
			for p, v := range after {
				cpu[m.name][p] += v - before[p]
			}
		}
	}
	close(stopSampling)
	<-sampled
	if err := removePolicies(ctx, cluster.Admin); err != nil {
		return err
	}
	if err := cluster.SetConfigAndWait(ctx, hook, map[string]string{admit.KeyAutoLabel: "true"}); err != nil {
		return err
	}
	with, without := elapsed["with"], elapsed["without"]
	for _, m := range modes[2:] {
		r["apiserver_create_time_ratio_"+m.name] = round(elapsed[m.name].Seconds() / without.Seconds())
	}
	r["apiserver_create_time_ratio_vs_null_patch"] = round(with.Seconds() / elapsed["null_patch"].Seconds())
	// Each phase is a burst of perPhase creates from the workers at once: latency per create.
	p99 := map[string]time.Duration{}
	for name, lat := range latencies {
		p50, p := percentiles(*lat)
		p99[name] = p
		r["apiserver_create_p50_us_"+name] = p50.Microseconds()
		r["apiserver_create_p99_us_"+name] = p.Microseconds()
	}
	r["apiserver_burst_p99_ratio_vs_null_patch"] = round(p99["with"].Seconds() / p99["null_patch"].Seconds())
	r["apiserver_burst_p99_ratio_vs_without"] = round(p99["with"].Seconds() / p99["without"].Seconds())
	r["apiserver_webhook_rss_start_kib"] = rssStart
	r["apiserver_webhook_rss_end_kib"] = rssKiB(hook.Pid())
	peaks := make([]int64, rounds)
	for i := range rssPeak {
		peaks[i] = rssPeak[i].Load()
	}
	r["apiserver_webhook_rss_peak_kib_by_round"] = peaks
	// Flat: each round's peak no higher than the one before; the first rounds also grow the
	// apiserver's pool of connections to the webhook, so both ratios are kept.
	r["apiserver_webhook_rss_peak_ratio_last_vs_first_round"] = round(float64(peaks[rounds-1]) / float64(peaks[0]))
	r["apiserver_webhook_rss_peak_ratio_last_vs_previous_round"] = round(float64(peaks[rounds-1]) / float64(peaks[max(0, rounds-2)]))
	eventsAfter, err := eventCounts(hook)
	if err != nil {
		return err
	}
	for result, v := range eventsAfter {
		r["apiserver_events_"+result] = int64(v - eventsBefore[result])
	}
	labeled, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: admit.DefaultLabelKey + "=a100"})
	if err != nil {
		return err
	}
	// Ours labels in two modes; the patching null webhook and the label policy in one each.
	if got, want := len(labeled.Items), 4*perPhase*rounds; got != want {
		return fmt.Errorf("%d nodes labeled through the webhook, want %d", got, want)
	}
	r["apiserver_nodes_per_mode"] = perPhase * rounds
	// CPU per created node, microseconds, by process and mode.
	for _, m := range modes {
		for p, v := range cpu[m.name] {
			if p == "webhook" && m.config == nil || p == "null" && m.hook == nil {
				continue // not in the path in this mode
			}
			r[fmt.Sprintf("apiserver_cpu_us_per_node_%s_%s", m.name, strings.ReplaceAll(p, "-", "_"))] = int64(v * 1e6 / float64(perPhase*rounds))
		}
	}
	r["apiserver_create_seconds_with"] = round(with.Seconds())
	r["apiserver_create_seconds_without"] = round(without.Seconds())
	r["apiserver_create_time_ratio"] = round(with.Seconds() / without.Seconds())

	return churn(ctx, cluster, cs, labeled.Items, perPhase, quick, r)
}

// churn sends kubelet-like status reports from a 5,000-node fleet at a steady rate, most of
// its nodes labeled GPU nodes or CPU nodes and a few GPU nodes without the label, in rounds
// without and with the webhook (ours, labeling), alternating. Only the nodes without the label
// need a decision: the webhook must be called once for each (it labels them on that report)
// and never for the others, and the apiserver's CPU per report is compared between the modes.
func churn(ctx context.Context, cluster *env.Stack, cs kubernetes.Interface, labeled []corev1.Node, perPhase int, quick bool, r results) error {
	gpu, cpuNodes, unlabeled, rate := 2000, 2900, 100, 100.0
	if quick {
		gpu, cpuNodes, unlabeled = 200, 290, 10
	}
	if len(labeled) < gpu || perPhase < unlabeled {
		return fmt.Errorf("%d labeled nodes and %d per phase: too few for the churn", len(labeled), perPhase)
	}
	if _, err := parallel(cpuNodes, func(i int) error {
		node := testnode.Realistic(fmt.Sprintf("cpu-%04d", i), "m5.large", 0)
		node.UID = ""
		_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	targets := make([]string, 0, gpu+cpuNodes+unlabeled)
	for i := 0; i < cpuNodes; i++ {
		targets = append(targets, fmt.Sprintf("cpu-%04d", i))
	}
	for _, n := range labeled[:gpu] {
		targets = append(targets, n.Name)
	}
	var waiting []string // created in the first round without a webhook: GPU nodes without the label
	for i := 0; i < unlabeled; i++ {
		waiting = append(waiting, fmt.Sprintf("without-0-%05d", i))
	}
	targets = append(targets, waiting...)
	// The reports go through a client paced at rate, as a fleet's kubelets would send them
	// (5,000 nodes at 100 a second: each node every 50 s, between the kubelet's 10 s when its
	// status changes and its 5 minutes when nothing does; more would saturate this apiserver).
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.QPS, cfg.Burst = float32(rate), workers
	paced, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	hook := cluster.Hook
	// counts reads the webhook's calls and the apiserver's match-condition exclusions.
	counts := func() (calls, exclusions float64, err error) {
		if calls, err = hook.Metric("gpu_label_webhook_requests_total"); err == nil {
			exclusions, err = apiserverMetric(cs, "apiserver_admission_match_condition_exclusions_total")
		}
		return calls, exclusions, err
	}
	exes := []string{"kube-apiserver", "etcd", "webhook"}
	cpu := map[string]map[string]float64{}
	calls := map[string]float64{}
	var exclusions float64
	var elapsed time.Duration
	beat := 0
	for round := 0; round < 4; round++ {
		mode := "without"
		err := cluster.Unregister(ctx)
		if round%2 == 1 {
			mode = "with"
			err = cluster.RegisterMutating(ctx, hook)
		}
		if err != nil {
			return err
		}
		callsBefore, exclBefore, err := counts()
		if err != nil {
			return err
		}
		before := cpuSeconds(nil, exes...)
		d, err := parallel(len(targets), func(i int) error {
			p := fmt.Sprintf(`{"status":{"conditions":[{"type":"MemoryPressure","status":"False","reason":"KubeletHasSufficientMemory","lastHeartbeatTime":"%[1]s"},`+
				`{"type":"DiskPressure","status":"False","reason":"KubeletHasNoDiskPressure","lastHeartbeatTime":"%[1]s"},`+
				`{"type":"PIDPressure","status":"False","reason":"KubeletHasSufficientPID","lastHeartbeatTime":"%[1]s"},`+
				`{"type":"Ready","status":"True","reason":"KubeletReady","lastHeartbeatTime":"%[1]s"}]}}`,
				time.Unix(1764300000+int64(beat*50+i%50), 0).UTC().Format(time.RFC3339))
			_, err := paced.CoreV1().Nodes().Patch(ctx, targets[i], types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{}, "status")
			return err
		})
		if err != nil {
			return err
		}
		beat++
		after := cpuSeconds(nil, exes...)
		callsAfter, exclAfter, err := counts()
		if err != nil {
			return err
		}
		if cpu[mode] == nil {
			cpu[mode] = map[string]float64{}
		}
		for p, v := range after {
			cpu[mode][p] += v - before[p]
		}
		calls[mode] += callsAfter - callsBefore
		exclusions += exclAfter - exclBefore
		elapsed += d
	}
	for _, name := range waiting {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Labels[admit.DefaultLabelKey] != "a100" {
			return fmt.Errorf("node %s was not labeled on its status report", name)
		}
	}
	reports := float64(2 * len(targets)) // per mode
	r["churn_nodes"] = len(targets)
	r["churn_reports_per_second"] = rate
	r["churn_reports"] = 4 * len(targets)
	r["churn_seconds"] = round(elapsed.Seconds())
	r["churn_nodes_needing_decision"] = unlabeled
	r["churn_webhook_calls"] = int64(calls["with"] + calls["without"])
	r["churn_match_condition_exclusions"] = int64(exclusions)
	for mode, byProc := range cpu {
		for p, v := range byProc {
			if p == "webhook" && mode == "without" {
				continue
			}
			r[fmt.Sprintf("churn_cpu_us_per_report_%s_%s", mode, strings.ReplaceAll(p, "-", "_"))] = int64(v * 1e6 / reports)
		}
	}
	r["churn_apiserver_cpu_ratio_with_vs_without"] = round(cpu["with"]["kube-apiserver"] / cpu["without"]["kube-apiserver"])
	return nil
}

// eventResults are the results gpu_label_webhook_events_total counts Events by.
var eventResults = []string{"emitted", "rate_limited", "dropped", "failed"}

// eventCounts reads the webhook's Event counters by result.
func eventCounts(w *env.Webhook) (map[string]float64, error) {
	out := map[string]float64{}
	for _, result := range eventResults {
		v, err := w.Metric(`gpu_label_webhook_events_total{result="` + result + `"}`)
		if err != nil {
			return nil, err
		}
		out[result] = v
	}
	return out, nil
}

// percentiles returns the median and the 99th percentile of lat (which it sorts).
func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

// apiserverMetric sums a metric from the apiserver's own /metrics.
func apiserverMetric(cs kubernetes.Interface, name string) (float64, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return 0, err
	}
	return env.SumMetric(bytes.NewReader(raw), name)
}

// apiserverProfile saves a CPU profile of the apiserver, taken through its /debug/pprof.
func apiserverProfile(cs kubernetes.Interface, path string, seconds int) error {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(seconds)).DoRaw(context.Background())
	if err != nil {
		return fmt.Errorf("apiserver profile: %w", err)
	}
	return os.WriteFile(path, raw, 0o644)
}

// nullHook is a null webhook running for the apiserver.
type nullHook struct {
	env.Webhook
	proc *proc
}

// nullWebhooks starts the two null webhooks with certificates for 127.0.0.1 in a folder of dir.
func nullWebhooks(dir string) (plain, patch *nullHook, stop func(), err error) {
	certDir, err := os.MkdirTemp(dir, "null-certs-")
	if err != nil {
		return nil, nil, nil, err
	}
	ca, _, err := certs.Generate(certDir, []string{"127.0.0.1"})
	if err != nil {
		return nil, nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ports, err := env.FreePorts(2)
	if err != nil {
		return nil, nil, nil, err
	}
	var hooks []*nullHook
	stop = func() {
		for _, h := range hooks {
			h.proc.stop()
		}
	}
	for i, withPatch := range []bool{false, true} {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		p, err := startNull(addr, certDir, pool, withPatch)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		hooks = append(hooks, &nullHook{Webhook: env.Webhook{URL: "https://" + addr, CA: ca.CertPEM()}, proc: p})
	}
	return hooks[0], hooks[1], stop, nil
}

// saveURL saves what a GET of url returns (the webhook's own profile).
func saveURL(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return os.WriteFile(path, b, 0o644)
}

// installPolicies creates the policy-mode objects and waits until the apiserver enforces them.
func installPolicies(ctx context.Context, admin *rest.Config, objs []any) error {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	reg := cs.AdmissionregistrationV1()
	for _, o := range objs {
		switch o := o.(type) {
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			_, err = reg.ValidatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			_, err = reg.ValidatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.MutatingAdmissionPolicy:
			_, err = reg.MutatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
			_, err = reg.MutatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("policy object %T", o)
		}
		if err != nil {
			return err
		}
	}
	_, mutates := objs[len(objs)-1].(*admissionregistrationv1.MutatingAdmissionPolicyBinding)
	// With the label policy the node is labeled, and so not warned about.
	return waitPolicies(ctx, admin, func(labeled, warned bool) bool { return mutates && labeled || !mutates && warned })
}

// removePolicies deletes the policy-mode objects, if there are any, and waits until the
// apiserver no longer enforces them.
func removePolicies(ctx context.Context, admin *rest.Config) error {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	reg := cs.AdmissionregistrationV1()
	if _, err := reg.ValidatingAdmissionPolicies().Get(ctx, manifests.AuditPolicyName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil
	}
	ignore := func(err error) error {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := errors.Join(
		ignore(reg.MutatingAdmissionPolicyBindings().Delete(ctx, manifests.PolicyName, metav1.DeleteOptions{})),
		ignore(reg.MutatingAdmissionPolicies().Delete(ctx, manifests.PolicyName, metav1.DeleteOptions{})),
		ignore(reg.ValidatingAdmissionPolicyBindings().Delete(ctx, manifests.AuditPolicyName, metav1.DeleteOptions{})),
		ignore(reg.ValidatingAdmissionPolicies().Delete(ctx, manifests.AuditPolicyName, metav1.DeleteOptions{})),
	); err != nil {
		return err
	}
	return waitPolicies(ctx, admin, func(labeled, warned bool) bool { return !labeled && !warned })
}

// waitPolicies creates and deletes probe GPU nodes, with no webhook registered, until what
// the apiserver does with one (labels it, warns about it) satisfies done.
func waitPolicies(ctx context.Context, admin *rest.Config, done func(labeled, warned bool) bool) error {
	var w env.Warnings
	cs, err := env.Client(admin, &w)
	if err != nil {
		return err
	}
	for i := 0; i < 300; i++ {
		w.Take()
		n, err := cs.CoreV1().Nodes().Create(ctx, testnode.Realistic(fmt.Sprintf("policy-probe-%d", time.Now().UnixNano()), "p4d.24xlarge", 0), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if err := cs.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		if done(n.Labels[admit.DefaultLabelKey] != "", len(w.Take()) > 0) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the admission policies did not come into or out of force in 30 s")
}
