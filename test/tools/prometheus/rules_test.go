// Package prometheus checks what the install ships for Prometheus and Grafana with
// Prometheus's own code: promtool checks the alerting rules and runs a unit test of each
// alert, and every metric a rule or a dashboard panel names is one that really is exported.
package prometheus

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

// promtool is the binary make builds from this module (make verify sets PROMTOOL).
func promtool(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := os.Getenv("PROMTOOL")
	if bin == "" {
		t.Fatal("PROMTOOL is not set: run make verify, or make bin/promtool and set it")
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// ruleFile writes the PrometheusRule's groups as the rule file Prometheus itself would load.
func ruleFile(t *testing.T, dir string) string {
	t.Helper()
	b, err := yaml.Marshal(manifests.PrometheusRule().Spec)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRulesPassPromtoolCheck(t *testing.T) {
	promtool(t, "check", "rules", "--lint=all", "--lint-fatal", ruleFile(t, t.TempDir()))
}

// The webhook's own series as Prometheus stores them after a ServiceMonitor scrape.
const (
	own  = `job="` + manifests.Job + `", namespace="` + manifests.Namespace + `"`
	hook = `name="nodes.gpu-label-webhook.skypilot.co"`
)

type series struct{ Series, Values string }

type alertCase struct {
	alert  string
	input  []series
	at     string            // eval_time
	labels map[string]string // of the one alert expected; nil: none fires
	value  string            // what {{ $value }} renders as, where an annotation uses it
}

// Each alert fires when it should, and stays quiet when it should not. The expected
// annotations are the rule's own with its labels filled in, so a template naming a label
// the alert does not carry fails here.
var alertCases = map[string]alertCase{
	"down: the only pod scraped down for 5 minutes": {
		alert: "GPULabelWebhookDown", at: "10m",
		input:  []series{{`up{` + own + `, pod="a"}`, "0x15"}},
		labels: map[string]string{"job": manifests.Job, "namespace": manifests.Namespace, "severity": "warning"},
	},
	"down: no target at all (scaled to zero, or not scraped)": {
		alert: "GPULabelWebhookDown", at: "10m",
		input:  []series{{`up{job="other", namespace="other"}`, "1x15"}},
		labels: map[string]string{"job": manifests.Job, "namespace": manifests.Namespace, "severity": "warning"},
	},
	"not down while one of two pods is up": {
		alert: "GPULabelWebhookDown", at: "10m",
		input: []series{{`up{` + own + `, pod="a"}`, "0x15"}, {`up{` + own + `, pod="b"}`, "1x15"}},
	},
	"config invalid for 5 minutes": {
		alert: "GPULabelWebhookConfigInvalid", at: "10m",
		input:  []series{{`gpu_label_webhook_config_valid{` + own + `, pod="a"}`, "1 1 0x13"}},
		labels: map[string]string{"job": manifests.Job, "namespace": manifests.Namespace, "pod": "a", "severity": "warning"},
	},
	"a config rejected and fixed within minutes does not alert": {
		alert: "GPULabelWebhookConfigInvalid", at: "10m",
		input: []series{{`gpu_label_webhook_config_valid{` + own + `, pod="a"}`, "1 0 0 1x12"}},
	},
	"GPU nodes left unlabeled for 30 minutes in warn-only mode": {
		alert: "GPULabelWebhookGPUNodesUnlabeled", at: "70m",
		input:  []series{{`gpu_label_webhook_findings_total{` + own + `, pod="a", reason="` + string(admit.ReasonLabelMissing) + `"}`, "0+2x80"}},
		labels: map[string]string{"namespace": manifests.Namespace, "reason": string(admit.ReasonLabelMissing), "severity": "info"},
	},
	"GPU nodes whose model is unknown": {
		alert: "GPULabelWebhookGPUNodesUnlabeled", at: "70m",
		input:  []series{{`gpu_label_webhook_findings_total{` + own + `, pod="a", reason="` + string(admit.ReasonModelUnknown) + `"}`, "0+1x80"}},
		labels: map[string]string{"namespace": manifests.Namespace, "reason": string(admit.ReasonModelUnknown), "severity": "info"},
	},
	"nodes being labeled do not alert": {
		alert: "GPULabelWebhookGPUNodesUnlabeled", at: "70m",
		input: []series{{`gpu_label_webhook_findings_total{` + own + `, pod="a", reason="` + string(admit.ReasonLabeled) + `"}`, "0+2x80"}},
	},
	"one unlabeled node that was then labeled does not alert": {
		alert: "GPULabelWebhookGPUNodesUnlabeled", at: "70m",
		input: []series{{`gpu_label_webhook_findings_total{` + own + `, pod="a", reason="` + string(admit.ReasonLabelMissing) + `"}`, "0 1 2 3x78"}},
	},
	"not called: a GPU node joined and the webhook counted no request": {
		alert: "GPULabelWebhookNotCalled", at: "40m", value: "1",
		input: []series{
			{`kube_node_status_capacity{node="g1", resource="nvidia_com_gpu", unit="integer"}`, "8x50"},
			{`kube_node_created{node="g1"}`, "600x50"},
			{`up{` + own + `, pod="a"}`, "1x50"},
		},
		labels: map[string]string{"severity": "warning"},
	},
	"not called: a MIG node counts as a GPU node": {
		alert: "GPULabelWebhookNotCalled", at: "40m", value: "1",
		input: []series{
			{`kube_node_status_capacity{node="g1", resource="nvidia_com_mig_1g_10gb", unit="integer"}`, "7x50"},
			{`kube_node_created{node="g1"}`, "600x50"},
		},
		labels: map[string]string{"severity": "warning"},
	},
	"called: the GPU node's status report reached the webhook": {
		alert: "GPULabelWebhookNotCalled", at: "40m",
		input: []series{
			{`kube_node_status_capacity{node="g1", resource="nvidia_com_gpu", unit="integer"}`, "8x50"},
			{`kube_node_created{node="g1"}`, "600x50"},
			{`gpu_label_webhook_requests_total{` + own + `, pod="a", endpoint="mutate", operation="UPDATE", outcome="labeled"}`, "0 0 0 0 0 0 0 0 0 0 0 1x40"},
		},
	},
	"not called is quiet when only CPU nodes joined": {
		alert: "GPULabelWebhookNotCalled", at: "40m",
		input: []series{
			{`kube_node_status_capacity{node="c1", resource="cpu", unit="core"}`, "8x50"},
			{`kube_node_created{node="c1"}`, "600x50"},
		},
	},
	"not called is quiet when the GPU nodes are old": {
		alert: "GPULabelWebhookNotCalled", at: "40m",
		input: []series{
			{`kube_node_status_capacity{node="g1", resource="nvidia_com_gpu", unit="integer"}`, "8x50"},
			{`kube_node_created{node="g1"}`, "-7200x50"},
		},
	},
	"the apiserver failed open calling the webhook": {
		alert: "GPULabelWebhookFailingOpen", at: "6m",
		input:  []series{{`apiserver_admission_webhook_fail_open_count{` + hook + `, type="admit"}`, "0 0 0 3 3 3 3 3 3 3"}},
		labels: map[string]string{"name": "nodes.gpu-label-webhook.skypilot.co", "severity": "warning"},
	},
	"another webhook failing open is not ours": {
		alert: "GPULabelWebhookFailingOpen", at: "6m",
		input: []series{{`apiserver_admission_webhook_fail_open_count{name="nodes.gpu-label-webhookXskypilot.co", type="admit"}`, "0 0 0 3 3 3 3 3 3 3"}},
	},
	"node writes rejected because of the webhook": {
		alert: "GPULabelWebhookCallsRejected", at: "6m",
		input:  []series{{`apiserver_admission_webhook_rejection_count{` + hook + `, type="admit", operation="UPDATE", error_type="calling_webhook_error", rejection_code="0"}`, "0 0 0 3 3 3 3 3 3 3"}},
		labels: map[string]string{"name": "nodes.gpu-label-webhook.skypilot.co", "error_type": "calling_webhook_error", "severity": "critical"},
	},
	"the audit webhook skipped: its match conditions fail to evaluate": {
		alert: "GPULabelWebhookNotCalledMatchConditionErrors", at: "6m",
		input:  []series{{`apiserver_admission_match_condition_evaluation_errors_total{name="audit.nodes.gpu-label-webhook.skypilot.co", kind="webhook", type="validating", operation="UPDATE"}`, "0 0 1 2 3 4 5 6"}},
		labels: map[string]string{"name": "audit.nodes.gpu-label-webhook.skypilot.co", "severity": "warning"},
	},
}

// annotations fills the rule's annotation templates the way Prometheus does for the
// templates the rules use: {{ $labels.x }} and {{ $value }}.
func annotations(t *testing.T, rule map[string]string, labels map[string]string, value string) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`\{\{ \$(labels\.(\w+)|value) \}\}`)
	out := map[string]string{}
	for k, v := range rule {
		out[k] = re.ReplaceAllStringFunc(v, func(m string) string {
			sub := re.FindStringSubmatch(m)
			if sub[1] == "value" {
				return value
			}
			return labels[sub[2]]
		})
		if strings.Contains(out[k], "{{") {
			t.Fatalf("annotation %s uses a template this test does not fill: %s", k, v)
		}
	}
	return out
}

func TestAlertsFire(t *testing.T) {
	dir := t.TempDir()
	ruleFile(t, dir)
	rules := map[string]map[string]string{}
	for _, g := range manifests.PrometheusRule().Spec.Groups {
		for _, r := range g.Rules {
			rules[r.Alert] = r.Annotations
		}
	}
	fires := map[string]bool{}
	var tests []any
	for _, name := range slices.Sorted(maps.Keys(alertCases)) {
		c := alertCases[name]
		ann, ok := rules[c.alert]
		if !ok {
			t.Fatalf("%s: no alert %s", name, c.alert)
		}
		var exp []any
		if c.labels != nil {
			fires[c.alert] = true
			exp = append(exp, map[string]any{"exp_labels": c.labels, "exp_annotations": annotations(t, ann, c.labels, c.value)})
		}
		var input []any
		for _, s := range c.input {
			input = append(input, map[string]any{"series": s.Series, "values": s.Values})
		}
		tests = append(tests, map[string]any{
			"name": name, "interval": "1m", "input_series": input,
			"alert_rule_test": []any{map[string]any{"eval_time": c.at, "alertname": c.alert, "exp_alerts": exp}},
		})
	}
	for alert := range rules {
		if !fires[alert] {
			t.Errorf("%s: no case shows it firing", alert)
		}
	}
	b, err := json.Marshal(map[string]any{"rule_files": []string{"rules.yaml"}, "evaluation_interval": "1m", "tests": tests})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "rules_test.yaml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := promtool(t, "test", "rules", p)
	t.Logf("%s", out)
}

// Metrics the rules and the dashboard may name that the webhook does not export. The
// apiserver's are checked against a real apiserver's /metrics in test/e2e.
var external = map[string]string{
	"up": "Prometheus, for every target it scrapes",
	"apiserver_admission_webhook_fail_open_count":                 "kube-apiserver (k8s.io/apiserver/pkg/admission/metrics)",
	"apiserver_admission_webhook_rejection_count":                 "kube-apiserver (k8s.io/apiserver/pkg/admission/metrics)",
	"apiserver_admission_webhook_request_total":                   "kube-apiserver (k8s.io/apiserver/pkg/admission/metrics)",
	"apiserver_admission_match_condition_evaluation_errors_total": "kube-apiserver (k8s.io/apiserver/pkg/admission/metrics)",
	"kube_node_status_capacity":                                   "kube-state-metrics (docs/metrics/cluster/node-metrics.md)",
	"kube_node_created":                                           "kube-state-metrics (docs/metrics/cluster/node-metrics.md)",
}

// exported is every series name the webhook's registry gives: a histogram's too.
func exported() map[string]bool {
	names := map[string]bool{}
	for _, f := range manifests.ExportedMetrics() {
		names[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

// metricNames parses a PromQL expression and returns the metric names it selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// grafanaVars stands in for the variables Grafana replaces before a query reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", "gpu-label-webhook")

// dashboardQueries are the PromQL of every panel's targets and of the query variables.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := manifests.Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Type  string
				Query any
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	queries := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			queries[fmt.Sprintf("panel %q target %d", p.Title, i)] = grafanaVars.Replace(tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+), *\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: query %v is not label_values(metric, label)", v.Name, v.Query)
		}
		queries["variable "+v.Name] = m[1]
	}
	if len(queries) < 10 {
		t.Fatalf("only %d queries read from the dashboard", len(queries))
	}
	return queries
}

// Every metric a panel or a rule names is one the webhook exports or one of the few known
// others; a renamed metric fails here, not silently on an empty panel.
func TestQueriesNameExportedMetrics(t *testing.T) {
	have := exported()
	queries := dashboardQueries(t)
	for _, g := range manifests.PrometheusRule().Spec.Groups {
		for _, r := range g.Rules {
			queries["alert "+r.Alert] = r.Expr.String()
		}
	}
	used := map[string]bool{}
	for where, q := range queries {
		names := metricNames(t, q)
		if len(names) == 0 {
			t.Errorf("%s names no metric: %s", where, q)
		}
		for _, n := range names {
			used[n] = true
			if !have[n] && external[n] == "" {
				t.Errorf("%s names %s, which the webhook does not export", where, n)
			}
		}
	}
	for n := range external {
		if !used[n] {
			t.Errorf("%s is listed as used but nothing names it", n)
		}
	}
	// The dashboard shows each of the webhook's metrics.
	for _, f := range manifests.ExportedMetrics() {
		shown := false
		for n := range used {
			shown = shown || strings.HasPrefix(n, f.GetName())
		}
		if !shown {
			t.Errorf("no panel or rule shows %s", f.GetName())
		}
	}
}
