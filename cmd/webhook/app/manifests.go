package app

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

func newManifestsCommand(s streams) *cobra.Command {
	var dir, chartDir, readme string
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Write the install manifests (base and overlays) generated from the server's own values",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := manifests.Write(dir); err != nil {
				return withCode(ExitError, err)
			}
			fmt.Fprintf(s.out, "wrote manifests to %s\n", dir)
			if chartDir != "" {
				if err := manifests.WriteChart(chartDir); err != nil {
					return withCode(ExitError, err)
				}
				fmt.Fprintf(s.out, "wrote the Helm chart to %s\n", chartDir)
			}
			if readme != "" {
				if err := manifests.UpdateREADME(readme); err != nil {
					return withCode(ExitError, err)
				}
				fmt.Fprintf(s.out, "updated the reference sections of %s\n", readme)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "manifests", "folder to write to")
	cmd.Flags().StringVar(&chartDir, "chart-dir", "", "also write the Helm chart to this folder (charts/gpu-label-webhook)")
	cmd.Flags().StringVar(&readme, "readme", "", "also update the generated reference sections of this README")
	return cmd
}

func everything() labels.Selector { return labels.Everything() }
