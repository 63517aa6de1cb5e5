package configsrc

import (
	"sync/atomic"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
)

// Store holds the config in force. A bad config never replaces a good one: it is kept as an
// error to report until a good one arrives.
type Store struct {
	p atomic.Pointer[state]
}

type state struct {
	cfg *admit.Config
	err error
}

// Load returns the config in force (the defaults until one is set) and the error of the last
// config that was rejected, if it is newer than the one in force.
func (s *Store) Load() (*admit.Config, error) {
	if st := s.p.Load(); st != nil {
		return st.cfg, st.err
	}
	return admit.DefaultConfig(), nil
}

// Ready says a config, good or bad, has been read at least once.
func (s *Store) Ready() bool { return s.p.Load() != nil }

// Set puts a good config in force.
func (s *Store) Set(cfg *admit.Config) { s.p.Store(&state{cfg: cfg}) }

// Reject records a bad config; the last good one stays in force.
func (s *Store) Reject(err error) {
	cfg, _ := s.Load()
	s.p.Store(&state{cfg: cfg, err: err})
}
