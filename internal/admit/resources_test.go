package admit

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/gpuinfo"
)

// The count warning compares physical GPUs only: a sharing scheduler's inflated nvidia.com/gpu,
// AMD's partitions and a memory resource never cry wolf; a plain short count still warns.
func TestCountWarningsOnSharedAndPartitionedNodes(t *testing.T) {
	tests := map[string]struct {
		instanceType string
		capacity     map[string]string
		warns        bool
	}{
		// Project-HAMi/mock-device-plugin README.md: nvidia.com/gpu is cards times the split count
		"HAMi on a p4d": {"p4d.24xlarge", map[string]string{"nvidia.com/gpu": "4", "nvidia.com/gpumem": "163840", "nvidia.com/gpucores": "200"}, false},
		// ROCm device plugin, mixed strategy: some GPUs partitioned, the rest whole
		"AMD partitions beside whole GPUs": {"Standard_ND96isr_MI300X_v5", map[string]string{"amd.com/spx_nps1": "6", "amd.com/cpx_nps4": "16"}, false},
		"AMD partitions only":              {"Standard_ND96isr_MI300X_v5", map[string]string{"amd.com/cpx_nps4": "64"}, false},
		"Volcano memory only":              {"p4d.24xlarge", map[string]string{"volcano.sh/vgpu-memory": "89424", "volcano.sh/vgpu-number": "2"}, false},
		"Alibaba gpushare":                 {"p4d.24xlarge", map[string]string{"aliyun.com/gpu-mem": "40", "aliyun.com/gpu-count": "1"}, false},
		"MIG beside whole GPUs":            {"p4d.24xlarge", map[string]string{"nvidia.com/gpu": "4", "nvidia.com/mig-1g.5gb": "28"}, false},
		"a short plain count":              {"p4d.24xlarge", map[string]string{"nvidia.com/gpu": "4"}, true},
		"a short AMD count":                {"Standard_ND96isr_MI300X_v5", map[string]string{"amd.com/spx_nps1": "6"}, true},
	}
	for name, tc := range tests {
		capacity := map[string]resource.Quantity{}
		for k, v := range tc.capacity {
			capacity[k] = resource.MustParse(v)
		}
		d := Decide(DefaultConfig(), "n", gpuinfo.Node{Labels: map[string]string{gpuinfo.LabelInstanceType: tc.instanceType}, Capacity: capacity}, Audit)
		warned := false
		for _, f := range d.Findings {
			warned = warned || f.Reason == ReasonGPUCountMismatch
		}
		if warned != tc.warns || !d.Inference.GPU() {
			t.Errorf("%s: count warning %v, want %v (gpu %v, findings %+v)", name, warned, tc.warns, d.Inference.GPU(), d.Findings)
		}
	}
}
