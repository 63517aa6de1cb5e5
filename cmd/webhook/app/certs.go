package app

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gpu-label-webhook/gpu-label-webhook/certs"
)

func newCertsCommand(s streams) *cobra.Command {
	var dir string
	var hosts []string
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a CA and a serving certificate (ca.crt, tls.crt, tls.key) for clusters without cert-manager",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, _, err := certs.Generate(dir, hosts); err != nil {
				return withCode(ExitError, err)
			}
			fmt.Fprintf(s.out, "wrote %s, %s, %s for %v\n", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), hosts)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs/out", "folder to write the files to")
	cmd.Flags().StringSliceVar(&hosts, "host", []string{"gpu-label-webhook.gpu-label-webhook.svc", "gpu-label-webhook.gpu-label-webhook.svc.cluster.local"}, "DNS names and IPs the certificate is valid for")
	return cmd
}
