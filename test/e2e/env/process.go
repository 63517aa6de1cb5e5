package env

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"
)

// Process is a program the harness runs, logging to a file, stopped by the code that
// started it.
type Process struct {
	cmd  *exec.Cmd
	Log  *os.File
	done chan error
}

// StartProcess runs path with args, its output in a new file name-*.log in dir.
func StartProcess(dir, name, path string, args ...string) (*Process, error) {
	logFile, err := os.CreateTemp(dir, name+"-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &Process{cmd: cmd, Log: logFile, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Logs returns what the process wrote.
func (p *Process) Logs() string {
	b, _ := os.ReadFile(p.Log.Name())
	return string(b)
}

// Stop sends SIGTERM and waits for the process to exit (SIGKILL after 20s).
func (p *Process) Stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitHTTP polls url until it answers 200, the process exits, or the timeout passes.
func (p *Process) waitHTTP(url string, timeout time.Duration) error {
	return p.WaitFor(url, timeout, func() bool { return HTTPOK(http.DefaultClient, url) })
}

// HTTPOK reports whether a GET of url answers 200.
func HTTPOK(client *http.Client, url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitFor polls ready until it is true, the process exits, or the timeout passes; what names
// the wait in the error.
func (p *Process) WaitFor(what string, timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ready() {
			return nil
		}
		select {
		case err := <-p.done:
			p.done <- err // Stop reads it again
			return fmt.Errorf("exited: %v; log:\n%s", err, p.Logs())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready in %v; log:\n%s", what, timeout, p.Logs())
}
