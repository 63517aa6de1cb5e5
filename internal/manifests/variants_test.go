package manifests

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Each kustomize component, as written, turns the default base into exactly its variant's
// objects: the patches are the generator's values, not a second copy of them.
func TestComponentsAreTheirVariants(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range components {
		var component struct {
			Patches []struct {
				Target struct{ Kind, Name string }
				Patch  string
			}
		}
		if err := yaml.Unmarshal(files["components/"+name+"/kustomization.yaml"], &component); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := v.Base()
		patched := 0
		for i, o := range Base() {
			doc, err := prunedJSON(o)
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				Kind     string
				Metadata struct{ Name string }
			}
			if err := json.Unmarshal(doc, &m); err != nil {
				t.Fatal(err)
			}
			for _, p := range component.Patches {
				if p.Target.Kind != m.Kind || p.Target.Name != m.Metadata.Name {
					continue
				}
				ops, err := yaml.YAMLToJSON([]byte(p.Patch))
				if err != nil {
					t.Fatal(err)
				}
				patch, err := jsonpatch.DecodePatch(ops)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if doc, err = patch.Apply(doc); err != nil {
					t.Fatalf("%s on %s: %v", name, m.Kind, err)
				}
				patched++
			}
			wantDoc, err := prunedJSON(want[i])
			if err != nil {
				t.Fatal(err)
			}
			var got, exp any
			_ = json.Unmarshal(doc, &got)
			_ = json.Unmarshal(wantDoc, &exp)
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("%s: the patched %s %s is not the variant's:\ngot  %s\nwant %s", name, m.Kind, m.Metadata.Name, doc, wantDoc)
			}
		}
		if patched != len(component.Patches) || patched == 0 {
			t.Errorf("%s: %d of its %d patches applied", name, patched, len(component.Patches))
		}
	}
}

func TestVariants(t *testing.T) {
	tests := map[string]struct {
		v     Variant
		check func(t *testing.T, pod *corev1.PodSpec, ns *corev1.Namespace)
	}{
		"the default serves on 10250 in the pods' network, restricted": {Variant{}, func(t *testing.T, pod *corev1.PodSpec, ns *corev1.Namespace) {
			if pod.HostNetwork || pod.Containers[0].Ports[0].ContainerPort != 10250 || ns.Labels[PodSecurityEnforce] != "restricted" {
				t.Errorf("hostNetwork %v, port %d, %s", pod.HostNetwork, pod.Containers[0].Ports[0].ContainerPort, ns.Labels[PodSecurityEnforce])
			}
			if *pod.SecurityContext.RunAsUser != 65532 || *pod.SecurityContext.RunAsGroup != 65532 {
				t.Errorf("runs as %d:%d, the image's user is 65532:65532", *pod.SecurityContext.RunAsUser, *pod.SecurityContext.RunAsGroup)
			}
		}},
		"host network: no node component's port, cluster DNS, a privileged namespace": {Variant{HostNetwork: true}, func(t *testing.T, pod *corev1.PodSpec, ns *corev1.Namespace) {
			if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet || ns.Labels[PodSecurityEnforce] != "privileged" {
				t.Errorf("hostNetwork %v, dnsPolicy %s, %s", pod.HostNetwork, pod.DNSPolicy, ns.Labels[PodSecurityEnforce])
			}
			seen := map[int32]bool{}
			for _, p := range pod.Containers[0].Ports {
				if slices.Contains(NodeComponentPorts, p.ContainerPort) || seen[p.ContainerPort] {
					t.Errorf("port %s %d collides", p.Name, p.ContainerPort)
				}
				seen[p.ContainerPort] = true
			}
		}},
		"openshift: no fixed UID, GID or fsGroup, still non-root and restricted": {Variant{OpenShift: true}, func(t *testing.T, pod *corev1.PodSpec, ns *corev1.Namespace) {
			sc := pod.SecurityContext
			if sc.RunAsUser != nil || sc.RunAsGroup != nil || sc.FSGroup != nil || !*sc.RunAsNonRoot || ns.Labels[PodSecurityEnforce] != "restricted" {
				t.Errorf("pod securityContext %+v, %s", sc, ns.Labels[PodSecurityEnforce])
			}
			if c := pod.Containers[0].SecurityContext; c.RunAsUser != nil || c.RunAsGroup != nil || !*c.RunAsNonRoot {
				t.Errorf("container securityContext %+v", c)
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := tc.v.Deployment()
			tc.check(t, &d.Spec.Template.Spec, tc.v.Namespace())
			// The helm test's pod runs under the same rules as the webhook's.
			tests := tc.v.helmTest()
			pod := tests[len(tests)-1].(*corev1.Pod)
			if !reflect.DeepEqual(pod.Spec.SecurityContext, d.Spec.Template.Spec.SecurityContext) {
				t.Errorf("the test pod's securityContext %+v differs from the webhook's", pod.Spec.SecurityContext)
			}
		})
	}
}

// The quota admits exactly the Deployment's priority class, for more pods than a rollout uses.
func TestCriticalPodsQuota(t *testing.T) {
	q := CriticalPodsQuota()
	d := Deployment()
	expr := q.Spec.ScopeSelector.MatchExpressions[0]
	if expr.ScopeName != corev1.ResourceQuotaScopePriorityClass || !slices.Equal(expr.Values, []string{d.Spec.Template.Spec.PriorityClassName}) {
		t.Errorf("scope %+v, the Deployment's class %s", expr, d.Spec.Template.Spec.PriorityClassName)
	}
	if pods := q.Spec.Hard[corev1.ResourcePods]; pods.Value() < int64(*d.Spec.Replicas)+1 {
		t.Errorf("%d pods: no room for %d replicas and a surge pod", pods.Value(), *d.Spec.Replicas)
	}
}
