package skypilot

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Node is what the analysis reads of one node: its labels and accelerator resources, and what
// the webhook concluded about it.
type Node struct {
	Name   string
	Labels map[string]string
	// Capacity and Allocatable are resource counts by name; a key that is present with 0 is
	// still present, as SkyPilot tests keys, not counts, when it picks the resource.
	Capacity, Allocatable map[string]int64
	// GPU and Accelerator are the webhook's inference: a GPU node, or one with an accelerator
	// that is not a GPU (TPU, Neuron, Gaudi).
	GPU, Accelerator bool
	// Value is the label value the webhook's evidence gives, "" when the model is unknown.
	Value string
	// DRAGPUs are the physical GPUs the node's ResourceSlices publish (Dynamic Resource
	// Allocation), and DRADrivers the drivers that publish them.
	DRAGPUs    int64
	DRADrivers []string
	// Partial are the node's GPU resources whose units are not whole GPUs (MIG slices,
	// partitions, shared replicas, memory or compute shares), which SkyPilot does not count.
	Partial []string
}

// Options are what the analysis cannot read from the nodes.
type Options struct {
	// CustomResourceKey is CUSTOM_GPU_RESOURCE_KEY where SkyPilot runs, when known.
	CustomResourceKey string
	// WebhookLabels says `webhook label` writes SkyPilot's own key (the config's labelKey is
	// skypilot.co/accelerator), so it is the fix for unlabeled nodes.
	WebhookLabels bool
	// LabelCommand is how the fix names that command: "webhook label" unless set (as a
	// kubectl plugin, "kubectl gpu-label label").
	LabelCommand string
}

// Severity orders findings.
type Severity string

const (
	// Critical: every SkyPilot GPU request in the cluster fails, or a whole label scheme is
	// ignored.
	Critical Severity = "critical"
	// Warning: nodes SkyPilot will not see; a label fixes it.
	Warning Severity = "warning"
	// Advisory: a consequence of the cluster's make-up that no label fixes (mixed GPU vendors,
	// TPUs, GPUs not reported yet). Reported, not counted by --fail-on-findings.
	Advisory Severity = "advisory"
)

// Counted says whether `check --fail-on-findings` fails on it.
func (s Severity) Counted() bool { return s == Critical || s == Warning }

// Reason names a cluster finding.
type Reason string

const (
	ReasonInvalidValue    Reason = "InvalidLabelValue"
	ReasonSchemeIgnored   Reason = "LabelSchemeIgnored"
	ReasonNoScheme        Reason = "NoLabelScheme"
	ReasonNoGPUResource   Reason = "NoGPUResource"
	ReasonOtherLabelsOnly Reason = "OtherToolLabelsOnly"
	ReasonUnlabeled       Reason = "NoAcceleratorLabel"
	ReasonMixedResources  Reason = "MixedGPUResources"
	ReasonTPUHidden       Reason = "TPUNotRequestable"
	ReasonNotReported     Reason = "GPUsNotReported"
	ReasonPartialOnly     Reason = "GPUsAsSlicesOnly"
	ReasonDRAManaged      Reason = "GPUsManagedByDRA"
)

// Finding is one thing SkyPilot will get wrong about the cluster.
type Finding struct {
	Severity Severity `json:"severity"`
	Reason   Reason   `json:"reason"`
	// Message says what SkyPilot will do and why, naming the nodes and what each carries.
	Message string   `json:"message"`
	Nodes   []string `json:"nodes"`
	// Fix is the exact command, or what to change where no command fixes it.
	Fix string `json:"fix"`
}

// Cluster is what SkyPilot will see.
type Cluster struct {
	// LabelScheme is the formatter SkyPilot picks ("" when none), LabelKeys the keys it reads,
	// and DecidedBy the first node, by name, whose label picked it.
	LabelScheme string   `json:"labelScheme"`
	LabelKeys   []string `json:"labelKeys"`
	DecidedBy   string   `json:"decidedBy,omitempty"`
	// GPUResource is the one resource SkyPilot counts GPUs by, and GPUResourceFrom why.
	GPUResource     string    `json:"gpuResource"`
	GPUResourceFrom string    `json:"gpuResourceFrom"`
	Findings        []Finding `json:"findings"`
}

// Counted is the number of findings `--fail-on-findings` counts.
func (c *Cluster) Counted() int {
	n := 0
	for _, f := range c.Findings {
		if f.Severity.Counted() {
			n++
		}
	}
	return n
}

// About returns the findings that name the node.
func (c *Cluster) About(node string) []Finding {
	var out []Finding
	for _, f := range c.Findings {
		if slices.Contains(f.Nodes, node) {
			out = append(out, f)
		}
	}
	return out
}

// verdict is one formatter's state after reading the labels: SkyPilot decides each formatter
// by the first nonempty label of its keys, in node-list order (by name: the apiserver lists
// nodes in key order) and label-key order (the API serialises label maps sorted).
type verdict struct {
	decided        bool
	reason         string // why the deciding value is invalid, "" when valid
	node, key, val string
}

// Analyze applies SkyPilot's rules to the nodes.
func Analyze(nodes []Node, opts Options) Cluster {
	nodes = slices.Clone(nodes)
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })

	verdicts := make([]verdict, len(Formatters))
	for _, n := range nodes {
		for _, key := range sortedKeys(n.Labels) {
			v := n.Labels[key]
			if strings.TrimSpace(v) == "" {
				continue // the later master skips empty values; the older copy judged them too
			}
			for i := range Formatters {
				if !verdicts[i].decided && Formatters[i].Reads(key) {
					verdicts[i] = verdict{decided: true, reason: Formatters[i].Invalid(v), node: n.Name, key: key, val: v}
				}
			}
		}
	}
	selected := -1
	for i, v := range verdicts {
		if v.decided && v.reason == "" {
			selected = i
			break
		}
	}

	c := Cluster{LabelKeys: []string{}, Findings: []Finding{}}
	var scheme *Formatter
	if selected >= 0 {
		scheme = &Formatters[selected]
		c.LabelScheme, c.LabelKeys, c.DecidedBy = scheme.Name, scheme.Keys, verdicts[selected].node
	}
	c.GPUResource, c.GPUResourceFrom = resourceKey(nodes, opts)

	a := analysis{Cluster: &c, nodes: nodes, opts: opts, scheme: scheme}
	a.ignoredSchemes(verdicts, selected)
	a.invalidValues()
	a.unseenNodes()
	a.resources()
	a.tpus()
	order := map[Severity]int{Critical: 0, Warning: 1, Advisory: 2}
	sort.SliceStable(c.Findings, func(i, j int) bool {
		return order[c.Findings[i].Severity] < order[c.Findings[j].Severity]
	})
	return c
}

type analysis struct {
	*Cluster
	nodes  []Node
	opts   Options
	scheme *Formatter
}

func (a *analysis) add(f Finding) { a.Findings = append(a.Findings, f) }

// schemeText names what SkyPilot reads in this cluster.
func (a *analysis) schemeText() string {
	if a.scheme == nil {
		return "no GPU label"
	}
	return strings.Join(a.scheme.Keys, " and ")
}

// ignoredSchemes: a formatter whose first label is invalid is out for the whole cluster
// (detect_gpu_label_formatter), even if every other node's label is valid. Only those ranked
// above the chosen one matter: they would otherwise have won.
func (a *analysis) ignoredSchemes(verdicts []verdict, selected int) {
	for i, v := range verdicts {
		if selected >= 0 && i >= selected {
			break
		}
		if !v.decided || v.reason == "" {
			continue
		}
		f := &Formatters[i]
		consequence := "reads " + a.schemeText() + " instead"
		if a.scheme == nil {
			consequence = "finds no GPU labels, so every SkyPilot GPU request in the cluster fails"
		}
		a.add(Finding{
			Severity: Critical, Reason: ReasonSchemeIgnored, Nodes: []string{v.node},
			Message: fmt.Sprintf("node %s is the first node (by name) with %s, and its value %q is %s: SkyPilot ignores %s on every node and %s",
				v.node, v.key, v.val, v.reason, v.key, consequence),
			Fix: a.relabel(f, v.node, v.key, v.val),
		})
	}
	if a.scheme == nil && !hasFinding(a.Findings, ReasonSchemeIgnored) && len(a.gpuNodes()) > 0 {
		var keys []string
		for _, f := range Formatters {
			keys = append(keys, f.Keys...)
		}
		a.add(Finding{
			Severity: Critical, Reason: ReasonNoScheme, Nodes: a.gpuNodes(),
			Message: fmt.Sprintf("no node has a label SkyPilot reads (%s): SkyPilot finds no GPU labels and every GPU request in the cluster fails", strings.Join(keys, ", ")),
			Fix:     a.labelFix(a.gpuNodesList()),
		})
	}
}

// invalidValues: once the scheme is chosen, SkyPilot checks every node's value of its keys
// before any GPU request (get_accelerator_label_key_values) and fails the request on the
// first invalid one.
func (a *analysis) invalidValues() {
	if a.scheme == nil {
		return
	}
	var nodes, what, fixes []string
	for _, n := range a.nodes {
		for _, key := range sortedKeys(n.Labels) {
			v := n.Labels[key]
			if !a.scheme.Reads(key) {
				continue
			}
			if why := a.scheme.Invalid(v); why != "" {
				nodes = append(nodes, n.Name)
				what = append(what, fmt.Sprintf("node %s has %s=%s (%s)", n.Name, key, v, why))
				fixes = append(fixes, a.relabel(a.scheme, n.Name, key, v))
			}
		}
	}
	if len(nodes) == 0 {
		return
	}
	a.add(Finding{
		Severity: Critical, Reason: ReasonInvalidValue, Nodes: slices.Compact(nodes),
		Message: strings.Join(what, "; ") + ": SkyPilot rejects the cluster's labels and every SkyPilot GPU request in the cluster fails",
		Fix:     strings.Join(fixes, "; "),
	})
}

// relabel is the command that makes the value valid for the formatter: the webhook's own
// value for SkyPilot's key where it knows the model.
func (a *analysis) relabel(f *Formatter, node, key, value string) string {
	fixed := ""
	if f.Fixed != nil {
		fixed = f.Fixed(value)
	}
	if key == KeySkyPilot {
		if n := a.node(node); n != nil && n.Value != "" {
			fixed = n.Value
		}
	}
	if fixed == "" {
		return fmt.Sprintf("kubectl label node %s %s-", node, key)
	}
	return fmt.Sprintf("kubectl label node %s %s=%s --overwrite", node, key, fixed)
}

// unseenNodes: a GPU node without any key of the chosen scheme is not seen by SkyPilot
// (get_unlabeled_accelerator_nodes tests the keys' presence).
func (a *analysis) unseenNodes() {
	if a.scheme == nil {
		return // NoLabelScheme or LabelSchemeIgnored already names them
	}
	var other, none []*Node
	var carries []string
	for _, n := range a.gpuNodesList() {
		if a.hasSchemeKey(n) {
			continue
		}
		if keys := otherKeys(n, a.scheme); len(keys) > 0 {
			other = append(other, n)
			carries = append(carries, fmt.Sprintf("%s (%s)", n.Name, strings.Join(keys, ", ")))
		} else {
			none = append(none, n)
		}
	}
	head := fmt.Sprintf("SkyPilot reads only %s in this cluster (its %s scheme, picked by node %s)", a.schemeText(), a.scheme.Name, a.DecidedBy)
	if len(other) > 0 {
		a.add(Finding{
			Severity: Warning, Reason: ReasonOtherLabelsOnly, Nodes: names(other),
			Message: head + "; these GPU nodes carry only labels it does not read here, so SkyPilot does not see their GPUs: " + strings.Join(carries, ", "),
			Fix:     a.labelFix(other),
		})
	}
	if len(none) > 0 {
		a.add(Finding{
			Severity: Warning, Reason: ReasonUnlabeled, Nodes: names(none),
			Message: head + "; these GPU nodes carry no label any SkyPilot scheme reads, so SkyPilot does not see their GPUs: " + strings.Join(names(none), ", "),
			Fix:     a.labelFix(none),
		})
	}
}

// labelFix labels nodes with SkyPilot's key: `webhook label` where it writes that key and
// knows the model, kubectl with a placeholder where it does not.
func (a *analysis) labelFix(nodes []*Node) string {
	var cmds, ignored []string
	byWebhook := false
	for _, n := range nodes {
		switch {
		case hasKey(n.Labels, KeySkyPilot):
			// SkyPilot's label is there but its scheme was ignored: fixing the value that
			// made it so is the fix.
			ignored = append(ignored, n.Name)
		case n.Value != "" && a.opts.WebhookLabels:
			byWebhook = true
		case n.Value != "":
			cmds = append(cmds, fmt.Sprintf("kubectl label node %s %s=%s", n.Name, KeySkyPilot, n.Value))
		default:
			cmds = append(cmds, fmt.Sprintf("kubectl label node %s %s=<model>", n.Name, KeySkyPilot))
		}
	}
	if byWebhook {
		label := a.opts.LabelCommand
		if label == "" {
			label = "webhook label"
		}
		cmds = append([]string{label}, cmds...)
	}
	if len(ignored) > 0 {
		cmds = append(cmds, fmt.Sprintf("fix the value named by %s; SkyPilot then reads %s on %s", ReasonSchemeIgnored, KeySkyPilot, strings.Join(ignored, ", ")))
	}
	return strings.Join(cmds, "; ")
}

// resources: SkyPilot counts GPUs by one resource for the whole cluster, so nodes that report
// another show 0 GPUs; nodes that report none yet show 0 too, and so do nodes whose GPUs a DRA
// driver publishes in ResourceSlices; if no node reports it at all, SkyPilot finds no GPUs
// (detect_accelerator_resource).
func (a *analysis) resources() {
	gpuNodes := a.gpuNodesList()
	if len(gpuNodes) == 0 {
		return
	}
	var mixed, unreported, dra, partial []*Node
	others := map[string]bool{}
	for _, n := range gpuNodes {
		if n.Allocatable[a.GPUResource] > 0 || hasKey(n.Capacity, a.GPUResource) {
			if n.Allocatable[a.GPUResource] <= 0 {
				unreported = append(unreported, n)
			}
			continue
		}
		switch k := vendorKey(n.Capacity, a.GPUResource); {
		case k != "":
			mixed = append(mixed, n)
			others[k] = true
		case n.DRAGPUs > 0:
			dra = append(dra, n)
		case len(n.Partial) > 0:
			partial = append(partial, n) // no device plugin is to be waited for: this one reports slices
		default:
			unreported = append(unreported, n)
		}
	}
	reported := false
	for _, n := range a.nodes {
		if hasKey(n.Allocatable, a.GPUResource) || hasKey(n.Allocatable, ResourceTPU) {
			reported = true
		}
	}
	if !reported {
		f := Finding{
			Severity: Critical, Reason: ReasonNoGPUResource, Nodes: names(gpuNodes),
			Message: fmt.Sprintf("no node reports %s (or %s) in its allocatable resources: SkyPilot finds no GPUs in the cluster and every GPU request fails", a.GPUResource, ResourceTPU),
			Fix:     fmt.Sprintf("install or repair the device plugin that reports %s; kubectl describe node %s", a.GPUResource, gpuNodes[0].Name),
		}
		if len(dra) > 0 {
			f.Message += fmt.Sprintf("; %d of these nodes have GPUs published through Dynamic Resource Allocation, which SkyPilot does not count (%s)", len(dra), DRAUpstream)
			if len(dra) == len(gpuNodes) {
				f.Fix = fmt.Sprintf("none for SkyPilot until it reads ResourceSlices; until then, give SkyPilot nodes whose device plugin reports %s", a.GPUResource)
			}
		}
		a.add(f)
	}
	if len(mixed) > 0 {
		other := strings.Join(sortedKeys(others), ", ")
		a.add(Finding{
			Severity: Advisory, Reason: ReasonMixedResources, Nodes: names(mixed),
			Message: fmt.Sprintf("SkyPilot counts GPUs by one resource for the whole cluster, %s (%s); these nodes report %s instead, so SkyPilot shows 0 GPUs on them and places no GPU request there: %s",
				a.GPUResource, a.GPUResourceFrom, other, strings.Join(names(mixed), ", ")),
			Fix: fmt.Sprintf("keep AMD and NVIDIA GPU nodes in separate clusters for SkyPilot, or set %s=%s where SkyPilot runs (the %s nodes then show 0 GPUs)",
				CustomKeyEnvVar, strings.Split(other, ", ")[0], a.GPUResource),
		})
	}
	if len(dra) > 0 {
		var what []string
		for _, n := range dra {
			what = append(what, fmt.Sprintf("%s (%d in ResourceSlices of %s)", n.Name, n.DRAGPUs, strings.Join(n.DRADrivers, ", ")))
		}
		a.add(Finding{
			Severity: Advisory, Reason: ReasonDRAManaged, Nodes: names(dra),
			Message: fmt.Sprintf("SkyPilot counts GPUs by %s in each node's allocatable resources; the GPUs of these nodes are managed by Dynamic Resource Allocation and published in ResourceSlices instead, so SkyPilot counts 0 GPUs on them and places no GPU request there, whatever their label: %s",
				a.GPUResource, strings.Join(what, ", ")),
			Fix: fmt.Sprintf("none until SkyPilot reads ResourceSlices (%s); until then, run SkyPilot's GPU jobs on nodes whose device plugin reports %s", DRAUpstream, a.GPUResource),
		})
	}
	if len(partial) > 0 {
		var what []string
		res := map[string]bool{}
		for _, n := range partial {
			what = append(what, fmt.Sprintf("%s (%s)", n.Name, strings.Join(n.Partial, ", ")))
			for _, r := range n.Partial {
				res[r] = true
			}
		}
		a.add(Finding{
			Severity: Advisory, Reason: ReasonPartialOnly, Nodes: names(partial),
			Message: fmt.Sprintf("SkyPilot counts GPUs by %s in each node's allocatable resources; these nodes report their GPUs only as MIG slices, partitions or shares, which it does not count, so it shows 0 GPUs on them and places no GPU request there: %s",
				a.GPUResource, strings.Join(what, ", ")),
			Fix: partialFix(sortedKeys(res), a.GPUResource),
		})
	}
	if len(unreported) > 0 && reported {
		a.add(Finding{
			Severity: Advisory, Reason: ReasonNotReported, Nodes: names(unreported),
			Message: fmt.Sprintf("these GPU nodes report no %s in their allocatable resources yet, so SkyPilot counts 0 GPUs on them and places no GPU request there: %s",
				a.GPUResource, strings.Join(names(unreported), ", ")),
			Fix: fmt.Sprintf("wait for the device plugin to report %s, or check it: kubectl describe node %s", a.GPUResource, unreported[0].Name),
		})
	}
}

// partialFix says how to make such GPUs count: the device plugins' own ways of reporting
// slices and replicas under the resource SkyPilot counts, or its custom resource key.
func partialFix(res []string, counted string) string {
	var fixes []string
	if slices.ContainsFunc(res, func(r string) bool { return strings.HasPrefix(r, "nvidia.com/mig-") }) {
		fixes = append(fixes, "run NVIDIA's device plugin with the MIG strategy single (the GPU operator's mig.strategy=single), so that each MIG instance is reported as nvidia.com/gpu")
	}
	if slices.ContainsFunc(res, func(r string) bool { return strings.HasPrefix(r, "nvidia.com/gpu.") }) {
		fixes = append(fixes, "set renameByDefault: false in the device plugin's sharing config, so that shared replicas are reported as nvidia.com/gpu")
	}
	fixes = append(fixes, fmt.Sprintf("set %s=%s where SkyPilot runs, if every GPU node of the cluster reports it (SkyPilot then counts that resource instead of %s)", CustomKeyEnvVar, res[0], counted))
	return strings.Join(fixes, "; or ")
}

// tpus: SkyPilot requests TPUs only through GKE's scheme (cloud.google.com/gke-tpu-accelerator);
// under any other scheme no TPU request finds a node.
func (a *analysis) tpus() {
	if a.scheme == nil || a.scheme.Name == "GKE" {
		return
	}
	var tpus []*Node
	for i := range a.nodes {
		n := &a.nodes[i]
		if strings.TrimSpace(n.Labels[KeyGKETPU]) != "" || hasKey(n.Capacity, ResourceTPU) {
			tpus = append(tpus, n)
		}
	}
	if len(tpus) == 0 {
		return
	}
	a.add(Finding{
		Severity: Advisory, Reason: ReasonTPUHidden, Nodes: names(tpus),
		Message: fmt.Sprintf("SkyPilot reads only %s in this cluster (picked by node %s), and it names TPUs only by %s: no TPU request finds these nodes: %s",
			a.schemeText(), a.DecidedBy, KeyGKETPU, strings.Join(names(tpus), ", ")),
		Fix: fmt.Sprintf("do not give TPU nodes %s; to request TPUs through SkyPilot, run them in a cluster where no node has %s", KeySkyPilot, strings.Join(a.scheme.Keys, " or ")),
	})
}

// gpuNodesList is the GPU nodes, by name: the webhook found a GPU, or the capacity shows a GPU
// resource SkyPilot may count. A TPU-only node is not one.
func (a *analysis) gpuNodesList() []*Node {
	var out []*Node
	for i := range a.nodes {
		n := &a.nodes[i]
		if n.GPU || vendorKey(n.Capacity, "") != "" || (a.opts.CustomResourceKey != "" && hasKey(n.Capacity, a.opts.CustomResourceKey)) {
			out = append(out, n)
		}
	}
	return out
}

func (a *analysis) gpuNodes() []string { return names(a.gpuNodesList()) }

func (a *analysis) node(name string) *Node {
	for i := range a.nodes {
		if a.nodes[i].Name == name {
			return &a.nodes[i]
		}
	}
	return nil
}

func (a *analysis) hasSchemeKey(n *Node) bool {
	for _, k := range a.scheme.Keys {
		if _, ok := n.Labels[k]; ok {
			return true
		}
	}
	return false
}

// otherKeys are the node's nonempty labels that formatters other than the scheme read.
func otherKeys(n *Node, scheme *Formatter) []string {
	var keys []string
	for _, k := range sortedKeys(n.Labels) {
		if strings.TrimSpace(n.Labels[k]) == "" || scheme.Reads(k) {
			continue
		}
		for _, f := range Formatters {
			if f.Reads(k) {
				keys = append(keys, k)
				break
			}
		}
	}
	return keys
}

// resourceKey mirrors get_gpu_resource_key: CUSTOM_GPU_RESOURCE_KEY if set; otherwise
// amd.com/gpu if any node's capacity has it, then nvidia.com/gpu, which is also the default.
func resourceKey(nodes []Node, opts Options) (string, string) {
	if opts.CustomResourceKey != "" {
		return opts.CustomResourceKey, "set by " + CustomKeyEnvVar
	}
	for _, key := range []string{ResourceAMD, ResourceNVIDIA} {
		for _, n := range nodes {
			if hasKey(n.Capacity, key) {
				how := "found in node " + n.Name + "'s capacity"
				if key == ResourceAMD {
					how += "; SkyPilot looks for " + ResourceAMD + " before " + ResourceNVIDIA
				}
				return key, how
			}
		}
	}
	return ResourceNVIDIA, "SkyPilot's default: no node's capacity has " + ResourceAMD + " or " + ResourceNVIDIA
}

// vendorKey is a GPU resource SkyPilot can pick that the capacity has, other than except.
func vendorKey(capacity map[string]int64, except string) string {
	for _, k := range []string{ResourceAMD, ResourceNVIDIA} {
		if k != except && hasKey(capacity, k) {
			return k
		}
	}
	return ""
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

func hasFinding(fs []Finding, r Reason) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Reason == r })
}

func names(nodes []*Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
