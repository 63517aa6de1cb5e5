package app

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressInterval is how often label writes a line of progress where stderr is no terminal.
const progressInterval = 5 * time.Second

// progress shows label's patches on stderr, never on stdout where -o json goes: a bar on a
// terminal, a plain line every progressInterval elsewhere (logs, CI), and a last line.
type progress struct {
	w                   io.Writer
	bar                 *progressbar.ProgressBar
	total               int
	start               time.Time
	mu                  sync.Mutex
	answered, failed    int
	stop, tickerStopped chan struct{}
}

func newProgress(w io.Writer, total, concurrency int) *progress {
	p := &progress{w: w, total: total, start: time.Now(), stop: make(chan struct{}), tickerStopped: make(chan struct{})}
	fmt.Fprintf(w, "patching %d nodes, %d at a time...\n", total, concurrency)
	if isTerminal(w) {
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("labeling"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		close(p.tickerStopped)
		return p
	}
	go p.lines()
	return p
}

func (p *progress) lines() {
	defer close(p.tickerStopped)
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			fmt.Fprintln(p.w, p.line("..."))
		case <-p.stop:
			return
		}
	}
}

// done counts a patch that answered.
func (p *progress) done(failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answered++
	if failed {
		p.failed++
		if p.bar != nil {
			p.bar.Describe(fmt.Sprintf("labeling (%d failed)", p.failed))
		}
	}
	if p.bar != nil {
		_ = p.bar.Add(1)
	}
}

func (p *progress) line(end string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("patched %d of %d nodes, %d failed, in %s%s", p.answered, p.total, p.failed, time.Since(p.start).Round(10*time.Millisecond), end)
}

// finish stops the display and writes the last line.
func (p *progress) finish() {
	close(p.stop)
	<-p.tickerStopped
	if p.bar != nil {
		_ = p.bar.Exit()
		_ = p.bar.Clear()
	}
	fmt.Fprintln(p.w, p.line("."))
}

// isTerminal says whether w is a terminal, where a bar can redraw itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
