package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// From this package's folder.
var (
	root     = filepath.Join("..", "..", "..", "..")
	chartDir = filepath.Join(root, "charts", "gpu-label-webhook")
)

// The Kubernetes release the tools build, which the chart is checked against.
const kubeVersion = "v1.37.2"

// Kinds no schema can be loaded for offline: the Prometheus Operator's CRDs are in no module
// the tools pin. Each entry says so; any other kind without a schema fails.
var unvalidated = map[gvk]string{
	{"monitoring.coreos.com/v1", "ServiceMonitor"}: "the Prometheus Operator's CRDs are in no module the tools build",
	{"monitoring.coreos.com/v1", "PrometheusRule"}: "the Prometheus Operator's CRDs are in no module the tools build (promtool checks its rules: test/tools/prometheus)",
}

var (
	loadOnce sync.Once
	loaded   *schemas
	loadErr  error
)

// apiSchemas loads Kubernetes 1.37's OpenAPI and cert-manager's CRDs once per test binary.
func apiSchemas(t *testing.T) *schemas {
	t.Helper()
	loadOnce.Do(func() {
		s := newSchemas()
		k8s, err := moduleDir(filepath.Join(root, "test", "tools", "k8s"), "k8s.io/kubernetes")
		if err != nil {
			loadErr = err
			return
		}
		if err := s.addKubernetes(filepath.Join(k8s, "api", "openapi-spec", "v3")); err != nil {
			loadErr = err
			return
		}
		cm, err := moduleDir(filepath.Join(root, "test", "tools", "certmanager"), "github.com/cert-manager/cert-manager")
		if err != nil {
			loadErr = err
			return
		}
		loadErr = s.addCRDs(filepath.Join(cm, "deploy", "crds"))
		loaded = s
	})
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return loaded
}

// examples are the chart's documented values combinations, by name.
func examples(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		vals, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = vals.AsMap()
	}
	if _, ok := out["defaults"]; !ok {
		t.Fatalf("%s/ci holds %d values files and no defaults-values.yaml: run make manifests", chartDir, len(out))
	}
	return out
}

// lint is `helm lint --strict --kube-version 1.37.2 --values FILE`: a warning fails too.
func lint(t *testing.T, vals map[string]any) {
	t.Helper()
	l := action.NewLint()
	l.Strict, l.Namespace = true, "gpu-label-webhook"
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	l.KubeVersion = kv
	res := l.Run([]string{chartDir}, vals)
	for _, m := range res.Messages {
		t.Log(m)
	}
	for _, err := range res.Errors {
		t.Errorf("helm lint --strict: %v", err)
	}
}

// render is `helm template gpu-label-webhook CHART -n gpu-label-webhook --kube-version
// 1.37.2 --values FILE`, hooks (helm test's) included: the objects, keyed by source and index.
func render(t *testing.T, vals map[string]any) map[string]map[string]any {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = "gpu-label-webhook", "gpu-label-webhook"
	if install.KubeVersion, err = chartutil.ParseKubeVersion(kubeVersion); err != nil {
		t.Fatal(err)
	}
	rel, err := install.Run(ch, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	manifests := []string{rel.Manifest}
	for _, h := range rel.Hooks {
		manifests = append(manifests, h.Manifest)
	}
	objs := map[string]map[string]any{}
	for i, m := range manifests {
		for key, doc := range releaseutil.SplitManifests(m) {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
			}
			if obj != nil {
				objs[fmt.Sprintf("%d/%s", i, key)] = obj
			}
		}
	}
	return objs
}

// Every documented combination of values lints clean and renders only objects the Kubernetes
// 1.37 API (or the CRD of their kind) accepts, field by field.
func TestChartExamples(t *testing.T) {
	s := apiSchemas(t)
	for name, vals := range examples(t) {
		t.Run(name, func(t *testing.T) {
			lint(t, vals)
			objs := render(t, vals)
			if len(objs) == 0 {
				t.Fatal("renders nothing")
			}
			keys := make([]string, 0, len(objs))
			for k := range objs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				obj := objs[k]
				key := gvk{fmt.Sprint(obj["apiVersion"]), fmt.Sprint(obj["kind"])}
				if why, skip := unvalidated[key]; skip {
					t.Logf("%s: not validated: %s", key, why)
					continue
				}
				if err := s.validate(obj); err != nil {
					t.Errorf("%s: %v", objName(obj), err)
				}
			}
		})
	}
}

func objName(obj map[string]any) string {
	md, _ := obj["metadata"].(map[string]any)
	return fmt.Sprintf("%v %v", obj["kind"], md["name"])
}

// The check is only worth having if it fails on the mistakes a template makes easily.
func TestSchemasCatchMistakes(t *testing.T) {
	s := apiSchemas(t)
	deployment := func(spec string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
` + spec
	}
	tests := map[string]struct {
		object string
		want   string // in the error; "" for none
	}{
		"a valid Deployment passes":    {deployment("      containers: [{name: x, image: x, ports: [{containerPort: 8443}]}]\n"), ""},
		"a misspelt field":             {deployment("      containers: [{name: x, image: x, imagePullPolicyy: Always}]\n"), "imagePullPolicyy"},
		"a field at the wrong level":   {deployment("      containers: [{name: x, image: x}]\n      replicas: 2\n"), "replicas"},
		"a number where a string goes": {deployment("      containers: [{name: x, image: x, env: [{name: A, value: 8}]}]\n"), "string"},
		"a string where a number goes": {deployment("      containers: [{name: x, image: x, ports: [{containerPort: \"8443\"}]}]\n"), "integer"},
		"a required field missing":     {deployment("      containers: [{image: x}]\n"), "name"},
		"a kind no API has":            {"apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n", "no schema"},
		"a CRD's object, valid": {`apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: x}
spec: {secretName: s, dnsNames: [a.b], issuerRef: {name: i, kind: Issuer}}
`, ""},
		// Kubernetes' own schemas list no enums (the apiserver's validation holds those); CRDs do.
		"a value outside a CRD's enum": {`apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: x}
spec: {secretName: s, dnsNames: [a.b], issuerRef: {name: i}, privateKey: {algorithm: DSA}}
`, "ECDSA"},
		"a CRD's object with a misspelt field": {`apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: x}
spec: {secretName: s, dnsName: [a.b], issuerRef: {name: i, kind: Issuer}}
`, "dnsName"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(tc.object), &obj); err != nil {
				t.Fatal(err)
			}
			err := s.validate(obj)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("accepted")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("the error does not name %q: %v", tc.want, err)
			}
		})
	}
}

// The chart's own version rules, beyond what helm lint checks: version is SemVer 2 without a
// leading v (Helm's OCI tags need it, and the release makes it the tag without its v);
// appVersion is the tag of the image the defaults install.
func TestChartVersions(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		APIVersion, Version, AppVersion, KubeVersion string
		Annotations                                  map[string]string
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if _, err := semver.StrictNewVersion(c.Version); err != nil || c.APIVersion != "v2" {
		t.Errorf("Chart.yaml: apiVersion %s, version %q (%v); want v2 and SemVer 2 without a v", c.APIVersion, c.Version, err)
	}
	constraint, err := semver.NewConstraint(c.KubeVersion)
	if err != nil || !constraint.Check(semver.MustParse(kubeVersion)) {
		t.Errorf("kubeVersion %q (%v) excludes %s, the release the chart is checked against", c.KubeVersion, err, kubeVersion)
	}
	images := regexp.MustCompile(`image: (\S+)`).FindAllStringSubmatch(c.Annotations["artifacthub.io/images"], -1)
	for _, obj := range render(t, nil) {
		if obj["kind"] != "Deployment" {
			continue
		}
		spec := obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		image := spec["containers"].([]any)[0].(map[string]any)["image"].(string)
		if !strings.HasSuffix(image, ":"+c.AppVersion) {
			t.Errorf("the defaults install %s; appVersion is %q", image, c.AppVersion)
		}
		if len(images) != 1 || images[0][1] != image {
			t.Errorf("artifacthub.io/images names %v; the defaults install %s", images, image)
		}
	}
}
