package configsrc

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
)

func TestReadFileManifestAndFolder(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "cm.yaml")
	os.WriteFile(manifest, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {autoLabel: \"true\"}\n"), 0o644)
	if data, err := ReadFile(manifest); err != nil || data["autoLabel"] != "true" {
		t.Errorf("manifest: %v %v", data, err)
	}
	// A ConfigMap volume: keys are links into a hidden, timestamped folder.
	vol := filepath.Join(dir, "vol")
	os.MkdirAll(filepath.Join(vol, "..2026_11_28"), 0o755)
	os.WriteFile(filepath.Join(vol, "..2026_11_28", "autoLabel"), []byte("true"), 0o644)
	os.Symlink("..2026_11_28", filepath.Join(vol, "..data"))
	os.Symlink(filepath.Join("..data", "autoLabel"), filepath.Join(vol, "autoLabel"))
	if data, err := ReadFile(vol); err != nil || len(data) != 1 || data["autoLabel"] != "true" {
		t.Errorf("volume: %v %v", data, err)
	}
	if data, err := ReadFile(filepath.Join(dir, "absent")); err != nil || data != nil {
		t.Errorf("absent: %v %v", data, err)
	}
	os.WriteFile(manifest, []byte("kind: Secret\n"), 0o644)
	if _, err := ReadFile(manifest); err == nil {
		t.Error("a Secret read as a ConfigMap")
	}
}

func TestWatchFileAppliesChangesAndKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cm.yaml")
	write := func(data string) {
		t.Helper()
		tmp := path + ".tmp"
		os.WriteFile(tmp, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n"+data), 0o644)
		os.Rename(tmp, path)
	}
	write("  autoLabel: \"true\"\n")
	store := &Store{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go WatchFile(ctx, path, 10*time.Millisecond, store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	waitFor(t, "first config", func() bool { c, _ := store.Load(); return store.Ready() && c.AutoLabel })

	write("  autoLabel: \"maybe\"\n")
	waitFor(t, "the bad config to be rejected", func() bool { _, err := store.Load(); return err != nil })
	if c, _ := store.Load(); !c.AutoLabel {
		t.Error("the last good config was not kept")
	}
	write("  autoLabel: \"false\"\n  overwrite: \"true\"\n")
	waitFor(t, "the next good config", func() bool { c, err := store.Load(); return err == nil && !c.AutoLabel && c.Overwrite })
	os.Remove(path)
	waitFor(t, "defaults after deletion", func() bool { c, err := store.Load(); return err == nil && !c.Overwrite })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWatchConfigMapWaitsForAnUnreachableAPIServer(t *testing.T) {
	// Nothing listens on port 1: the apiserver is not reachable (yet).
	cfg := &rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second}
	store := &Store{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := WatchConfigMap(ctx, cfg, "gpu-label-webhook", "gpu-label-webhook", store, metrics.New(prometheus.NewRegistry()), log)
	if err == nil || !strings.Contains(err.Error(), "did not sync") {
		t.Fatalf("got %v; want it to keep trying until the context ends, then say the cache did not sync", err)
	}
	if took := time.Since(began); took < time.Second {
		t.Errorf("gave up after %v: an unreachable apiserver must be waited for, not be a reason to exit", took)
	}
	if store.Ready() {
		t.Error("the store is ready without a config read")
	}
}
