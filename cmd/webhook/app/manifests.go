package app

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

func newManifestsCommand(s streams) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Write the install manifests (base and overlays) generated from the server's own values",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := manifests.Write(dir); err != nil {
				return withCode(ExitError, err)
			}
			fmt.Fprintf(s.out, "wrote manifests to %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "manifests", "folder to write to")
	return cmd
}

func everything() labels.Selector { return labels.Everything() }
