package main

import (
	"encoding/json"
	"net/http"
	"syscall"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/review"
)

// Both handlers give the same answer: the node labeled a100, through a patch that applies.
func TestHandlersAgree(t *testing.T) {
	ours, naive := handlers()
	create, update := reviews()
	for name, body := range map[string][]byte{"create": create, "update": update} {
		var sent admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &sent); err != nil {
			t.Fatal(err)
		}
		for hname, h := range map[string]http.Handler{"ours": ours, "naive": naive} {
			rec := serve(h, body)
			var got admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Response == nil || !got.Response.Allowed {
				t.Fatalf("%s %s: %s", hname, name, rec.Body.Bytes())
			}
			p, err := jsonpatch.DecodePatch(got.Response.Patch)
			if err != nil {
				t.Fatalf("%s %s: %v", hname, name, err)
			}
			out, err := p.Apply(sent.Request.Object.Raw)
			if err != nil {
				t.Fatalf("%s %s: %v", hname, name, err)
			}
			var node struct {
				Metadata struct{ Labels map[string]string } `json:"metadata"`
			}
			_ = json.Unmarshal(out, &node)
			if node.Metadata.Labels["skypilot.co/accelerator"] != "a100" {
				t.Errorf("%s %s: labels %v", hname, name, node.Metadata.Labels)
			}
		}
	}
}

// The null webhook answers the request's uid, and its patch labels the node as ours does.
func TestNullReview(t *testing.T) {
	create, _ := reviews()
	var sent admissionv1.AdmissionReview
	if err := json.Unmarshal(create, &sent); err != nil {
		t.Fatal(err)
	}
	for _, patch := range []bool{false, true} {
		head, tail := nullReview(patch)
		body := append(append(append([]byte(nil), head...), requestUID(create)...), tail...)
		var got admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &got); err != nil || got.Response == nil || !got.Response.Allowed {
			t.Fatalf("patch=%v: %s", patch, body)
		}
		if got.Response.UID != sent.Request.UID {
			t.Errorf("patch=%v: uid %q, want %q", patch, got.Response.UID, sent.Request.UID)
		}
		if (got.Response.Patch != nil) != patch {
			t.Fatalf("patch=%v: %s", patch, body)
		}
		if !patch {
			continue
		}
		p, err := jsonpatch.DecodePatch(got.Response.Patch)
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Apply(sent.Request.Object.Raw)
		if err != nil {
			t.Fatal(err)
		}
		var node struct {
			Metadata struct{ Labels map[string]string } `json:"metadata"`
		}
		_ = json.Unmarshal(out, &node)
		if node.Metadata.Labels["skypilot.co/accelerator"] != "a100" {
			t.Errorf("labels %v", node.Metadata.Labels)
		}
	}
}

// cpuSeconds agrees with the kernel's own account of this process (getrusage) while it works.
func TestCPUSeconds(t *testing.T) {
	rusage := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	before, ruBefore := cpuSeconds(nil, "self")["self"], rusage()
	for rusage()-ruBefore < 0.3 {
	}
	got, want := cpuSeconds(nil, "self")["self"]-before, rusage()-ruBefore
	if got < want-0.05 || got > want+0.05 {
		t.Errorf("cpuSeconds counted %.3fs, getrusage %.3fs", got, want)
	}
}

func BenchmarkHandler(b *testing.B) {
	ours, naive := handlers()
	create, update := reviews()
	for _, c := range []struct {
		name string
		h    http.Handler
		body []byte
	}{{"ours/create", ours, create}, {"naive/create", naive, create}, {"ours/update", ours, update}, {"naive/update", naive, update}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				serve(c.h, c.body)
			}
		})
	}
}

// Watching the ResourceSlices of a DRA fleet adds no allocation to a review of a node that has
// none: the same count with the slice source as without it.
func TestSliceSourceAddsNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector")
	}
	ours, _ := handlers()
	h := ours.(*review.HTTPHandler)
	without := *h.Handler
	without.Devices = nil
	bare := &review.HTTPHandler{Handler: &without, Endpoint: h.Endpoint}
	create, update := reviews()
	for name, body := range map[string][]byte{"create": create, "update": update} {
		with := testing.AllocsPerRun(200, func() { serve(ours, body) })
		plain := testing.AllocsPerRun(200, func() { serve(bare, body) })
		t.Logf("%s: %.0f allocations with the slices of 1,000 DRA nodes watched, %.0f without", name, with, plain)
		if with != plain {
			t.Errorf("%s: %.0f allocations with the slice source, %.0f without", name, with, plain)
		}
	}
}
