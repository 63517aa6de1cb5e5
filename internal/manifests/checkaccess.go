package manifests

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
)

// The chart's `helm test`: a pod that runs `webhook check --require-webhook --probe` against
// the release, as a ServiceAccount of its own holding exactly what check reads.

// CheckName names the test's ServiceAccount, roles, bindings and pod.
const CheckName = Name + "-check"

// CheckClusterRules are what `webhook check` reads cluster-wide: the nodes, the ResourceSlices
// beside them, and the two webhook configurations by name.
func CheckClusterRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}},
		{APIGroups: []string{resourcev1.GroupName}, Resources: []string{"resourceslices"}, Verbs: []string{"list"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{MutatingName}, Verbs: []string{"get"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, ResourceNames: []string{AuditName}, Verbs: []string{"get"}},
	}
}

// CheckNamespaceRules are what it reads in the webhook's namespace: the ConfigMap by name and
// the Service's EndpointSlices (listed by the service-name label, which RBAC cannot narrow).
func CheckNamespaceRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{admit.DefaultConfigName}, Verbs: []string{"get"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
	}
}

// CheckArgs are the test pod's command line: any way the webhook is not installed, not
// reachable or not serving fails it.
var CheckArgs = []string{"check", "--namespace=" + Namespace, "--require-webhook", "--probe"}

// helmTest is the test's objects, in the order Helm creates them; all are removed after the
// test, passed or failed.
func (v Variant) helmTest() []any {
	hook := func(weight string) map[string]string {
		return map[string]string{
			"helm.sh/hook":               "test",
			"helm.sh/hook-weight":        weight,
			"helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded,hook-failed",
		}
	}
	m := func(namespaced bool) metav1.ObjectMeta {
		o := metav1.ObjectMeta{Name: CheckName, Labels: map[string]string{"app.kubernetes.io/name": CheckName}, Annotations: hook("-1")}
		if namespaced {
			o.Namespace = Namespace
		}
		return o
	}
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: CheckName, Namespace: Namespace}}
	rbac := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: kind}
	}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: m(true),
		Spec: corev1.PodSpec{
			ServiceAccountName: CheckName,
			RestartPolicy:      corev1.RestartPolicyNever,
			SecurityContext:    v.podSecurityContext(),
			Containers: []corev1.Container{{
				Name:            "check",
				Image:           Image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            CheckArgs,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				SecurityContext: containerSecurityContext(),
			}},
		},
	}
	pod.Annotations = hook("0")
	// Helm prints the check's report, passed or failed, before the pod is removed.
	pod.Annotations["helm.sh/hook-output-log-policy"] = "hook-succeeded,hook-failed"
	return []any{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: m(true)},
		&rbacv1.ClusterRole{TypeMeta: rbac("ClusterRole"), ObjectMeta: m(false), Rules: CheckClusterRules()},
		&rbacv1.ClusterRoleBinding{TypeMeta: rbac("ClusterRoleBinding"), ObjectMeta: m(false),
			RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: CheckName}, Subjects: subjects},
		&rbacv1.Role{TypeMeta: rbac("Role"), ObjectMeta: m(true), Rules: CheckNamespaceRules()},
		&rbacv1.RoleBinding{TypeMeta: rbac("RoleBinding"), ObjectMeta: m(true),
			RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: CheckName}, Subjects: subjects},
		pod,
	}
}
