package app

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/server"
)

// serveOptions are the flags of `webhook serve`, checked before anything starts.
type serveOptions struct {
	port          int
	certDir       string
	healthAddr    string
	pprofAddr     string
	metricsAddr   string
	kubeconfig    string
	namespace     string
	configName    string
	configFile    string
	tlsMinVersion string
	clientCAFile  string
	enableHTTP2   bool
	shutdownDelay time.Duration
	eventWindow   time.Duration
	logFormat     string
	logLevel      string
	gcPercent     int
}

func newServeCommand(s streams) *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhook server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := o.logger(s)
			if err != nil {
				return withCode(ExitError, err)
			}
			opts, err := o.serverOptions(log)
			if err != nil {
				return withCode(ExitError, err)
			}
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(o.gcPercent)
			}
			if err := server.Run(cmd.Context(), opts); err != nil {
				return withCode(ExitError, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	p := manifests.PodPorts
	f.IntVar(&o.port, "port", int(p.Webhook), "HTTPS port of the admission endpoints")
	f.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "folder holding tls.crt and tls.key (reloaded on change)")
	f.StringVar(&o.healthAddr, "health-addr", fmt.Sprintf(":%d", p.Health), "address of /healthz and /readyz; empty turns them off")
	f.StringVar(&o.metricsAddr, "metrics-addr", fmt.Sprintf(":%d", p.Metrics), "address of /metrics; empty turns it off")
	f.StringVar(&o.pprofAddr, "pprof-addr", "", "address of Go's /debug/pprof, for profiling; empty (the default) turns it off; keep it on localhost")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; default: in-cluster config, or KUBECONFIG")
	f.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", admit.DefaultNamespace), "namespace of the config ConfigMap and of Events")
	f.StringVar(&o.configName, "config-name", admit.DefaultConfigName, "name of the config ConfigMap")
	f.StringVar(&o.configFile, "config-file", "", "read the config from this ConfigMap manifest or mounted folder instead of the API (reloaded on change)")
	f.StringVar(&o.tlsMinVersion, "tls-min-version", "1.2", "lowest TLS version accepted: 1.2 or 1.3")
	f.StringVar(&o.clientCAFile, "client-ca-file", "", "when set, require a client certificate signed by this CA (the apiserver's)")
	f.BoolVar(&o.enableHTTP2, "enable-http2", false, "serve HTTP/2 as well as HTTP/1.1")
	f.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second, "time to stay up unready after SIGTERM before closing")
	f.DurationVar(&o.eventWindow, "event-window", 10*time.Minute, "at most one Event per node and reason within this time")
	f.StringVar(&o.logFormat, "log-format", "json", "json or text")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.IntVar(&o.gcPercent, "gc-percent", 400, "garbage collection target (GOGC) unless GOGC is set: the live heap is a few MB, so a higher target trades about 10 MB for less CPU per request")
	return cmd
}

func (o *serveOptions) logger(s streams) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", o.logLevel, err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch o.logFormat {
	case "json":
		h = slog.NewJSONHandler(s.err, hopts)
	case "text":
		h = slog.NewTextHandler(s.err, hopts)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", o.logFormat)
	}
	// client-go and controller-runtime log through the same handler.
	ctrllog.SetLogger(logr.FromSlogHandler(h))
	klog.SetSlogLogger(slog.New(h))
	return slog.New(h), nil
}

func (o *serveOptions) serverOptions(log *slog.Logger) (server.Options, error) {
	opts := server.Options{
		Addr:            fmt.Sprintf(":%d", o.port),
		CertDir:         o.certDir,
		HealthAddr:      o.healthAddr,
		PprofAddr:       o.pprofAddr,
		MetricsAddr:     o.metricsAddr,
		ClientCAFile:    o.clientCAFile,
		EnableHTTP2:     o.enableHTTP2,
		Namespace:       o.namespace,
		ConfigName:      o.configName,
		ConfigFile:      o.configFile,
		ConfigPoll:      time.Second,
		EventsNamespace: manifests.EventsNamespace,
		ShutdownDelay:   o.shutdownDelay,
		EventWindow:     o.eventWindow,
		PodName:         os.Getenv("POD_NAME"),
		Log:             log,
	}
	switch o.tlsMinVersion {
	case "1.2":
		opts.TLSMinVersion = tls.VersionTLS12
	case "1.3":
		opts.TLSMinVersion = tls.VersionTLS13
	default:
		return opts, fmt.Errorf("--tls-min-version %q: want 1.2 or 1.3", o.tlsMinVersion)
	}
	if o.port <= 0 || o.port > 65535 {
		return opts, fmt.Errorf("--port %d is not a port", o.port)
	}
	// With --config-file and no kubeconfig the server needs no cluster at all.
	if o.configFile == "" || o.kubeconfig != "" || os.Getenv("KUBECONFIG") != "" || inCluster() {
		cfg, err := restConfig(o.kubeconfig, "")
		if err != nil {
			return opts, err
		}
		opts.RESTConfig = cfg
	}
	return opts, opts.Validate()
}

func inCluster() bool {
	_, err := rest.InClusterConfig()
	return err == nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
