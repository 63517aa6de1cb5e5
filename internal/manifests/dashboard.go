package manifests

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
)

// DashboardUID is the dashboard's fixed uid, so that links to it survive a reinstall.
const DashboardUID = "gpu-label-webhook"

// The dashboard's variables: the Prometheus data source and the namespaces the webhook runs in.
const (
	dsVar = "datasource"
	nsVar = "namespace"
)

// Dashboard is the Grafana dashboard, as JSON: requests by outcome, latency, findings by
// reason, config state, Events by result, and the apiserver's calls where it is scraped.
// A test parses every query and checks each metric it names against the server's registry.
func Dashboard() ([]byte, error) {
	ds := common.DataSourceRef{Type: ptr.To("prometheus"), Uid: ptr.To("${" + dsVar + "}")}
	sel := fmt.Sprintf(`namespace=~"$%s"`, nsVar)
	// Panels and rows carry ids of their own, as Grafana's saved dashboards do.
	var id uint32
	next := func() uint32 { id++; return id }
	row := func(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title).Id(next()) }
	q := func(expr, legend string) *prometheus.DataqueryBuilder {
		return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend)
	}
	series := func(title, unit, description string, queries ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
		p := timeseries.NewPanelBuilder().Id(next()).Title(title).Description(description).Unit(unit).Min(0).Datasource(ds).Height(8).Span(12)
		for _, t := range queries {
			p.WithTarget(t)
		}
		return p
	}
	single := func(title, description, expr string, mappings []dashboard.ValueMapping) *stat.PanelBuilder {
		return stat.NewPanelBuilder().Id(next()).Title(title).Description(description).Datasource(ds).Height(4).Span(6).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			Mappings(mappings).WithTarget(q(expr, "").Instant())
	}
	mapping := func(texts map[string][2]string) []dashboard.ValueMapping {
		opts := map[string]dashboard.ValueMappingResult{}
		for v, tc := range texts {
			opts[v] = dashboard.ValueMappingResult{Text: ptr.To(tc[0]), Color: ptr.To(tc[1])}
		}
		return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
	}
	rate := func(metric, by string) string {
		return fmt.Sprintf(`sum by (%s) (rate(%s{%s}[$__rate_interval]))`, by, metric, sel)
	}
	quantile := func(qv string) string {
		return fmt.Sprintf(`histogram_quantile(%s, sum by (le, endpoint) (rate(gpu_label_webhook_request_duration_seconds_bucket{%s}[$__rate_interval])))`, qv, sel)
	}
	apiserver := fmt.Sprintf(`name=~%q`, webhookNames())

	b := dashboard.NewDashboardBuilder("gpu-label-webhook").
		Uid(DashboardUID).
		Description("Admission requests, latency, findings, config state and Events of gpu-label-webhook.").
		Tags([]string{"gpu-label-webhook", "kubernetes", "admission-webhook"}).
		Refresh("1m").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(dashboard.NewDatasourceVariableBuilder(dsVar).Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder(nsVar).Label("Namespace").Datasource(ds).
			Query(dashboard.StringOrMap{String: ptr.To("label_values(gpu_label_webhook_config_valid, namespace)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Multi(true).IncludeAll(true)).
		WithRow(row("State")).
		WithPanel(single("Pods up", "Webhook pods Prometheus scrapes up. None: the apiserver fails open and nodes join unlabeled.",
			fmt.Sprintf(`sum(up{job=%q, %s})`, Job, sel), nil)).
		WithPanel(single("Config", "Whether every pod's last config read was valid (0: rejected, the last good config stays in force).",
			fmt.Sprintf(`min(gpu_label_webhook_config_valid{%s})`, sel), mapping(map[string][2]string{"1": {"valid", "green"}, "0": {"invalid", "red"}}))).
		WithPanel(single("ResourceSlices", "Whether every pod watches the ResourceSlices DRA drivers publish (0: resource.k8s.io/v1 not served, or the watch fails; nodes are judged without them).",
			fmt.Sprintf(`min(gpu_label_webhook_resourceslices_synced{%s})`, sel), mapping(map[string][2]string{"1": {"watched", "green"}, "0": {"not read", "orange"}}))).
		WithPanel(single("Labeled (24h)", "Node writes the webhook labeled in the last 24 hours.",
			fmt.Sprintf(`sum(increase(gpu_label_webhook_findings_total{%s, reason=%q}[24h]))`, sel, admit.ReasonLabeled), nil)).
		WithPanel(single("Left unlabeled (24h)", "Findings of GPU nodes left without the label in the last 24 hours (warn-only install, or a model the webhook cannot name).",
			fmt.Sprintf(`sum(increase(gpu_label_webhook_findings_total{%s, reason=~%q}[24h]))`, sel, reasonsRegexp(unlabeledReasons)), nil)).
		WithRow(row("Admission")).
		WithPanel(series("Requests by outcome", "reqps", "Admission requests by outcome: labeled, warned, none (nothing to do) or error (a request it could not read).",
			q(rate("gpu_label_webhook_requests_total", "outcome"), "{{outcome}}"))).
		WithPanel(series("Latency", "s", "Time from request received to response written, by endpoint. The apiserver gives up after the webhook's timeout and fails open.",
			q(quantile("0.5"), "p50 {{endpoint}}"), q(quantile("0.99"), "p99 {{endpoint}}"))).
		WithPanel(series("Findings by reason", "ops", "What the webhook found on the nodes it saw, by reason (the reasons of its Events).",
			q(rate("gpu_label_webhook_findings_total", "reason"), "{{reason}}"))).
		WithPanel(series("Requests by operation", "reqps", "Admission requests by endpoint and operation.",
			q(rate("gpu_label_webhook_requests_total", "endpoint, operation"), "{{endpoint}} {{operation}}"))).
		WithRow(row("Config and Events")).
		WithPanel(series("Config reads by result", "short", "ConfigMap reads by result: success, invalid (rejected) or deleted (warn-only default).",
			q(fmt.Sprintf(`sum by (result) (increase(gpu_label_webhook_config_reloads_total{%s}[$__rate_interval]))`, sel), "{{result}}"))).
		WithPanel(series("Events by result", "ops", "Kubernetes Events: emitted, rate_limited (one per node and reason per window), dropped (queue full) or failed.",
			q(rate("gpu_label_webhook_events_total", "result"), "{{result}}"))).
		WithRow(row("The apiserver's calls (where the control plane is scraped)")).
		WithPanel(series("Calls by HTTP code", "reqps", "The apiserver's own count of its calls to the webhooks, by code; managed control planes often expose none.",
			q(fmt.Sprintf(`sum by (name, code) (rate(apiserver_admission_webhook_request_total{%s}[$__rate_interval]))`, apiserver), "{{name}} {{code}}"))).
		WithPanel(series("Failed open", "ops", "Calls the apiserver could not make and let through without the webhook.",
			q(fmt.Sprintf(`sum by (name) (rate(apiserver_admission_webhook_fail_open_count{%s}[$__rate_interval]))`, apiserver), "{{name}}")))
	d, err := b.Build()
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(d, "", "  ")
	return append(out, '\n'), err
}
