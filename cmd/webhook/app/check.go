package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/skypilot"
)

// clusterFlags are shared by check and label.
type clusterFlags struct {
	kubeconfig, context, namespace, configName, configFile, selector, output string
	kube                                                                     kubernetes.Interface // the streams' (tests)
}

func (f *clusterFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context to use")
	fl.StringVarP(&f.namespace, "namespace", "n", admit.DefaultNamespace, "the webhook's namespace, where its ConfigMap is")
	fl.StringVar(&f.configName, "config-name", admit.DefaultConfigName, "name of the webhook's ConfigMap")
	fl.StringVar(&f.configFile, "config", "", "read the config from this ConfigMap manifest instead of the cluster")
	fl.StringVarP(&f.selector, "selector", "l", "", "only nodes matching this label selector")
	fl.StringVarP(&f.output, "output", "o", "table", "table, json or yaml")
}

// connect makes the client and reads the webhook's config.
func (f *clusterFlags) connect(ctx context.Context) (kubernetes.Interface, *admit.Config, string, error) {
	cs := f.kube
	if cs == nil {
		var err error
		if cs, err = cliClient(f.kubeconfig, f.context); err != nil {
			return nil, nil, "", withCode(ExitError, err)
		}
	}
	cfg, note, err := f.config(ctx, cs)
	if err != nil {
		return nil, nil, "", withCode(ExitError, err)
	}
	return cs, cfg, note, nil
}

// eachNode lists the nodes a page of 500 at a time and hands each to fn, dropping each page
// once read: what a command keeps of a fleet is what fn keeps. It returns how many it read.
func (f *clusterFlags) eachNode(ctx context.Context, cs kubernetes.Interface, progress io.Writer, fn func(*corev1.Node)) (int, error) {
	read := 0
	opts := metav1.ListOptions{LabelSelector: f.selector, Limit: 500}
	for {
		list, err := cs.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return read, withCode(ExitError, apiError("listing nodes", err))
		}
		for i := range list.Items {
			fn(&list.Items[i])
		}
		read += len(list.Items)
		if list.Continue == "" {
			return read, nil
		}
		opts.Continue = list.Continue
		fmt.Fprintf(progress, "listed %d nodes...\n", read)
	}
}

// clusterSlices lists the ResourceSlices DRA drivers publish, page by page. Where the API is not
// served there are none; where they cannot be read, the note says so and the nodes are judged
// without them.
func clusterSlices(ctx context.Context, cs kubernetes.Interface) (*report.Slices, string) {
	kb := gpuinfo.Default()
	var items []*resourcev1.ResourceSlice
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := cs.ResourceV1().ResourceSlices().List(ctx, opts)
		switch {
		case apierrors.IsNotFound(err):
			return nil, ""
		case err != nil:
			return nil, fmt.Sprintf("ResourceSlices not read (%s): GPUs that DRA drivers publish are not counted", reason(err))
		}
		for i := range list.Items {
			items = append(items, kb.TrimSlice(&list.Items[i]))
		}
		if list.Continue == "" {
			return report.NewSlices(kb, items), ""
		}
		opts.Continue = list.Continue
	}
}

// config reads the webhook's ConfigMap, or the file given; without permission to read it the
// defaults apply and the note says so.
func (f *clusterFlags) config(ctx context.Context, cs kubernetes.Interface) (*admit.Config, string, error) {
	if f.configFile != "" {
		cfg, err := loadConfigFile(f.configFile)
		return cfg, "", err
	}
	cm, err := cs.CoreV1().ConfigMaps(f.namespace).Get(ctx, f.configName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cfg := admit.DefaultConfig()
		cfg.Origin = f.namespace + "/" + f.configName
		return cfg, fmt.Sprintf("config %s/%s not found: defaults (warn only)", f.namespace, f.configName), nil
	case err != nil:
		cfg := admit.DefaultConfig()
		cfg.Origin = f.namespace + "/" + f.configName
		return cfg, fmt.Sprintf("could not read config %s/%s (%v): defaults used", f.namespace, f.configName, err), nil
	}
	cfg, err := admit.ParseConfig(cm.Data)
	if err != nil {
		return nil, "", fmt.Errorf("config %s/%s is invalid (the webhook keeps its last good config): %w", f.namespace, f.configName, err)
	}
	cfg.Origin = f.namespace + "/" + f.configName
	return cfg, "", nil
}

func apiError(what string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s: permission denied: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func newCheckCommand(s streams) *cobra.Command {
	f := clusterFlags{kube: s.kube}
	var failOnFindings, requireWebhook, probe bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Report GPU nodes that lack the accelerator label, and whether the webhook is installed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cs, cfg, note, err := f.connect(ctx)
			if err != nil {
				return err
			}
			slices, slicesNote := clusterSlices(ctx, cs)
			if slicesNote != "" {
				note = strings.TrimPrefix(note+"; "+slicesNote, "; ")
			}
			// Of each node only its record and what SkyPilot's rules read are kept: under
			// 1 KB, where a kubelet's Node is some 15 KB.
			customKey := os.Getenv(skypilot.CustomKeyEnvVar)
			var records []report.Node
			var seen []skypilot.Node
			fixable, findings := 0, 0
			total, err := f.eachNode(ctx, cs, s.err, func(n *corev1.Node) {
				d, r := report.Decide(cfg, n, slices.Devices(n), admit.Check)
				if len(d.Warnings()) > 0 {
					findings++
				}
				if d.Value != "" && (!d.HasLabel || cfg.Overwrite) && len(d.Warnings()) > 0 {
					fixable++
				}
				seen = append(seen, report.SkyPilotNode(n, &d, customKey))
				if r.GPU || f.output != "table" {
					records = append(records, r)
				}
			})
			if err != nil {
				return err
			}
			// SkyPilot reads the cluster as a whole; CUSTOM_GPU_RESOURCE_KEY is read from this
			// environment, as where `check` runs is often where SkyPilot does.
			cluster := skypilot.Analyze(seen, skypilot.Options{
				CustomResourceKey: customKey,
				WebhookLabels:     cfg.LabelKey == skypilot.KeySkyPilot,
				LabelCommand:      s.name + " label",
			})
			if cfg.LabelKey == skypilot.KeySkyPilot {
				for i := range records {
					report.NoteCluster(&records[i], &cluster)
				}
			}
			scope := ""
			if f.selector != "" {
				scope = "only the nodes matching -l " + f.selector + " are read here; SkyPilot reads every node of the cluster"
			}
			if err := report.WriteCheck(s.out, f.output, records, &cluster, scope); err != nil {
				return withCode(ExitError, err)
			}
			if f.output == "table" {
				gpus := 0
				for _, r := range records {
					if r.GPU {
						gpus++
					}
				}
				fmt.Fprintf(s.out, "\n%d nodes, %d with GPUs, %d with findings; %d cluster findings for SkyPilot (%d counted by --fail-on-findings).",
					total, gpus, findings, len(cluster.Findings), cluster.Counted())
				if note != "" {
					fmt.Fprintf(s.out, " Note: %s.", note)
				}
				if fixable > 0 {
					fmt.Fprintf(s.out, " Fix the %d that can be fixed: %s label", fixable, s.name)
					if f.selector != "" {
						fmt.Fprintf(s.out, " -l '%s'", f.selector)
					}
					fmt.Fprintf(s.out, ". Label future nodes as they join: kubectl -n %s patch configmap %s --type merge -p '{\"data\":{\"autoLabel\":\"true\"}}'.", f.namespace, f.configName)
				}
				fmt.Fprintln(s.out)
			}
			hook := inspectWebhook(ctx, cs, probe)
			if f.output == "table" {
				fmt.Fprintln(s.out, hook)
			}
			if requireWebhook && len(hook.problems) > 0 {
				return withCode(ExitNoWebhook, errors.New("the webhook is not working: "+strings.Join(hook.problems, "; ")))
			}
			if failOnFindings && findings+cluster.Counted() > 0 {
				return withCode(ExitFindings, errors.New(""))
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&failOnFindings, "fail-on-findings", false, "exit 1 when any GPU node has a finding, or SkyPilot will see a critical or warning cluster finding")
	cmd.Flags().BoolVar(&requireWebhook, "require-webhook", false, "exit 3 when the webhook is not installed, its caBundle is empty, its Service has no ready endpoints or (with --probe) an endpoint does not answer")
	cmd.Flags().BoolVar(&probe, "probe", false, "send each of the webhook's endpoints a dry-run review over TLS verified by its caBundle; endpoints are pod or node addresses, so run it inside the cluster (helm test does)")
	return cmd
}
