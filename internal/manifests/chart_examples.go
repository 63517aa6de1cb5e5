package manifests

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
)

// chartExample is one documented combination of the chart's values. Each is written to the
// chart's ci/<name>-values.yaml (chart-testing's convention, so ct finds them too), and
// `make verify` lints the chart with it and validates every object it renders against the
// Kubernetes API's schemas (test/tools/helm). A new value goes in with the examples that use it.
type chartExample struct {
	name, doc string
	values    map[string]any
}

var chartExamples = []chartExample{
	{"defaults", "The defaults: cert-manager issues the serving certificate; warn-only until opted in.", map[string]any{}},
	{"self-signed", "No cert-manager: a CA and serving pair made at install, kept across upgrades.",
		map[string]any{"certificates": map[string]any{"mode": "self-signed"}}},
	{"own-certificate", "Your own serving certificate in a Secret, and the CA that signed it.",
		map[string]any{"certificates": map[string]any{"mode": "secret", "secretName": "my-webhook-tls", "caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}}},
	{"audit-only", "The validating webhook only: warnings and Events, never a change.",
		map[string]any{"auditOnly": true}},
	{"policy-mode", "Admission policies the apiserver runs, no server (Kubernetes 1.36+).",
		map[string]any{"policyMode": true}},
	{"policy-mode-audit-only", "The validating admission policy alone.",
		map[string]any{"policyMode": true, "auditOnly": true}},
	{"opted-in", "Labels new GPU nodes, with every ConfigMap key set.",
		map[string]any{"config": map[string]any{
			admit.KeyAutoLabel: true,
			"labelKey":         "skypilot.co/accelerator",
			"nodeSelector":     "node-role.kubernetes.io/gpu",
			"overwrite":        "false",
			"events":           "true",
			"instanceTypes":    "my-gpu-box: {gpu: H100, count: 8}",
		}}},
	{"service-monitor", "A ServiceMonitor for the Prometheus Operator.",
		map[string]any{"serviceMonitor": map[string]any{"enabled": true, "interval": "15s", "labels": map[string]any{"release": "prometheus"}}}},
	{"scheduling", "Image, replicas, resources and placement overridden.",
		map[string]any{
			"image":             map[string]any{"repository": "registry.example/team/gpu-label-webhook", "tag": "v1.2.3", "pullPolicy": "Always"},
			"replicas":          3,
			"resources":         map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "512Mi"}},
			"nodeSelector":      map[string]any{"kubernetes.io/os": "linux"},
			"tolerations":       []any{map[string]any{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}},
			"affinity":          map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "kubernetes.io/arch", "operator": "In", "values": []any{"amd64", "arm64"}}}}}}}},
			"priorityClassName": "",
			"podLabels":         map[string]any{"team": "platform"},
			"podAnnotations":    map[string]any{"example.com/owner": "platform"},
		}},
	{"host-network", "In the node's network, for control planes that cannot reach pod addresses.",
		map[string]any{"hostNetwork": map[string]any{"enabled": true}}},
	{"openshift", "No fixed user or group, for OpenShift's restricted-v2 SCC.",
		map[string]any{"openshift": true}},
	{"no-quota", "No ResourceQuota and no priority class, where kube-system or policy provides for them.",
		map[string]any{"resourceQuota": map[string]any{"enabled": false}, "priorityClassName": ""}},
	{"observability", "Alerts, the dashboard, the ServiceMonitor and the NetworkPolicy.",
		map[string]any{
			"prometheusRule":   map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
			"grafanaDashboard": map[string]any{"enabled": true, "namespace": "monitoring", "annotations": map[string]any{"grafana_folder": "GPU"}},
			"serviceMonitor":   map[string]any{"enabled": true},
			"networkPolicy":    map[string]any{"enabled": true, "apiserverCIDRs": []any{"10.0.0.0/16"}, "metricsNamespace": "monitoring"},
		}},
	{"private-registry", "An image from a private registry by digest, and the pod and server customised.",
		map[string]any{
			"image":                    map[string]any{"registry": "registry.example/team", "repository": "gpu-label-webhook", "digest": "sha256:" + strings.Repeat("ab", 32)},
			"imagePullSecrets":         []any{map[string]any{"name": "regcred"}},
			"commonLabels":             map[string]any{"team": "platform"},
			"commonAnnotations":        map[string]any{"example.com/owner": "platform"},
			"extraArgs":                []any{"--log-level=debug"},
			"extraEnv":                 []any{map[string]any{"name": "GOMAXPROCS", "value": "2"}},
			"podSecurityContext":       map[string]any{"fsGroup": 65532},
			"containerSecurityContext": map[string]any{"readOnlyRootFilesystem": true},
			"ports":                    map[string]any{"webhook": 9443},
			"webhook":                  map[string]any{"timeoutSeconds": 5},
		}},
}

// chartExampleFiles renders the examples, keyed by path in the chart.
func chartExampleFiles() (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, e := range chartExamples {
		path := "ci/" + e.name + "-values.yaml"
		if files[path] != nil {
			return nil, fmt.Errorf("chart example %s twice", e.name)
		}
		b, err := yaml.Marshal(e.values)
		if err != nil {
			return nil, err
		}
		files[path] = append([]byte(header+"# "+e.doc+"\n"), b...)
	}
	return files, nil
}
