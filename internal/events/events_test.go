package events

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// 10,000 findings about one node give one Event per reason per window.
func TestEventStormIsRateLimited(t *testing.T) {
	var posted atomic.Int64
	m := metrics.New(prometheus.NewRegistry())
	ev := New(func(context.Context, string, admit.Finding) error { posted.Add(1); return nil }, time.Hour, 100, m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ev.Run(ctx)
	for i := 0; i < 10000; i++ {
		ev.Emit("node-1", admit.Finding{Reason: admit.ReasonLabelMissing})
		ev.Emit("node-1", admit.Finding{Reason: admit.ReasonGPUCountMismatch})
	}
	deadline := time.Now().Add(5 * time.Second)
	for posted.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := posted.Load(); got != 2 {
		t.Errorf("%d events posted, want 2", got)
	}
	if got := testutil.ToFloat64(m.Events.WithLabelValues("rate_limited")); got != 19998 {
		t.Errorf("rate_limited = %v", got)
	}
	// After the window, the next one goes out.
	ev.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	ev.Emit("node-1", admit.Finding{Reason: admit.ReasonLabelMissing})
	deadline = time.Now().Add(5 * time.Second)
	for posted.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if posted.Load() != 3 {
		t.Error("no event after the window")
	}
}

// A stuck API never blocks admission: the queue is bounded and drops are counted.
func TestEventQueueNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	m := metrics.New(prometheus.NewRegistry())
	ev := New(func(ctx context.Context, _ string, _ admit.Finding) error { <-release; return nil }, time.Hour, 10, m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ev.Run(ctx)
	start := time.Now()
	for i := 0; i < 1000; i++ {
		ev.Emit("node-"+string(rune('a'+i%26))+string(rune('a'+i/26)), admit.Finding{Reason: admit.ReasonLabelMissing})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Emit blocked: %v", d)
	}
	close(release)
	if dropped := testutil.ToFloat64(m.Events.WithLabelValues("dropped")); dropped < 900 {
		t.Errorf("dropped = %v, want about 989", dropped)
	}
}
