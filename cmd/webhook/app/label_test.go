package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

// testAPI answers what check and label ask of an apiserver: nodes listed in pages of the
// limit asked for, merge patches on them, and 404 for everything else (no ConfigMap: the
// defaults apply). answer decides each patch; nil accepts it.
type testAPI struct {
	t      *testing.T
	nodes  []corev1.Node
	answer func(name string, attempt int, w http.ResponseWriter) bool // true: answered
	mu     sync.Mutex
	// patches are the patch requests each node received, at the times they arrived.
	patches map[string][]time.Time
}

func (a *testAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes":
		a.list(w, r)
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/api/v1/nodes/"):
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/nodes/")
		a.mu.Lock()
		a.patches[name] = append(a.patches[name], time.Now())
		attempt := len(a.patches[name])
		a.mu.Unlock()
		if a.answer != nil && a.answer(name, attempt, w) {
			return
		}
		var patch struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.NewDecoder(r.Body).Decode(&patch); err != nil || r.Header.Get("Content-Type") != "application/merge-patch+json" {
			status(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("not a merge patch: %v", err))
			return
		}
		writeJSON(w, http.StatusOK, &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: name, Labels: patch.Metadata.Labels}})
	default:
		status(w, http.StatusNotFound, "NotFound", r.URL.Path+" not found")
	}
}

func (a *testAPI) list(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	from, _ := strconv.Atoi(r.URL.Query().Get("continue"))
	if limit <= 0 {
		limit = len(a.nodes)
	}
	to := min(from+limit, len(a.nodes))
	list := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}, Items: a.nodes[from:to]}
	if to < len(a.nodes) {
		list.Continue = strconv.Itoa(to)
	}
	writeJSON(w, http.StatusOK, list)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func status(w http.ResponseWriter, code int, reason, message string) {
	writeJSON(w, code, &metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusFailure,
		Code: int32(code), Reason: metav1.StatusReason(reason), Message: message})
}

func (a *testAPI) attempts(name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.patches[name])
}

// fleet is unlabeled GPU nodes gpu-0000..., labeled ones and CPU nodes, in name order as the
// apiserver lists them.
func fleet(unlabeled, labeled, cpus int) []corev1.Node {
	var nodes []corev1.Node
	add := func(prefix string, n int, labels map[string]string) {
		for i := range n {
			nodes = append(nodes, *testnode.Bare(fmt.Sprintf("%s-%04d", prefix, i), labels))
		}
	}
	add("cpu", cpus, map[string]string{"node.kubernetes.io/instance-type": "m5.large"})
	add("done", labeled, map[string]string{"node.kubernetes.io/instance-type": "p5.48xlarge", admit.DefaultLabelKey: "h100"})
	add("gpu", unlabeled, map[string]string{"node.kubernetes.io/instance-type": "p5.48xlarge"})
	return nodes
}

// runAgainst runs the command line against the test API with a kubeconfig for it.
func runAgainst(t *testing.T, ctx context.Context, api *testAPI, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	api.t = t
	if api.patches == nil {
		api.patches = map[string][]time.Time{}
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: %s\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\ncurrent-context: t\nusers:\n- name: t\n  user: {}\n", srv.URL)
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code = Main(ctx, append(args, "--kubeconfig", kc), nil, &out, &errOut)
	return out.String(), errOut.String(), code
}

// results reads label -o json: its stdout must be the JSON document and nothing else.
func results(t *testing.T, stdout string) map[string]map[string]any {
	t.Helper()
	var records []map[string]any
	if err := json.Unmarshal([]byte(stdout), &records); err != nil {
		t.Fatalf("stdout is not label's JSON alone: %v\n%s", err, stdout)
	}
	byName := map[string]map[string]any{}
	for _, r := range records {
		byName[r["name"].(string)] = r
	}
	return byName
}

func count(records map[string]map[string]any, result string) int {
	n := 0
	for _, r := range records {
		if r["result"] == result {
			n++
		}
	}
	return n
}

// Every node that needs the label gets exactly one patch, from as many workers at once as
// --concurrency says, across list pages; labeled and CPU nodes get none.
func TestLabelPatchesEachNodeOnceFromConcurrentWorkers(t *testing.T) {
	const workers = 6
	// The first patches wait until all the workers have one in flight: label must run them
	// at once, and never more than that many.
	var mu sync.Mutex
	inFlight, most := 0, 0
	all := make(chan struct{})
	api := &testAPI{nodes: fleet(1234, 30, 300), answer: func(string, int, http.ResponseWriter) bool {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == workers {
			select {
			case <-all:
			default:
				close(all)
			}
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(20 * time.Second):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return false
	}}
	stdout, stderr, code := runAgainst(t, context.Background(), api, "label", "-o", "json", "--concurrency", strconv.Itoa(workers))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	records := results(t, stdout)
	if len(records) != 1264 || count(records, "labeled") != 1234 || count(records, "unchanged") != 30 {
		t.Errorf("%d records, %d labeled, %d unchanged", len(records), count(records, "labeled"), count(records, "unchanged"))
	}
	for _, n := range api.nodes {
		want := 0
		if strings.HasPrefix(n.Name, "gpu-") {
			want = 1
		}
		if got := api.attempts(n.Name); got != want {
			t.Errorf("%s: %d patches, want %d", n.Name, got, want)
		}
	}
	if most != workers {
		t.Errorf("at most %d patches in flight, want %d", most, workers)
	}
	for _, want := range []string{"listed 500 nodes...", "patching 1234 nodes, 6 at a time...", "patched 1234 of 1234 nodes, 0 failed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// A patch the apiserver refuses is reported on its node and in the exit code; the others are
// still labeled.
func TestLabelKeepsGoingPastFailedPatches(t *testing.T) {
	refused := map[string]bool{"gpu-0003": true, "gpu-0100": true, "gpu-0199": true}
	api := &testAPI{nodes: fleet(200, 0, 10), answer: func(name string, _ int, w http.ResponseWriter) bool {
		if refused[name] {
			status(w, http.StatusUnprocessableEntity, "Invalid", "denied by a policy")
		}
		return refused[name]
	}}
	stdout, stderr, code := runAgainst(t, context.Background(), api, "label", "-o", "json", "--concurrency", "4")
	if code != ExitError || !strings.Contains(stderr, "3 nodes could not be labeled") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	records := results(t, stdout)
	if count(records, "labeled") != 197 || count(records, "failed") != 3 {
		t.Errorf("%d labeled, %d failed", count(records, "labeled"), count(records, "failed"))
	}
	for name := range refused {
		if r := records[name]; r["result"] != "failed" || !strings.Contains(r["error"].(string), "patching node "+name+": denied by a policy") {
			t.Errorf("%s: %v", name, r)
		}
		if n := api.attempts(name); n != 1 {
			t.Errorf("%s: %d patches: a refusal is not retried", name, n)
		}
	}
	stdout, _, _ = runAgainst(t, context.Background(), api, "label", "--concurrency", "4")
	if !strings.Contains(stdout, "labeled 197, failed 3, model unknown 0, of 200 GPU nodes.") {
		t.Errorf("table summary:\n%s", stdout)
	}
}

// A 429 with Retry-After (API Priority and Fairness shedding load) is retried by client-go
// after that many seconds, once per answer: the node is labeled, and nothing else retries.
func TestLabelHonoursRetryAfter(t *testing.T) {
	api := &testAPI{nodes: fleet(20, 0, 0), answer: func(name string, attempt int, w http.ResponseWriter) bool {
		if (name == "gpu-0007" || name == "gpu-0013") && attempt == 1 {
			w.Header().Set("Retry-After", "1")
			status(w, http.StatusTooManyRequests, "TooManyRequests", "the server has received too many requests and has asked us to try again later")
			return true
		}
		return false
	}}
	stdout, stderr, code := runAgainst(t, context.Background(), api, "label", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if records := results(t, stdout); count(records, "labeled") != 20 {
		t.Errorf("%d labeled", count(records, "labeled"))
	}
	for _, name := range []string{"gpu-0007", "gpu-0013"} {
		at := api.patches[name]
		if len(at) != 2 {
			t.Fatalf("%s: %d patches, want the refused one and its retry", name, len(at))
		}
		if wait := at[1].Sub(at[0]); wait < time.Second {
			t.Errorf("%s retried after %s, before its Retry-After of 1s", name, wait)
		}
	}
	if n := api.attempts("gpu-0008"); n != 1 {
		t.Errorf("gpu-0008: %d patches", n)
	}
}

// Interrupted (Ctrl-C cancels the command's context), label sends no more patches, lets those
// in flight answer, and its summary counts exactly what the apiserver received.
func TestLabelStopsOnCancelWithACorrectSummary(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := &testAPI{nodes: fleet(400, 0, 0)}
	api.answer = func(string, int, http.ResponseWriter) bool {
		// The interrupt comes while the 50th patch is in flight; it is still applied.
		if api.total() == 50 {
			cancel()
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	stdout, stderr, code := runAgainst(t, ctx, api, "label", "-o", "json", "--concurrency", "4")
	if code != ExitError {
		t.Errorf("exit %d", code)
	}
	received := api.total()
	records := results(t, stdout)
	labeled, notAttempted := count(records, "labeled"), count(records, "not-attempted")
	if labeled != received || labeled+notAttempted != 400 || received < 50 || received > 50+4 {
		t.Errorf("%d patches received; %d labeled, %d not attempted", received, labeled, notAttempted)
	}
	for name, r := range records {
		if (api.attempts(name) == 1) != (r["result"] == "labeled") {
			t.Errorf("%s: %d patches, result %v", name, api.attempts(name), r["result"])
		}
	}
	want := fmt.Sprintf("interrupted after labeling %d of 400 nodes: %d not attempted, 0 in flight when it stopped; run webhook label again to finish", labeled, notAttempted)
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
}

// A patch still unanswered drainTimeout after the interrupt is given up on and reported as
// such: it may or may not have been applied.
func TestLabelGivesUpOnAPatchThatHangsAfterTheInterrupt(t *testing.T) {
	defer func(d time.Duration) { drainTimeout = d }(drainTimeout)
	drainTimeout = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := &testAPI{nodes: fleet(10, 0, 0)}
	api.answer = func(name string, _ int, w http.ResponseWriter) bool {
		if name != "gpu-0002" {
			return false
		}
		cancel()
		time.Sleep(time.Second) // past drainTimeout: the client stops waiting
		return true
	}
	stdout, stderr, code := runAgainst(t, ctx, api, "label", "-o", "json", "--concurrency", "1")
	records := results(t, stdout)
	if r := records["gpu-0002"]; code != ExitError || r["result"] != "interrupted" || !strings.Contains(r["error"].(string), "may or may not be set") {
		t.Errorf("exit %d, gpu-0002: %v", code, r)
	}
	if count(records, "labeled") != 2 || count(records, "not-attempted") != 7 || !strings.Contains(stderr, "1 in flight when it stopped") {
		t.Errorf("%d labeled, %d not attempted:\n%s", count(records, "labeled"), count(records, "not-attempted"), stderr)
	}
}

func (a *testAPI) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, at := range a.patches {
		n += len(at)
	}
	return n
}
