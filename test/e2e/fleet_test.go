//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

// `webhook label` on a fleet of 3,000 kubelet-sized nodes, the webhook installed: every GPU
// node that lacks the label gets it, with exactly one PATCH each by the apiserver's own request
// counter; a second run sends no patch. check reads the same fleet page by page.
func TestLabelFleet(t *testing.T) {
	ctx := context.Background()
	if err := cluster.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	defer registerMutating(t)
	fast := rest.CopyConfig(cluster.Admin)
	fast.QPS = -1
	cs, err := kubernetes.NewForConfig(fast)
	if err != nil {
		t.Fatal(err)
	}
	const pool = "pool=fleet"
	defer func() {
		if err := cs.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: pool}); err != nil {
			t.Error(err)
		}
	}()
	// 1,200 GPU nodes to label, 300 labeled already, 1,500 CPU nodes.
	gpuTypes := []struct{ instanceType, value string }{{"p5.48xlarge", "h100"}, {"g5.xlarge", "a10g"}, {"g6.xlarge", "l4"}}
	want := map[string]string{}
	var wg sync.WaitGroup
	names := make(chan int)
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for i := range names {
				name := fmt.Sprintf("fleet-%04d", i)
				it, gpus := "m5.large", int64(0)
				if i%10 < 5 {
					it, gpus = gpuTypes[i%3].instanceType, 8
				}
				n := testnode.Realistic(name, it, gpus)
				n.Labels["pool"] = "fleet"
				if i%10 == 4 {
					n.Labels[admit.DefaultLabelKey] = gpuTypes[i%3].value
				}
				if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range 3000 {
		if i%10 < 4 {
			want[fmt.Sprintf("fleet-%04d", i)] = gpuTypes[i%3].value
		}
		select {
		case names <- i:
		case err := <-errs:
			t.Fatal(err)
		}
	}
	close(names)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	registerMutating(t)
	admin, err := cluster.KubeconfigFile("fleet-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}

	patchesBefore, reviewsBefore := nodePatches(t), requests(t)
	stdout, stderr, code := webhookCLIStreams(t, "label", "--kubeconfig", admin, "-l", pool, "-o", "json")
	if code != 0 {
		t.Fatalf("label: exit %d:\n%s", code, stderr)
	}
	var records []map[string]any
	if err := json.Unmarshal([]byte(stdout), &records); err != nil {
		t.Fatalf("label -o json: stdout is not the JSON alone: %v\n%.2000s", err, stdout)
	}
	labeled := 0
	for _, r := range records {
		if r["result"] == "labeled" {
			labeled++
		}
	}
	if len(records) != 1500 || labeled != 1200 {
		t.Errorf("%d records, %d labeled; want 1500 GPU nodes, 1200 labeled", len(records), labeled)
	}
	if got := nodePatches(t) - patchesBefore; got != 1200 {
		t.Errorf("the apiserver received %v node patches, want one for each of the 1200 nodes", got)
	}
	// label decided with the same tables: its patches (field manager admit.LabelFieldManager)
	// never reach the webhook, while an admin's own label change does.
	if got := requests(t) - reviewsBefore; got != 0 {
		t.Errorf("label's patches reached the webhook %v times", got)
	}
	if !strings.Contains(stderr, "patched 1200 of 1200 nodes, 0 failed") {
		t.Errorf("stderr lacks the last line of progress:\n%s", stderr)
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: pool + "," + admit.DefaultLabelKey})
	if err != nil {
		t.Fatal(err)
	}
	wrong := 0
	for _, n := range list.Items {
		if v, ok := want[n.Name]; ok && n.Labels[admit.DefaultLabelKey] != v {
			wrong++
		}
	}
	if len(list.Items) != 1500 || wrong != 0 {
		t.Errorf("%d nodes carry the label, %d of them the wrong value; want 1500 and 0", len(list.Items), wrong)
	}

	patchesBefore = nodePatches(t)
	out, code := webhookCLI(t, "label", "--kubeconfig", admin, "-l", pool)
	if code != 0 || !strings.Contains(out, "labeled 0, failed 0, model unknown 0, of 1500 GPU nodes.") {
		t.Errorf("second run: exit %d:\n%.2000s", code, out[max(0, len(out)-2000):])
	}
	if got := nodePatches(t) - patchesBefore; got != 0 {
		t.Errorf("a second run sent %v patches", got)
	}

	stdout, stderr, code = webhookCLIStreams(t, "check", "--kubeconfig", admin, "-l", pool, "-o", "json")
	var doc struct {
		Nodes []struct{ Name, Accelerator, CurrentLabel string } `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 0 {
		t.Fatalf("check -o json: exit %d, %v:\n%s", code, err, stderr)
	}
	if len(doc.Nodes) != 3000 || !strings.Contains(stderr, "listed 2500 nodes...") {
		t.Errorf("check read %d nodes:\n%s", len(doc.Nodes), stderr)
	}

	reviewsBefore = requests(t)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "fleet-0000", types.MergePatchType, []byte(`{"metadata":{"labels":{"`+admit.DefaultLabelKey+`":"a10g"}}}`), metav1.PatchOptions{FieldManager: "kubectl-label"}); err != nil {
		t.Fatal(err)
	}
	if got := requests(t) - reviewsBefore; got != 1 {
		t.Errorf("another manager's label patch reached the webhook %v times, want 1", got)
	}
}

// webhookCLIStreams runs bin/webhook and returns its stdout and stderr apart.
func webhookCLIStreams(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(filepath.Join(cluster.Root, "bin", "webhook"), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), 0
}

// nodePatches is the apiserver's count of PATCH requests on nodes (not their status), whatever
// their answer: apiserver_request_total from its /metrics.
func nodePatches(t *testing.T) float64 {
	t.Helper()
	raw, err := cluster.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="nodes"`) ||
			!strings.Contains(line, `verb="PATCH"`) || !strings.Contains(line, `subresource=""`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}
