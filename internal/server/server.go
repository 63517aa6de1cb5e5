// Package server runs the webhook: the HTTPS admission endpoints, health and readiness,
// metrics, the config source and the Event publisher.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/configsrc"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/events"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/slicesrc"
)

// Options configure the server. Run checks them before anything starts.
type Options struct {
	Addr          string // host:port of the HTTPS admission server
	CertDir       string // holds tls.crt and tls.key, reloaded on change
	HealthAddr    string // /healthz and /readyz over plain HTTP; "" turns it off
	MetricsAddr   string // /metrics over plain HTTP; "" turns it off
	PprofAddr     string // Go's /debug/pprof over plain HTTP; "" (the default) turns it off
	TLSMinVersion uint16
	ClientCAFile  string // when set, clients must present a certificate signed by it
	EnableHTTP2   bool

	// The config comes from the cluster (RESTConfig, Namespace, ConfigName) or from a file.
	RESTConfig *rest.Config
	Namespace  string
	ConfigName string
	ConfigFile string
	ConfigPoll time.Duration
	// EventsNamespace is where Events about Nodes are written; the apiserver accepts Events
	// about cluster-scoped objects only in "default".
	EventsNamespace string

	// ShutdownDelay is how long the server stays up unready after SIGTERM, so that endpoints
	// drop it before it stops accepting connections.
	ShutdownDelay time.Duration
	EventWindow   time.Duration
	PodName       string
	Log           *slog.Logger

	// ReadHeaderTimeout bounds how long a client may take to send its headers (default 5s).
	ReadHeaderTimeout time.Duration

	// Routes, when set, replaces the admission endpoints on the same TLS server and router;
	// the benchmarks use it to measure a null webhook on the identical stack.
	Routes func(chi.Router)

	// Ready, when set, is called once the server accepts requests and is ready (for tests).
	Ready func(addr net.Addr)
}

// Validate reports option errors before anything starts.
func (o *Options) Validate() error {
	var errs []error
	if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir is required"))
	}
	if o.RESTConfig == nil && o.ConfigFile == "" {
		errs = append(errs, errors.New("no cluster to read the config from: give --kubeconfig (or run in a cluster) or --config-file"))
	}
	if o.TLSMinVersion < tls.VersionTLS12 {
		errs = append(errs, errors.New("--tls-min-version must be 1.2 or 1.3"))
	}
	return errors.Join(errs...)
}

// Run serves until ctx ends, then shuts down gracefully: unready first, then in-flight
// requests finish, then it returns.
func Run(ctx context.Context, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mets := metrics.New(reg)
	store := &configsrc.Store{}

	// runCtx outlives ctx until the servers have drained.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()

	cw, err := certwatcher.New(filepath.Join(o.CertDir, "tls.crt"), filepath.Join(o.CertDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	go func() {
		if err := cw.Start(runCtx); err != nil {
			log.Error("certificate watcher stopped", "err", err)
		}
	}()
	tlsCfg, err := o.tlsConfig(cw)
	if err != nil {
		return err
	}

	// At most one error from each server (admission, health, metrics, pprof) and the config watch.
	errc := make(chan error, 5)
	var sink review.EventSink
	var devices review.DeviceSource
	if o.ConfigFile != "" {
		go configsrc.WatchFile(runCtx, o.ConfigFile, o.ConfigPoll, store, mets, log)
	} else {
		// In the background: the servers answer (unready, /healthz ok) while the apiserver
		// cannot be reached yet, rather than the process exiting into CrashLoopBackOff.
		go func() {
			if err := configsrc.WatchConfigMap(runCtx, o.RESTConfig, o.Namespace, o.ConfigName, store, mets, log); err != nil && runCtx.Err() == nil {
				errc <- fmt.Errorf("watching config %s/%s: %w", o.Namespace, o.ConfigName, err)
			}
		}()
	}
	if o.RESTConfig != nil {
		// Events are best-effort: their client writes at most eventQPS a second (bursts of
		// eventBurst), so a scale-up of thousands of nodes never floods the apiserver; the
		// queue absorbs a burst and drops (and counts) what does not fit.
		evCfg := rest.CopyConfig(o.RESTConfig)
		evCfg.QPS, evCfg.Burst = eventQPS, eventBurst
		cs, err := kubernetes.NewForConfig(evCfg)
		if err != nil {
			return err
		}
		ev := events.New(eventPoster(cs, o.EventsNamespace, o.PodName), o.EventWindow, eventQueue, mets)
		ev.Log = log
		go ev.Run(runCtx)
		sink = ev

		// The nodes' GPUs that DRA drivers publish; without the API, or while its watch
		// fails, nodes are judged as they would be without it.
		sliceCS, err := kubernetes.NewForConfig(o.RESTConfig)
		if err != nil {
			return err
		}
		src := &slicesrc.Source{KB: gpuinfo.Default(), Metrics: mets, Log: log}
		go src.Run(runCtx, sliceCS)
		devices = src
	}

	var shuttingDown atomic.Bool
	ready := func() error {
		switch {
		case shuttingDown.Load():
			return errors.New("shutting down")
		case !store.Ready():
			return errors.New("config not read yet")
		}
		return nil
	}

	r := chi.NewRouter()
	if o.Routes != nil {
		o.Routes(r)
	} else {
		r.Method(http.MethodPost, review.PathMutate, &review.HTTPHandler{Handler: &review.Handler{Config: store, Mutate: true, Devices: devices, Events: sink, Metrics: mets}, Endpoint: "mutate", Metrics: mets, Log: log})
		r.Method(http.MethodPost, review.PathValidate, &review.HTTPHandler{Handler: &review.Handler{Config: store, Devices: devices, Events: sink, Metrics: mets}, Endpoint: "validate", Metrics: mets, Log: log})
	}
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: an AdmissionReview is sent with POST", http.StatusMethodNotAllowed)
	})
	readHeader := o.ReadHeaderTimeout
	if readHeader <= 0 {
		readHeader = 5 * time.Second
	}
	srv := &http.Server{
		Handler:           r,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: readHeader,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if !o.EnableHTTP2 {
		// HTTP/2 stays off unless asked for (Rapid Reset, CVE-2023-44487 and CVE-2023-39325).
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return err
	}
	servers := []*http.Server{srv}
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	log.Info("serving admission webhooks", "addr", ln.Addr().String(), "paths", []string{review.PathMutate, review.PathValidate})

	if o.HealthAddr != "" {
		h := chi.NewRouter()
		h.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		h.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if err := ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		servers = append(servers, plainServer(o.HealthAddr, h, errc))
	}
	if o.MetricsAddr != "" {
		m := chi.NewRouter()
		m.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		servers = append(servers, plainServer(o.MetricsAddr, m, errc))
	}
	if o.PprofAddr != "" {
		p := chi.NewRouter()
		p.Mount("/debug", middleware.Profiler())
		servers = append(servers, plainServer(o.PprofAddr, p, errc))
		log.Info("serving /debug/pprof", "addr", o.PprofAddr)
	}
	if o.Ready != nil {
		go func() {
			for ready() != nil {
				select {
				case <-runCtx.Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			o.Ready(ln.Addr())
		}()
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shuttingDown.Store(true)
	log.Info("shutting down: unready, draining", "delay", o.ShutdownDelay)
	time.Sleep(o.ShutdownDelay)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	log.Info("stopped")
	return errors.Join(errs...)
}

// plainServer listens on addr before it returns, so that the server is reachable once Run
// reports ready, and a bad address is an error at start-up.
func plainServer(addr string, h http.Handler, errc chan<- error) *http.Server {
	s := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		errc <- err
		return s
	}
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return s
}

// tlsConfig is the one place TLS policy is set.
func (o *Options) tlsConfig(cw *certwatcher.CertWatcher) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:     o.TLSMinVersion,
		GetCertificate: cw.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
	if o.EnableHTTP2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate", o.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// The Event client's rate and queue.
const (
	eventQPS   = 5
	eventBurst = 10
	eventQueue = 1000
)

// eventPoster writes Events about Nodes, naming the node as kubelets do (the UID is the
// node's name) so that `kubectl describe node` lists them.
func eventPoster(cs kubernetes.Interface, namespace, pod string) events.Poster {
	return func(ctx context.Context, node string, f admit.Finding) error {
		now := metav1.Now()
		typ := corev1.EventTypeNormal
		if f.Warning() {
			typ = corev1.EventTypeWarning
		}
		_, err := cs.CoreV1().Events(namespace).Create(ctx, &corev1.Event{
			ObjectMeta:          metav1.ObjectMeta{GenerateName: node + ".", Namespace: namespace},
			InvolvedObject:      corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node, UID: types.UID(node)},
			Reason:              string(f.Reason),
			Message:             f.Message,
			Type:                typ,
			Source:              corev1.EventSource{Component: "gpu-label-webhook"},
			ReportingController: "gpu-label-webhook",
			ReportingInstance:   reportingInstance(pod),
			FirstTimestamp:      now,
			LastTimestamp:       now,
			Count:               1,
		}, metav1.CreateOptions{})
		return err
	}
}

func reportingInstance(pod string) string {
	if pod != "" {
		return pod
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "gpu-label-webhook"
}
