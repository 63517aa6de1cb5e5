package manifests

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
)

// The Helm chart is a rendering of the same Go values as manifests/: each template is an
// object marshalled here with a few lines turned into template expressions. A test renders it
// with helm and compares it with the cert-manager overlay.

// ChartDir is where the chart lives in the repository.
const ChartDir = "charts/" + Name

// ChartVersion is the chart's own version; appVersion follows the binary's releases.
const ChartVersion = "0.1.0"

// chartValues are the chart's default values; values.schema.json describes them.
func chartValues(r chartRelease) map[string]any {
	d := Deployment()
	c := d.Spec.Template.Spec.Containers[0]
	config := map[string]any{}
	for _, k := range admit.ConfigKeys {
		config[k.Key] = ""
	}
	config[admit.KeyAutoLabel] = "false"
	values := map[string]any{
		// The tag defaults to the chart's appVersion, as Helm users expect.
		"image":             map[string]any{"registry": "", "repository": r.repository, "tag": "", "digest": "", "pullPolicy": "IfNotPresent"},
		"replicas":          *d.Spec.Replicas,
		"resources":         c.Resources,
		"nodeSelector":      map[string]any{},
		"tolerations":       []any{},
		"affinity":          map[string]any{},
		"priorityClassName": d.Spec.Template.Spec.PriorityClassName,
		"podLabels":         map[string]any{},
		"podAnnotations":    map[string]any{},
		"config":            config,
		"certificates": map[string]any{
			"mode":       "cert-manager",
			"secretName": TLSSecretName,
			"caBundle":   "",
		},
		"auditOnly":      false,
		"policyMode":     false,
		"serviceMonitor": map[string]any{"enabled": false, "interval": ScrapeInterval, "labels": map[string]any{}},
	}
	maps.Copy(values, installValues())
	maps.Copy(values, observabilityValues())
	return values
}

// chartSchema makes a typo in values fail at install: every object says which keys it has.
// Descriptions become the comments in values.yaml.
func chartSchema() map[string]any {
	str := map[string]any{"type": "string"}
	free := map[string]any{"type": "object"}
	configProps := map[string]any{}
	for _, k := range admit.ConfigKeys {
		// --set config.autoLabel=true gives a boolean: the template quotes every value.
		configProps[k.Key] = map[string]any{"type": []string{"string", "boolean"}, "description": k.Doc}
	}
	props := map[string]any{
		"image": obj(map[string]any{
			"registry":   describe(str, "registry host (and path) put before the repository, e.g. registry.example.com/my-org; empty: the repository names it"),
			"repository": str,
			"tag":        describe(str, "empty: the chart's appVersion"),
			"digest":     describe(map[string]any{"type": "string", "pattern": "^(sha256:[a-f0-9]{64})?$"}, "sha256:...; when set the image is pulled by digest and the tag is not used"),
			"pullPolicy": map[string]any{"type": "string", "enum": []string{"Always", "IfNotPresent", "Never"}},
		}),
		"replicas":          map[string]any{"type": "integer", "minimum": 0},
		"resources":         free,
		"nodeSelector":      map[string]any{"type": "object", "additionalProperties": str},
		"tolerations":       map[string]any{"type": "array"},
		"affinity":          free,
		"priorityClassName": describe(str, "keeps the webhook from eviction under node pressure; resourceQuota makes it admissible outside kube-system"),
		"podLabels":         map[string]any{"type": "object", "additionalProperties": str},
		"podAnnotations":    map[string]any{"type": "object", "additionalProperties": str},
		"config":            describe(obj(configProps), "the webhook's ConfigMap, keys as in the README's config reference; empty values are left out"),
		"certificates": obj(map[string]any{
			"mode":       describe(map[string]any{"type": "string", "enum": []string{"cert-manager", "self-signed", "secret"}}, "cert-manager issues and rotates the serving certificate; self-signed makes a CA at install and keeps it across upgrades; secret uses secretName and caBundle"),
			"secretName": str,
			"caBundle":   map[string]any{"type": "string", "description": "base64 PEM CA that signed the Secret's certificate (mode secret)"},
		}),
		"auditOnly":      describe(map[string]any{"type": "boolean"}, "the validating webhook only: warnings and Events, never a change"),
		"policyMode":     map[string]any{"type": "boolean", "description": "admission policies the apiserver runs instead of the webhook (Kubernetes 1.36+)"},
		"serviceMonitor": obj(map[string]any{"enabled": map[string]any{"type": "boolean"}, "interval": str, "labels": map[string]any{"type": "object", "additionalProperties": str}}),
	}
	maps.Copy(props, installSchema())
	maps.Copy(props, observabilitySchema())
	return map[string]any{
		"$schema": "https://json-schema.org/draft-07/schema#",
		"type":    "object", "additionalProperties": false,
		"properties": props,
	}
}

func obj(props map[string]any) map[string]any {
	return map[string]any{"type": "object", "additionalProperties": false, "properties": props}
}

// describe is s with a description, for the schema and for values.yaml's comments.
func describe(s map[string]any, doc string) map[string]any {
	out := maps.Clone(s)
	out["description"] = doc
	return out
}

// ChartFiles renders the chart's files, keyed by path under ChartDir.
func ChartFiles() (map[string][]byte, error) { return chartFiles(devChart) }

func chartFiles(r chartRelease) (map[string][]byte, error) {
	files, err := chartExampleFiles()
	if err != nil {
		return nil, err
	}
	chart := fmt.Sprintf(`apiVersion: v2
name: %s
description: Labels GPU nodes with their accelerator model (skypilot.co/accelerator) as they join, or warns with the exact fix
type: application
version: %s
appVersion: %q
kubeVersion: ">=1.30.0-0"
home: https://github.com/gpu-label-webhook/gpu-label-webhook
sources:
  - https://github.com/gpu-label-webhook/gpu-label-webhook
keywords: [gpu, nvidia, amd, skypilot, admission-webhook, node-labels]
annotations:
  artifacthub.io/license: Apache-2.0
  artifacthub.io/category: integration-delivery
  artifacthub.io/prerelease: "%t"
  artifacthub.io/images: |
    - name: webhook
      image: %s:%s
  artifacthub.io/links: |
    - name: source
      url: https://github.com/gpu-label-webhook/gpu-label-webhook
`, Name, r.version, r.tag, r.prerelease, r.repository, r.tag)
	files["Chart.yaml"] = []byte(header + chart)
	values, err := yaml.Marshal(chartValues(r))
	if err != nil {
		return nil, err
	}
	files["values.yaml"] = append([]byte(header+"# Every key is described by values.schema.json; config holds the ConfigMap's keys (see the README).\n"),
		commentValues(string(values), chartSchema())...)
	schema, err := json.MarshalIndent(chartSchema(), "", "  ")
	if err != nil {
		return nil, err
	}
	files["values.schema.json"] = append(schema, '\n')

	templates := map[string][]any{
		"serviceaccount.yaml": baseObjects("ServiceAccount"),
		"rbac.yaml":           slices.Concat(baseObjects("Role"), baseObjects("RoleBinding"), baseObjects("ClusterRole"), baseObjects("ClusterRoleBinding")),
		"pdb.yaml":            baseObjects("PodDisruptionBudget"),
		"service.yaml":        baseObjects("Service"),
	}
	for name, objs := range templates {
		b, err := Marshal(objs...)
		if err != nil {
			return nil, err
		}
		files[path.Join("templates", name)] = []byte(serverOnly(releaseNamespace(string(b))))
	}
	for name, render := range map[string]func() (string, error){
		"deployment.yaml":    deploymentTemplate,
		"webhook.yaml":       webhookTemplate,
		"resourcequota.yaml": quotaTemplate,
	} {
		text, err := render()
		if err != nil {
			return nil, err
		}
		files[path.Join("templates", name)] = []byte(serverOnly(text))
	}
	if err := observabilityTemplates(files); err != nil {
		return nil, err
	}
	// The ConfigMap is the webhook's config and the policies' params alike.
	text, err := configMapTemplate()
	if err != nil {
		return nil, err
	}
	files["templates/configmap.yaml"] = []byte(text)
	audit, err := Marshal(AuditPolicy()...)
	if err != nil {
		return nil, err
	}
	label, err := Marshal(LabelPolicy()...)
	if err != nil {
		return nil, err
	}
	files["templates/policy.yaml"] = []byte(header + "{{- if .Values.policyMode }}\n" + strings.TrimPrefix(releaseNamespace(string(audit)), header) +
		"{{- if not .Values.auditOnly }}\n---\n" + strings.TrimPrefix(releaseNamespace(string(label)), header) + "{{- end }}\n{{- end }}\n")
	if err := installTemplates(files); err != nil {
		return nil, err
	}
	// Every object carries Helm's labels, commonLabels and commonAnnotations.
	for name, text := range files {
		if strings.HasPrefix(name, "templates/") && strings.HasSuffix(name, ".yaml") {
			out, err := commonMetadata(string(text))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			files[name] = []byte(out)
		}
	}
	return files, nil
}

// baseObjects are the default base's objects of a kind.
func baseObjects(kind string) []any {
	var out []any
	for _, o := range Base() {
		if reflect.TypeOf(o).Elem().Name() == kind {
			out = append(out, o)
		}
	}
	return out
}

// serverOnly renders a template of the webhook's server only outside policy mode.
func serverOnly(text string) string {
	return header + "{{- if not .Values.policyMode }}\n" + strings.TrimPrefix(text, header) + "{{- end }}\n"
}

// releaseNamespace puts the release's namespace where the manifests name theirs.
func releaseNamespace(text string) string {
	r := strings.NewReplacer(
		"namespace: "+Namespace+"\n", "namespace: {{ .Release.Namespace }}\n",
		"."+Namespace+".svc", ".{{ .Release.Namespace }}.svc",
		"inject-ca-from: "+Namespace+"/", "inject-ca-from: {{ .Release.Namespace }}/",
	)
	return r.Replace(text)
}

// replaceLine swaps the one line equal to old (ignoring its indent) for the lines of new,
// each indented as old was; it fails when old is not there exactly once.
func replaceLine(text, old string, new ...string) (string, error) {
	lines := strings.Split(text, "\n")
	found := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == old {
			if found >= 0 {
				return "", fmt.Errorf("chart: line %q twice", old)
			}
			found = i
		}
	}
	if found < 0 {
		return "", fmt.Errorf("chart: line %q not found", old)
	}
	indent := lines[found][:len(lines[found])-len(strings.TrimLeft(lines[found], " "))]
	var out []string
	for _, n := range new {
		out = append(out, indent+n)
	}
	lines = append(lines[:found], append(out, lines[found+1:]...)...)
	return strings.Join(lines, "\n"), nil
}

// replaceBlock swaps a line and the more indented lines under it for new.
func replaceBlock(text, old string, new ...string) (string, error) {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		// An old that starts with spaces must match the indent too.
		if strings.TrimSpace(l) != old && l != old {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		end := i + 1
		for end < len(lines) && len(lines[end])-len(strings.TrimLeft(lines[end], " ")) > indent && strings.TrimSpace(lines[end]) != "" {
			end++
		}
		var out []string
		for _, n := range new {
			out = append(out, l[:indent]+n)
		}
		return strings.Join(append(lines[:i], append(out, lines[end:]...)...), "\n"), nil
	}
	return "", fmt.Errorf("chart: block %q not found", old)
}

type edit struct {
	block bool
	old   string
	new   []string
}

func applyEdits(text string, edits []edit) (string, error) {
	var err error
	for _, e := range edits {
		if e.block {
			text, err = replaceBlock(text, e.old, e.new...)
		} else {
			text, err = replaceLine(text, e.old, e.new...)
		}
		if err != nil {
			return "", err
		}
	}
	return text, nil
}

func deploymentTemplate() (string, error) {
	d := Deployment()
	b, err := Marshal(d)
	if err != nil {
		return "", err
	}
	// The pod template's labels are the selector's plus the values' podLabels.
	podMeta := "  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: " + Name + "\n"
	text := releaseNamespace(string(b))
	if strings.Count(text, podMeta) != 1 {
		return "", fmt.Errorf("chart: the pod template's metadata is not where it was")
	}
	text = strings.Replace(text, podMeta, podMeta+`        {{- with .Values.commonLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
`, 1)
	// What the host-network variant adds, from its own objects.
	hn := Variant{HostNetwork: true}.Deployment()
	strategy, err := yamlLines(map[string]any{"strategy": hn.Spec.Strategy})
	if err != nil {
		return "", err
	}
	hostNet, err := yamlLines(map[string]any{"hostNetwork": hn.Spec.Template.Spec.HostNetwork, "dnsPolicy": hn.Spec.Template.Spec.DNSPolicy})
	if err != nil {
		return "", err
	}
	podSpec := []string{"{{- with .Values.priorityClassName }}", "priorityClassName: {{ . }}", "{{- end }}", "{{- if .Values.hostNetwork.enabled }}"}
	podSpec = append(append(podSpec, hostNet...), "{{- end }}")
	for _, key := range []string{"imagePullSecrets", "nodeSelector", "tolerations", "affinity"} {
		podSpec = append(podSpec, "{{- with .Values."+key+" }}", key+":", "  {{- toYaml . | nindent 8 }}", "{{- end }}")
	}
	p := PodPorts
	text = strings.Replace(text, header, header+"{{- $ports := include \"gpu-label-webhook.ports\" . | fromYaml }}\n", 1)
	return applyEdits(text, []edit{
		{old: "replicas: 2", new: slices.Concat([]string{"replicas: {{ .Values.replicas }}", "{{- if .Values.hostNetwork.enabled }}"}, strategy, []string{"{{- end }}"})},
		// The env list's last item comes right before image: more items continue the list.
		{old: "image: " + Image, new: []string{"{{- with .Values.extraEnv }}", "{{- toYaml . | nindent 8 }}", "{{- end }}",
			`image: {{ include "gpu-label-webhook.image" . | quote }}`}},
		{old: "imagePullPolicy: IfNotPresent", new: []string{"imagePullPolicy: {{ .Values.image.pullPolicy }}"}},
		{old: fmt.Sprintf("- --port=%d", p.Webhook), new: []string{"- --port={{ $ports.webhook }}"}},
		{old: fmt.Sprintf("- --health-addr=:%d", p.Health), new: []string{"- --health-addr=:{{ $ports.health }}"}},
		{old: fmt.Sprintf("- --metrics-addr=:%d", p.Metrics), new: []string{"- --metrics-addr=:{{ $ports.metrics }}",
			"{{- with .Values.extraArgs }}", "{{- toYaml . | nindent 8 }}", "{{- end }}"}},
		{old: fmt.Sprintf("- containerPort: %d", p.Webhook), new: []string{"- containerPort: {{ $ports.webhook }}"}},
		{old: fmt.Sprintf("- containerPort: %d", p.Metrics), new: []string{"- containerPort: {{ $ports.metrics }}"}},
		{old: fmt.Sprintf("- containerPort: %d", p.Health), new: []string{"- containerPort: {{ $ports.health }}"}},
		{block: true, old: "resources:", new: []string{"resources:", "  {{- toYaml .Values.resources | nindent 10 }}"}},
		// The container's and the pod's, told apart by their indent.
		{block: true, old: "        securityContext:", new: []string{"securityContext:",
			`  {{- include "gpu-label-webhook.securityContext" (list . .Values.containerSecurityContext) | nindent 10 }}`}},
		{block: true, old: "      securityContext:", new: []string{"securityContext:",
			`  {{- include "gpu-label-webhook.securityContext" (list . .Values.podSecurityContext) | nindent 8 }}`}},
		{old: "priorityClassName: " + PriorityClass, new: podSpec},
		{old: "secretName: " + TLSSecretName, new: []string{"secretName: {{ .Values.certificates.secretName }}"}},
	})
}

func configMapTemplate() (string, error) {
	b, err := Marshal(baseObjects("ConfigMap")...)
	if err != nil {
		return "", err
	}
	return applyEdits(releaseNamespace(string(b)), []edit{
		{block: true, old: "data:", new: []string{"data:",
			"  {{- range $key, $value := .Values.config }}", "  {{- if ne (toString $value) \"\" }}",
			"  {{ $key }}: {{ toString $value | quote }}", "  {{- end }}", "  {{- end }}"}},
	})
}

// webhookTemplate renders the webhook registration for the certificate mode, in one file so
// that a CA made at install reaches both the Secret and the caBundle.
func webhookTemplate() (string, error) {
	certs, err := Marshal(CertManager()...)
	if err != nil {
		return "", err
	}
	mutating, err := Marshal(Mutating("", nil))
	if err != nil {
		return "", err
	}
	audit, err := Marshal(Audit("", nil))
	if err != nil {
		return "", err
	}
	caBundle := []string{"{{- if ne .Values.certificates.mode \"cert-manager\" }}", "caBundle: {{ $caBundle }}", "{{- end }}"}
	var webhooks []string
	for _, w := range []string{string(mutating), string(audit)} {
		w, err := applyEdits(releaseNamespace(w), []edit{{old: "clientConfig:", new: append([]string{"clientConfig:"}, indentAll("  ", caBundle)...)}})
		if err != nil {
			return "", err
		}
		// cainjector's annotation in cert-manager mode, beside the values' commonAnnotations.
		w, err = applyEdits(w, []edit{{old: "labels:", new: []string{
			"{{- $annotations := deepCopy (.Values.commonAnnotations | default dict) }}",
			"{{- if eq .Values.certificates.mode \"cert-manager\" }}",
			"{{- $_ := set $annotations \"" + InjectCAAnnotation + "\" (printf \"%s/" + Name + "-serving\" .Release.Namespace) }}", "{{- end }}",
			"{{- with $annotations }}", "annotations:", "  {{- toYaml . | nindent 4 }}", "{{- end }}", "labels:"}},
			{old: fmt.Sprintf("timeoutSeconds: %d", TimeoutSeconds), new: []string{"timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}"}}})
		if err != nil {
			return "", err
		}
		webhooks = append(webhooks, strings.TrimSuffix(w, "\n"))
	}
	return header + `{{- $caBundle := .Values.certificates.caBundle }}
{{- if eq .Values.certificates.mode "cert-manager" }}
` + strings.TrimPrefix(releaseNamespace(string(certs)), header) + `---
{{- else if eq .Values.certificates.mode "self-signed" }}
{{- /* A CA and serving pair made at install, kept across upgrades once they exist. */}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.certificates.secretName }}
{{- $cert := "" }}{{- $key := "" }}
{{- if and $secret (index $secret.data "ca.crt") }}
{{- $caBundle = index $secret.data "ca.crt" }}{{- $cert = index $secret.data "tls.crt" }}{{- $key = index $secret.data "tls.key" }}
{{- else }}
{{- $ca := genCA "` + Name + `-ca" 3650 }}
{{- $dns := list (printf "` + Name + `.%s.svc" .Release.Namespace) (printf "` + Name + `.%s.svc.cluster.local" .Release.Namespace) }}
{{- $pair := genSignedCert "` + Name + `" nil $dns 365 $ca }}
{{- $caBundle = $ca.Cert | b64enc }}{{- $cert = $pair.Cert | b64enc }}{{- $key = $pair.Key | b64enc }}
{{- end }}
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: {{ .Values.certificates.secretName }}
  namespace: {{ .Release.Namespace }}
  labels:
    app.kubernetes.io/name: ` + Name + `
data:
  ca.crt: {{ $caBundle }}
  tls.crt: {{ $cert }}
  tls.key: {{ $key }}
---
{{- end }}
{{- if not .Values.auditOnly }}
` + strings.TrimPrefix(webhooks[0], header) + `
{{- else }}
` + strings.TrimPrefix(webhooks[1], header) + `
{{- end }}
`, nil
}

func indentAll(prefix string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = prefix + l
	}
	return out
}
