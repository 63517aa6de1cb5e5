package manifests

import (
	"fmt"
	"strings"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
)

// The chart's values for where and how the pods run (ports, host network, priority, OpenShift,
// images, security contexts, extra arguments), what Helm users expect of any chart (labels,
// NOTES.txt, a `helm test`), and the templates that read them.

// installValues are those values' defaults.
func installValues() map[string]any {
	return map[string]any{
		"imagePullSecrets":         []any{},
		"ports":                    PodPorts,
		"hostNetwork":              map[string]any{"enabled": false, "ports": HostNetworkPorts},
		"resourceQuota":            map[string]any{"enabled": true, "pods": QuotaPods},
		"openshift":                false,
		"podSecurityContext":       Deployment().Spec.Template.Spec.SecurityContext,
		"containerSecurityContext": containerSecurityContext(),
		"extraArgs":                []any{},
		"extraEnv":                 []any{},
		"commonLabels":             map[string]any{},
		"commonAnnotations":        map[string]any{},
		"webhook":                  map[string]any{"timeoutSeconds": TimeoutSeconds},
	}
}

func installSchema() map[string]any {
	str := map[string]any{"type": "string"}
	port := map[string]any{"type": "integer", "minimum": 1, "maximum": 65535}
	ports := func(doc string) map[string]any {
		return describe(obj(map[string]any{"webhook": port, "metrics": port, "health": port}), doc)
	}
	strMap := map[string]any{"type": "object", "additionalProperties": str}
	return map[string]any{
		"imagePullSecrets": describe(map[string]any{"type": "array", "items": obj(map[string]any{"name": str})},
			"Secrets holding the credentials of a private registry: [{name: regcred}]"),
		"ports": ports("where the server listens in the pods' own network; 10250 is the one port besides 443 that GKE private " +
			"clusters and EKS's minimal node security group open from the control plane to the nodes"),
		"hostNetwork": obj(map[string]any{
			"enabled": describe(map[string]any{"type": "boolean"}, "run in the node's network, for control planes that cannot reach pod "+
				"addresses (EKS with Calico or Cilium in overlay mode). Outside Pod Security baseline and restricted: the namespace must "+
				"enforce privileged. The control plane must reach the nodes on hostNetwork.ports.webhook (on EKS, a node security "+
				"group rule). One replica per node. GKE Autopilot refuses it"),
			"ports": ports("used instead of ports with hostNetwork: off the kubelet's 10250 and the other node components' ports"),
		}),
		"resourceQuota": obj(map[string]any{
			"enabled": describe(map[string]any{"type": "boolean"}, "a quota admitting priorityClassName's pods in this namespace, "+
				"where the apiserver admits that class only in namespaces holding one (GKE)"),
			"pods": describe(map[string]any{"type": "integer", "minimum": 1}, "at most this many of them: the replicas, a rollout's surge, room to scale"),
		}),
		"openshift": describe(map[string]any{"type": "boolean"}, "leave runAsUser, runAsGroup and fsGroup unset, for OpenShift's "+
			"restricted-v2 SCC, which assigns them from the namespace's range; still runAsNonRoot"),
		"podSecurityContext":       describe(map[string]any{"type": "object"}, "the pods' securityContext; a key set here overrides the default, null removes it"),
		"containerSecurityContext": describe(map[string]any{"type": "object"}, "the containers' securityContext, likewise"),
		"extraArgs":                describe(map[string]any{"type": "array", "items": str}, "more flags for webhook serve, e.g. --log-level=debug"),
		"extraEnv":                 describe(map[string]any{"type": "array", "items": map[string]any{"type": "object"}}, "more environment variables for the server"),
		"commonLabels":             describe(strMap, "added to every object's labels and to the pods'"),
		"commonAnnotations":        describe(strMap, "added to every object's annotations"),
		"webhook": obj(map[string]any{
			"timeoutSeconds": describe(map[string]any{"type": "integer", "minimum": 1, "maximum": 30},
				"how long the apiserver waits for an answer before going on without one (the webhook fails open)"),
		}),
	}
}

// installTemplates adds the helpers, NOTES.txt, the quota and the test to the chart's files.
func installTemplates(files map[string][]byte) error {
	files["templates/_helpers.tpl"] = []byte(helpers)
	files["templates/NOTES.txt"] = []byte(notes)
	test, err := helmTestTemplate()
	if err != nil {
		return err
	}
	files["templates/tests/check.yaml"] = []byte(serverOnly(test))
	return nil
}

// quotaTemplate is CriticalPodsQuota for the values' priority class and pod count.
func quotaTemplate() (string, error) {
	b, err := Marshal(CriticalPodsQuota())
	if err != nil {
		return "", err
	}
	text, err := applyEdits(releaseNamespace(string(b)), []edit{
		{old: fmt.Sprintf("pods: %q", fmt.Sprint(QuotaPods)), new: []string{"pods: {{ .Values.resourceQuota.pods | quote }}"}},
		{old: "- " + PriorityClass, new: []string{"- {{ .Values.priorityClassName }}"}},
	})
	if err != nil {
		return "", err
	}
	return header + `{{- if and .Values.resourceQuota.enabled .Values.priorityClassName }}
{{- if lt (int .Values.resourceQuota.pods) (add1 (int .Values.replicas) | int) }}
{{- fail "resourceQuota.pods must leave room for the replicas and a rollout's surge pod" }}
{{- end }}
` + strings.TrimPrefix(text, header) + "{{- end }}\n", nil
}

func helmTestTemplate() (string, error) {
	b, err := Marshal(Variant{}.helmTest()...)
	if err != nil {
		return "", err
	}
	// A typo'd release or a moved Service would send check elsewhere: the namespace is the release's.
	nsArg := CheckArgs[1]
	return applyEdits(releaseNamespace(string(b)), []edit{
		{old: "- " + nsArg, new: []string{"- --namespace={{ .Release.Namespace }}"}},
		{old: "image: " + Image, new: []string{`image: {{ include "gpu-label-webhook.image" . | quote }}`}},
		{old: "imagePullPolicy: IfNotPresent", new: []string{"imagePullPolicy: {{ .Values.image.pullPolicy }}"}},
		{block: true, old: "    securityContext:", new: []string{"securityContext:",
			`  {{- include "gpu-label-webhook.securityContext" (list . .Values.containerSecurityContext) | nindent 6 }}`}},
		{block: true, old: "  securityContext:", new: []string{"securityContext:",
			`  {{- include "gpu-label-webhook.securityContext" (list . .Values.podSecurityContext) | nindent 4 }}`,
			"{{- with .Values.imagePullSecrets }}", "imagePullSecrets:", "  {{- toYaml . | nindent 4 }}", "{{- end }}"}},
	})
}

// The helpers: Helm's own labels, the image reference, a securityContext from values.
var helpers = `{{/* Generated by ` + "`webhook manifests`" + `; do not edit. Change internal/manifests and run ` + "`make manifests`" + `. */}}

{{/* Helm's labels and the values' commonLabels, on every object. */}}
{{- define "gpu-label-webhook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* registry/repository, then @digest, or :tag (the chart's appVersion unless set). */}}
{{- define "gpu-label-webhook.image" -}}
{{- $repository := .Values.image.repository -}}
{{- with .Values.image.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end -}}
{{- if .Values.image.digest -}}
{{ $repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ $repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* (list $ values): a securityContext; with openshift, without the IDs restricted-v2 assigns. */}}
{{- define "gpu-label-webhook.securityContext" -}}
{{- $root := index . 0 -}}
{{- $sc := deepCopy (index . 1 | default dict) -}}
{{- if $root.Values.openshift -}}
{{- $_ := unset $sc "runAsUser" -}}{{- $_ := unset $sc "runAsGroup" -}}{{- $_ := unset $sc "fsGroup" -}}
{{- end -}}
{{- toYaml $sc -}}
{{- end }}

{{/* The ports in use: the node's network ones with hostNetwork, none of the node components'. */}}
{{- define "gpu-label-webhook.ports" -}}
{{- $ports := ternary .Values.hostNetwork.ports .Values.ports .Values.hostNetwork.enabled -}}
{{- if .Values.hostNetwork.enabled -}}
{{- range $name, $port := $ports -}}
{{- if has (int $port) (list ` + portList + `) -}}
{{- fail (printf "hostNetwork.ports.%s is %d, a port the kubelet or another node component listens on" $name (int $port)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $ports -}}
{{- end }}
`

var portList = func() string {
	var s []string
	for _, p := range NodeComponentPorts {
		s = append(s, fmt.Sprint(p))
	}
	return strings.Join(s, " ")
}()

// notes is NOTES.txt: what was installed, what the namespace must allow, how to opt in and
// how to check it.
var notes = `{{- $ports := include "gpu-label-webhook.ports" . | fromYaml }}
{{- $ns := .Release.Namespace }}
{{- $level := "" }}
{{- with (lookup "v1" "Namespace" "" $ns) }}{{ $level = index (.metadata.labels | default dict) "` + PodSecurityEnforce + `" | default "" }}{{ end }}
` + Name + ` {{ .Chart.AppVersion }} is installed as release {{ .Release.Name }} in namespace {{ $ns }}.
{{- if .Values.policyMode }}

Policy mode: the apiserver itself runs the ValidatingAdmissionPolicy ` + AuditPolicyName + `
{{- if not .Values.auditOnly }} and the
MutatingAdmissionPolicy ` + PolicyName + `{{ end }}, with the ConfigMap ` + admit.DefaultConfigName + ` for params.
Nothing runs in the namespace.
{{- else }}

Running: {{ .Values.replicas }} replicas of {{ include "gpu-label-webhook.image" . }},
serving on port {{ $ports.webhook }} in {{ if .Values.hostNetwork.enabled }}the node's{{ else }}the pods'{{ end }} network behind the Service ` + Name + ` (port 443).
Registered: {{ if .Values.auditOnly }}the validating webhook ` + AuditName + ` (warnings and Events, never a change)
{{- else }}the mutating webhook ` + MutatingName + `{{ end }}; it fails open after {{ .Values.webhook.timeoutSeconds }}s.
Certificate: {{ if eq .Values.certificates.mode "cert-manager" }}issued and rotated by cert-manager, which must be installed
{{- else if eq .Values.certificates.mode "self-signed" }}a CA made at install, kept across upgrades
{{- else }}the Secret {{ .Values.certificates.secretName }}, verified with certificates.caBundle{{ end }}.
{{- if and .Values.resourceQuota.enabled .Values.priorityClassName }}
Priority: {{ .Values.priorityClassName }}, admitted here by the ResourceQuota ` + Name + `-critical-pods
(GKE admits that class outside kube-system only in a namespace holding one).
{{- end }}
{{- if .Values.hostNetwork.enabled }}

hostNetwork is on. The node's network is outside Pod Security "baseline" and "restricted",
so the namespace must allow "privileged":
  kubectl label namespace {{ $ns }} ` + PodSecurityEnforce + `=privileged --overwrite
{{- if has $level (list "baseline" "restricted") }}
WARNING: {{ $ns }} enforces "{{ $level }}" now: the pods are refused until you run the line above.
{{- end }}
The control plane must reach the nodes on TCP {{ $ports.webhook }}: on EKS, allow it into the node
security group from the cluster security group (the minimal rules admit 443 and 10250 only).
A node runs at most one replica: the ports are the node's.
{{- else }}

The pods pass Pod Security "restricted". A chart does not own its namespace; enforce it:
  kubectl label namespace {{ $ns }} ` + PodSecurityEnforce + `=restricted
{{- end }}
{{- end }}

{{ if eq (toString .Values.config.autoLabel) "true" -}}
New GPU nodes are labeled as they join (config.autoLabel=true).
{{- else -}}
It only warns for now. To have new GPU nodes labeled as they join:
  helm upgrade {{ .Release.Name }} <chart> -n {{ $ns }} --reuse-values --set config.autoLabel=true
{{- end }}
GPU nodes that were there before are labeled at their next status report, or now by:
  kubectl gpu-label label -n {{ $ns }}

Check it:
{{- if not .Values.policyMode }}
  helm test {{ .Release.Name }} -n {{ $ns }}   # fails unless the webhook is installed, reachable and serving
{{- end }}
  kubectl gpu-label check -n {{ $ns }}   # every GPU node, and what SkyPilot will see
`

// commonMetadata gives every top-level object of a template Helm's labels and commonLabels,
// and commonAnnotations: after its labels, and in its annotations (or a block of its own).
func commonMetadata(text string) (string, error) {
	lines := strings.Split(text, "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		out = append(out, lines[i])
		if lines[i] != "metadata:" {
			continue
		}
		// The metadata block: its lines are indented, or template actions.
		end := i + 1
		for end < len(lines) && (strings.HasPrefix(lines[end], " ") || strings.HasPrefix(lines[end], "{{")) {
			end++
		}
		block := lines[i+1 : end]
		annotated := false
		for _, l := range block {
			annotated = annotated || l == "  annotations:" || strings.Contains(l, "$annotations")
		}
		var meta []string
		for j := 0; j < len(block); j++ {
			l := block[j]
			if l == "  labels:" && !annotated {
				meta = append(meta, "  {{- with $.Values.commonAnnotations }}", "  annotations:", "    {{- toYaml . | nindent 4 }}", "  {{- end }}")
			}
			meta = append(meta, l)
			if l == "  labels:" || l == "  annotations:" {
				for j+1 < len(block) && strings.HasPrefix(block[j+1], "    ") {
					j++
					meta = append(meta, block[j])
				}
				if l == "  labels:" {
					meta = append(meta, `    {{- include "gpu-label-webhook.labels" $ | nindent 4 }}`)
				} else if !strings.Contains(strings.Join(block, "\n"), "$annotations") {
					meta = append(meta, "    {{- with $.Values.commonAnnotations }}", "    {{- toYaml . | nindent 4 }}", "    {{- end }}")
				}
			}
		}
		if !strings.Contains(strings.Join(meta, "\n"), "gpu-label-webhook.labels") {
			return "", fmt.Errorf("an object without labels")
		}
		out = append(out, meta...)
		i = end - 1
	}
	return strings.Join(out, "\n"), nil
}

// commentValues puts each value's schema description above it in values.yaml.
func commentValues(values string, schema map[string]any) []byte {
	type level struct {
		indent int
		props  map[string]any
	}
	stack := []level{{-1, schema["properties"].(map[string]any)}}
	var out []string
	for _, l := range strings.Split(values, "\n") {
		trimmed := strings.TrimLeft(l, " ")
		ind := len(l) - len(trimmed)
		key, _, ok := strings.Cut(trimmed, ":")
		if !ok || strings.HasPrefix(trimmed, "-") || trimmed == "" {
			out = append(out, l)
			continue
		}
		for len(stack) > 1 && stack[len(stack)-1].indent >= ind {
			stack = stack[:len(stack)-1]
		}
		node, _ := stack[len(stack)-1].props[key].(map[string]any)
		if doc, ok := node["description"].(string); ok {
			for _, c := range wrap(doc, 96-ind) {
				out = append(out, strings.Repeat(" ", ind)+"# "+c)
			}
		}
		props, _ := node["properties"].(map[string]any)
		stack = append(stack, level{ind, props})
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n"))
}

func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// yamlLines is v as YAML lines, for a template to insert.
func yamlLines(v any) ([]string, error) {
	b, err := Marshal(v)
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(strings.TrimPrefix(string(b), header), "\n"), "\n"), nil
}
