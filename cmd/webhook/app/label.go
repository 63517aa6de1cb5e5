package app

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
)

func newLabelCommand(s streams) *cobra.Command {
	var f clusterFlags
	var dryRun, overwrite bool
	cmd := &cobra.Command{
		Use:   "label",
		Short: "Label existing GPU nodes with their inferred accelerator, one patch per node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cs, cfg, _, nodes, err := f.clusterNodes(ctx, s.err)
			if err != nil {
				return err
			}
			// The label command is the admin's explicit fix: it labels whatever the config's
			// opt-in says, and corrects wrong values only with --overwrite.
			fix := *cfg
			fix.AutoLabel, fix.Overwrite = true, overwrite
			fix.NodeSelector = everything()
			var records []report.Node
			labeled, failed, manual := 0, 0, 0
			for i := range nodes {
				n := &nodes[i]
				d, r := report.Decide(&fix, n, true)
				if !r.GPU {
					continue
				}
				switch {
				case d.Action != "label":
					r.Result = "unchanged"
					if d.Value == "" && !d.HasLabel {
						manual++
						r.Result = "model-unknown"
						r.Warnings = append(r.Warnings, fmt.Sprintf("label it by hand: kubectl label node %s %s=<model>", n.Name, cfg.LabelKey))
					}
				case dryRun:
					r.Result = "would-label"
					labeled++
				default:
					patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{cfg.LabelKey: d.Value}}})
					if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "gpu-label-webhook"}); err != nil {
						r.Result, r.Error = "failed", apiError("patching node "+n.Name, err).Error()
						failed++
					} else {
						r.Result = "labeled"
						r.CurrentLabel = d.Value
						labeled++
					}
					if (labeled+failed)%100 == 0 {
						fmt.Fprintf(s.err, "%d of %d nodes done...\n", labeled+failed, len(nodes))
					}
				}
				r.Findings, r.Warnings = nil, onlyManual(r.Warnings, r.Result)
				records = append(records, r)
			}
			if err := report.Write(s.out, f.output, records); err != nil {
				return withCode(ExitError, err)
			}
			if f.output == "table" {
				verb := "labeled"
				if dryRun {
					verb = "would label"
				}
				fmt.Fprintf(s.out, "\n%s %d, failed %d, model unknown %d, of %d GPU nodes.\n", verb, labeled, failed, manual, len(records))
			}
			if failed > 0 {
				return withCode(ExitError, fmt.Errorf("%d nodes could not be labeled", failed))
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change and change nothing")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "also correct labels whose value disagrees with the evidence")
	return cmd
}

// onlyManual keeps, on label's output, only the instruction for nodes it cannot label.
func onlyManual(warnings []string, result string) []string {
	if result == "model-unknown" && len(warnings) > 0 {
		return warnings[len(warnings)-1:]
	}
	return []string{}
}
