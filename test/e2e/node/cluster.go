// Package node runs a real single-node Kubernetes cluster for tests: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kube-proxy and a kubelet, all built by
// `make node-tools` from the Kubernetes module the other tests use, with containerd, runc and
// the CNI bridge plugin from the host's packages. Pods get addresses on a bridge the harness
// makes on a subnet that exists only inside the machine; nothing is dialled but loopback and
// that bridge. Everything the run changes on the host is undone by Stop, which then checks
// that the host looks as it did before.
//
// It needs root; Start says what is missing where it cannot run.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/gpu-label-webhook/gpu-label-webhook/certs"
	"github.com/gpu-label-webhook/gpu-label-webhook/test/e2e/env"
)

// The network: one bridge holding the node's address and the pods (a /24), and a route
// sending the services' range (another /24) to the same bridge. Pods reach services through
// their gateway, the node, where kube-proxy's rules rewrite them; a packet to either range that
// no rule rewrites goes to the bridge, never to the default route.
const (
	Bridge      = "glw0"
	NodeIP      = "10.213.0.1"
	bridgeCIDR  = NodeIP + "/24"
	podSubnet   = "10.213.0.0/24"
	podFirst    = "10.213.0.10"
	podLast     = "10.213.0.250"
	serviceCIDR = "10.213.128.0/24"
	// kubernetesService is the first address of serviceCIDR: the `kubernetes` Service.
	kubernetesService = "10.213.128.1"
	apiserverPort     = 6443
	kubeletPort       = 10250
)

// Cluster is a running single-node cluster.
type Cluster struct {
	Root, Dir string
	// NodeName is the name the kubelet registers.
	NodeName string
	Admin    *rest.Config
	Client   kubernetes.Interface
	// AdminKubeconfig is a kubeconfig file for cluster-admin.
	AdminKubeconfig string
	ca              *certs.Pair
	host            *hostState
	containerdSock  string
	procs           []*named
	kubelet         *env.Process
	draDrivers      []*DRADriver
	// SlowStops names the processes Stop waited for more than a second, and how long.
	SlowStops []string
}

type named struct {
	name string
	p    *env.Process
}

// Binaries the harness runs, and where they come from.
var (
	k8sBinaries  = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "kubectl"}
	hostBinaries = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "iptables-save", "iptables-restore", "ip"}
	cniBinDir    = "/usr/lib/cni"
	cniPlugins   = []string{"bridge", "host-local", "loopback"}
)

// Preflight says why a node cannot run here, nil when it can.
func Preflight(root string) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the kubelet, containerd and the bridge need it)")
	}
	for _, b := range k8sBinaries {
		if _, err := os.Stat(filepath.Join(root, "bin", "k8s", b)); err != nil {
			missing = append(missing, "bin/k8s/"+b+" (make node-tools)")
		}
	}
	for _, b := range hostBinaries {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" (apt-get install containerd runc iptables iproute2)")
		}
	}
	for _, p := range cniPlugins {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			missing = append(missing, filepath.Join(cniBinDir, p)+" (apt-get install containernetworking-plugins)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("a real node cannot run here; missing: %s", strings.Join(missing, "; "))
	}
	// Another containerd (Docker's, say) is no obstacle: this one has folders and a socket of
	// its own. Another kubelet or kube-proxy is: the device-plugin folder, /kubepods and the
	// sysctls and iptables rules are the machine's.
	for _, name := range []string{"kubelet", "kube-proxy"} {
		if pids := pidsNamed(name); len(pids) > 0 {
			return fmt.Errorf("a %s already runs here (pids %v): one node per machine, and this one would fight it", name, pids)
		}
	}
	if _, err := os.Stat(pluginapi.KubeletSocket); err == nil {
		return fmt.Errorf("%s exists: another kubelet's, or one a crashed run left; remove it", pluginapi.KubeletSocket)
	}
	if err := exec.Command("ip", "link", "show", Bridge).Run(); err == nil {
		return fmt.Errorf("the link %s exists: a crashed run's? delete it (ip link delete %s)", Bridge, Bridge)
	}
	// Reached through a gateway (the default route) is free; on a link of its own or local
	// (`ip route get` starting "dev" or "local") it is in use.
	if r, _ := routeDevice(NodeIP); !strings.HasPrefix(r, "via ") {
		return fmt.Errorf("%s is already routed on this machine (%s): the test subnet is in use", podSubnet, r)
	}
	return nil
}

// pidsNamed lists the processes whose command name is name.
func pidsNamed(name string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(b)) == name {
			pids = append(pids, pid)
		}
	}
	return pids
}

// routeDevice returns `ip route get` for ip: "dev glw0 src ..." or "via 192.0.2.1 dev eth0 ...".
func routeDevice(ip string) (string, error) {
	out, err := exec.Command("ip", "-o", "route", "get", ip).Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(strings.TrimPrefix(string(out), ip)), nil
}

// CheckRoutes fails unless the pod range and the service range are routed to the bridge
// this harness made: called before anything dials a pod.
func CheckRoutes() error {
	for _, ip := range []string{podFirst, podLast, kubernetesService} {
		r, err := routeDevice(ip)
		if err != nil {
			return fmt.Errorf("ip route get %s: %w", ip, err)
		}
		if f := strings.Fields(r); len(f) < 2 || f[0] != "dev" || f[1] != Bridge {
			return fmt.Errorf("%s is routed %q, not to the bridge %s: refusing to dial it", ip, r, Bridge)
		}
	}
	return nil
}

// Start brings the cluster up to a Ready node named nodeName whose kubelet has labels.
// Images (OCI archives) are imported into containerd before the kubelet starts; the first is
// the pod sandbox image, named sandboxImage.
func Start(ctx context.Context, root, nodeName, sandboxImage string, images []string, labels map[string]string) (_ *Cluster, err error) {
	if err := Preflight(root); err != nil {
		return nil, err
	}
	host, err := snapshotHost()
	if err != nil {
		return nil, fmt.Errorf("reading the host's state: %w", err)
	}
	dir, err := os.MkdirTemp("", "gpu-label-webhook-node-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Root: root, Dir: dir, NodeName: nodeName, host: host}
	defer func() {
		if err != nil {
			if stopErr := c.Stop(); stopErr != nil {
				err = fmt.Errorf("%w; and tearing down: %v", err, stopErr)
			}
		}
	}()
	steps := []struct {
		name string
		run  func() error
	}{
		{"bridge", c.makeBridge},
		{"certificates", c.makeCerts},
		{"etcd and kube-apiserver", c.startAPIServer},
		{"kube-controller-manager and kube-scheduler", c.startControllers},
		{"containerd", func() error { return c.startContainerd(sandboxImage, images) }},
		{"kubelet", func() error { return c.StartKubelet(ctx, labels) }},
		{"kube-proxy", c.startProxy},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			return nil, fmt.Errorf("starting %s: %w", s.name, err)
		}
	}
	return c, CheckRoutes()
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.Root, "bin", "k8s", name) }

func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.Dir}, elem...)...)
}

func (c *Cluster) start(name, path string, args ...string) (*env.Process, error) {
	p, err := env.StartProcess(c.Dir, name, path, args...)
	if err == nil {
		c.procs = append(c.procs, &named{name, p})
	}
	return p, err
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// makeBridge makes the bridge with the node's address before anything binds to it (the CNI
// bridge plugin then finds it with its gateway address already there), and routes the
// services' range to it.
func (c *Cluster) makeBridge() error {
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", bridgeCIDR, "dev", Bridge},
		{"link", "set", Bridge, "up"},
		{"route", "add", serviceCIDR, "dev", Bridge},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// makeCerts makes one CA for everything: the apiserver's serving certificate, the client
// certificates of each component, and the service-account signing key.
func (c *Cluster) makeCerts() error {
	now := time.Now()
	ca, err := certs.NewCA("gpu-label-webhook-node-ca", now)
	if err != nil {
		return err
	}
	c.ca = ca
	serving, err := ca.Serving([]string{NodeIP, kubernetesService, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, now)
	if err != nil {
		return err
	}
	sa, err := certs.NewCA("service-accounts", now)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(sa.Key.Public())
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.crt": ca.CertPEM(), "apiserver.crt": serving.CertPEM(), "apiserver.key": serving.KeyPEM(),
		"sa.key": sa.KeyPEM(), "sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	}
	for name, b := range files {
		if err := os.WriteFile(c.path(name), b, 0o600); err != nil {
			return err
		}
	}
	clients := []struct{ user, group string }{
		{"admin", "system:masters"},
		{"system:kube-controller-manager", "system:masters"},
		{"system:kube-scheduler", ""},
		{"system:kube-proxy", ""},
	}
	for _, cl := range clients {
		if _, err := c.Kubeconfig(cl.user, cl.group); err != nil {
			return err
		}
	}
	client, err := ca.Client("kube-apiserver-kubelet-client", []string{"system:masters"}, now)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.path("apiserver-kubelet-client.crt"), client.CertPEM(), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("apiserver-kubelet-client.key"), client.KeyPEM(), 0o600); err != nil {
		return err
	}
	c.AdminKubeconfig = c.path("admin.kubeconfig")
	if c.Admin, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig); err != nil {
		return err
	}
	c.Client, err = kubernetes.NewForConfig(c.Admin)
	return err
}

// Kubeconfig writes a kubeconfig for user in group ("" for none), signed by the cluster's CA,
// and returns its path.
func (c *Cluster) Kubeconfig(user, group string) (string, error) {
	var groups []string
	if group != "" {
		groups = []string{group}
	}
	pair, err := c.ca.Client(user, groups, time.Now())
	if err != nil {
		return "", err
	}
	name := strings.NewReplacer("system:", "", ":", "-").Replace(user)
	path := c.path(name + ".kubeconfig")
	enc := base64.StdEncoding.EncodeToString
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: node
  cluster:
    server: https://%s:%d
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: node
  context: {cluster: node, user: %q}
current-context: node
`, NodeIP, apiserverPort, enc(c.ca.CertPEM()), user, enc(pair.CertPEM()), enc(pair.KeyPEM()), user)
	return path, os.WriteFile(path, []byte(text), 0o600)
}

// UserConfig is a client config for user in group.
func (c *Cluster) UserConfig(user, group string) (*rest.Config, error) {
	path, err := c.Kubeconfig(user, group)
	if err != nil {
		return nil, err
	}
	return clientcmd.BuildConfigFromFlags("", path)
}

// healthClient checks the components' own health endpoints on loopback, served with
// certificates they made themselves.
func healthClient() *http.Client {
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback health checks of self-signed components
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func (c *Cluster) startAPIServer() error {
	ports, err := env.FreePorts(2)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcd, err := c.start("etcd", c.bin("etcd"), "--data-dir", c.path("etcd"), "--name", "node",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "node="+peer,
		"--unsafe-no-fsync")
	if err != nil {
		return err
	}
	if err := etcd.WaitFor("etcd", time.Minute, func() bool { return env.HTTPOK(http.DefaultClient, etcdURL+"/health") }); err != nil {
		return err
	}
	// The audit log records every Node write with the patches the webhooks made to it: the
	// proof of which write a label arrived in.
	policy := `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Request
  resources: [{group: "", resources: ["nodes", "nodes/status"]}]
  verbs: [create, update, patch]
- level: None
`
	if err := os.WriteFile(c.path("audit-policy.yaml"), []byte(policy), 0o644); err != nil {
		return err
	}
	// As GKE: the critical priority classes only where a quota admits them.
	admission, err := env.AdmissionConfig(c.Dir, env.CriticalPriorityQuotaPlugin)
	if err != nil {
		return err
	}
	api, err := c.start("kube-apiserver", c.bin("kube-apiserver"),
		"--audit-policy-file", c.path("audit-policy.yaml"), "--audit-log-path", c.path("audit.log"), "--audit-log-maxsize", "0",
		"--etcd-servers", etcdURL,
		"--bind-address", NodeIP, "--advertise-address", NodeIP, "--secure-port", strconv.Itoa(apiserverPort),
		"--tls-cert-file", c.path("apiserver.crt"), "--tls-private-key-file", c.path("apiserver.key"),
		"--client-ca-file", c.path("ca.crt"),
		"--kubelet-client-certificate", c.path("apiserver-kubelet-client.crt"), "--kubelet-client-key", c.path("apiserver-kubelet-client.key"),
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", c.path("sa.pub"),
		"--service-account-signing-key-file", c.path("sa.key"),
		"--service-cluster-ip-range", serviceCIDR,
		"--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction", "--admission-control-config-file", admission,
		"--kubelet-preferred-address-types", "InternalIP", "--allow-privileged=false", "--profiling=false")
	if err != nil {
		return err
	}
	return api.WaitFor("kube-apiserver", 2*time.Minute, func() bool {
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		return err == nil
	})
}

func (c *Cluster) startControllers() error {
	ports, err := env.FreePorts(2)
	if err != nil {
		return err
	}
	kcmKC, schedKC := c.path("kube-controller-manager.kubeconfig"), c.path("kube-scheduler.kubeconfig")
	kcm, err := c.start("kube-controller-manager", c.bin("kube-controller-manager"),
		"--kubeconfig", kcmKC, "--authentication-kubeconfig", kcmKC, "--authorization-kubeconfig", kcmKC,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[0]), "--leader-elect=false",
		"--root-ca-file", c.path("ca.crt"), "--service-account-private-key-file", c.path("sa.key"),
		"--use-service-account-credentials=false", "--controllers", "*",
		"--service-cluster-ip-range", serviceCIDR, "--profiling=false")
	if err != nil {
		return err
	}
	sched, err := c.start("kube-scheduler", c.bin("kube-scheduler"),
		"--kubeconfig", schedKC, "--authentication-kubeconfig", schedKC, "--authorization-kubeconfig", schedKC,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[1]), "--leader-elect=false", "--profiling=false")
	if err != nil {
		return err
	}
	hc := healthClient()
	if err := kcm.WaitFor("kube-controller-manager", time.Minute, func() bool {
		return env.HTTPOK(hc, fmt.Sprintf("https://127.0.0.1:%d/healthz", ports[0]))
	}); err != nil {
		return err
	}
	return sched.WaitFor("kube-scheduler", time.Minute, func() bool {
		return env.HTTPOK(hc, fmt.Sprintf("https://127.0.0.1:%d/healthz", ports[1]))
	})
}

// startContainerd runs containerd with all its folders under the cluster's, the cgroupfs
// driver (no systemd here), and the CNI bridge config; then imports the images.
func (c *Cluster) startContainerd(sandboxImage string, images []string) error {
	c.containerdSock = c.path("containerd", "containerd.sock")
	for _, d := range []string{"containerd", "cni/net.d"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	// The pods' only route beyond their subnet is the services' range, through the node: no
	// default route, so nothing in a pod can reach past this machine.
	cni := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "gpu-label-webhook-test",
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
    "ipam": {"type": "host-local", "dataDir": %q,
             "ranges": [[{"subnet": %q, "rangeStart": %q, "rangeEnd": %q, "gateway": %q}]],
             "routes": [{"dst": %q}]}
  }]
}
`, Bridge, c.path("cni", "ipam"), podSubnet, podFirst, podLast, NodeIP, serviceCIDR)
	if err := os.WriteFile(c.path("cni", "net.d", "10-bridge.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	// restrict_oom_score_adj: runc cannot lower oom_score_adj without CAP_SYS_RESOURCE,
	// which machines of ours lack.
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
`, c.path("containerd", "root"), c.path("containerd", "state"), c.containerdSock, sandboxImage, cniBinDir, c.path("cni", "net.d"))
	if err := os.WriteFile(c.path("containerd", "config.toml"), []byte(config), 0o644); err != nil {
		return err
	}
	ctrd, err := c.start("containerd", "containerd", "--config", c.path("containerd", "config.toml"))
	if err != nil {
		return err
	}
	if err := ctrd.WaitFor("containerd", time.Minute, func() bool {
		return exec.Command("ctr", "--address", c.containerdSock, "version").Run() == nil
	}); err != nil {
		return err
	}
	for _, img := range images {
		if err := run("ctr", "--address", c.containerdSock, "-n", "k8s.io", "images", "import", "--platform", "linux/"+runtime.GOARCH, img); err != nil {
			return err
		}
	}
	return nil
}

// StartKubelet starts the kubelet with labels (--node-labels) and waits until its Node is
// Ready.
func (c *Cluster) StartKubelet(ctx context.Context, labels map[string]string) error {
	if err := c.writeKubeletConfig(); err != nil {
		return err
	}
	kc, err := c.Kubeconfig("system:node:"+c.NodeName, "system:nodes")
	if err != nil {
		return err
	}
	var pairs []string
	for k, v := range labels {
		pairs = append(pairs, k+"="+v)
	}
	args := []string{"--config", c.path("kubelet.yaml"), "--kubeconfig", kc, "--hostname-override", c.NodeName,
		"--node-ip", NodeIP, "--root-dir", c.path("kubelet"), "--cert-dir", c.path("kubelet-pki")}
	if len(pairs) > 0 {
		args = append(args, "--node-labels", strings.Join(pairs, ","))
	}
	k, err := c.start("kubelet", c.bin("kubelet"), args...)
	if err != nil {
		return err
	}
	c.kubelet = k
	return k.WaitFor("node "+c.NodeName+" Ready", 2*time.Minute, func() bool {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		return err == nil && nodeReady(n)
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// KubeletLog is what the running kubelet wrote.
func (c *Cluster) KubeletLog() string { return c.kubelet.Logs() }

// StopKubelet stops the kubelet; the pods it ran keep running in containerd.
func (c *Cluster) StopKubelet() {
	if c.kubelet != nil {
		c.kubelet.Stop()
	}
}

// Reregister stops the kubelet, deletes its Node and starts it again with labels: the same
// machine joins anew, its pods still running, and the kubelet sends a Node CREATE again.
// kube-proxy stops when its Node is deleted; it is started again as its DaemonSet would.
func (c *Cluster) Reregister(ctx context.Context, labels map[string]string) error {
	c.StopKubelet()
	c.stop("kube-proxy")
	err := c.Client.CoreV1().Nodes().Delete(ctx, c.NodeName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err := c.StartKubelet(ctx, labels); err != nil {
		return err
	}
	return c.startProxy()
}

// stop stops the processes named name.
func (c *Cluster) stop(name string) {
	for _, n := range c.procs {
		if n.name == name {
			n.p.Stop()
		}
	}
}

// kubeletStatusReportFrequency is how often the kubelet sends its full status report when nothing
// changed (5 minutes by default): the write that labels a node once its ResourceSlices or its
// labels name its GPUs. Dynamic Resource Allocation needs no setting: it is GA and always on
// in 1.37, its plugins registering under the kubelet's --root-dir.
const kubeletStatusReportFrequency = 10 * time.Second

func (c *Cluster) writeKubeletConfig() error {
	for _, d := range []string{"kubelet", "kubelet-pki", "static-pods", "pod-logs", "volume-plugins"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
address: %s
port: %d
healthzBindAddress: 127.0.0.1
healthzPort: 0
readOnlyPort: 0
authentication:
  x509: {clientCAFile: %q}
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
registerNode: true
staticPodPath: %q
podLogsDir: %q
volumePluginDir: %q
makeIPTablesUtilChains: false
resolvConf: ""
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: %v
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
`, c.containerdSock, NodeIP, kubeletPort, c.path("ca.crt"), c.path("static-pods"), c.path("pod-logs"), c.path("volume-plugins"), kubeletStatusReportFrequency)
	return os.WriteFile(c.path("kubelet.yaml"), []byte(config), 0o644)
}

// startProxy runs kube-proxy in iptables mode: the pods reach the apiserver through the
// `kubernetes` Service, and the apiserver the webhook through its Service, as in any cluster.
// It writes no conntrack sysctls and opens no node ports on loopback.
func (c *Cluster) startProxy() error {
	ports, err := env.FreePorts(2)
	if err != nil {
		return err
	}
	health := "127.0.0.1:" + strconv.Itoa(ports[0])
	p, err := c.start("kube-proxy", c.bin("kube-proxy"), "--kubeconfig", c.path("kube-proxy.kubeconfig"),
		"--hostname-override", c.NodeName, "--proxy-mode", "iptables", "--cluster-cidr", podSubnet,
		"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
		"--iptables-localhost-nodeports=false", "--nodeport-addresses", NodeIP+"/32",
		"--healthz-bind-address", health, "--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(ports[1]))
	if err != nil {
		return err
	}
	return p.WaitFor("kube-proxy", time.Minute, func() bool { return env.HTTPOK(http.DefaultClient, "http://"+health+"/healthz") })
}

// NodeWrite is one write to a Node as the apiserver's audit log has it.
type NodeWrite struct {
	User        string // who wrote
	Verb        string // create, update, patch
	Subresource string // "" or "status"
	// Patches are the JSON patches mutating webhooks made to the write, as text.
	Patches []string
}

// NodeWrites reads the audit log: the writes to the Node name so far, oldest first.
func (c *Cluster) NodeWrites(name string) ([]NodeWrite, error) {
	b, err := os.ReadFile(c.path("audit.log"))
	if err != nil {
		return nil, err
	}
	var writes []NodeWrite
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev struct {
			Stage     string                    `json:"stage"`
			Verb      string                    `json:"verb"`
			User      struct{ Username string } `json:"user"`
			ObjectRef struct {
				Resource, Name, Subresource string
			} `json:"objectRef"`
			Annotations map[string]string `json:"annotations"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		if ev.Stage != "ResponseComplete" || ev.ObjectRef.Resource != "nodes" || ev.ObjectRef.Name != name {
			continue
		}
		w := NodeWrite{User: ev.User.Username, Verb: ev.Verb, Subresource: ev.ObjectRef.Subresource}
		for k, v := range ev.Annotations {
			if strings.HasPrefix(k, "patch.webhook.admission.k8s.io/") {
				w.Patches = append(w.Patches, v)
			}
		}
		writes = append(writes, w)
	}
	return writes, nil
}

// ProxiedTo lists the destinations on port that kube-proxy's rules send Service traffic to
// now ("10.213.0.12:9443"), read from the nat table: what packets meet, not what the API says.
func ProxiedTo(port int) ([]string, error) {
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save: %w", err)
	}
	var dests []string
	suffix := ":" + strconv.Itoa(port)
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "--to-destination" && strings.HasSuffix(f[i+1], suffix) && !slices.Contains(dests, f[i+1]) {
				dests = append(dests, f[i+1])
			}
		}
	}
	slices.Sort(dests)
	return dests, nil
}

// Kubectl runs kubectl as cluster-admin.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Logs returns the last lines of every component's log, for a failing test.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	for _, n := range c.procs {
		text := strings.Split(strings.TrimRight(n.p.Logs(), "\n"), "\n")
		fmt.Fprintf(&b, "==== %s (%s), last %d lines\n%s\n", n.name, n.p.Log.Name(), lines, strings.Join(text[max(0, len(text)-lines):], "\n"))
	}
	return b.String()
}

// KeepLogs copies every component's log and the audit log into dir, for after Stop.
func (c *Cluster) KeepLogs(dir string) (string, error) {
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	logs, _ := filepath.Glob(c.path("*.log"))
	pods, _ := filepath.Glob(c.path("pod-logs", "*", "*", "*.log"))
	for _, l := range append(logs, pods...) {
		b, err := os.ReadFile(l)
		if err != nil {
			return "", err
		}
		name := strings.ReplaceAll(strings.TrimPrefix(l, c.Dir+"/"), "/", "_")
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// Stop stops every process (pods and containerd's shims included), undoes what the run
// changed on the host, removes the cluster's files, and reports any difference left between
// the host now and before.
func (c *Cluster) Stop() error {
	var errs []error
	// DRA drivers first: their sockets are in the kubelet's folders, and they publish to the
	// apiserver stopped below.
	for _, d := range c.draDrivers {
		d.Stop()
	}
	// The kubelet next, or it restarts the pods killed below; kube-proxy before its rules go.
	for _, name := range []string{"kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"} {
		c.stop(name)
	}
	// The pods' processes: in the kubepods cgroups, whose shims containerd does not stop.
	for _, cg := range kubepodsCgroups() {
		if !slices.Contains(c.host.cgroups, cg) {
			errs = append(errs, removeCgroup(cg))
		}
	}
	// The shims (their command name is cut to "containerd-shim") of this containerd: their
	// command lines name its socket, in the cluster's folder.
	for _, pid := range pidsNamed("containerd-shim") {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(b), c.Dir) {
			_ = killPID(pid)
		}
	}
	for _, n := range slices.Backward(c.procs) {
		began := time.Now()
		n.p.Stop()
		if took := time.Since(began); took > time.Second {
			c.SlowStops = append(c.SlowStops, fmt.Sprintf("%s %v", n.name, took.Round(time.Millisecond)))
		}
	}
	if out, err := exec.Command(c.bin("kube-proxy"), "--cleanup").CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("kube-proxy --cleanup: %v: %s", err, out))
	}
	errs = append(errs, c.host.restore())
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, err)
	}
	if now, err := snapshotHost(); err != nil {
		errs = append(errs, err)
	} else if d := c.host.diff(now); d != "" {
		errs = append(errs, fmt.Errorf("the host differs from before the run:\n%s", d))
	}
	return errors.Join(errs...)
}

func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
