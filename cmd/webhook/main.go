// Command webhook is gpu-label-webhook: the admission server and the admin's CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gpu-label-webhook/gpu-label-webhook/cmd/webhook/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(app.MainAs(ctx, app.DisplayName(os.Args[0]), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
