//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

// dig walks a decoded object by map keys and list indexes; nil when the path is not there.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// rendered is one `helm template` of the chart, with its objects at hand.
type rendered map[string]map[string]any

const renderNS = "render"

// get finds an object in the release's namespace, or cluster-scoped.
func (r rendered) get(kind, name string) map[string]any {
	if o := r[kind+" "+renderNS+"/"+name]; o != nil {
		return o
	}
	return r[kind+" /"+name]
}

func (r rendered) deployment() map[string]any { return r.get("Deployment", manifests.Name) }
func (r rendered) podSpec() any               { return dig(r.deployment(), "spec", "template", "spec") }
func (r rendered) container() any             { return dig(r.podSpec(), "containers", 0) }
func (r rendered) testPod() any               { return dig(r.get("Pod", manifests.CheckName), "spec") }

func str(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// same says whether a typed value and a decoded one are the same JSON.
func same(typed, decoded any) bool {
	b, _ := json.Marshal(typed)
	var v any
	_ = json.Unmarshal(b, &v)
	return reflect.DeepEqual(v, decoded)
}

// Every value of the chart, rendered by the helm CLI: each case sets values and checks the
// objects that come out, and every value the schema names is set by some case.
func TestChartValues(t *testing.T) {
	h := newHelm(t)
	chartYAML, err := os.ReadFile(filepath.Join(h.chart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct{ AppVersion string }
	if err := yaml.Unmarshal(chartYAML, &meta); err != nil {
		t.Fatal(err)
	}
	render := func(t *testing.T, set, setJSON []string) (rendered, string, error) {
		args := []string{"template", "glw", h.chart, "--namespace", renderNS, "--kube-version", "1.37.2"}
		for _, kv := range set {
			args = append(args, "--set", kv)
		}
		for _, kv := range setJSON {
			args = append(args, "--set-json", kv)
		}
		out, err := h.run(t, h.bin, args...)
		if err != nil {
			return nil, string(out), err
		}
		return rendered(objects(t, out)), string(out), nil
	}
	digest := "sha256:" + strings.Repeat("0a", 32)
	tests := map[string]struct {
		set, setJSON []string
		fails        string // the error it must fail with
		check        func(t *testing.T, r rendered)
	}{
		"by default the image's tag is the chart's appVersion, for the webhook and the test": {check: func(t *testing.T, r rendered) {
			for _, image := range []any{dig(r.container(), "image"), dig(r.testPod(), "containers", 0, "image")} {
				if image != "gpu-label-webhook:"+meta.AppVersion {
					t.Errorf("image %v, want the appVersion %s", image, meta.AppVersion)
				}
			}
		}},
		"image.tag and image.pullPolicy": {set: []string{"image.tag=v9.9.9", "image.pullPolicy=Always"}, check: func(t *testing.T, r rendered) {
			for _, c := range []any{r.container(), dig(r.testPod(), "containers", 0)} {
				if dig(c, "image") != "gpu-label-webhook:v9.9.9" || dig(c, "imagePullPolicy") != "Always" {
					t.Errorf("image %v, pull policy %v", dig(c, "image"), dig(c, "imagePullPolicy"))
				}
			}
		}},
		"image.registry and image.digest: pulled by digest from the registry": {
			set: []string{"image.registry=registry.example/team/", "image.repository=glw", "image.digest=" + digest, "image.tag=ignored"},
			check: func(t *testing.T, r rendered) {
				for _, image := range []any{dig(r.container(), "image"), dig(r.testPod(), "containers", 0, "image")} {
					if image != "registry.example/team/glw@"+digest {
						t.Errorf("image %v", image)
					}
				}
			}},
		"a digest that is not one fails": {set: []string{"image.digest=latest"}, fails: "image/digest"},
		"imagePullSecrets reach both pods": {set: []string{"imagePullSecrets[0].name=regcred"}, check: func(t *testing.T, r rendered) {
			for _, spec := range []any{r.podSpec(), r.testPod()} {
				if dig(spec, "imagePullSecrets", 0, "name") != "regcred" {
					t.Errorf("imagePullSecrets %v", dig(spec, "imagePullSecrets"))
				}
			}
		}},
		"ports move the server; the Service and probes follow by name": {set: []string{"ports.webhook=9443", "ports.metrics=9090", "ports.health=9091"}, check: func(t *testing.T, r rendered) {
			c := r.container()
			if args := str(dig(c, "args")); !strings.Contains(args, "--port=9443") || !strings.Contains(args, "--health-addr=:9091") || !strings.Contains(args, "--metrics-addr=:9090") {
				t.Errorf("args %s", args)
			}
			if str(dig(c, "ports")) != `[{"containerPort":9443,"name":"https"},{"containerPort":9090,"name":"metrics"},{"containerPort":9091,"name":"health"}]` {
				t.Errorf("ports %s", str(dig(c, "ports")))
			}
			if dig(r.get("Service", manifests.Name), "spec", "ports", 0, "targetPort") != "https" || dig(c, "readinessProbe", "httpGet", "port") != "health" {
				t.Error("the Service or a probe names a port by number")
			}
		}},
		"hostNetwork: the node's network, cluster DNS, its own ports, a rollout that frees a node's ports first": {
			set: []string{"hostNetwork.enabled=true", "hostNetwork.ports.webhook=10300", "hostNetwork.ports.metrics=10301", "hostNetwork.ports.health=10302"},
			check: func(t *testing.T, r rendered) {
				spec := r.podSpec()
				if dig(spec, "hostNetwork") != true || dig(spec, "dnsPolicy") != "ClusterFirstWithHostNet" {
					t.Errorf("hostNetwork %v, dnsPolicy %v", dig(spec, "hostNetwork"), dig(spec, "dnsPolicy"))
				}
				if str(dig(r.container(), "ports")) != `[{"containerPort":10300,"name":"https"},{"containerPort":10301,"name":"metrics"},{"containerPort":10302,"name":"health"}]` {
					t.Errorf("ports %s", str(dig(r.container(), "ports")))
				}
				if s := str(dig(r.deployment(), "spec", "strategy")); s != `{"rollingUpdate":{"maxSurge":0,"maxUnavailable":1},"type":"RollingUpdate"}` {
					t.Errorf("strategy %s", s)
				}
			}},
		"hostNetwork refuses the kubelet's port": {set: []string{"hostNetwork.enabled=true", "hostNetwork.ports.webhook=10250"}, fails: "a port the kubelet or another node component listens on"},
		"openshift: no fixed UID, GID or fsGroup anywhere, still runAsNonRoot": {
			set: []string{"openshift=true", "podSecurityContext.fsGroup=2000", "containerSecurityContext.runAsUser=1000"},
			check: func(t *testing.T, r rendered) {
				for name, sc := range map[string]any{
					"webhook pod": dig(r.podSpec(), "securityContext"), "webhook container": dig(r.container(), "securityContext"),
					"test pod": dig(r.testPod(), "securityContext"), "test container": dig(r.testPod(), "containers", 0, "securityContext"),
				} {
					for _, k := range []string{"runAsUser", "runAsGroup", "fsGroup"} {
						if dig(sc, k) != nil {
							t.Errorf("%s: %s %v", name, k, dig(sc, k))
						}
					}
					if dig(sc, "runAsNonRoot") != true {
						t.Errorf("%s: runAsNonRoot %v", name, dig(sc, "runAsNonRoot"))
					}
				}
			}},
		"podSecurityContext and containerSecurityContext override key by key, null removes one": {
			set: []string{"podSecurityContext.runAsUser=1000", "podSecurityContext.runAsGroup=null", "containerSecurityContext.readOnlyRootFilesystem=false"},
			check: func(t *testing.T, r rendered) {
				pod, c := dig(r.podSpec(), "securityContext"), dig(r.container(), "securityContext")
				if str(pod) != `{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}}` {
					t.Errorf("pod securityContext %s", str(pod))
				}
				if dig(c, "readOnlyRootFilesystem") != false || dig(c, "allowPrivilegeEscalation") != false {
					t.Errorf("container securityContext %s", str(c))
				}
			}},
		"extraArgs and extraEnv come after the server's own": {
			set: []string{"extraArgs[0]=--log-level=debug", "extraEnv[0].name=GOMEMLIMIT", "extraEnv[0].value=200MiB"},
			check: func(t *testing.T, r rendered) {
				c := r.container()
				if dig(c, "args", 0) != "serve" || dig(c, "args", 5) != "--log-level=debug" {
					t.Errorf("args %s", str(dig(c, "args")))
				}
				if dig(c, "env", 0, "name") != "POD_NAMESPACE" || str(dig(c, "env", 2)) != `{"name":"GOMEMLIMIT","value":"200MiB"}` {
					t.Errorf("env %s", str(dig(c, "env")))
				}
			}},
		"commonLabels and commonAnnotations on every object, commonLabels on the pods": {
			set: []string{"commonLabels.team=gpu", "commonAnnotations.owner=platform", "certificates.mode=self-signed"},
			check: func(t *testing.T, r rendered) {
				for k, o := range r {
					if dig(o, "metadata", "labels", "team") != "gpu" || dig(o, "metadata", "annotations", "owner") != "platform" {
						t.Errorf("%s: labels %v, annotations %v", k, dig(o, "metadata", "labels"), dig(o, "metadata", "annotations"))
					}
					if dig(o, "metadata", "labels", "app.kubernetes.io/instance") != "glw" || dig(o, "metadata", "labels", "app.kubernetes.io/managed-by") != "Helm" {
						t.Errorf("%s: no Helm labels: %v", k, dig(o, "metadata", "labels"))
					}
				}
				if dig(r.deployment(), "spec", "template", "metadata", "labels", "team") != "gpu" {
					t.Error("the pods lack commonLabels")
				}
				if dig(r.deployment(), "spec", "selector", "matchLabels", "team") != nil {
					t.Error("commonLabels in the selector: an upgrade adding one would fail")
				}
			}},
		"cert-manager's annotation stays beside commonAnnotations": {set: []string{"commonAnnotations.owner=platform"}, check: func(t *testing.T, r rendered) {
			a := dig(r.get("MutatingWebhookConfiguration", manifests.MutatingName), "metadata", "annotations")
			if dig(a, manifests.InjectCAAnnotation) != renderNS+"/"+manifests.Name+"-serving" || dig(a, "owner") != "platform" {
				t.Errorf("annotations %v", a)
			}
		}},
		"webhook.timeoutSeconds on the mutating configuration": {set: []string{"webhook.timeoutSeconds=7"}, check: func(t *testing.T, r rendered) {
			if v := dig(r.get("MutatingWebhookConfiguration", manifests.MutatingName), "webhooks", 0, "timeoutSeconds"); v != 7.0 {
				t.Errorf("timeoutSeconds %v", v)
			}
		}},
		"a timeout the apiserver refuses fails": {set: []string{"webhook.timeoutSeconds=31"}, fails: "timeoutSeconds"},
		"auditOnly: the validating configuration only, with the timeout": {set: []string{"auditOnly=true", "webhook.timeoutSeconds=5"}, check: func(t *testing.T, r rendered) {
			if r.get("MutatingWebhookConfiguration", manifests.MutatingName) != nil {
				t.Error("a mutating configuration in audit mode")
			}
			if v := dig(r.get("ValidatingWebhookConfiguration", manifests.AuditName), "webhooks", 0, "timeoutSeconds"); v != 5.0 {
				t.Errorf("timeoutSeconds %v", v)
			}
		}},
		"resourceQuota.pods and a priority class of the user's": {set: []string{"resourceQuota.pods=20", "priorityClassName=gpu-critical"}, check: func(t *testing.T, r rendered) {
			q := r.get("ResourceQuota", manifests.Name+"-critical-pods")
			if dig(q, "spec", "hard", "pods") != "20" || str(dig(q, "spec", "scopeSelector", "matchExpressions", 0, "values")) != `["gpu-critical"]` {
				t.Errorf("quota %s", str(q))
			}
			if dig(r.podSpec(), "priorityClassName") != "gpu-critical" {
				t.Errorf("priorityClassName %v", dig(r.podSpec(), "priorityClassName"))
			}
		}},
		"resourceQuota.enabled=false: no quota": {set: []string{"resourceQuota.enabled=false"}, check: func(t *testing.T, r rendered) {
			if r.get("ResourceQuota", manifests.Name+"-critical-pods") != nil {
				t.Error("a quota")
			}
		}},
		"no priority class: no quota either": {set: []string{"priorityClassName="}, check: func(t *testing.T, r rendered) {
			if r.get("ResourceQuota", manifests.Name+"-critical-pods") != nil || dig(r.podSpec(), "priorityClassName") != nil {
				t.Error("a quota or a priority class")
			}
		}},
		"a quota too small for the replicas and a surge pod fails": {set: []string{"replicas=10"}, fails: "resourceQuota.pods must leave room"},
		"replicas, resources, scheduling, the pods' labels and annotations": {
			set:     []string{"replicas=3", "resources.requests.cpu=100m", "nodeSelector.pool=system", "tolerations[0].operator=Exists", "podLabels.tier=infra", "podAnnotations.note=x"},
			setJSON: []string{`affinity={"nodeAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":1,"preference":{"matchExpressions":[{"key":"pool","operator":"In","values":["system"]}]}}]}}`},
			check: func(t *testing.T, r rendered) {
				spec := r.podSpec()
				if dig(r.deployment(), "spec", "replicas") != 3.0 || dig(r.container(), "resources", "requests", "cpu") != "100m" ||
					dig(spec, "nodeSelector", "pool") != "system" || dig(spec, "tolerations", 0, "operator") != "Exists" ||
					dig(spec, "affinity", "nodeAffinity") == nil || dig(r.deployment(), "spec", "template", "metadata", "labels", "tier") != "infra" ||
					dig(r.deployment(), "spec", "template", "metadata", "annotations", "note") != "x" {
					t.Errorf("deployment %s", str(r.deployment()))
				}
			}},
		"config's keys are the ConfigMap's data": {
			set:     []string{"config.autoLabel=true", "config.events=false", "config.labelKey=example.com/gpu", "config.nodeSelector=pool=gpu", "config.overwrite=true"},
			setJSON: []string{`config.instanceTypes="my-type: H100"`},
			check: func(t *testing.T, r rendered) {
				got := str(dig(r.get("ConfigMap", admit.DefaultConfigName), "data"))
				if got != `{"autoLabel":"true","events":"false","instanceTypes":"my-type: H100","labelKey":"example.com/gpu","nodeSelector":"pool=gpu","overwrite":"true"}` {
					t.Errorf("data %s", got)
				}
			}},
		"certificates.mode=secret: the user's Secret and CA bundle, no cert-manager objects": {
			set: []string{"certificates.mode=secret", "certificates.secretName=mine", "certificates.caBundle=Q0E="},
			check: func(t *testing.T, r rendered) {
				if dig(r.podSpec(), "volumes", 0, "secret", "secretName") != "mine" || dig(r.get("MutatingWebhookConfiguration", manifests.MutatingName), "webhooks", 0, "clientConfig", "caBundle") != "Q0E=" {
					t.Error("the Secret or the caBundle is not the user's")
				}
				for k := range r {
					if strings.HasPrefix(k, "Certificate ") || strings.HasPrefix(k, "Issuer ") {
						t.Errorf("%s in secret mode", k)
					}
				}
			}},
		"serviceMonitor: scraped at its interval, with its labels": {set: []string{"serviceMonitor.enabled=true", "serviceMonitor.interval=10s", "serviceMonitor.labels.release=prom"}, check: func(t *testing.T, r rendered) {
			sm := r.get("ServiceMonitor", manifests.Name)
			if dig(sm, "spec", "endpoints", 0, "interval") != "10s" || dig(sm, "metadata", "labels", "release") != "prom" {
				t.Errorf("service monitor %s", str(sm))
			}
		}},
		"policyMode: the policies, no server and no test": {set: []string{"policyMode=true"}, check: func(t *testing.T, r rendered) {
			if r.deployment() != nil || r.get("Pod", manifests.CheckName) != nil || r.get("ValidatingAdmissionPolicy", manifests.AuditPolicyName) == nil {
				t.Error("policy mode renders a server or a test, or no policy")
			}
		}},
		"networkPolicy: the serving port from the CIDRs given, metrics from the namespace given": {
			set: []string{"networkPolicy.enabled=true", "networkPolicy.metricsNamespace=prom", "networkPolicy.apiserverCIDRs={172.16.0.0/28}"},
			check: func(t *testing.T, r rendered) {
				spec := dig(r.get("NetworkPolicy", manifests.NetworkPolicyName), "spec")
				if dig(spec, "ingress", 0, "from", 0, "ipBlock", "cidr") != "172.16.0.0/28" || dig(spec, "ingress", 0, "ports", 0, "port") != "https" {
					t.Errorf("serving ingress %s", str(dig(spec, "ingress", 0)))
				}
				if dig(spec, "ingress", 1, "from", 0, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "prom" || dig(spec, "ingress", 1, "ports", 0, "port") != "metrics" {
					t.Errorf("metrics ingress %s", str(dig(spec, "ingress", 1)))
				}
			}},
		"prometheusRule with the labels Prometheus selects rules by": {set: []string{"prometheusRule.enabled=true", "prometheusRule.labels.release=kps"}, check: func(t *testing.T, r rendered) {
			if pr := r.get("PrometheusRule", manifests.RuleName); dig(pr, "metadata", "labels", "release") != "kps" || dig(pr, "spec", "groups", 0) == nil {
				t.Errorf("rule %s", str(dig(pr, "metadata")))
			}
		}},
		"grafanaDashboard in Grafana's namespace, with the sidecar's label and the annotations given": {
			set: []string{"grafanaDashboard.enabled=true", "grafanaDashboard.namespace=grafana", "grafanaDashboard.labels.team=gpu", "grafanaDashboard.annotations.grafana_folder=GPUs"},
			check: func(t *testing.T, r rendered) {
				cm := r["ConfigMap grafana/"+manifests.DashboardName]
				md := dig(cm, "metadata")
				if dig(md, "labels", "team") != "gpu" || dig(md, "annotations", "grafana_folder") != "GPUs" || dig(cm, "data") == nil {
					t.Errorf("dashboard %s", str(md))
				}
			}},
		"the helm test runs check --require-webhook --probe on the release, as its own ServiceAccount, removed after the test": {check: func(t *testing.T, r rendered) {
			pod := r.testPod()
			if args := str(dig(pod, "containers", 0, "args")); args != `["check","--namespace=`+renderNS+`","--require-webhook","--probe"]` {
				t.Errorf("args %s", args)
			}
			if dig(pod, "serviceAccountName") != manifests.CheckName || dig(pod, "restartPolicy") != "Never" {
				t.Errorf("pod %s", str(pod))
			}
			if !same(manifests.CheckClusterRules(), dig(r.get("ClusterRole", manifests.CheckName), "rules")) ||
				!same(manifests.CheckNamespaceRules(), dig(r.get("Role", manifests.CheckName), "rules")) {
				t.Error("the test's roles are not check's rules")
			}
			hooks := 0
			for k, o := range r {
				a := dig(o, "metadata", "annotations")
				if dig(a, "helm.sh/hook") == nil {
					continue
				}
				hooks++
				if dig(a, "helm.sh/hook") != "test" || dig(a, "helm.sh/hook-delete-policy") != "before-hook-creation,hook-succeeded,hook-failed" {
					t.Errorf("%s: %v", k, a)
				}
				if dig(o, "metadata", "labels", "app.kubernetes.io/name") == manifests.Name {
					t.Errorf("%s carries the webhook's selector label: the Service would send reviews to it", k)
				}
			}
			if hooks != 6 {
				t.Errorf("%d hook objects, want the ServiceAccount, two roles, two bindings and the pod", hooks)
			}
		}},
	}
	var covered []string
	for name, tc := range tests {
		for _, kv := range append(slices.Clone(tc.set), tc.setJSON...) {
			k, _, _ := strings.Cut(kv, "=")
			covered = append(covered, k)
		}
		t.Run(name, func(t *testing.T) {
			r, out, err := render(t, tc.set, tc.setJSON)
			if tc.fails != "" {
				if err == nil || !strings.Contains(out, tc.fails) {
					t.Errorf("rendered, or failed otherwise (%v):\n%s", err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			tc.check(t, r)
		})
	}
	// Every value the schema names (a free-form object counts as one) is set by a case.
	b, err := os.ReadFile(filepath.Join(h.chart, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var leaves func(prefix string, node map[string]any) []string
	leaves = func(prefix string, node map[string]any) []string {
		props, _ := node["properties"].(map[string]any)
		if len(props) == 0 {
			return []string{prefix}
		}
		var out []string
		for k, p := range props {
			out = append(out, leaves(strings.TrimPrefix(prefix+"."+k, "."), p.(map[string]any))...)
		}
		return out
	}
	for _, leaf := range leaves("", schema) {
		if !slices.ContainsFunc(covered, func(k string) bool {
			return k == leaf || strings.HasPrefix(k, leaf+".") || strings.HasPrefix(k, leaf+"[")
		}) {
			t.Errorf("no case sets %s", leaf)
		}
	}
}
