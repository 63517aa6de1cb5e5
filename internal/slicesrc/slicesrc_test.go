package slicesrc

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
)

// slice is a pool of one slice with gpus whole H100s, as NVIDIA's driver publishes them.
func slice(name, node string, generation int64, gpus int) *resourcev1.ResourceSlice {
	s := &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1", Annotations: map[string]string{"a": "b"}},
		Spec: resourcev1.ResourceSliceSpec{
			Driver: "gpu.nvidia.com", NodeName: ptr.To(node),
			Pool: resourcev1.ResourcePool{Name: node, Generation: generation, ResourceSliceCount: 1},
		},
	}
	for i := range gpus {
		s.Spec.Devices = append(s.Spec.Devices, resourcev1.Device{
			Name: "gpu-" + string(rune('0'+i)),
			Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"type":          {StringValue: ptr.To("gpu")},
				"uuid":          {StringValue: ptr.To(name + "-" + string(rune('0'+i)))},
				"productName":   {StringValue: ptr.To("NVIDIA H100 80GB HBM3")},
				"driverVersion": {VersionValue: ptr.To("580.126.20")},
			},
			Capacity: map[resourcev1.QualifiedName]resourcev1.DeviceCapacity{"memory": {Value: resource.MustParse("80Gi")}},
		})
	}
	return s
}

// feed is a ListerWatcher whose list and watch the test controls.
type feed struct {
	mu      sync.Mutex
	items   []resourcev1.ResourceSlice
	fail    atomic.Bool
	watcher *watch.FakeWatcher
}

func (f *feed) listWatch() *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			if f.fail.Load() {
				return nil, errors.New("resourceslices.resource.k8s.io is forbidden")
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			return &resourcev1.ResourceSliceList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: f.items}, nil
		},
		WatchFuncWithContext: func(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if f.fail.Load() {
				return nil, errors.New("resourceslices.resource.k8s.io is forbidden")
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.watcher = watch.NewFakeWithChanSize(len(f.items)+1, false)
			// A streaming list, as the apiserver sends it: the objects, then the bookmark
			// that ends the initial events.
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				for i := range f.items {
					f.watcher.Add(f.items[i].DeepCopy())
				}
				f.watcher.Action(watch.Bookmark, &resourcev1.ResourceSlice{ObjectMeta: metav1.ObjectMeta{
					ResourceVersion: "1", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}})
			}
			return f.watcher, nil
		},
	}
}

func (f *feed) send(t *testing.T, typ watch.EventType, s *resourcev1.ResourceSlice) {
	t.Helper()
	eventually(t, "a watch", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.watcher != nil })
	f.mu.Lock()
	w := f.watcher
	f.mu.Unlock()
	w.Action(typ, s)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func start(t *testing.T, f *feed) (*Source, *syncWriter, prometheus.Gauge) {
	t.Helper()
	logs := &syncWriter{}
	m := metrics.New(prometheus.NewRegistry())
	s := &Source{KB: gpuinfo.Default(), Metrics: m, Log: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Watch(ctx, f.listWatch())
	return s, logs, m.SlicesSynced
}

// syncWriter is a log the test reads while the informer writes it.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func count(s *Source, node string) int64 {
	return gpuinfo.Default().Infer(gpuinfo.Node{Devices: s.NodeDevices(node, nil)}).DeviceCount
}

// A node's devices follow its slices as the driver adds, republishes and deletes them.
func TestSourceFollowsTheSlices(t *testing.T) {
	f := &feed{items: []resourcev1.ResourceSlice{*slice("a-gpu", "a", 1, 8)}}
	s, _, synced := start(t, f)
	eventually(t, "the first sync", s.Synced)
	if got := count(s, "a"); got != 8 {
		t.Errorf("a: %d GPUs, want 8", got)
	}
	if testutil.ToFloat64(synced) != 1 {
		t.Error("synced metric not 1")
	}
	f.send(t, watch.Added, slice("b-gpu", "b", 1, 4))
	eventually(t, "node b's slice", func() bool { return count(s, "b") == 4 })
	f.send(t, watch.Modified, slice("b-gpu", "b", 2, 3))
	eventually(t, "node b's next generation", func() bool { return count(s, "b") == 3 })
	f.send(t, watch.Deleted, slice("b-gpu", "b", 2, 3))
	eventually(t, "node b's slice deleted", func() bool { return s.NodeDevices("b", nil) == nil })
	if got := count(s, "a"); got != 8 {
		t.Errorf("a: %d GPUs after b's changes, want 8", got)
	}
	if d := s.NodeDevices("c", nil); d != nil {
		t.Errorf("a node without slices has devices %+v", d)
	}
}

// Slices bound by a node selector are read for every node, and kept trimmed.
func TestSourceReadsSelectorSlicesAndKeepsThemTrimmed(t *testing.T) {
	sel := slice("rack-gpu", "", 1, 2)
	sel.Spec.NodeName = nil
	sel.Spec.NodeSelector = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "rack", Operator: corev1.NodeSelectorOpIn, Values: []string{"r7"}}},
	}}}
	f := &feed{items: []resourcev1.ResourceSlice{*sel}}
	s, _, _ := start(t, f)
	eventually(t, "the first sync", s.Synced)
	if n := len(s.NodeDevices("x", map[string]string{"rack": "r7"})); n != 2 {
		t.Errorf("a node the selector matches has %d devices, want 2", n)
	}
	if d := s.NodeDevices("x", map[string]string{"rack": "r8"}); d != nil {
		t.Errorf("a node it does not match has %+v", d)
	}
	for _, o := range (*s.index.Load()).List() {
		rs := o.(*resourcev1.ResourceSlice)
		if len(rs.Annotations) > 0 || len(rs.Spec.Devices[0].Attributes) != 3 {
			t.Errorf("kept %v and %v", rs.Annotations, rs.Spec.Devices[0].Attributes)
		}
	}
}

// A node without slices costs no allocation: the hot path stays as it was.
func TestSourceAllocatesNothingForANodeWithoutSlices(t *testing.T) {
	f := &feed{items: []resourcev1.ResourceSlice{*slice("a-gpu", "a", 1, 8)}}
	s, _, _ := start(t, f)
	eventually(t, "the first sync", s.Synced)
	labels := map[string]string{"kubernetes.io/hostname": "cpu-1"}
	if n := testing.AllocsPerRun(100, func() { s.NodeDevices("cpu-1", labels) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// When the slices cannot be read, the source gives none, says so once and in the metric, and
// recovers when they can.
func TestSourceWhenTheSlicesCannotBeRead(t *testing.T) {
	f := &feed{items: []resourcev1.ResourceSlice{*slice("a-gpu", "a", 1, 8)}}
	f.fail.Store(true)
	s, logs, synced := start(t, f)
	eventually(t, "a failed list", func() bool { return strings.Contains(logs.String(), "cannot be read") })
	time.Sleep(1500 * time.Millisecond) // the informer retries meanwhile
	if s.Synced() || s.NodeDevices("a", nil) != nil || testutil.ToFloat64(synced) != 0 {
		t.Errorf("synced %v devices %v metric %v while failing", s.Synced(), s.NodeDevices("a", nil), testutil.ToFloat64(synced))
	}
	if n := strings.Count(logs.String(), "cannot be read"); n != 1 {
		t.Errorf("logged %d times:\n%s", n, logs)
	}
	f.fail.Store(false)
	eventually(t, "the sync after recovery", s.Synced)
	if count(s, "a") != 8 || testutil.ToFloat64(synced) != 1 || !strings.Contains(logs.String(), "can be read again") {
		t.Errorf("after recovery: %d GPUs, metric %v:\n%s", count(s, "a"), testutil.ToFloat64(synced), logs)
	}
}
