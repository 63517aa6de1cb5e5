// Command pause is the pod sandbox image's program for the real-node tests: it holds the
// pod's namespaces open until it is told to stop. No registry is reachable here to pull the
// usual one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	// The sandbox is PID 1 of a pod sharing its PID namespace: reap the orphans it inherits.
	signal.Ignore(syscall.SIGCHLD)
	<-stop
}
