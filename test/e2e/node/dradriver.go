package node

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	"k8s.io/utils/ptr"
)

// What NVIDIA's DRA driver is called, and the identity its chart gives its kubelet plugin when
// installed as its docs say (helm install dra-driver-nvidia-gpu --namespace dra-driver-nvidia-gpu:
// kubernetes-sigs/dra-driver-nvidia-gpu site/content/docs/install.md,
// deployments/helm/dra-driver-nvidia-gpu/templates/rbac-kubeletplugin.yaml).
const (
	NVIDIADriver          = "gpu.nvidia.com"
	draDriverNamespace    = "dra-driver-nvidia-gpu"
	draDriverAccount      = "dra-driver-nvidia-gpu-service-account-kubeletplugin"
	draDriverRole         = "dra-driver-nvidia-gpu-clusterrole-kubeletplugin"
	draHealthCheckTimeout = 30 * time.Second
)

// The chart's ClusterRole for the kubelet plugin, without the rule on its own CRD
// (computedomains, not installed here).
var draDriverRules = []rbacv1.PolicyRule{
	{APIGroups: []string{resourcev1.GroupName}, Resources: []string{"resourceclaims"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{resourcev1.GroupName}, Resources: []string{"resourceslices"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
}

// DRADriver is a DRA driver's kubelet plugin built, as NVIDIA's is, on the DRA library's
// kubeletplugin helper: it registers through the kubelet's plugin registry, serves the DRA
// socket the kubelet then connects to, and publishes the node's devices in ResourceSlices with
// its service account's token. It prepares no device: a claim is refused (no pod here asks for
// a GPU).
type DRADriver struct {
	helper *kubeletplugin.Helper
	log    *os.File
	// Sockets are the helper's, by its default names: its registration in the kubelet's
	// registry, and dra.sock in its data folder.
	Sockets []string

	watching  chan struct{} // closed when the kubelet first watches the devices' health
	watchOnce sync.Once
	stopOnce  sync.Once

	mu      sync.Mutex
	devices []kubeletplugin.DeviceHealth
	errs    []error
}

var _ kubeletplugin.DRAPlugin = &DRADriver{}

// StartDRADriver starts the driver on the cluster's node with the identity its chart gives it,
// and publishes res. The kubelet finds plugins in plugins_registry under its --root-dir, so the
// driver is pointed at this kubelet's folders, as the chart's kubeletRegistrarDirectoryPath and
// kubeletPluginsDirectoryPath values point it at a kubelet whose root is not /var/lib/kubelet.
// Stop, or the cluster's Stop, stops it.
func (c *Cluster) StartDRADriver(ctx context.Context, res resourceslice.DriverResources) (*DRADriver, error) {
	client, err := c.draDriverClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("the driver's service account: %w", err)
	}
	registry, data := c.path("kubelet", "plugins_registry"), c.path("kubelet", "plugins", NVIDIADriver)
	if err := os.MkdirAll(data, 0o750); err != nil {
		return nil, err
	}
	log, err := os.CreateTemp(c.Dir, "dra-driver-*.log")
	if err != nil {
		return nil, err
	}
	d := &DRADriver{log: log, watching: make(chan struct{}),
		Sockets: []string{filepath.Join(registry, NVIDIADriver+"-reg.sock"), filepath.Join(data, "dra.sock")}}
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(log), textlogger.Verbosity(5)))
	ctx = klog.NewContext(context.WithoutCancel(ctx), logger)
	d.helper, err = kubeletplugin.Start(ctx, d,
		kubeletplugin.DriverName(NVIDIADriver), kubeletplugin.KubeClient(client), kubeletplugin.NodeName(c.NodeName),
		kubeletplugin.RegistrarDirectoryPath(registry), kubeletplugin.PluginDataDirectoryPath(data))
	if err != nil {
		log.Close()
		return nil, err
	}
	c.draDrivers = append(c.draDrivers, d)
	return d, d.Publish(ctx, res)
}

// draDriverClient makes the driver's namespace, service account and ClusterRole as its chart
// does (once per cluster), and returns a client with a token of that service account.
func (c *Cluster) draDriverClient(ctx context.Context) (kubernetes.Interface, error) {
	create := []func() error{
		func() error {
			_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: draDriverNamespace}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.CoreV1().ServiceAccounts(draDriverNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: draDriverAccount}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: draDriverRole}, Rules: draDriverRules}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: draDriverRole},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: draDriverAccount, Namespace: draDriverNamespace}},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: draDriverRole},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, f := range create {
		if err := f(); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	tok, err := c.Client.CoreV1().ServiceAccounts(draDriverNamespace).CreateToken(ctx, draDriverAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(&rest.Config{Host: c.Admin.Host, BearerToken: tok.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.CertPEM()}, UserAgent: "gpu-kubelet-plugin"})
}

// Publish replaces the driver's ResourceSlices with res; it returns before they are written.
func (d *DRADriver) Publish(ctx context.Context, res resourceslice.DriverResources) error {
	var devices []kubeletplugin.DeviceHealth
	for pool, p := range res.Pools {
		for _, s := range p.Slices {
			for _, dev := range s.Devices {
				devices = append(devices, kubeletplugin.DeviceHealth{PoolName: pool, DeviceName: dev.Name,
					Health: kubeletplugin.HealthStatusHealthy, HealthCheckTimeout: draHealthCheckTimeout})
			}
		}
	}
	d.mu.Lock()
	d.devices = devices
	d.mu.Unlock()
	return d.helper.PublishResources(ctx, res)
}

// Registered says whether the kubelet told the driver it is registered.
func (d *DRADriver) Registered() bool {
	s := d.helper.RegistrationStatus()
	return s != nil && s.PluginRegistered
}

// KubeletWatching is closed once the kubelet, connected to the driver's DRA socket, watches its
// devices' health.
func (d *DRADriver) KubeletWatching() <-chan struct{} { return d.watching }

// Errors are the errors the helper met in the background (publishing slices, serving gRPC).
func (d *DRADriver) Errors() []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.errs)
}

// Log is what the driver's helper logged.
func (d *DRADriver) Log() string {
	b, _ := os.ReadFile(d.log.Name())
	return string(b)
}

// Stop stops serving: the helper removes its sockets, and the kubelet deregisters the driver
// (and deletes its slices some time later). Its slices stay until then.
func (d *DRADriver) Stop() {
	d.stopOnce.Do(func() {
		d.helper.Stop()
		d.log.Close()
	})
}

// PrepareResourceClaims refuses every claim: the driver has no device to give.
func (d *DRADriver) PrepareResourceClaims(_ context.Context, claims []*resourcev1.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	result := map[types.UID]kubeletplugin.PrepareResult{}
	for _, c := range claims {
		result[c.UID] = kubeletplugin.PrepareResult{Err: errors.New("the test driver prepares no devices")}
	}
	return result, nil
}

// UnprepareResourceClaims has nothing to undo.
func (d *DRADriver) UnprepareResourceClaims(_ context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	result := map[types.UID]error{}
	for _, c := range claims {
		result[c.UID] = nil
	}
	return result, nil
}

// HandleError keeps what the helper met in the background for Errors: a test fails on any.
func (d *DRADriver) HandleError(_ context.Context, err error, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.errs = append(d.errs, fmt.Errorf("%s: %w", msg, err))
}

// WatchHealthStatus reports every device healthy, again before the kubelet would take the
// report as stale.
func (d *DRADriver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	d.watchOnce.Do(func() { close(d.watching) })
	tick := time.NewTicker(draHealthCheckTimeout / 3)
	defer tick.Stop()
	for {
		d.mu.Lock()
		report := kubeletplugin.DeviceHealthReport{Devices: slices.Clone(d.devices)}
		d.mu.Unlock()
		for i := range report.Devices {
			report.Devices[i].LastUpdated = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case reports <- report:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// NVIDIAGPU is one kind of whole GPU as NVML describes it to NVIDIA's driver.
type NVIDIAGPU struct {
	Product, Architecture, ComputeCapability string
	// Memory is NVML's total memory, in bytes (81559Mi for an H100 80GB HBM3).
	Memory resource.Quantity
}

// NVIDIAPool is what NVIDIA's DRA driver publishes for a node of count such GPUs without MIG:
// one pool named after the node, one slice per GPU, each a device gpu-<i> with the driver's
// attributes and memory capacity for a full GPU (kubernetes-sigs/dra-driver-nvidia-gpu
// site/content/docs/reference/resourceslice-attributes.md "Full GPU";
// cmd/gpu-kubelet-plugin/deviceinfo.go GpuInfo.Attributes; driver.go
// generateCombinedResourceSlices).
func NVIDIAPool(node string, gpu NVIDIAGPU, count int) resourceslice.DriverResources {
	str := func(s string) resourcev1.DeviceAttribute { return resourcev1.DeviceAttribute{StringValue: ptr.To(s)} }
	ver := func(s string) resourcev1.DeviceAttribute { return resourcev1.DeviceAttribute{VersionValue: ptr.To(s)} }
	var pool resourceslice.Pool
	for i := range count {
		pool.Slices = append(pool.Slices, resourceslice.Slice{Devices: []resourcev1.Device{{
			Name: fmt.Sprintf("gpu-%d", i),
			Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"type":                            str("gpu"),
				"uuid":                            str(fmt.Sprintf("GPU-%08x-0000-4000-8000-%012x", crc32.ChecksumIEEE([]byte(node)), i)),
				"productName":                     str(gpu.Product),
				"brand":                           str("Nvidia"),
				"architecture":                    str(gpu.Architecture),
				"cudaComputeCapability":           ver(gpu.ComputeCapability),
				"driverVersion":                   ver("580.126.20"),
				"cudaDriverVersion":               ver("13.0.0"),
				"resource.kubernetes.io/pciBusID": str(fmt.Sprintf("0000:%02x:00.0", 0x18+i*0x10)),
			},
			Capacity: map[resourcev1.QualifiedName]resourcev1.DeviceCapacity{"memory": {Value: gpu.Memory}},
		}}})
	}
	return resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{node: pool}}
}
