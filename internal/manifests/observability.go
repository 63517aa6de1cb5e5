package manifests

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// What ships with the install to operate it: the ServiceMonitor and PrometheusRule, the
// Grafana dashboard and the NetworkPolicy. Each is optional: a chart value, and a kustomize
// component under manifests/components.

// Names of the observability objects.
const (
	RuleName          = Name
	DashboardName     = Name + "-dashboard"
	NetworkPolicyName = Name
	// DashboardLabel is the label Grafana's dashboard sidecar (the Grafana chart's and
	// kube-prometheus-stack's) looks for; "1" is the value kube-prometheus-stack selects.
	DashboardLabel      = "grafana_dashboard"
	DashboardLabelValue = "1"
	DashboardFile       = Name + ".json"
	// MetricsNamespace is the namespace allowed to scrape /metrics by default: where
	// kube-prometheus and kube-prometheus-stack's guides install Prometheus.
	MetricsNamespace = "monitoring"
	// ScrapeInterval is the ServiceMonitor's default.
	ScrapeInterval = "30s"
)

// Job is the job label Prometheus gives the webhook's targets: the ServiceMonitor's default,
// the Service's name.
const Job = Name

// port returns the name of the webhook container's port for a purpose, so that a policy or
// a monitor follows the Deployment's ports wherever they are numbered.
func port(name string) string {
	for _, p := range Deployment().Spec.Template.Spec.Containers[0].Ports {
		if p.Name == name {
			return p.Name
		}
	}
	panic("manifests: the webhook container has no port named " + name)
}

// ServiceMonitor has prometheus-operator scrape every webhook pod's /metrics.
func ServiceMonitor() *monitoringv1.ServiceMonitor {
	return &monitoringv1.ServiceMonitor{
		TypeMeta:   metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "ServiceMonitor"},
		ObjectMeta: meta(Name),
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector:  metav1.LabelSelector{MatchLabels: appLabels},
			Endpoints: []monitoringv1.Endpoint{{Port: port("metrics"), Interval: ScrapeInterval}},
		},
	}
}

// webhookNames is a regular expression matching the names the apiserver gives our webhooks
// in its own metrics (the webhook's name, not the configuration's).
func webhookNames() string {
	return regexp.QuoteMeta(Mutating("", nil).Webhooks[0].Name) + "|" + regexp.QuoteMeta(Audit("", nil).Webhooks[0].Name)
}

// ksmGPUResources matches kube-state-metrics' resource label for GPU capacity: the resource
// name with every character outside [a-zA-Z0-9_] made '_' (nvidia.com/gpu: nvidia_com_gpu).
// KubeVirt's resources named for a model (nvidia.com/A100_...) are left out.
func ksmGPUResources() string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '_'
		}, s)
	}
	var alts []string
	for _, n := range gpuinfo.GPUResourceNames() {
		alts = append(alts, clean(n))
	}
	for _, p := range gpuinfo.GPUResourcePrefixes() {
		alts = append(alts, clean(p)+".+")
	}
	return strings.Join(alts, "|")
}

// unlabeledReasons are the findings of a GPU node left without the label: the model is known
// but the install only warns, or the model is not known at all.
var unlabeledReasons = []admit.Reason{admit.ReasonLabelMissing, admit.ReasonModelUnknown}

func reasonsRegexp(rs []admit.Reason) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, "|")
}

// Rule groups: the first works from the webhook's own metrics (and kube-state-metrics where
// it runs), which every cluster can scrape; the second needs the apiserver's, which managed
// control planes often do not expose.
const (
	RuleGroupWebhook   = Name
	RuleGroupAPIServer = Name + ".apiserver"
)

// PrometheusRule alerts when the webhook is down or not called, when the apiserver fails open
// or is rejected calling it, when its config is invalid, and when GPU nodes stay unlabeled.
// Every expression is checked by promtool and has a unit test (test/tools/prometheus).
func PrometheusRule() *monitoringv1.PrometheusRule {
	ns := fmt.Sprintf(`namespace=%q`, Namespace)
	own := fmt.Sprintf(`job=%q, %s`, Job, ns)
	alert := func(name, expr string, forDur monitoringv1.Duration, severity, summary, description string) monitoringv1.Rule {
		r := monitoringv1.Rule{
			Alert:       name,
			Expr:        intstr.FromString(expr),
			Labels:      map[string]string{"severity": severity},
			Annotations: map[string]string{"summary": summary, "description": description},
		}
		if forDur != "" {
			r.For = &forDur
		}
		return r
	}
	return &monitoringv1.PrometheusRule{
		TypeMeta:   metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "PrometheusRule"},
		ObjectMeta: meta(RuleName),
		Spec: monitoringv1.PrometheusRuleSpec{Groups: []monitoringv1.RuleGroup{
			{Name: RuleGroupWebhook, Rules: []monitoringv1.Rule{
				alert("GPULabelWebhookDown",
					fmt.Sprintf(`sum by (job, namespace) (up{%s}) == 0 or absent(up{%s})`, own, own), "5m", "warning",
					"No gpu-label-webhook pod has been scraped up for 5 minutes.",
					"The apiserver fails open without the webhook: nodes join and report GPUs without skypilot.co/accelerator, "+
						"and SkyPilot cannot place GPU tasks on them. Check the Deployment (kubectl -n {{ $labels.namespace }} get pods) "+
						"and that Prometheus scrapes it (job "+Job+")."),
				alert("GPULabelWebhookConfigInvalid",
					fmt.Sprintf(`gpu_label_webhook_config_valid{%s} == 0`, own), "5m", "warning",
					"gpu-label-webhook has rejected its ConfigMap, or not read it yet.",
					"Pod {{ $labels.pod }} has no valid read of the ConfigMap "+admit.DefaultConfigName+" in force: it rejected it "+
						"and keeps the last good config (or the warn-only default), or it cannot reach the apiserver to read it. "+
						"Admission warnings and the pod's log say which; fix the ConfigMap."),
				alert("GPULabelWebhookGPUNodesUnlabeled",
					fmt.Sprintf(`sum by (namespace, reason) (increase(gpu_label_webhook_findings_total{%s, reason=~%q}[30m])) > 0`,
						own, reasonsRegexp(unlabeledReasons)), "30m", "info",
					"GPU nodes keep joining or reporting without skypilot.co/accelerator ({{ $labels.reason }}).",
					"For 30 minutes the webhook has seen GPU nodes it leaves unlabeled. "+string(admit.ReasonLabelMissing)+
						": it knows the model but only warns; opt in with autoLabel=true in the ConfigMap "+admit.DefaultConfigName+
						" or label them. "+string(admit.ReasonModelUnknown)+": it cannot name the model; the nodes' Events "+
						"(kubectl get events -n "+EventsNamespace+" --field-selector reason="+string(admit.ReasonModelUnknown)+") say what it saw."),
				// A GPU node that joins always reaches the webhook at least once (its CREATE, or
				// the status report that brings its GPUs), so new GPU nodes and no request at all
				// mean the apiserver does not call it. Needs kube-state-metrics; silent without it.
				alert("GPULabelWebhookNotCalled",
					fmt.Sprintf(`count(count by (node) (kube_node_status_capacity{resource=~%q} > 0 and on (node) (time() - kube_node_created) < 3600)) > 0 `+
						`unless on () sum(increase(gpu_label_webhook_requests_total{%s}[1h])) > 0`, ksmGPUResources(), own),
					"15m", "warning",
					"GPU nodes joined in the last hour and gpu-label-webhook received no admission request.",
					"kube-state-metrics shows {{ $value }} GPU nodes created in the last hour, yet the webhook counted no request: "+
						"the apiserver is not calling it. Check that the MutatingWebhookConfiguration "+MutatingName+
						" (or the audit one, "+AuditName+") exists and that `webhook check` passes."),
			}},
			{Name: RuleGroupAPIServer, Rules: []monitoringv1.Rule{
				alert("GPULabelWebhookFailingOpen",
					fmt.Sprintf(`sum by (name) (increase(apiserver_admission_webhook_fail_open_count{name=~%q}[10m])) > 0`, webhookNames()),
					"", "warning",
					"The apiserver could not call {{ $labels.name }} and let node writes through without it.",
					"In the last 10 minutes the apiserver failed open calling {{ $labels.name }} (timeouts, "+
						"connection or TLS errors): those node writes went through unlabeled. The apiserver's log names the error."),
				alert("GPULabelWebhookCallsRejected",
					fmt.Sprintf(`sum by (name, error_type) (increase(apiserver_admission_webhook_rejection_count{name=~%q}[10m])) > 0`, webhookNames()),
					"", "critical",
					"Node writes were rejected by or because of {{ $labels.name }}.",
					"The webhook never denies a node, so a rejection ({{ $labels.error_type }}) means its failurePolicy was changed "+
						"to Fail and the calls fail: kubelets cannot update their Nodes. Set failurePolicy back to Ignore."),
				alert("GPULabelWebhookNotCalledMatchConditionErrors",
					fmt.Sprintf(`sum by (name) (increase(apiserver_admission_match_condition_evaluation_errors_total{name=~%q}[10m])) > 0`, webhookNames()),
					"", "warning",
					"The apiserver skips {{ $labels.name }}: its match conditions fail to evaluate.",
					"A match condition that errors skips the webhook (failurePolicy Ignore), so those node writes are not seen. "+
						"Reinstall the generated webhook configuration."),
			}},
		}},
	}
}

// NetworkPolicy admits the apiserver to the serving port and the metrics namespace to
// /metrics, and nothing else in. The apiserver is no pod, so no pod or namespace selector
// matches it: the serving port is open to every address unless CIDRs are given, because a
// policy that shut the apiserver out would fail open, silently. Egress is left alone: the
// webhook must reach the apiserver, whose address no selector matches either. The kubelet's
// probes need no rule: traffic from a pod's own node is always allowed.
func NetworkPolicy(metricsNamespace string, apiserverCIDRs []string) *networkingv1.NetworkPolicy {
	tcp := ptr.To(corev1.ProtocolTCP)
	serving := networkingv1.NetworkPolicyIngressRule{
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromString(port("https")))}},
	}
	for _, c := range apiserverCIDRs {
		serving.From = append(serving.From, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c}})
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: meta(NetworkPolicyName),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: appLabels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				serving,
				{
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromString(port("metrics")))}},
					From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
						MatchLabels: map[string]string{corev1.LabelMetadataName: metricsNamespace},
					}}},
				},
			},
		},
	}
}

// observabilityFiles are the kustomize components (manifests/components), each added to an
// install with `components:`, and the overlay that adds all three to the cert-manager one.
func observabilityFiles(files map[string][]byte) error {
	component := func(dir, text string) {
		files[path.Join("components", dir, "kustomization.yaml")] = []byte(header + text)
	}
	b, err := Marshal(ServiceMonitor(), PrometheusRule())
	if err != nil {
		return err
	}
	files["components/monitoring/monitoring.yaml"] = b
	component("monitoring", `# The ServiceMonitor and the PrometheusRule (prometheus-operator's CRDs must be installed).
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
resources:
  - monitoring.yaml
`)
	j, err := Dashboard()
	if err != nil {
		return err
	}
	files["components/grafana-dashboard/"+DashboardFile] = j
	component("grafana-dashboard", fmt.Sprintf(`# The Grafana dashboard in a ConfigMap Grafana's dashboard sidecar picks up by its label.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
configMapGenerator:
  - name: %s
    namespace: %s
    files:
      - %s
    options:
      disableNameSuffixHash: true
      labels:
        app.kubernetes.io/name: %s
        %s: "%s"
`, DashboardName, Namespace, DashboardFile, Name, DashboardLabel, DashboardLabelValue))
	if b, err = Marshal(NetworkPolicy(MetricsNamespace, nil)); err != nil {
		return err
	}
	files["components/network-policy/network-policy.yaml"] = b
	component("network-policy", fmt.Sprintf(`# Ingress to the webhook's pods: the serving port from any address (the apiserver is no pod,
# and a policy that shut it out would fail open silently), /metrics from namespace %s.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
resources:
  - network-policy.yaml
`, MetricsNamespace))
	files["overlays/observability/kustomization.yaml"] = []byte(header + `# The cert-manager install with the ServiceMonitor, the PrometheusRule, the Grafana dashboard
# and the NetworkPolicy. Add any of the components to another install the same way.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../cert-manager
components:
  - ../../components/monitoring
  - ../../components/grafana-dashboard
  - ../../components/network-policy
`)
	return nil
}

// observabilityValues are the chart's values for what this file makes.
func observabilityValues() map[string]any {
	return map[string]any{
		"prometheusRule": map[string]any{"enabled": false, "labels": map[string]any{}},
		"grafanaDashboard": map[string]any{
			"enabled": false, "namespace": "", "labels": map[string]any{DashboardLabel: DashboardLabelValue}, "annotations": map[string]any{},
		},
		"networkPolicy": map[string]any{"enabled": false, "metricsNamespace": MetricsNamespace, "apiserverCIDRs": []any{}},
	}
}

func observabilitySchema() map[string]any {
	obj := func(desc string, props map[string]any) map[string]any {
		return map[string]any{"type": "object", "additionalProperties": false, "description": desc, "properties": props}
	}
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	strMap := func(desc string) map[string]any {
		return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}, "description": desc}
	}
	boolean := map[string]any{"type": "boolean"}
	return map[string]any{
		"prometheusRule": obj("alerts for prometheus-operator (its CRDs must be installed)", map[string]any{
			"enabled": boolean,
			"labels":  strMap("labels your Prometheus selects rules by (kube-prometheus-stack: release: <its release>)"),
		}),
		"grafanaDashboard": obj("the Grafana dashboard in a ConfigMap for Grafana's dashboard sidecar", map[string]any{
			"enabled":     boolean,
			"namespace":   str("namespace of the ConfigMap; empty: the release's (set Grafana's when its sidecar watches only its own)"),
			"labels":      strMap("labels the sidecar looks for (default " + DashboardLabel + ": \"" + DashboardLabelValue + "\")"),
			"annotations": strMap("annotations, e.g. the sidecar's folder annotation"),
		}),
		"networkPolicy": obj("ingress to the webhook's pods: the serving port from the apiserver, /metrics from one namespace", map[string]any{
			"enabled":          boolean,
			"metricsNamespace": str("the namespace allowed to scrape /metrics (where Prometheus runs)"),
			"apiserverCIDRs": map[string]any{"type": "array", "items": map[string]any{"type": "string"},
				"description": "CIDRs the apiserver calls the webhook from; empty: any address (the apiserver is no pod, and a policy that shuts it out fails open silently)"},
		}),
	}
}

// observabilityTemplates are the chart's templates for what this file makes.
func observabilityTemplates(files map[string][]byte) error {
	b, err := Marshal(ServiceMonitor())
	if err != nil {
		return err
	}
	sm, err := applyEdits(releaseNamespace(string(b)), []edit{
		{old: "- interval: " + ScrapeInterval, new: []string{"- interval: {{ .Values.serviceMonitor.interval }}"}},
	})
	if err != nil {
		return err
	}
	if sm, err = valuesLabels(sm, "serviceMonitor"); err != nil {
		return err
	}
	files["templates/servicemonitor.yaml"] = []byte(serverOnly(enabledOnly("serviceMonitor", sm)))

	// The rules select the release's namespace, and helm must leave Prometheus's own
	// {{ $labels... }} templates in the annotations alone.
	pr := PrometheusRule()
	for g := range pr.Spec.Groups {
		for i, r := range pr.Spec.Groups[g].Rules {
			r.Expr = intstr.FromString(strings.ReplaceAll(r.Expr.String(), `namespace="`+Namespace+`"`, `namespace="{{ .Release.Namespace }}"`))
			for k, v := range r.Annotations {
				r.Annotations[k] = helmLiteral(v)
			}
			pr.Spec.Groups[g].Rules[i] = r
		}
	}
	if b, err = Marshal(pr); err != nil {
		return err
	}
	rule, err := valuesLabels(releaseNamespace(string(b)), "prometheusRule")
	if err != nil {
		return err
	}
	files["templates/prometheusrule.yaml"] = []byte(serverOnly(enabledOnly("prometheusRule", rule)))

	j, err := Dashboard()
	if err != nil {
		return err
	}
	files["dashboards/"+DashboardFile] = j
	files["templates/grafana-dashboard.yaml"] = []byte(header + `{{- if .Values.grafanaDashboard.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: ` + DashboardName + `
  namespace: {{ .Values.grafanaDashboard.namespace | default .Release.Namespace }}
  labels:
    app.kubernetes.io/name: ` + Name + `
    {{- with .Values.grafanaDashboard.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.grafanaDashboard.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
data:
  ` + DashboardFile + `: |
    {{- .Files.Get "dashboards/` + DashboardFile + `" | nindent 4 }}
{{- end }}
`)

	if b, err = Marshal(NetworkPolicy(MetricsNamespace, nil)); err != nil {
		return err
	}
	servingPort := "    - port: " + port("https") + "\n      protocol: TCP\n"
	np := releaseNamespace(string(b))
	if strings.Count(np, servingPort) != 1 {
		return fmt.Errorf("chart: the NetworkPolicy's serving port is not where it was")
	}
	np = strings.Replace(np, servingPort, servingPort+`    {{- with .Values.networkPolicy.apiserverCIDRs }}
    from:
    {{- range . }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
    {{- end }}
`, 1)
	if np, err = applyEdits(np, []edit{{old: corev1.LabelMetadataName + ": " + MetricsNamespace,
		new: []string{corev1.LabelMetadataName + ": {{ .Values.networkPolicy.metricsNamespace | quote }}"}}}); err != nil {
		return err
	}
	files["templates/networkpolicy.yaml"] = []byte(serverOnly(enabledOnly("networkPolicy", np)))
	return nil
}

// valuesLabels adds the values' <key>.labels to an object's own labels.
func valuesLabels(text, key string) (string, error) {
	own := "  labels:\n    app.kubernetes.io/name: " + Name + "\n"
	if strings.Count(text, own) != 1 {
		return "", fmt.Errorf("chart: the labels of the %s template are not where they were", key)
	}
	return strings.Replace(text, own, own+"    {{- with .Values."+key+".labels }}\n    {{- toYaml . | nindent 4 }}\n    {{- end }}\n", 1), nil
}

// enabledOnly renders a template only when the values' <key>.enabled is true.
func enabledOnly(key, text string) string {
	return header + "{{- if .Values." + key + ".enabled }}\n" + strings.TrimPrefix(text, header) + "{{- end }}\n"
}

// helmLiteral keeps Prometheus's own {{ ... }} templates from being read by helm: each
// becomes a helm string literal that renders as itself.
func helmLiteral(text string) string {
	re := regexp.MustCompile(`\{\{.*?\}\}`)
	return re.ReplaceAllStringFunc(text, func(m string) string { return "{{`" + m + "`}}" })
}

// AlertsReference is the README's table of the shipped alerts.
func AlertsReference() string {
	var b strings.Builder
	b.WriteString("| alert | metrics | severity | for | fires when |\n|---|---|---|---|---|\n")
	for _, g := range PrometheusRule().Spec.Groups {
		for _, r := range g.Rules {
			from := "the webhook's"
			if g.Name == RuleGroupAPIServer {
				from = "the apiserver's"
			}
			forDur := "at once"
			if r.For != nil {
				forDur = string(*r.For)
			}
			if strings.Contains(r.Expr.String(), "kube_node_") {
				from = "the webhook's and kube-state-metrics'"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.Alert, from, r.Labels["severity"], forDur,
				strings.NewReplacer("{{ $labels.", "<", " }}", ">", "|", "\\|").Replace(r.Annotations["summary"]))
		}
	}
	return b.String()
}
