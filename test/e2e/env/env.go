// Package env runs a real control plane (kube-apiserver and etcd built by `make tools`, started
// by controller-runtime's envtest) and the webhook as a real process, for the end-to-end tests,
// the demo and the benchmarks.
package env

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gpu-label-webhook/gpu-label-webhook/certs"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/manifests"
)

// Root is the repository root: the folder with go.mod above the working directory.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/gpu-label-webhook/gpu-label-webhook\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found")
		}
		dir = parent
	}
}

// Cluster is a running control plane.
type Cluster struct {
	Root   string
	Env    *envtest.Environment
	Admin  *rest.Config
	Client kubernetes.Interface
	Dir    string
	// ClientCAFile signs the client certificate the apiserver presents to webhooks; "" when
	// it presents none.
	ClientCAFile string
}

// Options change how the apiserver runs.
type Options struct {
	// WebhookClientCert makes the apiserver present a client certificate to webhooks (an
	// AdmissionConfiguration kubeconfig), and StartWebhook require it (--client-ca-file).
	WebhookClientCert bool
	// WebhookArgs are added to the webhook's command line by StartStack.
	WebhookArgs []string
	// LimitCriticalPriority has the apiserver admit system-node-critical and
	// system-cluster-critical pods only in namespaces holding a quota for them, as GKE does.
	LimitCriticalPriority bool
	// APIServerArgs set flags of kube-apiserver (flag name without dashes to value), over
	// envtest's defaults.
	APIServerArgs map[string]string
	// EtcdArgs set flags of etcd (flag name without dashes to value).
	EtcdArgs map[string]string
}

// CriticalPriorityQuotaPlugin is the ResourceQuota admission plugin's entry, for
// AdmissionConfig, that admits the critical priority classes only in namespaces holding a
// quota for them (Kubernetes' "limit Priority Class consumption by default", as GKE runs it).
const CriticalPriorityQuotaPlugin = `- name: ResourceQuota
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: ResourceQuotaConfiguration
    limitedResources:
    - resource: pods
      matchScopes:
      - scopeName: PriorityClass
        operator: In
        values: [system-node-critical, system-cluster-critical]
`

// AdmissionConfig writes an AdmissionConfiguration into dir holding plugins (YAML list
// items) and returns its path.
func AdmissionConfig(dir string, plugins ...string) (string, error) {
	path := filepath.Join(dir, "admission.yaml")
	text := "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n" + strings.Join(plugins, "")
	return path, os.WriteFile(path, []byte(text), 0o644)
}

// webhookClientAuth writes the admission plugins' config for presenting a client certificate:
// a kubeconfig whose user "*" carries one signed by a CA the webhook trusts. It returns the
// plugin entries and the CA file's path.
func webhookClientAuth(dir string) (plugins, caPath string, err error) {
	ca, err := certs.NewCA("apiserver-webhook-client-ca", time.Now())
	if err != nil {
		return "", "", err
	}
	client, err := ca.Client("kube-apiserver", nil, time.Now())
	if err != nil {
		return "", "", err
	}
	caPath = filepath.Join(dir, "webhook-client-ca.crt")
	if err := os.WriteFile(caPath, ca.CertPEM(), 0o644); err != nil {
		return "", "", err
	}
	kc := filepath.Join(dir, "webhook-client.kubeconfig")
	kcText := fmt.Sprintf("apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n    client-certificate-data: %s\n    client-key-data: %s\n",
		base64.StdEncoding.EncodeToString(client.CertPEM()), base64.StdEncoding.EncodeToString(client.KeyPEM()))
	if err := os.WriteFile(kc, []byte(kcText), 0o600); err != nil {
		return "", "", err
	}
	var b strings.Builder
	for _, plugin := range []string{"MutatingAdmissionWebhook", "ValidatingAdmissionWebhook"} {
		fmt.Fprintf(&b, "- name: %s\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: %s\n", plugin, kc)
	}
	return b.String(), caPath, nil
}

// Start runs kube-apiserver with the Node and RBAC authorizers and NodeRestriction, as a
// managed cluster does.
func Start(opts Options) (*Cluster, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	assets := filepath.Join(root, "bin", "k8s")
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		return nil, fmt.Errorf("%w: run make tools", err)
	}
	dir, err := os.MkdirTemp("", "gpu-label-webhook-e2e-")
	if err != nil {
		return nil, err
	}
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; nothing to say here
	e := &envtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 2 * time.Minute}
	api := e.ControlPlane.GetAPIServer()
	args := api.Configure()
	args.Set("authorization-mode", "Node,RBAC")
	args.Set("enable-admission-plugins", "NodeRestriction")
	for k, v := range opts.APIServerArgs {
		args.Set(k, v)
	}
	if len(opts.EtcdArgs) > 0 {
		e.ControlPlane.Etcd = &envtest.Etcd{}
		for k, v := range opts.EtcdArgs {
			e.ControlPlane.Etcd.Configure().Set(k, v)
		}
	}
	var clientCA string
	var plugins []string
	if opts.WebhookClientCert {
		var webhooks string
		if webhooks, clientCA, err = webhookClientAuth(dir); err != nil {
			return nil, err
		}
		plugins = append(plugins, webhooks)
	}
	if opts.LimitCriticalPriority {
		plugins = append(plugins, CriticalPriorityQuotaPlugin)
	}
	if len(plugins) > 0 {
		path, err := AdmissionConfig(dir, plugins...)
		if err != nil {
			return nil, err
		}
		args.Set("admission-control-config-file", path)
	}
	cfg, err := e.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = e.Stop()
		return nil, err
	}
	return &Cluster{Root: root, Env: e, Admin: cfg, Client: cs, Dir: dir, ClientCAFile: clientCA}, nil
}

// Stop stops the control plane and removes its files.
func (c *Cluster) Stop() {
	_ = c.Env.Stop()
	_ = os.RemoveAll(c.Dir)
}

// User returns a client config authenticated as name in groups (a client certificate).
func (c *Cluster) User(name string, groups ...string) (*rest.Config, error) {
	u, err := c.Env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, c.Admin)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// KubeconfigFile writes a kubeconfig for name in groups and returns its path.
func (c *Cluster) KubeconfigFile(name string, groups ...string) (string, error) {
	u, err := c.Env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, c.Admin)
	if err != nil {
		return "", err
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, strings.NewReplacer(":", "_", "/", "_").Replace(name)+".kubeconfig")
	return path, os.WriteFile(path, b, 0o600)
}

// InstallBase applies the generated base install's Namespace, ServiceAccount, RBAC and
// ConfigMap, so the webhook runs with exactly the permissions the manifests give it.
func (c *Cluster) InstallBase(ctx context.Context) error {
	for _, o := range manifests.Base() {
		var err error
		switch obj := o.(type) {
		case *corev1.Namespace:
			_, err = c.Client.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = c.Client.CoreV1().ServiceAccounts(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = c.Client.RbacV1().Roles(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = c.Client.RbacV1().RoleBindings(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.Client.RbacV1().ClusterRoles().Create(ctx, obj, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.Client.RbacV1().ClusterRoleBindings().Create(ctx, obj, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = c.Client.CoreV1().ConfigMaps(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// Stack is a control plane with the base install applied and the webhook running.
type Stack struct {
	*Cluster
	Hook *Webhook
}

// StartStack starts a control plane, applies the base install's RBAC and ConfigMap, and
// runs the webhook; the webhook configuration is left for the caller to register.
func StartStack(ctx context.Context, opts Options) (*Stack, error) {
	c, err := Start(opts)
	if err != nil {
		return nil, err
	}
	if err := c.InstallBase(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	hook, err := c.StartWebhook(opts.WebhookArgs...)
	if err != nil {
		c.Stop()
		return nil, err
	}
	return &Stack{Cluster: c, Hook: hook}, nil
}

// Stop stops the webhook and the control plane.
func (s *Stack) Stop() {
	s.Hook.Stop()
	s.Cluster.Stop()
}

// Warnings collects the warnings the apiserver returns to a client (a rest.WarningHandler).
type Warnings struct {
	mu  sync.Mutex
	got []string
}

func (w *Warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, text)
}

// All returns the warnings collected so far.
func (w *Warnings) All() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

// Take returns the warnings collected so far and forgets them.
func (w *Warnings) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.got
	w.got = nil
	return out
}

// Client returns a clientset for cfg whose warnings w collects.
func Client(cfg *rest.Config, w *Warnings) (kubernetes.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.WarningHandler = w
	return kubernetes.NewForConfig(c)
}

// Webhook is the webhook running as a process.
type Webhook struct {
	*Process
	URL        string // https://127.0.0.1:PORT
	CA         []byte
	CertDir    string
	MetricsURL string
	HealthURL  string
	Kubeconfig string
}

// StartWebhook runs bin/webhook serve as the webhook's ServiceAccount, with a fresh serving
// certificate for 127.0.0.1, and waits until it is ready.
func (c *Cluster) StartWebhook(extra ...string) (*Webhook, error) {
	certDir, err := os.MkdirTemp(c.Dir, "webhook-certs-")
	if err != nil {
		return nil, err
	}
	ca, _, err := certs.Generate(certDir, []string{"127.0.0.1"})
	if err != nil {
		return nil, err
	}
	return c.StartWebhookWithCerts(certDir, ca.CertPEM(), extra...)
}

// StartWebhookWithCerts runs bin/webhook serve as the webhook's ServiceAccount with the
// tls.crt and tls.key in certDir (caPEM verifies them), and waits until it is ready.
func (c *Cluster) StartWebhookWithCerts(certDir string, caPEM []byte, extra ...string) (*Webhook, error) {
	kc, err := c.KubeconfigFile("system:serviceaccount:"+manifests.Namespace+":"+manifests.Name, "system:serviceaccounts", "system:serviceaccounts:"+manifests.Namespace)
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--kubeconfig", kc, "--cert-dir", certDir,
		"--port", strconv.Itoa(ports[0]), "--health-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", ports[2]), "--shutdown-delay", "0s", "--log-format", "text"}, extra...)
	if c.ClientCAFile != "" {
		args = append(args, "--client-ca-file", c.ClientCAFile)
	}
	p, err := StartProcess(c.Dir, "webhook", filepath.Join(c.Root, "bin", "webhook"), args...)
	if err != nil {
		return nil, err
	}
	w := &Webhook{Process: p, URL: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), CA: caPEM, CertDir: certDir,
		MetricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2]), HealthURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		Kubeconfig: kc}
	if err := p.waitHTTP(w.HealthURL+"/readyz", 30*time.Second); err != nil {
		w.Stop()
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return w, nil
}

// Metric sums the samples of a metric whose line starts with prefix (name and labels).
func (w *Webhook) Metric(prefix string) (float64, error) {
	resp, err := http.Get(w.MetricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return SumMetric(resp.Body, prefix)
}

// SumMetric sums the Prometheus text samples whose line starts with prefix.
func SumMetric(r io.Reader, prefix string) (float64, error) {
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, sc.Err()
}

// RegisterMutating registers the generated mutating webhook configuration, pointed at w.
func (c *Cluster) RegisterMutating(ctx context.Context, w *Webhook) error {
	_ = c.Unregister(ctx)
	_, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, manifests.Mutating(w.URL, w.CA), metav1.CreateOptions{})
	if err == nil {
		err = waitRegistered()
	}
	return err
}

// RegisterAudit registers only the warn-only validating configuration.
func (c *Cluster) RegisterAudit(ctx context.Context, w *Webhook) error {
	_ = c.Unregister(ctx)
	_, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, manifests.Audit(w.URL, w.CA), metav1.CreateOptions{})
	if err == nil {
		err = waitRegistered()
	}
	return err
}

// waitRegistered gives the apiserver's webhook informer time to see a configuration change.
func waitRegistered() error {
	time.Sleep(1500 * time.Millisecond)
	return nil
}

// Unregister removes both configurations.
func (c *Cluster) Unregister(ctx context.Context) error {
	reg := c.Client.AdmissionregistrationV1()
	err1 := reg.MutatingWebhookConfigurations().Delete(ctx, manifests.MutatingName, metav1.DeleteOptions{})
	err2 := reg.ValidatingWebhookConfigurations().Delete(ctx, manifests.AuditName, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2) {
		return nil
	}
	return waitRegistered()
}

// SetConfig writes the webhook's ConfigMap (nil data deletes it).
func (c *Cluster) SetConfig(ctx context.Context, data map[string]string) error {
	cms := c.Client.CoreV1().ConfigMaps(manifests.Namespace)
	if data == nil {
		err := cms.Delete(ctx, admit.DefaultConfigName, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: admit.DefaultConfigName, Namespace: manifests.Namespace}, Data: data}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		return err
	} else {
		return err
	}
}

// SetConfigAndWait writes the config and waits until the webhook has read it.
func (c *Cluster) SetConfigAndWait(ctx context.Context, w *Webhook, data map[string]string) error {
	cm, err := c.Client.CoreV1().ConfigMaps(manifests.Namespace).Get(ctx, admit.DefaultConfigName, metav1.GetOptions{})
	if (apierrors.IsNotFound(err) && data == nil) || (err == nil && data != nil && maps.Equal(cm.Data, data)) {
		return nil // unchanged: the webhook already has it
	}
	before, err := w.Metric("gpu_label_webhook_config_reloads_total")
	if err != nil {
		return err
	}
	if err := c.SetConfig(ctx, data); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if now, err := w.Metric("gpu_label_webhook_config_reloads_total"); err == nil && now > before {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the webhook did not read the config within 15s")
}

// FreePorts finds n free loopback ports.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
