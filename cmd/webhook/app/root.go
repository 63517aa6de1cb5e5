// Package app holds the webhook's commands; main only sets up signals and calls Main.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
)

// Exit codes.
const (
	ExitOK        = 0
	ExitFindings  = 1 // bad input to explain, findings under --fail-on-findings
	ExitError     = 2 // no cluster, no permission, bad flags, a node label failed, label interrupted
	ExitNoWebhook = 3 // check --require-webhook: not installed, not reachable or not serving
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// streams are the command's standard streams, injected so commands are testable, and the
// name the command was called by, for help and messages.
type streams struct {
	in       io.Reader
	out, err io.Writer
	name     string
	// kube, when set, is the cluster the commands talk to instead of the kubeconfig's (tests).
	kube kubernetes.Interface
}

// DisplayName is how help and messages name the command called as argv0: as a kubectl
// plugin (kubectl-gpu_label), "kubectl gpu-label", the way kubectl names plugins.
func DisplayName(argv0 string) string {
	base := filepath.Base(argv0)
	if plugin, ok := strings.CutPrefix(base, "kubectl-"); ok && plugin != "" {
		return "kubectl " + strings.ReplaceAll(plugin, "_", "-")
	}
	return DefaultName
}

// DefaultName is the command's name when it is not called as a kubectl plugin.
const DefaultName = "webhook"

// Main runs the command line as "webhook" and returns the exit code.
func Main(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	return MainAs(ctx, DefaultName, args, in, out, errOut)
}

// MainAs runs the command line under a display name and returns the exit code.
func MainAs(ctx context.Context, name string, args []string, in io.Reader, out, errOut io.Writer) int {
	cmd := NewRootCommand(streams{in: in, out: out, err: errOut, name: name})
	cmd.SetArgs(args)
	cmd.SetIn(in)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err.Error() != "" {
			fmt.Fprintln(errOut, "error:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(errOut, "error:", err)
	return ExitError
}

// NewRootCommand builds the webhook command and its subcommands.
func NewRootCommand(s streams) *cobra.Command {
	if s.name == "" {
		s.name = DefaultName
	}
	root := &cobra.Command{
		Use:           DefaultName,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: s.name},
		Short:         "Labels GPU nodes with their accelerator model as they join, or says how to",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newExplainCommand(s), newServeCommand(s), newCheckCommand(s), newLabelCommand(s),
		newCertsCommand(s), newManifestsCommand(s), newVersionCommand(s))
	return root
}
