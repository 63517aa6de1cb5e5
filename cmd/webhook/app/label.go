package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
)

// Results `label` gives a GPU node, beside report's.
const (
	resultLabeled      = "labeled"
	resultWouldLabel   = "would-label"
	resultUnchanged    = "unchanged"
	resultModelUnknown = "model-unknown"
	resultFailed       = "failed"
	// resultNotAttempted: interrupted before its patch was sent.
	resultNotAttempted = "not-attempted"
	// resultInterrupted: its patch was in flight when the command stopped waiting for it.
	resultInterrupted = "interrupted"
)

// drainTimeout is how long patches already sent may take to answer once label is interrupted.
var drainTimeout = 10 * time.Second

// defaultConcurrency is how many patches label keeps in flight. kubectl label patches one
// node at a time, without waiting on a rate limiter; a few in flight keep a busy apiserver's
// cores fed while each waits on etcd.
const defaultConcurrency = 16

func newLabelCommand(s streams) *cobra.Command {
	f := clusterFlags{kube: s.kube}
	var dryRun, overwrite bool
	var concurrency int
	cmd := &cobra.Command{
		Use:   "label",
		Short: "Label existing GPU nodes with their inferred accelerator, one patch per node",
		Long: `Label existing GPU nodes with their inferred accelerator, one merge patch per node that needs
one, from --concurrency workers at once. The apiserver's API Priority and Fairness sheds load
it cannot take with 429s, which are retried after the Retry-After they carry. Interrupted, it
sends no more patches, waits for those in flight and reports what was done; running it again
finishes the job.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if concurrency < 1 {
				return withCode(ExitError, fmt.Errorf("--concurrency must be at least 1, not %d", concurrency))
			}
			ctx := cmd.Context()
			cs, cfg, _, err := f.connect(ctx)
			if err != nil {
				return err
			}
			slices, slicesNote := clusterSlices(ctx, cs)
			if slicesNote != "" {
				fmt.Fprintf(s.err, "%s\n", slicesNote)
			}
			// The label command is the admin's explicit fix: it labels whatever the config's
			// opt-in says, and corrects wrong values only with --overwrite.
			fix := *cfg
			fix.AutoLabel, fix.Overwrite = true, overwrite
			fix.NodeSelector = everything()
			var records []report.Node
			var todo []int // the records to patch
			_, err = f.eachNode(ctx, cs, s.err, func(n *corev1.Node) {
				d, r := report.Decide(&fix, n, slices.Devices(n), admit.Mutating)
				if !r.GPU {
					return
				}
				switch {
				case d.Action != admit.ActionLabel:
					r.Result = resultUnchanged
					if d.Value == "" && !d.HasLabel {
						r.Result = resultModelUnknown
						r.Warnings = append(r.Warnings, fmt.Sprintf("label it by hand: kubectl label node %s %s=<model>", n.Name, cfg.LabelKey))
					}
				case dryRun:
					r.Result = resultWouldLabel
				default:
					r.Result = resultNotAttempted // until its patch answers
					todo = append(todo, len(records))
				}
				r.Findings, r.Warnings = nil, onlyManual(r.Warnings, r.Result)
				records = append(records, r)
			})
			if err != nil {
				return err
			}
			if len(todo) > 0 {
				p := newProgress(s.err, len(todo), concurrency)
				patchAll(ctx, cs, cfg.LabelKey, records, todo, concurrency, p)
				p.finish()
			}
			n := map[string]int{}
			for _, r := range records {
				n[r.Result]++
			}
			if err := report.Write(s.out, f.output, records); err != nil {
				return withCode(ExitError, err)
			}
			labeled, verb := n[resultLabeled], "labeled"
			if dryRun {
				labeled, verb = n[resultWouldLabel], "would label"
			}
			stopped := n[resultNotAttempted] + n[resultInterrupted]
			if f.output == "table" {
				fmt.Fprintf(s.out, "\n%s %d, failed %d, model unknown %d, of %d GPU nodes.", verb, labeled, n[resultFailed], n[resultModelUnknown], len(records))
				if stopped > 0 {
					fmt.Fprintf(s.out, " Interrupted: %d not attempted, %d in flight when it stopped (set or not).", n[resultNotAttempted], n[resultInterrupted])
				}
				fmt.Fprintln(s.out)
			}
			var errs []error
			if stopped > 0 {
				errs = append(errs, fmt.Errorf("interrupted after labeling %d of %d nodes: %d not attempted, %d in flight when it stopped; run %s label again to finish",
					labeled, len(todo), n[resultNotAttempted], n[resultInterrupted], s.name))
			}
			if n[resultFailed] > 0 {
				errs = append(errs, fmt.Errorf("%d nodes could not be labeled", n[resultFailed]))
			}
			if len(errs) > 0 {
				return withCode(ExitError, errors.Join(errs...))
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change and change nothing")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "also correct labels whose value disagrees with the evidence")
	cmd.Flags().IntVar(&concurrency, "concurrency", defaultConcurrency, "patches in flight at once; lower it to go gentler on the apiserver (1: one node at a time, as kubectl label)")
	return cmd
}

// patchAll sends one merge patch on metadata.labels for each record at todo, from concurrency
// workers, and sets each record's result. Once ctx is done it sends no more, and the patches
// in flight get drainTimeout to answer: a cancelled request may still have been applied, and
// the summary must say what was done.
func patchAll(ctx context.Context, cs kubernetes.Interface, key string, records []report.Node, todo []int, concurrency int, p *progress) {
	patchCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		select {
		case <-time.After(drainTimeout):
			cancel()
		case <-finished:
		}
	}()

	jobs := make(chan *report.Node)
	var wg sync.WaitGroup
	for range min(concurrency, len(todo)) {
		wg.Go(func() {
			for r := range jobs {
				patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{key: r.Accelerator}}})
				_, err := cs.CoreV1().Nodes().Patch(patchCtx, r.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: admit.LabelFieldManager})
				switch {
				case err == nil:
					r.Result, r.CurrentLabel = resultLabeled, r.Accelerator
				case patchCtx.Err() != nil:
					r.Result, r.Error = resultInterrupted, "interrupted while patching: the label may or may not be set"
				default:
					r.Result, r.Error = resultFailed, apiError("patching node "+r.Name, err).Error()
				}
				p.done(r.Result == resultFailed)
			}
		})
	}
	for _, i := range todo {
		if ctx.Err() != nil {
			break
		}
		select {
		case jobs <- &records[i]:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
}

// onlyManual keeps, on label's output, only the instruction for nodes it cannot label.
func onlyManual(warnings []string, result string) []string {
	if result == resultModelUnknown && len(warnings) > 0 {
		return warnings[len(warnings)-1:]
	}
	return []string{}
}
