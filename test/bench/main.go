// Command bench measures the webhook against its baselines in one run and writes
// bin/bench.json: the handler against the idiomatic controller-runtime CustomDefaulter, the
// served throughput against a null webhook on the same TLS and router stack, and node creation
// through a real apiserver with and without the webhook, and the CLI on fleets of up to 15,000
// nodes against kubectl. Run it with `make bench`.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpu-label-webhook/gpu-label-webhook/certs"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/server"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

// results are the figures written to bin/bench.json.
type results map[string]any

func main() {
	null := flag.Bool("null-server", false, "run the null webhook (used by the benchmark itself)")
	nullPatch := flag.Bool("patch", false, "the null webhook returns a fixed patch that adds the label")
	addr := flag.String("addr", "", "null server address")
	certDir := flag.String("cert-dir", "", "null server certificates")
	quick := flag.Bool("quick", false, "shorter runs, for a smoke test")
	profileDir := flag.String("apiserver-profiles", "", "save a CPU profile of the apiserver for each mode of the first round in this folder")
	servedProfile := flag.String("served-profile", "", "save a CPU profile of our server under the served load in this file")
	only := flag.String("only", "", "run one part: handler, served, apiserver or fleet (while working on it)")
	flag.Parse()
	if *null {
		if err := runNull(*addr, *certDir, *nullPatch); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(*quick, *only, *profileDir, *servedProfile); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(quick bool, only, profileDir, servedProfile string) error {
	root, err := env.Root()
	if err != nil {
		return err
	}
	r := results{"machine": fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())}
	part := func(name string) bool { return only == "" || only == name }
	if part("handler") {
		tablesCost(r)
		handlerCost(r, quick)
	}
	if part("served") {
		if err := served(r, root, quick, servedProfile); err != nil {
			return fmt.Errorf("served throughput: %w", err)
		}
	}
	if part("apiserver") {
		if err := throughAPIServer(r, quick, profileDir); err != nil {
			return fmt.Errorf("through the apiserver: %w", err)
		}
	}
	if part("fleet") {
		if err := fleet(r, root, quick); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	printTable(r)
	b, _ := json.MarshalIndent(r, "", "  ")
	path := filepath.Join(root, "bin", "bench.json")
	if only != "" {
		path = filepath.Join(root, "bin", "bench-"+only+".json")
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", path)
	return nil
}

// tablesCost is what parsing the embedded GPU tables costs at start-up.
func tablesCost(r results) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	kb := gpuinfo.Default()
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	r["tables_startup_us"] = d.Microseconds()
	r["tables_alloc_bytes"] = after.TotalAlloc - before.TotalAlloc
	r["tables_models"] = len(kb.Models())
	r["tables_instance_types"] = len(kb.InstanceTypes())

	// The generic readers' cost, in this run: the same tables with and without labels.tsv's
	// generic rows, parsed (the faster of five) and asked about a kubelet-sized GPU node.
	with := gpuinfo.EmbeddedTables()
	without := with
	var kept [][]byte
	for _, line := range bytes.SplitAfter(with.Labels, []byte("\n")) {
		if f := bytes.Split(line, []byte("\t")); len(f) > 2 && string(f[2]) == "contains" && line[0] != '#' {
			continue
		}
		kept = append(kept, line)
	}
	without.Labels = bytes.Join(kept, nil)
	node := testnode.Realistic("ip-10-0-12-34.ec2.internal", "p4d.24xlarge", 8)
	in := gpuinfo.Node{Labels: node.Labels, Capacity: map[string]resource.Quantity{}}
	for k, q := range node.Status.Capacity {
		in.Capacity[string(k)] = q
	}
	cost := map[string]float64{}
	for name, t := range map[string]gpuinfo.Tables{"with": with, "without": without} {
		var kb *gpuinfo.KB
		parse := time.Duration(0)
		for i := 0; i < 5; i++ {
			start := time.Now()
			k, err := gpuinfo.Parse(t)
			if d := time.Since(start); err == nil && (i == 0 || d < parse) {
				parse, kb = d, k
			}
		}
		if kb == nil {
			panic("the embedded tables without their generic rows do not parse")
		}
		if kb.Infer(in).Value() != "a100" {
			panic("the bench node is not an A100 node")
		}
		res := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				kb.Infer(in)
			}
		})
		cost[name] = float64(res.NsPerOp())
		r["tables_parse_us_"+name+"_generic"] = parse.Microseconds()
		r["infer_ns_"+name+"_generic"] = res.NsPerOp()
	}
	r["infer_ratio_with_vs_without_generic"] = round(cost["with"] / cost["without"])
}

// handlerCost runs each handler benchmark three times and keeps the fastest run of each.
func handlerCost(r results, quick bool) {
	ours, naive := handlers()
	create, update := reviews()
	runs := 3
	if quick {
		runs = 1
	}
	best := func(h http.Handler, body []byte) testing.BenchmarkResult {
		var b testing.BenchmarkResult
		for i := 0; i < runs; i++ {
			if x := benchHandler(h, body); i == 0 || x.NsPerOp() < b.NsPerOp() {
				b = x
			}
		}
		return b
	}
	minSpeedup, maxBytes := 1e9, 0.0
	for _, c := range []struct {
		name string
		body []byte
	}{{"create", create}, {"update", update}} {
		o, n := best(ours, c.body), best(naive, c.body)
		speedup := float64(n.NsPerOp()) / float64(o.NsPerOp())
		bytesRatio := float64(o.AllocedBytesPerOp()) / float64(n.AllocedBytesPerOp())
		r["handler_"+c.name+"_review_bytes"] = len(c.body)
		r["handler_"+c.name+"_ns"] = o.NsPerOp()
		r["handler_"+c.name+"_bytes"] = o.AllocedBytesPerOp()
		r["naive_"+c.name+"_ns"] = n.NsPerOp()
		r["naive_"+c.name+"_bytes"] = n.AllocedBytesPerOp()
		r["handler_"+c.name+"_speedup_vs_naive"] = round(speedup)
		r["handler_"+c.name+"_alloc_bytes_ratio_vs_naive"] = round(bytesRatio)
		minSpeedup = min(minSpeedup, speedup)
		maxBytes = max(maxBytes, bytesRatio)
	}
	// The headline figures are the worse of CREATE and UPDATE.
	r["handler_speedup_vs_naive"] = round(minSpeedup)
	r["handler_alloc_bytes_ratio_vs_naive"] = round(maxBytes)
}

// runNull serves a null webhook on the server's own TLS and router stack: it reads the body,
// copies the request's uid (the apiserver refuses a response without it) and returns a fixed
// allowed review; with patch, the review also carries a fixed JSON patch that adds the label,
// the least any labeling webhook returns.
func runNull(addr, certDir string, patch bool) error {
	head, tail := nullReview(patch)
	dir, err := os.MkdirTemp("", "null-config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var bufs sync.Pool
	return server.Run(context.Background(), server.Options{
		Addr: addr, CertDir: certDir, TLSMinVersion: tls.VersionTLS12, ConfigFile: filepath.Join(dir, "none.yaml"), ConfigPoll: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Routes: func(r chi.Router) {
			r.Post(review.PathMutate, func(w http.ResponseWriter, req *http.Request) {
				buf, _ := bufs.Get().(*bytes.Buffer)
				if buf == nil {
					buf = new(bytes.Buffer)
				}
				buf.Reset()
				_, _ = buf.ReadFrom(req.Body)
				body := buf.Bytes()
				out := append(append([]byte(nil), head...), requestUID(body)...)
				bufs.Put(buf)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(append(out, tail...))
			})
		},
	})
}

// nullReview is the null webhook's fixed answer, in two parts around the request's uid.
func nullReview(patch bool) (head, tail []byte) {
	head = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"`)
	tail = []byte(`","allowed":true}}`)
	if patch {
		p := `[{"op":"add","path":"/metadata/labels/` + strings.ReplaceAll(admit.DefaultLabelKey, "/", "~1") + `","value":"a100"}]`
		tail = []byte(`","allowed":true,"patchType":"JSONPatch","patch":"` + base64.StdEncoding.EncodeToString([]byte(p)) + `"}}`)
	}
	return head, tail
}

// requestUID finds the first "uid" of a review: the request's, which the apiserver and the
// test reviews write before the object.
func requestUID(body []byte) []byte {
	const key = `"uid":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return nil
	}
	rest := body[i+len(key):]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return nil
}

// proc is a server running as its own process.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
}

// rssKiB reads the process's resident set size.
func (p *proc) rssKiB() int64 { return rssKiB(p.cmd.Process.Pid) }

// rssKiB reads a process's resident set size.
func rssKiB(pid int) int64 { return procStatusKiB(pid, "VmRSS:") }

// procStatusKiB reads one of the memory fields of /proc/PID/status, in KiB; 0 when the
// process is gone.
func procStatusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

func startProc(name string, args []string, addr string, pool *x509.CertPool) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, addr: addr}
	c := client(pool)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := c.Get("https://" + addr + "/"); err == nil {
			resp.Body.Close()
			return p, nil
		}
	}
	p.stop()
	return nil, fmt.Errorf("%s did not start", name)
}

// startNull runs the null webhook (this program, re-executed) with the certificates in
// certDir.
func startNull(addr, certDir string, pool *x509.CertPool, patch bool) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProc(self, []string{"-null-server", "-addr", addr, "-cert-dir", certDir, "-patch=" + strconv.FormatBool(patch)}, addr, pool)
}

func client(pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64}}
}

type loadResult struct {
	rps      float64
	p50, p99 time.Duration
	failed   int64
}

// loadTest posts body from conc keep-alive clients for d and measures every request.
func loadTest(addr string, pool *x509.CertPool, body []byte, conc int, d time.Duration) loadResult {
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(pool)
			defer c.CloseIdleConnections() // each phase's clients connect afresh, and leave no connection behind
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(end) {
				start := time.Now()
				resp, err := c.Post("https://"+addr+review.PathMutate, "application/json", bytes.NewReader(body))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				local = append(local, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res := loadResult{rps: float64(len(lat)) / d.Seconds(), failed: failed.Load()}
	res.p50, res.p99 = percentiles(lat)
	return res
}

// served compares our server with the null webhook over loopback HTTPS, alternating between
// them so that drifts of the machine touch both, and follows our server's memory.
func served(r results, root string, quick bool, profile string) error {
	dir, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ca, _, err := certs.Generate(dir, []string{"127.0.0.1"})
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {autoLabel: \"true\"}\n"), 0o644); err != nil {
		return err
	}
	ports, err := env.FreePorts(3)
	if err != nil {
		return err
	}
	oursAddr, nullAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	args := []string{"serve", "--config-file", cfg, "--cert-dir", dir,
		"--port", strconv.Itoa(ports[0]), "--health-addr", "", "--metrics-addr", "", "--shutdown-delay", "0s"}
	if profile != "" {
		args = append(args, "--pprof-addr", fmt.Sprintf("127.0.0.1:%d", ports[2]))
	}
	ours, err := startProc(filepath.Join(root, "bin", "webhook"), args, oursAddr, pool)
	if err != nil {
		return err
	}
	defer ours.stop()
	null, err := startNull(nullAddr, dir, pool, false)
	if err != nil {
		return err
	}
	defer null.stop()

	create, _ := reviews()
	// Many short phases in pairs, each pair's order swapped from the last: this machine's
	// speed drifts within seconds, and a pair's two phases see nearly the same machine. The
	// ratio is the median of the pairs' ratios.
	conc, phase, rounds := 8, time.Second, 10
	if quick {
		phase, rounds = 500*time.Millisecond, 2
	}
	r["rss_start_kib"] = ours.rssKiB()
	loadTest(oursAddr, pool, create, conc, time.Second) // warm up
	loadTest(nullAddr, pool, create, conc, time.Second)
	r["rss_after_warmup_kib"] = ours.rssKiB()
	if profile != "" {
		profiled := make(chan error, 1)
		go func() {
			profiled <- saveURL(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=4", ports[2]), profile)
		}()
		loadTest(oursAddr, pool, create, conc, 5*time.Second)
		if err := <-profiled; err != nil {
			return err
		}
	}
	var o, n loadResult
	var ratios []float64
	for i := 0; i < rounds; i++ {
		var nr, or loadResult
		if i%2 == 0 {
			nr = loadTest(nullAddr, pool, create, conc, phase)
			or = loadTest(oursAddr, pool, create, conc, phase)
		} else {
			or = loadTest(oursAddr, pool, create, conc, phase)
			nr = loadTest(nullAddr, pool, create, conc, phase)
		}
		if nr.rps > 0 {
			ratios = append(ratios, round(or.rps/nr.rps))
		}
		n.rps += nr.rps / float64(rounds)
		o.rps += or.rps / float64(rounds)
		n.p50, n.p99 = max(n.p50, nr.p50), max(n.p99, nr.p99)
		o.p50, o.p99 = max(o.p50, or.p50), max(o.p99, or.p99)
		n.failed += nr.failed
		o.failed += or.failed
	}
	slices.Sort(ratios)
	if len(ratios) == 0 {
		return errors.New("the null webhook answered nothing")
	}
	r["rss_end_kib"] = ours.rssKiB()
	r["load_clients"] = conc
	r["load_seconds_per_server"] = (phase * time.Duration(rounds)).Seconds()
	r["rps"] = round(o.rps)
	r["null_rps"] = round(n.rps)
	r["throughput_ratio_vs_null"] = round((ratios[(len(ratios)-1)/2] + ratios[len(ratios)/2]) / 2)
	r["throughput_ratio_vs_null_pairs"] = ratios
	r["throughput_ratio_vs_null_of_means"] = round(o.rps / n.rps)
	r["p50_us"] = o.p50.Microseconds()
	r["p99_us"] = o.p99.Microseconds()
	r["null_p50_us"] = n.p50.Microseconds()
	r["null_p99_us"] = n.p99.Microseconds()
	r["failed_requests"] = o.failed + n.failed
	return nil
}

func round(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func printTable(r results) {
	rows := [][3]string{
		{"handler speedup vs CustomDefaulter (worse of CREATE/UPDATE)", fmt.Sprint(r["handler_speedup_vs_naive"]), "target >= 3"},
		{"  CREATE ns/op ours / naive", fmt.Sprintf("%v / %v", r["handler_create_ns"], r["naive_create_ns"]), ""},
		{"  UPDATE ns/op ours / naive", fmt.Sprintf("%v / %v", r["handler_update_ns"], r["naive_update_ns"]), ""},
		{"handler bytes ratio vs CustomDefaulter (worse)", fmt.Sprint(r["handler_alloc_bytes_ratio_vs_naive"]), "target <= 0.333"},
		{"  CREATE B/op ours / naive", fmt.Sprintf("%v / %v", r["handler_create_bytes"], r["naive_create_bytes"]), ""},
		{"  UPDATE B/op ours / naive", fmt.Sprintf("%v / %v", r["handler_update_bytes"], r["naive_update_bytes"]), ""},
		{"served throughput ratio vs null webhook (median of pairs)", fmt.Sprint(r["throughput_ratio_vs_null"]), "target >= 0.8"},
		{"  pairs of 1 s phases, sorted", fmt.Sprint(r["throughput_ratio_vs_null_pairs"]), ""},
		{"  ratio of the mean req/s", fmt.Sprint(r["throughput_ratio_vs_null_of_means"]), ""},
		{"  req/s ours / null", fmt.Sprintf("%v / %v", r["rps"], r["null_rps"]), ""},
		{"  p50 us ours / null", fmt.Sprintf("%v / %v", r["p50_us"], r["null_p50_us"]), ""},
		{"  p99 us ours / null", fmt.Sprintf("%v / %v", r["p99_us"], r["null_p99_us"]), ""},
		{"server RSS KiB start / after warm-up / end", fmt.Sprintf("%v / %v / %v", r["rss_start_kib"], r["rss_after_warmup_kib"], r["rss_end_kib"]), "flat"},
		{"GPU tables: start-up us, bytes allocated", fmt.Sprintf("%v, %v", r["tables_startup_us"], r["tables_alloc_bytes"]), ""},
		{"  parse us with / without the generic rows", fmt.Sprintf("%v / %v", r["tables_parse_us_with_generic"], r["tables_parse_us_without_generic"]), ""},
		{"  Infer ns a node with / without them, ratio", fmt.Sprintf("%v / %v, %v", r["infer_ns_with_generic"], r["infer_ns_without_generic"], r["infer_ratio_with_vs_without_generic"]), ""},
		{"apiserver: 2,000 GPU node creates, time ratio with/without", fmt.Sprint(r["apiserver_create_time_ratio"]), "target <= 1.15"},
		{"  seconds with / without", fmt.Sprintf("%v / %v", r["apiserver_create_seconds_with"], r["apiserver_create_seconds_without"]), ""},
		{"  ratio labeling, Events off", fmt.Sprint(r["apiserver_create_time_ratio_label_no_events"]), ""},
		{"  ratio warn-only (no patch), Events off", fmt.Sprint(r["apiserver_create_time_ratio_warn_only_no_events"]), ""},
		{"  floor: null webhook returning the same patch, ratio", fmt.Sprint(r["apiserver_create_time_ratio_null_patch"]), ""},
		{"  floor: null webhook without a patch, ratio", fmt.Sprint(r["apiserver_create_time_ratio_null"]), ""},
		{"  ours (labeling, Events) vs the patching null webhook", fmt.Sprint(r["apiserver_create_time_ratio_vs_null_patch"]), ""},
		{"  policy mode: label + audit policies, ratio", fmt.Sprint(r["apiserver_create_time_ratio_policy_label"]), ""},
		{"  policy mode: audit policy only, ratio", fmt.Sprint(r["apiserver_create_time_ratio_policy_audit"]), ""},
		{"  apiserver CPU us/node: none / null / null+patch / ours / policies", fmt.Sprintf("%v / %v / %v / %v / %v", r["apiserver_cpu_us_per_node_without_kube_apiserver"],
			r["apiserver_cpu_us_per_node_null_kube_apiserver"], r["apiserver_cpu_us_per_node_null_patch_kube_apiserver"], r["apiserver_cpu_us_per_node_with_kube_apiserver"],
			r["apiserver_cpu_us_per_node_policy_label_kube_apiserver"]), ""},
		{"  webhook CPU us/call: ours / null+patch", fmt.Sprintf("%v / %v", r["apiserver_cpu_us_per_node_with_webhook"], r["apiserver_cpu_us_per_node_null_patch_null"]), ""},
		{"  burst of 500 creates from 16 clients: p99 ratio ours / null+patch", fmt.Sprint(r["apiserver_burst_p99_ratio_vs_null_patch"]), "target <= 1.1"},
		{"  create p50 / p99 us: none / null+patch / ours", fmt.Sprintf("%v / %v, %v / %v, %v / %v", r["apiserver_create_p50_us_without"], r["apiserver_create_p99_us_without"],
			r["apiserver_create_p50_us_null_patch"], r["apiserver_create_p99_us_null_patch"], r["apiserver_create_p50_us_with"], r["apiserver_create_p99_us_with"]), ""},
		{"  webhook RSS KiB before / after all bursts", fmt.Sprintf("%v / %v", r["apiserver_webhook_rss_start_kib"], r["apiserver_webhook_rss_end_kib"]), "flat"},
		{"  Events emitted / rate-limited / dropped / failed", fmt.Sprintf("%v / %v / %v / %v", r["apiserver_events_emitted"], r["apiserver_events_rate_limited"], r["apiserver_events_dropped"], r["apiserver_events_failed"]), ""},
		{"  webhook RSS KiB, peak in each round of bursts", fmt.Sprint(r["apiserver_webhook_rss_peak_kib_by_round"]), ""},
		{"  webhook RSS peak, last round / first, / the one before", fmt.Sprintf("%v / %v", r["apiserver_webhook_rss_peak_ratio_last_vs_first_round"], r["apiserver_webhook_rss_peak_ratio_last_vs_previous_round"]), "flat: about 1"},
		{"churn: status reports from a fleet, nodes / reports a second", fmt.Sprintf("%v / %v", r["churn_nodes"], r["churn_reports_per_second"]), ""},
		{"  webhook calls / nodes needing a decision", fmt.Sprintf("%v / %v", r["churn_webhook_calls"], r["churn_nodes_needing_decision"]), "equal"},
		{"  apiserver match-condition exclusions counted", fmt.Sprint(r["churn_match_condition_exclusions"]), ""},
		{"  apiserver CPU us per report: without / with the webhook", fmt.Sprintf("%v / %v", r["churn_cpu_us_per_report_without_kube_apiserver"], r["churn_cpu_us_per_report_with_kube_apiserver"]), ""},
		{"  apiserver CPU ratio with / without", fmt.Sprint(r["churn_apiserver_cpu_ratio_with_vs_without"]), ""},
		{"fleet: check memory slope, KiB per node", fmt.Sprint(r["fleet_check_memory_slope_kib_per_node"]), "target <= 4"},
	}
	if sizes, ok := r["fleet_sizes"].([]int); ok {
		for _, n := range sizes {
			k := fmt.Sprintf("fleet_%d_", n)
			rows = append(rows,
				[3]string{fmt.Sprintf("fleet of %d: check time vs kubectl get nodes -o json", n), fmt.Sprint(r[k+"check_time_ratio_vs_kubectl_get"]), "target <= 0.5"},
				[3]string{"  seconds ours / kubectl, RSS KiB ours / kubectl", fmt.Sprintf("%v / %v, %v / %v", r[k+"check_seconds"], r[k+"kubectl_get_seconds"], r[k+"check_rss_kib"], r[k+"kubectl_get_rss_kib"]), ""},
				[3]string{fmt.Sprintf("fleet of %d: label time vs kubectl label (%v GPU nodes)", n, r[k+"gpu_nodes"]), fmt.Sprint(r[k+"label_time_ratio_vs_kubectl_label"]), "target <= 1"},
				[3]string{"  seconds ours / kubectl", fmt.Sprintf("%v / %v", r[k+"label_seconds"], r[k+"kubectl_label_seconds"]), ""})
		}
	}
	fmt.Printf("\n%-62s %-22s %s\n", "measure", "value", "target")
	for _, row := range rows {
		fmt.Printf("%-62s %-22s %s\n", row[0], row[1], row[2])
	}
	fmt.Printf("machine: %v\n", r["machine"])
}
