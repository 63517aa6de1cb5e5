package manifests

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"gomodules.xyz/jsonpatch/v2"
)

// The install's variants for the clusters users run: where the control plane cannot reach
// pod addresses, where the UID is the platform's to choose. Each is one field here, a chart
// value and a kustomize component, all three rendered from the objects below.

// Variant is what differs between installs; the zero value is the default install.
type Variant struct {
	// HostNetwork runs the pods in the node's network namespace, for control planes that
	// cannot reach pod addresses (EKS with Calico or Cilium in overlay mode).
	HostNetwork bool
	// OpenShift leaves the user and group IDs unset: restricted-v2 assigns them from the
	// namespace's range and refuses a fixed one.
	OpenShift bool
}

// Ports are where the server listens.
type Ports struct {
	Webhook int32 `json:"webhook"`
	Metrics int32 `json:"metrics"`
	Health  int32 `json:"health"`
}

var (
	// PodPorts are used in the pods' own network. The webhook serves on 10250, the one port
	// besides 443 that GKE private clusters' firewall and EKS's minimal node security group
	// open from the control plane to the nodes (cert-manager's webhook does the same).
	PodPorts = Ports{Webhook: 10250, Metrics: 8080, Health: 8081}
	// HostNetworkPorts are used in the node's network: none of NodeComponentPorts, nor a
	// port the common CNIs, exporters and cert-manager's documented hostNetwork setup take.
	HostNetworkPorts = Ports{Webhook: 10270, Metrics: 10271, Health: 10272}
	// NodeComponentPorts are the ports Kubernetes' own components listen on at a node or a
	// control-plane host: kubelet healthz, kube-proxy metrics, kubelet, kubelet read-only,
	// kube-proxy healthz, controller-manager, cloud-controller-manager, scheduler.
	NodeComponentPorts = []int32{10248, 10249, 10250, 10255, 10256, 10257, 10258, 10259}
)

// Ports are this variant's.
func (v Variant) Ports() Ports {
	if v.HostNetwork {
		return HostNetworkPorts
	}
	return PodPorts
}

// PodSecurityLevel is the strictest Pod Security level the variant's pods pass: the node's
// network namespace is outside "baseline" and "restricted".
func (v Variant) PodSecurityLevel() string {
	if v.HostNetwork {
		return "privileged"
	}
	return "restricted"
}

func (v Variant) podSecurityContext() *corev1.PodSecurityContext {
	sc := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To(int64(65532)),
		RunAsGroup:     ptr.To(int64(65532)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if v.OpenShift {
		sc.RunAsUser, sc.RunAsGroup, sc.FSGroup = nil, nil, nil
	}
	return sc
}

// hostNetwork moves the pods into the node's network: ports off the kubelet's, cluster DNS
// still first, and a rollout that frees a node's ports before it starts a pod there (a
// surge pod cannot bind what the old one holds).
func (v Variant) hostNetwork(d *appsv1.Deployment) {
	spec := &d.Spec.Template.Spec
	spec.HostNetwork = true
	spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	d.Spec.Strategy = appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxSurge: ptr.To(intstr.FromInt32(0)), MaxUnavailable: ptr.To(intstr.FromInt32(1)),
		},
	}
}

// PriorityClass is the Deployment's: a node webhook evicted under pressure misses the nodes
// that join meanwhile.
const PriorityClass = "system-cluster-critical"

// QuotaPods is how many pods of PriorityClass the quota admits: the replicas, a rollout's
// surge and room to scale.
const QuotaPods = 10

// CriticalPodsQuota lets the Deployment's pods have PriorityClass outside kube-system where
// the apiserver limits that class to namespaces holding a matching quota (GKE does: the
// ResourceQuota admission configuration's limitedResources). It caps nothing else.
func CriticalPodsQuota() *corev1.ResourceQuota {
	return &corev1.ResourceQuota{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
		ObjectMeta: meta(Name + "-critical-pods"),
		Spec: corev1.ResourceQuotaSpec{
			Hard: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(QuotaPods, resource.DecimalSI)},
			ScopeSelector: &corev1.ScopeSelector{MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{
				ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpIn, Values: []string{PriorityClass},
			}}},
		},
	}
}

// components are the kustomize components, each one variant field on top of any overlay.
var components = map[string]Variant{
	"host-network": {HostNetwork: true},
	"openshift":    {OpenShift: true},
}

// componentFiles writes each component (the JSON patches that turn the base's objects into
// the variant's) and an overlay applying it on top of the cert-manager overlay.
func componentFiles(files map[string][]byte) error {
	for name, v := range components {
		patches, err := variantPatches(v)
		if err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# %s\napiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n", componentDocs[name])
		for _, p := range patches {
			ops, err := yaml.Marshal(p.ops)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "  - target:\n      kind: %s\n      name: %s\n    patch: |-\n%s", p.kind, p.name, indent("      ", string(ops)))
		}
		files["components/"+name+"/kustomization.yaml"] = []byte(header + b.String())
		files["overlays/"+name+"/kustomization.yaml"] = []byte(header + fmt.Sprintf(`# The cert-manager overlay with the %s component. On top of another overlay, list
# ../../components/%s under components: in a kustomization of your own.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../cert-manager
components:
  - ../../components/%s
`, name, name, name))
	}
	return nil
}

var componentDocs = map[string]string{
	"host-network": "The pods in the node's network, for control planes that cannot reach pod addresses (EKS\n# with a custom CNI). Ports off the kubelet's; the namespace must allow Pod Security \"privileged\";\n# the control plane must reach the nodes on the webhook's port (see the README).",
	"openshift":    "No fixed UID or GID, for OpenShift's restricted-v2 SCC, which assigns them from the\n# namespace's range; still runAsNonRoot and Pod Security \"restricted\".",
}

type objectPatch struct {
	kind, name string
	ops        []jsonpatch.Operation
}

// variantPatches are the JSON patches between the default base and v's, one per object that
// differs, each sorted by path (no list changes length, so the order does not matter; a test
// applies them).
func variantPatches(v Variant) ([]objectPatch, error) {
	var out []objectPatch
	variant := v.Base()
	for i, o := range Base() {
		a, err := prunedJSON(o)
		if err != nil {
			return nil, err
		}
		b, err := prunedJSON(variant[i])
		if err != nil {
			return nil, err
		}
		ops, err := jsonpatch.CreatePatch(a, b)
		if err != nil {
			return nil, err
		}
		if len(ops) == 0 {
			continue
		}
		sort.Slice(ops, func(i, j int) bool { return ops[i].Path < ops[j].Path })
		var m struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := json.Unmarshal(a, &m); err != nil {
			return nil, err
		}
		out = append(out, objectPatch{kind: m.Kind, name: m.Metadata.Name, ops: ops})
	}
	return out, nil
}

// prunedJSON is an object as the manifests write it, in JSON.
func prunedJSON(o any) ([]byte, error) {
	m, err := prunedMap(o)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

func indent(prefix, text string) string {
	lines := strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n")
	return prefix + strings.Join(lines, prefix) + "\n"
}
