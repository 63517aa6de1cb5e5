// Package metrics holds the webhook's Prometheus metrics.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the webhook's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	Requests      *prometheus.CounterVec
	Latency       *prometheus.HistogramVec
	Findings      *prometheus.CounterVec
	ConfigReloads *prometheus.CounterVec
	ConfigValid   prometheus.Gauge
	Events        *prometheus.CounterVec
	SlicesSynced  prometheus.Gauge
}

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpu_label_webhook_requests_total",
			Help: "Admission requests by endpoint, operation and outcome (labeled, warned, none, error).",
		}, []string{"endpoint", "operation", "outcome"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gpu_label_webhook_request_duration_seconds",
			Help:    "Time from request received to response written, by endpoint.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"endpoint"}),
		Findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpu_label_webhook_findings_total",
			Help: "Findings about nodes by reason (AcceleratorLabelMissing, AcceleratorLabeled, ...).",
		}, []string{"reason"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpu_label_webhook_config_reloads_total",
			Help: "Config reads by result (success, invalid, deleted).",
		}, []string{"result"}),
		ConfigValid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gpu_label_webhook_config_valid",
			Help: "1 when the last config read was valid, 0 when it was rejected and an older one is in force.",
		}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpu_label_webhook_events_total",
			Help: "Kubernetes Events by result (emitted, rate_limited, dropped, failed).",
		}, []string{"result"}),
		SlicesSynced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gpu_label_webhook_resourceslices_synced",
			Help: "1 while the ResourceSlices are watched and known, 0 when resource.k8s.io/v1 is not served or the watch fails (nodes are then judged without them).",
		}),
	}
	reg.MustRegister(m.Requests, m.Latency, m.Findings, m.ConfigReloads, m.ConfigValid, m.Events, m.SlicesSynced)
	return m
}

// Request counts an admission request by endpoint, operation and outcome.
func (m *Metrics) Request(endpoint, op, outcome string) {
	if m != nil {
		m.Requests.WithLabelValues(endpoint, op, outcome).Inc()
	}
}

// ObserveLatency records the time one request took.
func (m *Metrics) ObserveLatency(endpoint string, d time.Duration) {
	if m != nil {
		m.Latency.WithLabelValues(endpoint).Observe(d.Seconds())
	}
}

// Finding counts a finding about a node by its reason.
func (m *Metrics) Finding(reason string) {
	if m != nil {
		m.Findings.WithLabelValues(reason).Inc()
	}
}

// ConfigReload counts a config read.
func (m *Metrics) ConfigReload(result string, valid bool) {
	if m == nil {
		return
	}
	m.ConfigReloads.WithLabelValues(result).Inc()
	if valid {
		m.ConfigValid.Set(1)
	} else {
		m.ConfigValid.Set(0)
	}
}

// Event counts an Event by result.
func (m *Metrics) Event(result string) {
	if m != nil {
		m.Events.WithLabelValues(result).Inc()
	}
}

// SliceSourceSynced records whether the ResourceSlices are known.
func (m *Metrics) SliceSourceSynced(synced bool) {
	if m == nil {
		return
	}
	if synced {
		m.SlicesSynced.Set(1)
	} else {
		m.SlicesSynced.Set(0)
	}
}
