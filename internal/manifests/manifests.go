// Package manifests generates the install manifests from typed Go values: the base install,
// the cert-manager, self-signed and audit overlays. The files under manifests/ are its output,
// checked in, and a test fails when they drift.
package manifests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
)

// Names of the installed objects.
const (
	Name          = "gpu-label-webhook"
	Namespace     = admit.DefaultNamespace
	MutatingName  = "gpu-label-webhook"
	AuditName     = "gpu-label-webhook-audit"
	TLSSecretName = "gpu-label-webhook-tls"
	Image         = "gpu-label-webhook:latest"
	// TimeoutSeconds is short: the apiserver waits this long at most before going on without us.
	TimeoutSeconds = 3
	// PodSecurityEnforce is the namespace label that sets the Pod Security level enforced there.
	PodSecurityEnforce = "pod-security.kubernetes.io/enforce"
)

var appLabels = map[string]string{"app.kubernetes.io/name": Name}

func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: appLabels}
}

// MatchConditions are the CEL conditions both webhooks carry.
func MatchConditions(labelKey string) []admissionregistrationv1.MatchCondition {
	return []admissionregistrationv1.MatchCondition{
		{Name: "gpu-evidence", Expression: GPUEvidenceExpression()},
		{Name: "may-need-label", Expression: MayNeedLabelExpression(labelKey)},
		{Name: "not-label-command", Expression: NotLabelCommandExpression()},
	}
}

// Rules select Node CREATE and UPDATE, on the object and on its status subresource, where the
// device plugin's capacity arrives. Leases are another resource and never reach the webhook.
func Rules() []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"nodes", "nodes/status"},
			Scope: ptr.To(admissionregistrationv1.ClusterScope),
		},
	}}
}

// ClientConfig points at the Service, or at url when it is set (tests, local runs).
func ClientConfig(path, url string, caBundle []byte) admissionregistrationv1.WebhookClientConfig {
	if url != "" {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url + path), CABundle: caBundle}
	}
	return admissionregistrationv1.WebhookClientConfig{
		Service:  &admissionregistrationv1.ServiceReference{Namespace: Namespace, Name: Name, Path: ptr.To(path), Port: ptr.To(int32(443))},
		CABundle: caBundle,
	}
}

// Mutating is the MutatingWebhookConfiguration, following the admission webhook good
// practices: fail open, short timeout, no side effects on dry-run, reinvoked if needed.
func Mutating(url string, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: MutatingName, Labels: appLabels},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "nodes.gpu-label-webhook.skypilot.co",
			ClientConfig:            ClientConfig(review.PathMutate, url, caBundle),
			Rules:                   Rules(),
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(int32(TimeoutSeconds)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			MatchConditions:         MatchConditions(admit.DefaultLabelKey),
		}},
	}
}

// Audit is the warn-only ValidatingWebhookConfiguration.
func Audit(url string, caBundle []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: AuditName, Labels: appLabels},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "audit.nodes.gpu-label-webhook.skypilot.co",
			ClientConfig:            ClientConfig(review.PathValidate, url, caBundle),
			Rules:                   Rules(),
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(int32(TimeoutSeconds)),
			AdmissionReviewVersions: []string{"v1"},
			MatchConditions:         MatchConditions(admit.DefaultLabelKey),
		}},
	}
}

// Base is the default install's objects but the certificates and the webhook configuration's CA.
func Base() []any { return Variant{}.Base() }

// Base is everything but the certificates and the webhook configuration's CA, for this variant.
func (v Variant) Base() []any {
	configData := map[string]string{admit.KeyAutoLabel: "false"}
	return []any{
		v.Namespace(),
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(Name)},
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: meta(Name),
			// Only what it needs: its one ConfigMap. Nothing on nodes.
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}},
			},
		},
		roleBinding(meta(Name)),
		// Events about a Node, which has no namespace, must be written in "default".
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: eventsMeta(),
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}},
		},
		roleBinding(eventsMeta()),
		// The ResourceSlices DRA drivers publish, read-only: the GPUs of nodes whose capacity
		// does not show them. Nothing else cluster-wide.
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: Name, Labels: appLabels},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{resourcev1.GroupName}, Resources: []string{"resourceslices"}, Verbs: []string{"get", "list", "watch"}}},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: Name, Labels: appLabels},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}},
		},
		&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: meta(admit.DefaultConfigName), Data: configData},
		v.Deployment(),
		&policyv1.PodDisruptionBudget{
			TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
			ObjectMeta: meta(Name),
			Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: appLabels}},
		},
		&corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: meta(Name),
			Spec: corev1.ServiceSpec{
				Selector: appLabels,
				// By name: the Service follows the container's ports wherever they are.
				Ports: []corev1.ServicePort{
					{Name: "https", Port: 443, TargetPort: intstr.FromString("https")},
					{Name: "metrics", Port: 8080, TargetPort: intstr.FromString("metrics")},
				},
			},
		},
		CriticalPodsQuota(),
		Mutating("", nil),
	}
}

// Namespace is the install's namespace, enforcing the Pod Security level its pods pass.
func (v Variant) Namespace() *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{
			"app.kubernetes.io/name": Name,
			PodSecurityEnforce:       v.PodSecurityLevel(),
		}},
	}
}

// EventsNamespace is where Events about Nodes go: the apiserver accepts Events about
// cluster-scoped objects only there.
const EventsNamespace = "default"

func eventsMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: Name + "-events", Namespace: EventsNamespace, Labels: appLabels}
}

// roleBinding binds the webhook's ServiceAccount to the Role of the same name.
func roleBinding(m metav1.ObjectMeta) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: m,
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: m.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}},
	}
}

// Deployment is the default install's Deployment.
func Deployment() *appsv1.Deployment { return Variant{}.Deployment() }

// Deployment runs two replicas spread over nodes, locked down to pass Pod Security "restricted"
// (outside the node's network).
func (v Variant) Deployment() *appsv1.Deployment {
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("health")}}, PeriodSeconds: 5}
	}
	p := v.Ports()
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(Name),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: appLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: appLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            Name,
					PriorityClassName:             PriorityClass,
					TerminationGracePeriodSeconds: ptr.To(int64(30)),
					SecurityContext:               v.podSecurityContext(),
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.ScheduleAnyway,
						LabelSelector: &metav1.LabelSelector{MatchLabels: appLabels},
					}},
					Containers: []corev1.Container{{
						Name:  "webhook",
						Image: Image,
						// The default for a :latest tag is Always, which fails wherever the image
						// was loaded into the runtime rather than pushed (kind, ctr import).
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args: []string{"serve", fmt.Sprintf("--port=%d", p.Webhook), "--cert-dir=/certs",
							fmt.Sprintf("--health-addr=:%d", p.Health), fmt.Sprintf("--metrics-addr=:%d", p.Metrics)},
						Env: []corev1.EnvVar{
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						},
						Ports: []corev1.ContainerPort{
							{Name: "https", ContainerPort: p.Webhook},
							{Name: "metrics", ContainerPort: p.Metrics},
							{Name: "health", ContainerPort: p.Health},
						},
						ReadinessProbe: probe("/readyz"),
						LivenessProbe:  probe("/healthz"),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: containerSecurityContext(),
						VolumeMounts:    []corev1.VolumeMount{{Name: "certs", MountPath: "/certs", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: TLSSecretName}}}},
				},
			},
		},
	}
	if v.HostNetwork {
		v.hostNetwork(d)
	}
	return d
}

// containerSecurityContext is what Pod Security "restricted" asks of every container.
func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// InjectCAAnnotation on a webhook configuration has cert-manager's cainjector keep its
// caBundle equal to the CA of the Certificate InjectCAFrom names (namespace/name).
const (
	InjectCAAnnotation = "cert-manager.io/inject-ca-from"
	InjectCAFrom       = Namespace + "/" + Name + "-serving"
)

// CertManager is the cert-manager overlay's own objects: a self-signed issuer that makes a CA,
// a CA issuer, and the serving certificate the webhook mounts.
func CertManager() []any {
	tm := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: "cert-manager.io/v1", Kind: kind}
	}
	return []any{
		&cmv1.Issuer{TypeMeta: tm("Issuer"), ObjectMeta: meta(Name + "-selfsigned"), Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}}}},
		&cmv1.Certificate{TypeMeta: tm("Certificate"), ObjectMeta: meta(Name + "-ca"), Spec: cmv1.CertificateSpec{
			IsCA: true, CommonName: Name + "-ca", SecretName: Name + "-ca",
			PrivateKey: &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: Name + "-selfsigned", Kind: "Issuer"},
		}},
		&cmv1.Issuer{TypeMeta: tm("Issuer"), ObjectMeta: meta(Name + "-ca"), Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{CA: &cmv1.CAIssuer{SecretName: Name + "-ca"}}}},
		&cmv1.Certificate{TypeMeta: tm("Certificate"), ObjectMeta: meta(Name + "-serving"), Spec: cmv1.CertificateSpec{
			DNSNames:   []string{Name + "." + Namespace + ".svc", Name + "." + Namespace + ".svc.cluster.local"},
			SecretName: TLSSecretName,
			PrivateKey: &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256, RotationPolicy: cmv1.RotationPolicyAlways},
			IssuerRef:  cmmeta.IssuerReference{Name: Name + "-ca", Kind: "Issuer"},
		}},
	}
}

// Files is every generated file, by path under manifests/.
func Files() (map[string][]byte, error) {
	files := map[string][]byte{}
	add := func(path string, objs ...any) error {
		b, err := Marshal(objs...)
		files[path] = b
		return err
	}
	kustomization := func(path, text string) { files[path] = []byte(header + text) }
	if err := add("base/install.yaml", Base()...); err != nil {
		return nil, err
	}
	kustomization("base/kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - install.yaml\n")

	if err := add("overlays/cert-manager/certificates.yaml", CertManager()...); err != nil {
		return nil, err
	}
	injectCA := InjectCAAnnotation + ": " + InjectCAFrom
	kustomization("overlays/cert-manager/kustomization.yaml", fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
  - certificates.yaml
patches:
  - target:
      kind: MutatingWebhookConfiguration
      name: %s
    patch: |-
      - op: add
        path: /metadata/annotations
        value:
          %s
`, MutatingName, injectCA))

	if err := add("overlays/audit/audit-webhook.yaml", withAnnotation(Audit("", nil), injectCA)); err != nil {
		return nil, err
	}
	kustomization("overlays/audit/kustomization.yaml", fmt.Sprintf(`# Warn-only audit mode: the validating webhook only, nothing is ever changed.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../cert-manager
  - audit-webhook.yaml
patches:
  - target:
      kind: MutatingWebhookConfiguration
      name: %s
    patch: |-
      $patch: delete
      apiVersion: admissionregistration.k8s.io/v1
      kind: MutatingWebhookConfiguration
      metadata:
        name: %s
`, MutatingName, MutatingName))

	if err := add("overlays/policy/policy.yaml", PolicyInstall()...); err != nil {
		return nil, err
	}
	kustomization("overlays/policy/kustomization.yaml", `# Policy mode: the audit and the labeling as admission policies the apiserver evaluates
# itself (Kubernetes 1.36 or later): no Deployment, no certificate, nothing that can be down.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - policy.yaml
`)

	if err := componentFiles(files); err != nil {
		return nil, err
	}

	kustomization("overlays/self-signed/kustomization.yaml", fmt.Sprintf(`# For clusters without cert-manager. Make the certificates first:
#   bin/webhook certs --dir manifests/overlays/self-signed/certs
# then: kubectl apply -k manifests/overlays/self-signed
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
secretGenerator:
  - name: %s
    namespace: %s
    type: kubernetes.io/tls
    files:
      - tls.crt=certs/tls.crt
      - tls.key=certs/tls.key
      - ca.crt=certs/ca.crt
    options:
      disableNameSuffixHash: true
replacements:
  - source:
      kind: Secret
      name: %s
      fieldPath: data.ca\.crt
    targets:
      - select:
          kind: MutatingWebhookConfiguration
          name: %s
        fieldPaths:
          - webhooks.*.clientConfig.caBundle
        options:
          create: true
`, TLSSecretName, Namespace, TLSSecretName, MutatingName))
	return files, observabilityFiles(files)
}

func withAnnotation(v *admissionregistrationv1.ValidatingWebhookConfiguration, kv string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	k, val, _ := strings.Cut(kv, ": ")
	v.Annotations = map[string]string{k: val}
	return v
}

const header = "# Generated by `webhook manifests`; do not edit. Change internal/manifests and run `make manifests`.\n"

// Marshal writes objects as one YAML stream, without the empty fields typed objects carry.
func Marshal(objs ...any) ([]byte, error) {
	var b strings.Builder
	b.WriteString(header)
	for i, o := range objs {
		m, err := prunedMap(o)
		if err != nil {
			return nil, err
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return []byte(b.String()), nil
}

// prunedMap is an object as the manifests write it.
func prunedMap(o any) (map[string]any, error) {
	raw, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	prune(m)
	return m, nil
}

// prune drops null values and empty objects left by zero-valued typed fields.
func prune(m map[string]any) {
	for k, v := range m {
		switch t := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			prune(t)
			if len(t) == 0 && k != "selfSigned" {
				delete(m, k)
			}
		case []any:
			for _, item := range t {
				if im, ok := item.(map[string]any); ok {
					prune(im)
				}
			}
		}
	}
}

// Write writes every file under dir.
func Write(dir string) error {
	files, err := Files()
	if err != nil {
		return err
	}
	return writeFiles(dir, files)
}

// WriteChart writes the Helm chart into dir.
func WriteChart(dir string) error {
	files, err := ChartFiles()
	if err != nil {
		return err
	}
	return writeFiles(dir, files)
}

func writeFiles(dir string, files map[string][]byte) error {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return err
		}
	}
	return nil
}
