package configsrc

import (
	"testing"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
)

func mustParse(t *testing.T, data map[string]string) *admit.Config {
	t.Helper()
	cfg, err := admit.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestStoreKeepsLastGood(t *testing.T) {
	var s Store
	if s.Ready() {
		t.Fatal("ready before any config")
	}
	if c, err := s.Load(); c.AutoLabel || err != nil {
		t.Fatal("defaults expected before any config")
	}
	good := mustParse(t, map[string]string{admit.KeyAutoLabel: "true"})
	s.Set(good)
	_, err := admit.ParseConfig(map[string]string{admit.KeyAutoLabel: "maybe"})
	s.Reject(err)
	c, gotErr := s.Load()
	if c != good || gotErr == nil || !s.Ready() {
		t.Errorf("after a bad config: cfg=%p err=%v", c, gotErr)
	}
	s.Set(admit.DefaultConfig())
	if c, err := s.Load(); c.AutoLabel || err != nil {
		t.Errorf("a good config did not replace the error")
	}
}
