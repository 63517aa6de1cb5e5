package gpuinfo

import (
	"regexp"
	"testing"
)

// Every row of resources.tsv is what a name of its form looks up, and the pattern the match
// conditions use for model rows matches exactly the names the model rows take.
func TestResourceRows(t *testing.T) {
	re := regexp.MustCompile(NamedResourcePattern)
	counts := map[ResourceType]int{}
	for _, r := range Resources() {
		counts[r.Type]++
		name := r.Name
		switch r.Match {
		case "prefix":
			name += "x"
		case "model":
			name += "GA100_A100_SXM4_40GB"
		case "vgpu":
			name += "GRID_T4-16Q"
		}
		got, ok := LookupResource(name)
		if !ok || got != r {
			t.Errorf("%s (%s row %s): looks up %+v", name, r.Match, r.Name, got)
		}
		if re.MatchString(name) != IsNamedResource(r) {
			t.Errorf("%s: NamedResourcePattern %v, the row's match is %s", name, re.MatchString(name), r.Match)
		}
		if ResourceKind(name) != r.NodeKind() {
			t.Errorf("%s: ResourceKind %q, the row's %q", name, ResourceKind(name), r.NodeKind())
		}
	}
	for _, name := range []string{"cpu", "memory", "pods", "hugepages-2Mi", "ephemeral-storage", "example.com/foo", "nvidia.com/", "nvidia.com/a100_x", "rdma/hca_shared_devices_a"} {
		if r, ok := LookupResource(name); ok {
			t.Errorf("%s looks up %+v", name, r)
		}
	}
	t.Logf("resources.tsv: %d rows by kind %v", len(Resources()), counts)
}

func TestParseResourcesRefusesBadRows(t *testing.T) {
	for name, row := range map[string]string{
		"unknown kind":      "nvidia.com/gpu\texact\tnvidia\tcard\tsrc",
		"no source":         "nvidia.com/gpu\texact\tnvidia\tgpu\t-",
		"no domain":         "gpu\texact\tnvidia\tgpu\tsrc",
		"twice":             "nvidia.com/gpu\texact\tnvidia\tgpu\tsrc\nnvidia.com/gpu\texact\tnvidia\tgpu\tsrc",
		"model with a name": "nvidia.com/gpu\tmodel\tnvidia\tgpu\tsrc",
		"unknown match":     "nvidia.com/gpu\tglob\tnvidia\tgpu\tsrc",
	} {
		if _, err := parseResources([]byte(row)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Capacity sets as the device plugins' own pages show them, and what inference makes of them:
// a slice, replica, memory or share resource shows a GPU node but never a count of physical
// GPUs, and neither does nvidia.com/gpu or amd.com/gpu beside one.
func TestResourceNodes(t *testing.T) {
	tests := map[string]struct {
		capacity map[string]string
		kind     Kind
		resource string
		typ      ResourceType
		physical int64
	}{
		// Project-HAMi/mock-device-plugin README.md, NVIDIA: one A100-80GB split ten ways
		"HAMi's split A100 counts no physical GPUs": {
			capacity: map[string]string{"nvidia.com/gpu": "10", "nvidia.com/gpumem": "81920", "nvidia.com/gpucores": "100", "nvidia.com/gpumem-percentage": "100"},
			kind:     KindGPU, resource: "nvidia.com/gpu", typ: ResourceGPU},
		// Project-HAMi/mock-device-plugin README.md, AMD GPU: one MI300X
		"HAMi's AMD memory and cores": {
			capacity: map[string]string{"amd.com/gpu": "1", "amd.com/gpumem": "196608", "amd.com/gpucores": "100"},
			kind:     KindGPU, resource: "amd.com/gpu", typ: ResourceGPU},
		// volcano-sh/volcano docs/user-guide/how_to_use_volcano_vgpu.md (node allocatable)
		"Volcano vGPU: a GPU node of no count": {
			capacity: map[string]string{"volcano.sh/vgpu-memory": "89424", "volcano.sh/vgpu-number": "8"},
			kind:     KindGPU, resource: "volcano.sh/vgpu-number", typ: ResourceReplica},
		// volcano-sh/devices README.md (GPU Sharing, GPU Number)
		"Volcano's memory share alone": {
			capacity: map[string]string{"volcano.sh/gpu-memory": "16384"},
			kind:     KindGPU, resource: "volcano.sh/gpu-memory", typ: ResourceMemory},
		"Volcano's gpu-number": {
			capacity: map[string]string{"volcano.sh/gpu-number": "4", "volcano.sh/gpu-memory": "65536"},
			kind:     KindGPU, resource: "volcano.sh/gpu-number", typ: ResourceReplica},
		// AliyunContainerService/gpushare-device-plugin docs/userguide.md (one GPU of 15 GiB)
		"Alibaba gpushare: GiB of memory beside the count": {
			capacity: map[string]string{"aliyun.com/gpu-mem": "15", "aliyun.com/gpu-count": "1"},
			kind:     KindGPU, resource: "aliyun.com/gpu-count", typ: ResourceGPU},
		"Alibaba cGPU compute share": {
			capacity: map[string]string{"aliyun.com/gpu-core.percentage": "100", "aliyun.com/gpu-mem": "15"},
			kind:     KindGPU, resource: "aliyun.com/gpu-mem", typ: ResourceMemory},
		// ROCm/gpu-operator tests (homogeneous partitioning: cpx_nps4), and the AMD GPU DRA
		// driver's migration page: eight MI300X in CPX/NPS4 are 64 partitions
		"AMD mixed strategy, CPX/NPS4": {
			capacity: map[string]string{"amd.com/cpx_nps4": "64"},
			kind:     KindGPU, resource: "amd.com/cpx_nps4", typ: ResourceSlice},
		"AMD mixed strategy, a heterogeneous node": {
			capacity: map[string]string{"amd.com/spx_nps1": "6", "amd.com/dpx_nps2": "4"},
			kind:     KindGPU, resource: "amd.com/spx_nps1", typ: ResourceGPU},
		"AMD mixed strategy, whole GPUs": {
			capacity: map[string]string{"amd.com/spx_nps1": "8"},
			kind:     KindGPU, resource: "amd.com/spx_nps1", typ: ResourceGPU, physical: 8},
		"AMD single strategy": {
			capacity: map[string]string{"amd.com/gpu": "8"},
			kind:     KindGPU, resource: "amd.com/gpu", typ: ResourceGPU, physical: 8},
		// NVIDIA/k8s-device-plugin README.md (MIG strategy mixed; time-slicing renameByDefault)
		"MIG mixed beside whole GPUs": {
			capacity: map[string]string{"nvidia.com/gpu": "4", "nvidia.com/mig-1g.10gb": "28"},
			kind:     KindGPU, resource: "nvidia.com/gpu", typ: ResourceGPU},
		"time-slicing renamed": {
			capacity: map[string]string{"nvidia.com/gpu.shared": "40"},
			kind:     KindGPU, resource: "nvidia.com/gpu.shared", typ: ResourceReplica},
		"confidential containers' pgpu": {
			capacity: map[string]string{"nvidia.com/pgpu": "1"},
			kind:     KindGPU, resource: "nvidia.com/pgpu", typ: ResourceGPU, physical: 1},
		"KubeVirt passthrough": {
			capacity: map[string]string{"nvidia.com/GA100_A100_SXM4_40GB": "2"},
			kind:     KindGPU, resource: "nvidia.com/GA100_A100_SXM4_40GB", typ: ResourceGPU, physical: 2},
		"KubeVirt passthrough of a Tesla": {
			capacity: map[string]string{"nvidia.com/TU104GL_TESLA_T4": "4"},
			kind:     KindGPU, resource: "nvidia.com/TU104GL_TESLA_T4", typ: ResourceGPU, physical: 4},
		// its vGPU types: vGPUs, several to a GPU, so no count of physical GPUs
		"KubeVirt vGPU type": {
			capacity: map[string]string{"nvidia.com/GRID_T4-16Q": "4"},
			kind:     KindGPU, resource: "nvidia.com/GRID_T4-16Q", typ: ResourceReplica},
		"KubeVirt MIG-backed vGPU type": {
			capacity: map[string]string{"nvidia.com/NVIDIA_H200X-1-18C": "7"},
			kind:     KindGPU, resource: "nvidia.com/NVIDIA_H200X-1-18C", typ: ResourceReplica},
		// intel/intel-device-plugins-for-kubernetes cmd/gpu_plugin/README.md
		"Intel i915": {
			capacity: map[string]string{"gpu.intel.com/i915": "1"},
			kind:     KindGPU, resource: "gpu.intel.com/i915", typ: ResourceGPU, physical: 1},
		"Intel xe": {
			capacity: map[string]string{"gpu.intel.com/xe": "2"},
			kind:     KindGPU, resource: "gpu.intel.com/xe", typ: ResourceGPU, physical: 2},
		"Intel with GPU Aware Scheduling's resources": {
			capacity: map[string]string{"gpu.intel.com/i915": "10", "gpu.intel.com/millicores": "1000", "gpu.intel.com/memory.max": "17179869184", "gpu.intel.com/tiles": "1"},
			kind:     KindGPU, resource: "gpu.intel.com/i915", typ: ResourceGPU},
		// accelerators that are not GPUs: recognised and left alone
		"GKE TPU": {
			capacity: map[string]string{"google.com/tpu": "4"},
			kind:     KindAccelerator, resource: "google.com/tpu", typ: ResourceAccelerator},
		"Neuron (trn1)": {
			capacity: map[string]string{"aws.amazon.com/neuron": "16", "aws.amazon.com/neuroncore": "32", "aws.amazon.com/neurondevice": "16"},
			kind:     KindAccelerator, resource: "aws.amazon.com/neuron", typ: ResourceAccelerator},
		"Gaudi": {
			capacity: map[string]string{"habana.ai/gaudi": "8"},
			kind:     KindAccelerator, resource: "habana.ai/gaudi", typ: ResourceAccelerator},
		"Cloud AI 100": {
			capacity: map[string]string{"qualcomm.com/qaic": "8"},
			kind:     KindAccelerator, resource: "qualcomm.com/qaic", typ: ResourceAccelerator},
		"Ascend": {
			capacity: map[string]string{"huawei.com/Ascend910": "8"},
			kind:     KindAccelerator, resource: "huawei.com/Ascend910", typ: ResourceAccelerator},
		"a GPU beside an accelerator wins": {
			capacity: map[string]string{"google.com/tpu": "4", "nvidia.com/gpu": "1"},
			kind:     KindGPU, resource: "nvidia.com/gpu", typ: ResourceGPU, physical: 1},
		"a CPU node": {
			capacity: map[string]string{"cpu": "8", "memory": "32Gi", "pods": "110"}},
		"zero GPUs": {
			capacity: map[string]string{"nvidia.com/gpu": "0"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var kv []string
			for k, v := range tc.capacity {
				kv = append(kv, k, v)
			}
			in := Default().Infer(Node{Capacity: caps(kv...)})
			if in.Kind != tc.kind || in.Resource != tc.resource || in.ResourceType != tc.typ || in.PhysicalCount() != tc.physical {
				t.Errorf("kind %q resource %q type %q physical %d, want %q %q %q %d", in.Kind, in.Resource, in.ResourceType, in.PhysicalCount(), tc.kind, tc.resource, tc.typ, tc.physical)
			}
			if r, _ := LookupResource(tc.resource); in.Model != nil && !IsNamedResource(r) {
				t.Errorf("a resource not named for its model names %s", in.Model.Name)
			}
		})
	}
}
