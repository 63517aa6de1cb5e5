// Package events publishes the webhook's findings about Nodes as Kubernetes Events, off the
// admission path.
package events

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
)

// Poster writes one Event; the server's posts it through the API.
type Poster func(ctx context.Context, node string, f admit.Finding) error

// Publisher publishes findings as Events off the admission path: Emit never blocks; a full queue
// drops (and counts) the event; one event per node and reason per window at most.
type Publisher struct {
	post    Poster
	window  time.Duration
	metrics *metrics.Metrics
	queue   chan pendingEvent
	now     func() time.Time

	// Log, when set, reports events that could not be written.
	Log *slog.Logger

	mu   sync.Mutex
	last map[eventKey]time.Time
}

type eventKey struct {
	node   string
	reason admit.Reason
}

type pendingEvent struct {
	node string
	f    admit.Finding
}

// maxTracked bounds the rate limiter's memory; past it, entries older than the window go.
const maxTracked = 50000

// New makes an event publisher with a queue of size queueLen.
func New(post Poster, window time.Duration, queueLen int, m *metrics.Metrics) *Publisher {
	return &Publisher{post: post, window: window, metrics: m, queue: make(chan pendingEvent, queueLen), now: time.Now, last: map[eventKey]time.Time{}}
}

// Emit queues an event unless one with the same node and reason went out within the window.
func (e *Publisher) Emit(node string, f admit.Finding) {
	now := e.now()
	k := eventKey{node, f.Reason}
	e.mu.Lock()
	if t, ok := e.last[k]; ok && now.Sub(t) < e.window {
		e.mu.Unlock()
		e.metrics.Event("rate_limited")
		return
	}
	if len(e.last) >= maxTracked {
		for key, t := range e.last {
			if now.Sub(t) >= e.window {
				delete(e.last, key)
			}
		}
	}
	e.last[k] = now
	e.mu.Unlock()
	select {
	case e.queue <- pendingEvent{node, f}:
	default:
		e.metrics.Event("dropped")
	}
}

// Run posts queued events until ctx ends.
func (e *Publisher) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-e.queue:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := e.post(pctx, p.node, p.f)
			cancel()
			if err != nil {
				e.metrics.Event("failed")
				if e.Log != nil {
					e.Log.Warn("event not written", "node", p.node, "reason", p.f.Reason, "err", err)
				}
			} else {
				e.metrics.Event("emitted")
			}
		}
	}
}
