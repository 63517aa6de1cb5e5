package manifests

import (
	"fmt"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// Policy mode: the webhook's audit and labeling as admission policies that the apiserver
// evaluates itself, with nothing to run. The CEL is generated from the knowledge base's
// tables, in the same trust order. Where CEL cannot read the evidence the webhook would use
// (a PCI device ID in a label key, a product the tables do not know, a MIG profile's memory),
// the policy names nothing, so it never writes a value the webhook would not.

// Names of the policy-mode objects.
const (
	PolicyName      = "gpu-label-webhook"
	AuditPolicyName = "gpu-label-webhook-audit"
)

// stop is the value of a source that shows evidence CEL cannot read: the policy then leaves
// the node alone rather than fall through to less trusted evidence.
const stop = "?"

// Variable is a named CEL expression; later ones read earlier ones as variables.<name>.
type Variable struct{ Name, Expression string }

// PolicyVariables are the CEL variables both policies share. The last, value, is the label
// value the evidence gives: "" when there is none, "?" when CEL cannot tell, else the value.
// The policies run only where the webhook's match conditions hold, so the node shows GPU
// evidence. The tables (instance types, names, the product-token chain) stand once each.
func PolicyVariables() []Variable {
	kb := gpuinfo.Default()
	vars := []Variable{
		{"labels", "has(object.metadata.labels) ? object.metadata.labels : {}"},
		{"data", "params != null && has(params.data) ? params.data : {}"},
		{"labelKey", fmt.Sprintf("'labelKey' in variables.data ? variables.data['labelKey'] : %s", quote(admit.DefaultLabelKey))},
		{"autoLabel", "'autoLabel' in variables.data && variables.data['autoLabel'] == 'true'"},
		{"overwrite", "'overwrite' in variables.data && variables.data['overwrite'] == 'true'"},
		{"instanceTypes", instanceTypeMap(kb)},
		{"names", nameMap(kb, true)},
		{"aliases", nameMap(kb, false)},
	}
	// Every source that reads a product string puts it in one list, and one chain names them
	// all: products[i] is the model product_inputs[i] names, '-' for none.
	var inputs, names []string
	// The device plugin's resource named after its model is the most trusted evidence; CEL
	// does not read it.
	reads := []string{fmt.Sprintf("%s ? %s : ''", namedResourceExpression(), quote(stop))}
	for _, c := range kb.Conventions() {
		in, read := sourceExpression(kb, c)
		if read == nil {
			continue
		}
		product := "'-'"
		if in != "" {
			product = fmt.Sprintf("variables.products[%d]", len(inputs))
			inputs = append(inputs, in)
		}
		reads = append(reads, read(product))
	}
	// MIG profiles, the least trusted evidence, may name a model (gpuinfo's mig.go); CEL does
	// not read them.
	reads = append(reads, fmt.Sprintf("%s || (%s in variables.labels && string(variables.labels[%s]).startsWith('all-')) ? %s : ''",
		migResourceExpression(), quote(gpuinfo.LabelMIGConfig), quote(gpuinfo.LabelMIGConfig), quote(stop)))
	vars = append(vars,
		Variable{"product_inputs", "[" + strings.Join(inputs, ", ") + "]"},
		Variable{"products", fmt.Sprintf("variables.product_inputs.map(p, p == '' ? '-' : %s)", productChain(kb, "p", "-"))},
	)
	for i, read := range reads {
		name := fmt.Sprintf("s%02d", i)
		vars = append(vars, Variable{name, read})
		names = append(names, "variables."+name)
	}
	all := strings.Join(names, ", ")
	vars = append(vars,
		Variable{"accelerators", acceleratorsExpression()},
		Variable{"first", fmt.Sprintf("variables.accelerators ? %s : [%s].filter(x, x != '')", list([]string{stop}), all)},
		Variable{"chosen", "size(variables.first) == 0 ? '' : variables.first[0]"},
		// A more specific name of the chosen chip wins from any source; a source CEL cannot
		// read might hold one, so then CEL cannot tell.
		Variable{"refined", fmt.Sprintf("variables.chosen in %s ? ('?' in [%s] ? ['?'] : [%s].filter(x, x in %s[variables.chosen])) : []",
			refinesMap(kb), all, all, refinesMap(kb))},
		Variable{"value", "size(variables.refined) > 0 ? variables.refined[0] : variables.chosen"},
	)
	return vars
}

// sourceExpression reads one convention's label. It returns the product string the chain
// must name ("" when the reader needs none) and the source's value given the chain's answer
// for it: the empty string when the label is absent or names nothing and the webhook would go on to the
// next source, stop when CEL cannot tell what the webhook would conclude, else the label
// value. read is nil for a convention CEL does not read.
func sourceExpression(kb *gpuinfo.KB, c *gpuinfo.Convention) (input string, read func(product string) string) {
	switch {
	case c.Reader() == "pci-key":
		// A PCI device ID in the key (AMD's legacy count labels): CEL does not read it, so at
		// this place in the trust order it cannot tell.
		return "", func(string) string {
			return fmt.Sprintf("variables.labels.exists(k, k.startsWith(%s)) ? %s : ''", quote(c.Key), quote(stop))
		}
	case c.Reader() == "nfd-pci":
		// NFD labels with a device ID can name a model; without one, they name none.
		return "", func(string) string {
			return fmt.Sprintf("variables.labels.exists(k, k.startsWith(%s) && k.matches(%s)) ? %s : ''",
				quote(nfdPrefix), rawQuote(`^feature\.node\.kubernetes\.io/pci-([0-9a-f]{4}_)?(10de|1002|8086)_[0-9a-f]{4}`), quote(stop))
		}
	case c.Prefix || c.Reader() == "present":
		return "", nil // names no model: Intel's table rows have none, presence labels never do
	}
	v := fmt.Sprintf("string(variables.labels[%s])", quote(c.Key))
	present := fmt.Sprintf("%s in variables.labels && %s != ''", quote(c.Key), v)
	guard := func(e string) string { return fmt.Sprintf("%s ? (%s) : ''", present, e) }
	or := func(product, miss string) string {
		return fmt.Sprintf("(%s == '-' ? %s : %s)", product, quote(miss), product)
	}
	lower := v + ".lowerAscii()"
	switch c.Reader() {
	case "nvml":
		// A product the tables do not know is named by the webhook's own rule: stop. A MIG
		// profile's memory picks a variant: stop where the product has variants.
		input = fmt.Sprintf("(%s ? %s.upperAscii().split('-MIG-')[0] : '')", present, v)
		return input, func(p string) string {
			return guard(fmt.Sprintf("[%s].map(r, %s.upperAscii().contains('-MIG-') && r in %s ? %s : %s)[0]",
				or(p, stop), v, list(variantValues(kb)), quote(stop), variantPick(kb, "r", c.Arg)))
		}
	case "product":
		return fmt.Sprintf("(%s ? %s : '')", present, v), func(p string) string { return guard(or(p, "")) }
	case "name":
		named := fmt.Sprintf("variables.names[%s]", lower)
		if c.Arg != "" {
			named = variantPick(kb, named, c.Arg)
		}
		values := valuesMap(c)
		return fmt.Sprintf("(%s ? %s : '')", present, v), func(p string) string {
			return guard(fmt.Sprintf("%s in %s ? %s[%s] : %s in variables.names ? %s : %s", lower, values, values, lower, lower, named, or(p, "")))
		}
	case "cloud":
		stripped := fmt.Sprintf("(%s.startsWith('nvidia-') ? %s.substring(7) : %s)", lower, lower, lower)
		stripped = fmt.Sprintf("(%s.startsWith('tesla-') ? %s.substring(6) : %s)", stripped, stripped, stripped)
		return fmt.Sprintf("(%s ? %s : '')", present, stripped), func(p string) string {
			return guard(fmt.Sprintf("%s in variables.aliases ? variables.aliases[%s] : %s", lower, lower, or(p, "")))
		}
	case "instance-type":
		// Rows from the config's instanceTypes win over the tables; CEL cannot read them.
		return "", func(string) string {
			return guard(fmt.Sprintf("'instanceTypes' in variables.data && variables.data['instanceTypes'].lowerAscii().contains(%s) ? %s : %s in variables.instanceTypes ? variables.instanceTypes[%s] : ''",
				lower, quote(stop), lower, lower))
		}
	case "instance-type-name":
		// A type no table lists may spell its GPU (gpuinfo's names.go), which CEL does not
		// read: where the name holds any model's spelling it cannot tell. An ml. name of a
		// listed EC2 type is that type.
		rest := lower + ".substring(3)"
		spelled := fmt.Sprintf("%s.findAll('[a-z0-9]+').join('').matches(%s)", lower, quote(strings.Join(kb.TypeNameSpellings(), "|")))
		return "", func(string) string {
			return guard(fmt.Sprintf("%s in variables.instanceTypes || ('instanceTypes' in variables.data && variables.data['instanceTypes'].lowerAscii().contains(%s)) ? '' : "+
				"%s.startsWith('ml.') && 'instanceTypes' in variables.data && variables.data['instanceTypes'].lowerAscii().contains(%s) ? %s : "+
				"%s.startsWith('ml.') && %s in variables.instanceTypes ? variables.instanceTypes[%s] : %s ? %s : ''",
				lower, lower, lower, rest, quote(stop), lower, rest, rest, spelled, quote(stop)))
		}
	case "pci-id":
		id := fmt.Sprintf("(%s.startsWith('0x') ? %s.substring(2) : %s)", lower, lower, lower)
		return "", func(string) string {
			return guard(fmt.Sprintf("%s in %s ? %s[%s] : ''", id, pciMap(kb, c.Arg), pciMap(kb, c.Arg), id))
		}
	}
	return "", nil
}

// namedResourceExpression is true when capacity or allocatable holds a device plugin
// resource named after its model (KubeVirt's nvidia.com/GA100_A100_SXM4_40GB).
func namedResourceExpression() string {
	var tests []string
	for _, f := range []string{"capacity", "allocatable"} {
		tests = append(tests, fmt.Sprintf("(has(object.status) && has(object.status.%s) && object.status.%s.exists(k, k.startsWith('nvidia.com/') && k.matches(%s)))",
			f, f, rawQuote(gpuinfo.NamedResourcePattern)))
	}
	return strings.Join(tests, " || ")
}

// migResourceExpression is true when capacity or allocatable holds a MIG resource.
func migResourceExpression() string {
	var tests []string
	for _, f := range []string{"capacity", "allocatable"} {
		tests = append(tests, fmt.Sprintf("(has(object.status) && has(object.status.%s) && object.status.%s.exists(k, k.startsWith('nvidia.com/mig-')))", f, f))
	}
	return "(" + strings.Join(tests, " || ") + ")"
}

// acceleratorsExpression is true when the node reports accelerators that are not GPUs
// (Neuron, Gaudi, TPU): the webhook never labels such a node, and CEL does not weigh them
// against GPU resources as the webhook does.
func acceleratorsExpression() string {
	return celResourcesShown(gpuinfo.AcceleratorResourceNames(), gpuinfo.AcceleratorResourcePrefixes())
}

// productChain names the model a product string names, as gpuinfo matches it: the first
// model, in table order, all of whose tokens the string's upper-case alphanumeric runs
// contain. A model that is not a GPU is stop (the webhook leaves such nodes alone); no
// match is miss.
func productChain(kb *gpuinfo.KB, s, miss string) string {
	var b strings.Builder
	// CEL has no let: a one-element list's map binds the tokens to t once.
	fmt.Fprintf(&b, "[%s.upperAscii().findAll('[A-Z0-9]+')].map(t, ", s)
	for _, m := range kb.Models() {
		for _, set := range m.Match() {
			value := m.LabelValue()
			if m.Kind != gpuinfo.KindGPU {
				value = stop
			}
			fmt.Fprintf(&b, "%s.all(w, w in t) ? %s : ", list(set), quote(value))
		}
	}
	fmt.Fprintf(&b, "%s)[0]", quote(miss))
	return b.String()
}

// nameMap maps the lower-case names (with names) and aliases a label may carry to values;
// an alias wins over a name, as gpuinfo looks aliases up first.
func nameMap(kb *gpuinfo.KB, names bool) string {
	m := map[string]string{}
	value := func(model *gpuinfo.Model) string {
		if model.Kind != gpuinfo.KindGPU {
			return stop
		}
		return model.LabelValue()
	}
	for _, model := range kb.Models() {
		if names {
			m[strings.ToLower(model.Name)] = value(model)
		}
	}
	for _, model := range kb.Models() {
		for _, a := range model.Aliases {
			m[a] = value(model)
		}
	}
	return celMap(m)
}

// valuesMap is a convention's own spellings of models (Nebius's RTX6000).
func valuesMap(c *gpuinfo.Convention) string {
	m := map[string]string{}
	for k, model := range c.Values {
		m[k] = model.LabelValue()
	}
	return celMap(m)
}

// variantPick replaces a model that has memory variants by the variant whose memory is
// nearest the memory label (MiB), as gpuinfo does; ties keep the model named.
func variantPick(kb *gpuinfo.KB, named, memKey string) string {
	mem := fmt.Sprintf("int(variables.labels[%s])", quote(memKey))
	valid := fmt.Sprintf("%s in variables.labels && variables.labels[%s].matches('^0*[1-9][0-9]{0,11}$')", quote(memKey), quote(memKey))
	out := named
	for _, fam := range variantFamilies(kb) {
		lo, hi := fam[0], fam[1]
		sum := lo.MemoryMiB + hi.MemoryMiB
		out = fmt.Sprintf("(%s in %s && %s ? (%s * 2 < %d ? %s : %s * 2 > %d ? %s : %s) : %s)",
			named, list([]string{lo.LabelValue(), hi.LabelValue()}), valid, mem, sum, quote(lo.LabelValue()), mem, sum, quote(hi.LabelValue()), named, out)
	}
	return out
}

// variantFamilies are the models with memory variants, each as [smaller, larger].
func variantFamilies(kb *gpuinfo.KB) [][2]*gpuinfo.Model {
	var out [][2]*gpuinfo.Model
	for _, m := range kb.Models() {
		if m.VariantOf == "" {
			continue
		}
		base, _ := kb.Model(m.VariantOf)
		pair := [2]*gpuinfo.Model{base, m}
		if base.MemoryMiB > m.MemoryMiB {
			pair = [2]*gpuinfo.Model{m, base}
		}
		out = append(out, pair)
	}
	return out
}

func variantValues(kb *gpuinfo.KB) []string {
	var out []string
	for _, f := range variantFamilies(kb) {
		out = append(out, f[0].LabelValue(), f[1].LabelValue())
	}
	return out
}

// refinesMap maps a value to the values of models that refine it (H100 to H100-MEGA): more
// specific names of the same chip, which win wherever any source gives one.
func refinesMap(kb *gpuinfo.KB) string {
	m := map[string][]string{}
	for _, model := range kb.Models() {
		if model.Refines != "" {
			base, _ := kb.Model(model.Refines)
			m[base.LabelValue()] = append(m[base.LabelValue()], model.LabelValue())
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %s", quote(k), list(m[k])))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// instanceTypeMap maps the tables' instance types, lower case, to values.
func instanceTypeMap(kb *gpuinfo.KB) string {
	m := map[string]string{}
	for _, it := range kb.InstanceTypes() {
		v := it.Model.LabelValue()
		if it.Model.Kind != gpuinfo.KindGPU {
			v = stop
		}
		m[strings.ToLower(it.Name)] = v
	}
	return celMap(m)
}

// pciMap maps one vendor's device IDs to the values of the models the PCI table names.
func pciMap(kb *gpuinfo.KB, vendor string) string {
	m := map[string]string{}
	for _, d := range kb.PCIDevices() {
		if d.Vendor == vendor && d.Model != nil {
			m[d.Device] = d.Model.LabelValue()
		}
	}
	return celMap(m)
}

func celMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = quote(k) + ": " + quote(m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Policy variables' conclusions, as the policies use them.
const (
	celNameable = "!(variables.value in ['', '?'])"
	celHasLabel = "variables.labelKey in variables.labels"
	celValid    = "variables.labels[variables.labelKey].matches('^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$')"
	// celApply: label a node that lacks it, or correct a wrong one when overwrite is on. A
	// nodeSelector in the config is a label selector CEL cannot read: the policy then does
	// nothing (select nodes with the binding's objectSelector instead).
	celApply = "variables.autoLabel && !('nodeSelector' in variables.data && variables.data['nodeSelector'] != '') && " +
		celNameable + " && (!(" + celHasLabel + ") || (variables.overwrite && variables.labels[variables.labelKey] != variables.value))"
)

func policyVariables() []admissionregistrationv1.Variable {
	var out []admissionregistrationv1.Variable
	for _, v := range PolicyVariables() {
		out = append(out, admissionregistrationv1.Variable{Name: v.Name, Expression: v.Expression})
	}
	return out
}

func policyConstraints() *admissionregistrationv1.MatchResources {
	var rules []admissionregistrationv1.NamedRuleWithOperations
	for _, r := range Rules() {
		rules = append(rules, admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: r})
	}
	return &admissionregistrationv1.MatchResources{ResourceRules: rules}
}

var paramKind = &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"}

func paramRef() *admissionregistrationv1.ParamRef {
	return &admissionregistrationv1.ParamRef{Name: admit.DefaultConfigName, Namespace: Namespace,
		ParameterNotFoundAction: ptr.To(admissionregistrationv1.AllowAction)}
}

// AuditPolicy warns, in the webhook's words, about GPU nodes without the label and about
// invalid values: the audit mode with nothing to run.
func AuditPolicy() []any {
	missing := fmt.Sprintf(`%s ? 'node ' + object.metadata.name + ' has GPUs but no ' + variables.labelKey + ' label; fix: kubectl label node ' + object.metadata.name + ' ' + variables.labelKey + '=' + variables.value : 'node ' + object.metadata.name + ' has GPUs but its model is unknown; label it: kubectl label node ' + object.metadata.name + ' ' + variables.labelKey + '=<model>, or add its instance type to the webhook config'`, celNameable)
	invalid := fmt.Sprintf(`'node ' + object.metadata.name + ' label ' + variables.labelKey + '="' + variables.labels[variables.labelKey] + '" is not a lowercase accelerator name; fix: kubectl label node ' + object.metadata.name + ' ' + variables.labelKey + '=' + (%s ? variables.value : '<model>') + ' --overwrite'`, celNameable)
	return []any{
		&admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: AuditPolicyName, Labels: appLabels},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				ParamKind:        paramKind,
				MatchConstraints: policyConstraints(),
				MatchConditions:  MatchConditions(admit.DefaultLabelKey),
				FailurePolicy:    ptr.To(admissionregistrationv1.Ignore),
				Variables:        policyVariables(),
				Validations: []admissionregistrationv1.Validation{
					{Expression: celHasLabel, MessageExpression: missing, Reason: ptr.To(metav1.StatusReasonInvalid)},
					{Expression: "!(" + celHasLabel + ") || " + celValid, MessageExpression: invalid, Reason: ptr.To(metav1.StatusReasonInvalid)},
				},
			},
		},
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: AuditPolicyName, Labels: appLabels},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        AuditPolicyName,
				ParamRef:          paramRef(),
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn, admissionregistrationv1.Audit},
			},
		},
	}
}

// LabelPolicy adds the label, on CREATE and on status updates of unlabeled nodes, when the
// params ConfigMap opts in.
func LabelPolicy() []any {
	patch := fmt.Sprintf("Object{metadata: Object.metadata{labels: %s ? {variables.labelKey: variables.value} : {}}}", celApply)
	return []any{
		&admissionregistrationv1.MutatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: PolicyName, Labels: appLabels},
			Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
				ParamKind:          paramKind,
				MatchConstraints:   policyConstraints(),
				MatchConditions:    MatchConditions(admit.DefaultLabelKey),
				FailurePolicy:      ptr.To(admissionregistrationv1.Ignore),
				ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy,
				Variables:          policyVariables(),
				Mutations: []admissionregistrationv1.Mutation{{
					PatchType:          admissionregistrationv1.PatchTypeApplyConfiguration,
					ApplyConfiguration: &admissionregistrationv1.ApplyConfiguration{Expression: patch},
				}},
			},
		},
		&admissionregistrationv1.MutatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: PolicyName, Labels: appLabels},
			Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: PolicyName, ParamRef: paramRef()},
		},
	}
}

// PolicyInstall is the whole policy-mode install: the namespace and ConfigMap that hold the
// opt-in settings, and both policies with their bindings.
func PolicyInstall() []any {
	objs := []any{
		&corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: appLabels},
		},
		&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: meta(admit.DefaultConfigName),
			Data: map[string]string{admit.KeyAutoLabel: "false"}},
	}
	return append(append(objs, AuditPolicy()...), LabelPolicy()...)
}
