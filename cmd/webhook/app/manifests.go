package app

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

func newManifestsCommand(s streams) *cobra.Command {
	var dir, chartDir, docs, release, repository string
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Write the install manifests (base and overlays) generated from the server's own values",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if (release == "") != (repository == "") || release != "" && chartDir == "" {
				return withCode(ExitError, fmt.Errorf("--release and --image-repository go together, with --chart-dir"))
			}
			if dir != "" {
				if err := manifests.Write(dir); err != nil {
					return withCode(ExitError, err)
				}
				fmt.Fprintf(s.out, "wrote manifests to %s\n", dir)
			}
			if chartDir != "" {
				write := manifests.WriteChart
				if release != "" {
					write = func(dir string) error { return manifests.WriteReleaseChart(dir, release, repository) }
				}
				if err := write(chartDir); err != nil {
					return withCode(ExitError, err)
				}
				fmt.Fprintf(s.out, "wrote the Helm chart to %s\n", chartDir)
			}
			if docs != "" {
				if err := manifests.UpdateDocs(docs); err != nil {
					return withCode(ExitError, err)
				}
				fmt.Fprintf(s.out, "updated the reference sections of the README and docs/ in %s\n", docs)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "manifests", "folder to write to (\"\" for none)")
	cmd.Flags().StringVar(&release, "release", "", "write the chart a release publishes: its tag (v1.2.3) as version and appVersion (1.2.3) and the image's tag")
	cmd.Flags().StringVar(&repository, "image-repository", "", "with --release: the repository the release pushed the image to (registry/owner/name)")
	cmd.Flags().StringVar(&chartDir, "chart-dir", "", "also write the Helm chart to this folder (charts/gpu-label-webhook)")
	cmd.Flags().StringVar(&docs, "docs", "", "also update the generated reference sections of README.md and docs/*.md in this folder (the repository's root)")
	return cmd
}

func everything() labels.Selector { return labels.Everything() }
