// Package slicesrc watches the ResourceSlices that Dynamic Resource Allocation drivers publish,
// where the apiserver serves resource.k8s.io/v1, and gives the webhook each node's devices
// from them. It holds slices trimmed to what inference reads. When the API is not served, or
// the watch fails, it gives no devices (or those last seen) and says so once in the log and
// in a metric: admission goes on as it would without it.
package slicesrc

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
)

// The index that finds a node's slices: by spec.nodeName, and anyNode for the slices bound
// by a node selector or device by device, which every node's lookup reads.
const (
	byNode  = "nodeName"
	anyNode = "*"
)

// Source is the ResourceSlices in the cluster, as the webhook reads them. The zero value is
// usable and gives no devices until Run has synced.
type Source struct {
	KB      *gpuinfo.KB
	Metrics *metrics.Metrics // optional
	Log     *slog.Logger     // optional
	// Recheck is how often an apiserver that does not serve the API is asked again (a minute
	// unless set).
	Recheck time.Duration

	index atomic.Pointer[cache.Indexer]
	state atomic.Int32 // how the last list or watch went
	mu    sync.Mutex   // orders the log lines and the metric of a change of state
}

// States of the list and watch.
const (
	stateUnknown int32 = iota
	stateOK
	stateFailing
)

// NodeDevices gives the devices the node's ResourceSlices publish, nil when it has none or
// the slices are not known yet. For a node without slices it allocates nothing.
func (s *Source) NodeDevices(node string, labels map[string]string) []gpuinfo.Device {
	idx := s.index.Load()
	if idx == nil {
		return nil
	}
	own, _ := (*idx).ByIndex(byNode, node)
	other, _ := (*idx).ByIndex(byNode, anyNode)
	if len(own)+len(other) == 0 {
		return nil
	}
	slices := make([]*resourcev1.ResourceSlice, 0, len(own)+len(other))
	for _, objs := range [][]any{own, other} {
		for _, o := range objs {
			if rs, ok := o.(*resourcev1.ResourceSlice); ok {
				slices = append(slices, rs)
			}
		}
	}
	return s.KB.NodeDevices(node, labels, slices)
}

// Synced says the slices are known and the watch is running.
func (s *Source) Synced() bool { return s.index.Load() != nil && s.state.Load() == stateOK }

// Run watches the ResourceSlices until ctx ends. It waits, asking again every Recheck, while
// the apiserver does not serve resource.k8s.io/v1 resourceslices.
func (s *Source) Run(ctx context.Context, cs kubernetes.Interface) {
	s.Metrics.SliceSourceSynced(false)
	recheck := s.Recheck
	if recheck <= 0 {
		recheck = time.Minute
	}
	for logged := ""; ; {
		served, err := Served(cs)
		if served {
			break
		}
		// An apiserver that cannot be asked yet (a pod whose route is not there) is asked
		// again soon; one that answers that it does not serve the API, every recheck.
		wait, why := recheck, "not served"
		if err != nil {
			wait, why = min(recheck, 5*time.Second), "unknown"
		}
		if logged != why {
			logged = why
			s.log().Warn("ResourceSlices are "+why+": GPUs published through Dynamic Resource Allocation are not read, admission goes on without them",
				"api", resourcev1.SchemeGroupVersion.String(), "err", err, "recheck", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	slices := cs.ResourceV1().ResourceSlices()
	s.Watch(ctx, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return slices.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return slices.Watch(ctx, o)
		},
	})
}

// Watch keeps the slices lw lists and watches, trimmed and indexed by node, until ctx ends.
// Run calls it once the API is served; tests and benchmarks give it slices of their own.
func (s *Source) Watch(ctx context.Context, lw *cache.ListWatch) {
	list, watchFunc := lw.ListWithContextFunc, lw.WatchFuncWithContext
	inf := cache.NewSharedIndexInformerWithOptions(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := list(ctx, o)
			s.result(err)
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFunc(ctx, o)
			s.result(err)
			return w, err
		},
	}, &resourcev1.ResourceSlice{}, cache.SharedIndexInformerOptions{Indexers: cache.Indexers{byNode: indexSlice}})
	if err := inf.SetTransform(func(obj any) (any, error) {
		if rs, ok := obj.(*resourcev1.ResourceSlice); ok {
			return s.KB.TrimSlice(rs), nil
		}
		return obj, nil
	}); err != nil {
		s.log().Error("ResourceSlices not watched", "err", err)
		return
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	idx := inf.GetIndexer()
	s.mu.Lock()
	s.index.Store(&idx)
	s.Metrics.SliceSourceSynced(s.state.Load() == stateOK)
	s.mu.Unlock()
	s.log().Info("watching ResourceSlices", "api", resourcev1.SchemeGroupVersion.String(), "slices", len(idx.ListKeys()))
	<-ctx.Done()
}

// Served says whether the apiserver serves resource.k8s.io/v1 resourceslices.
func Served(cs kubernetes.Interface) (bool, error) {
	list, err := cs.Discovery().ServerResourcesForGroupVersion(resourcev1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Name == "resourceslices" {
			return true, nil
		}
	}
	return false, nil
}

// result records how a list or watch went. A change is logged once, and the metric follows:
// synced while the slices are known and the last list or watch succeeded.
func (s *Source) result(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := stateOK
	if err != nil {
		next = stateFailing
	}
	prev := s.state.Swap(next)
	if prev == next {
		return
	}
	synced := s.index.Load() != nil
	s.Metrics.SliceSourceSynced(synced && next == stateOK)
	switch {
	case next == stateFailing && synced:
		s.log().Warn("ResourceSlices watch failing: admission goes on with the slices last seen", "err", err)
	case next == stateFailing:
		s.log().Warn("ResourceSlices cannot be read: admission goes on without them until they can", "err", err)
	case prev == stateFailing:
		s.log().Info("ResourceSlices can be read again")
	}
}

// indexSlice files a slice under its node's name, or under anyNode where a selector or its
// devices choose the nodes.
func indexSlice(obj any) ([]string, error) {
	rs, ok := obj.(*resourcev1.ResourceSlice)
	if !ok {
		return nil, nil
	}
	switch node, selected := gpuinfo.SliceNode(rs); {
	case node != "":
		return []string{node}, nil
	case selected:
		return []string{anyNode}, nil
	}
	return nil, nil
}

func (s *Source) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
