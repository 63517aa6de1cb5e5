package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/configsrc"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/report"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/slicesrc"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/testnode"
)

// naiveDefaulter is the idiomatic controller-runtime way to write the webhook, the baseline:
// a CustomDefaulter on *corev1.Node. controller-runtime decodes the whole Node, calls Default,
// marshals the result and diffs it against the request into a JSON patch.
type naiveDefaulter struct{ cfg *admit.Config }

var _ admission.CustomDefaulter = naiveDefaulter{}

func (d naiveDefaulter) Default(_ context.Context, obj runtime.Object) error {
	n := obj.(*corev1.Node)
	dec, _ := report.Decide(d.cfg, n, nil, admit.Mutating)
	if dec.Action == admit.ActionLabel {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[d.cfg.LabelKey] = dec.Value
	}
	return nil
}

// handlers returns our handler and the baseline, both opted in to labeling. Ours reads the
// ResourceSlices of a fleet of DRA nodes as the server does; the reviewed node has none.
func handlers() (ours, naive http.Handler) {
	cfg, err := admit.ParseConfig(map[string]string{admit.KeyAutoLabel: "true"})
	if err != nil {
		panic(err)
	}
	store := &configsrc.Store{}
	store.Set(cfg)
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return &review.HTTPHandler{Handler: &review.Handler{Config: store, Mutate: true, Devices: draFleet(1000)}, Endpoint: "mutate"},
		admission.WithCustomDefaulter(scheme, &corev1.Node{}, naiveDefaulter{cfg})
}

// draFleet is a synced slice source holding the slices of n nodes with eight DRA GPUs each.
func draFleet(n int) *slicesrc.Source {
	var items []resourcev1.ResourceSlice
	for i := range n {
		node := fmt.Sprintf("dra-%d", i)
		s := resourcev1.ResourceSlice{ObjectMeta: metav1.ObjectMeta{Name: node + "-gpu.nvidia.com"}, Spec: resourcev1.ResourceSliceSpec{
			Driver: "gpu.nvidia.com", NodeName: &node, Pool: resourcev1.ResourcePool{Name: node, Generation: 1, ResourceSliceCount: 1}}}
		for g := range 8 {
			s.Spec.Devices = append(s.Spec.Devices, resourcev1.Device{Name: fmt.Sprintf("gpu-%d", g), Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"type": {StringValue: ptr.To("gpu")}, "uuid": {StringValue: ptr.To(fmt.Sprintf("GPU-%d-%d", i, g))},
				"productName": {StringValue: ptr.To("NVIDIA H100 80GB HBM3")}}})
		}
		items = append(items, s)
	}
	src := &slicesrc.Source{KB: gpuinfo.Default(), Log: slog.New(slog.DiscardHandler)}
	go src.Watch(context.Background(), &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &resourcev1.ResourceSliceList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: items}, nil
		},
		WatchFuncWithContext: func(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				return nil, errors.New("no streaming list here: the informer lists instead")
			}
			return watch.NewFake(), nil
		},
	})
	for !src.Synced() {
		time.Sleep(10 * time.Millisecond)
	}
	return src
}

// reviews are a realistic Node CREATE from a kubelet (~15 KB) and a status UPDATE carrying
// the object and the old object (~30 KB).
func reviews() (create, update []byte) {
	old := testnode.Realistic("ip-10-0-12-34.ec2.internal", "p4d.24xlarge", 0)
	cur := testnode.Realistic("ip-10-0-12-34.ec2.internal", "p4d.24xlarge", 8)
	create = testnode.Review("b1", admissionv1.Create, "", old, nil, "system:node:ip-10-0-12-34.ec2.internal", false)
	update = testnode.Review("b2", admissionv1.Update, "status", cur, old, "system:node:ip-10-0-12-34.ec2.internal", false)
	return create, update
}

// serve runs one review through a handler, as the HTTP server would.
func serve(h http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, review.PathMutate, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func benchHandler(h http.Handler, body []byte) testing.BenchmarkResult {
	return testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if rec := serve(h, body); rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}
