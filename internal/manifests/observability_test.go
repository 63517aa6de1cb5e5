package manifests

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The policy admits what the webhook needs and nothing else: the serving port from any
// address by default (the apiserver is no pod), /metrics from the chosen namespace only.
func TestNetworkPolicy(t *testing.T) {
	pod := Deployment().Spec.Template
	ports := map[string]bool{}
	for _, p := range pod.Spec.Containers[0].Ports {
		ports[p.Name] = true
	}
	tests := map[string]struct {
		cidrs       []string
		servingFrom []networkingv1.NetworkPolicyPeer
	}{
		"without CIDRs the serving port is open to every address": {},
		"with CIDRs only those reach the serving port": {
			cidrs: []string{"172.16.0.0/28", "10.0.0.0/8"},
			servingFrom: []networkingv1.NetworkPolicyPeer{
				{IPBlock: &networkingv1.IPBlock{CIDR: "172.16.0.0/28"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}},
			},
		},
	}
	for name, tc := range tests {
		np := NetworkPolicy("prom", tc.cidrs)
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("%s: the policy does not select the webhook's pods: %v", name, err)
		}
		if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			t.Errorf("%s: policy types %v: egress must be left alone (the apiserver's address matches no selector)", name, np.Spec.PolicyTypes)
		}
		if len(np.Spec.Ingress) != 2 {
			t.Fatalf("%s: %d ingress rules", name, len(np.Spec.Ingress))
		}
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if !ports[p.Port.String()] {
					t.Errorf("%s: port %s is not one of the container's", name, p.Port.String())
				}
			}
		}
		serving, metrics := np.Spec.Ingress[0], np.Spec.Ingress[1]
		if serving.Ports[0].Port.String() != "https" || !reflect.DeepEqual(serving.From, tc.servingFrom) {
			t.Errorf("%s: serving rule %+v", name, serving)
		}
		if metrics.Ports[0].Port.String() != "metrics" || len(metrics.From) != 1 ||
			metrics.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "prom" || metrics.From[0].PodSelector != nil {
			t.Errorf("%s: metrics rule %+v", name, metrics)
		}
	}
}

// The dashboard is one Grafana can load: unique panel ids, every panel on the data source
// variable, every query filtered to the chosen namespaces or naming the webhooks.
func TestDashboard(t *testing.T) {
	b, err := Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string
		Panels []struct {
			ID         int
			Type       string
			Title      string
			Datasource struct{ UID string }
			Targets    []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID != DashboardUID {
		t.Errorf("uid %q", d.UID)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d repeated or unset", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q, %d queries", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, q := range p.Targets {
			if !strings.Contains(q.Expr, `namespace=~"$namespace"`) && !strings.Contains(q.Expr, strings.ReplaceAll(webhookNames(), `\`, `\\`)) {
				t.Errorf("panel %q: query not filtered to the chosen namespaces: %s", p.Title, q.Expr)
			}
		}
	}
}

// The rules select the install's targets and name only our own webhooks in the apiserver's
// counters.
func TestPrometheusRuleSelectsTheInstall(t *testing.T) {
	for _, g := range PrometheusRule().Spec.Groups {
		for _, r := range g.Rules {
			e := r.Expr.String()
			switch g.Name {
			case RuleGroupWebhook:
				if !strings.Contains(e, `namespace="`+Namespace+`"`) {
					t.Errorf("%s: not limited to the install's namespace: %s", r.Alert, e)
				}
			case RuleGroupAPIServer:
				if !strings.Contains(e, `name=~"`+strings.ReplaceAll(webhookNames(), `\`, `\\`)+`"`) {
					t.Errorf("%s: not limited to our webhooks: %s", r.Alert, e)
				}
			default:
				t.Errorf("unknown group %s", g.Name)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: severity, summary and description are required", r.Alert)
			}
		}
	}
}
