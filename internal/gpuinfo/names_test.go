package gpuinfo

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

// withoutInstanceTypes is the knowledge base with an empty instance-type table: what the
// name reader gives where no table lists a type.
func withoutInstanceTypes(t *testing.T) *KB {
	t.Helper()
	tables := EmbeddedTables()
	tables.InstanceTypes = nil
	kb, err := Parse(tables)
	if err != nil {
		t.Fatal(err)
	}
	return kb
}

// The names of the issue and of each cloud's forms, read with no table to fall back on.
func TestReadInstanceTypeName(t *testing.T) {
	tests := map[string]struct {
		name  string
		want  string // label value; "" for a GPU of unknown model
		gpu   bool
		count int64
	}{
		"Crusoe spells model, memory and count":                         {name: "h200-141gb-sxm-ib.8x", want: "h200", gpu: true, count: 8},
		"Crusoe's 80 GB A100 slice":                                     {name: "a100-80gb.1x", want: "a100-80gb", gpu: true, count: 1},
		"Crusoe's a100 without its memory is an A100 of either variant": {name: "a100.4x", gpu: true, count: 4},
		"Crusoe's ten-GPU L40S node":                                    {name: "l40s-48gb.10x", want: "l40s", gpu: true, count: 10},
		"Crusoe's GB200 slice of an NVL72 rack":                         {name: "gb200-186gb-nvl-ib.4x", want: "gb200", gpu: true, count: 4},
		"DigitalOcean's total memory over the count tells the H100":     {name: "gpu-h100x8-640gb", want: "h100", gpu: true, count: 8},
		"DigitalOcean's MI300X count glued to the model's own x":        {name: "gpu-mi300x8-1536gb", want: "mi300x", gpu: true, count: 8},
		"Azure's N-series size spells the RTX PRO 6000, not its count":  {name: "Standard_NC24lds_xl_RTXPRO6000BSE_v6", want: "rtxpro6000", gpu: true},
		"Azure's A100 v4 name does not say 80 GB":                       {name: "Standard_NC24ads_A100_v4", gpu: true},
		"Azure's NC H100 v5 is an NVL the name does not name":           {name: "Standard_NC40ads_H100_v5", gpu: true},
		"OCI's shape names the B300; its last number is left unread":    {name: "BM.GPU.B300.8", want: "b300", gpu: true},
		"OCI's A100 shape that states 40 GB":                            {name: "VM.GPU.A100.40G.2", want: "a100", gpu: true},
		"SageMaker's ml. name is EC2's type":                            {name: "ml.p5.48xlarge", want: "h100", gpu: true, count: 8},
		"an ml. name EC2's table lacks is read as a name":               {name: "ml.g7e.96xlarge"},
		"IBM's profile glues the count to the model":                    {name: "gx3-24x120x1l40s", want: "l40s", gpu: true, count: 1},
		"IBM's Kubernetes flavor of two L4s":                            {name: "gx3.32x160.2l4", want: "l4", gpu: true, count: 2},
		"IBM's one-L4 flavor has no second sign":                        {name: "gx3.16x80.l4"},
		"Lambda's count form and the model across tokens":               {name: "gpu_8x_a100_80gb_sxm4", want: "a100-80gb", gpu: true, count: 8},
		"Hyperstack's RTX A6000 across a separator":                     {name: "n3-RTX-A6000x1", want: "a6000", gpu: true, count: 1},
		"Scaleway's memory after the count":                             {name: "H100-SXM-8-80G", want: "h100", gpu: true},
		"CoreWeave's count before the model":                            {name: "gd-1xgh200", want: "gh200", gpu: true, count: 1},
		"Vultr's bare metal calls its L40S an l40":                      {name: "vbm-64c-2048gb-8-l40-gpu", gpu: true},
		"Vultr's slice names its VRAM, not the GPU's":                   {name: "vcg-a40-2c-10g-4vram", want: "a40", gpu: true},
		"a memory the model does not have names none":                   {name: "gh200-144gb.1x", gpu: true, count: 1},
		"two models in one name name neither":                           {name: "gpu-l4-l40s-mix"},
		"a bare number after a separator is no count":                   {name: "gpu-mi300x.8", want: "mi300x", gpu: true},
		"AWS's Graviton burstable family is no T4g":                     {name: "t4g.micro"},
		"AWS's general-purpose type":                                    {name: "m5.4xlarge"},
		"Crusoe's CPU type has a count form but no model":               {name: "c1a.16x"},
		"Azure's D-series":                                              {name: "Standard_D8s_v5"},
		"GCP's N2":                                                      {name: "n2-standard-8"},
		"OCI's flexible E5":                                             {name: "VM.Standard.E5.Flex"},
		"OVH's flavor's number is its memory, not a sign":               {name: "l40s-90"},
		"an unknown OCI GPU shape shows no model":                       {name: "BM.GPU.FUTURE.8"},
	}
	kb := Default()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := kb.ReadInstanceTypeName(tc.name)
			got := ""
			if r.Model != nil {
				got = r.Model.LabelValue()
			}
			if got != tc.want || r.GPU != tc.gpu || r.Count != tc.count {
				t.Errorf("%s: model %q gpu %v count %d, want %q %v %d", tc.name, got, r.GPU, r.Count, tc.want, tc.gpu, tc.count)
			}
		})
	}
}

// The reader is its own source, after the tables: a listed type is the tables', the config
// wins over both, the beta label repeats the name once, and explain shows where it came from.
func TestInstanceTypeNameInTheTrustOrder(t *testing.T) {
	kb := withoutInstanceTypes(t)
	in := kb.Infer(Node{Labels: labels(LabelInstanceType, "h200-141gb-sxm-ib.8x", LabelInstanceTypeBeta, "h200-141gb-sxm-ib.8x")})
	if in.Value() != "h200" || in.Source != SourceInstanceTypeName || in.ExpectedCount != 8 || len(in.Evidence) != 1 || !in.GPU() {
		t.Errorf("unlisted type: %q from %q, expect %d, evidence %+v", in.Value(), in.Source, in.ExpectedCount, in.Evidence)
	}
	in = kb.Infer(Node{Labels: labels(LabelInstanceType, "BM.GPU.H100.8")})
	if !in.GPU() || in.Model != nil || len(in.Evidence) != 1 || in.Evidence[0].Source != SourceInstanceTypeName || in.Evidence[0].Unrecognised() {
		t.Errorf("a GPU family without its variant: gpu %v model %v evidence %+v", in.GPU(), in.Model, in.Evidence)
	}
	in = Default().Infer(Node{Labels: labels(LabelInstanceType, "h200-141gb-sxm-ib.8x")})
	if in.Source != SourceInstanceType || len(in.Evidence) != 1 {
		t.Errorf("a listed type is read by the table alone: %q, %+v", in.Source, in.Evidence)
	}
	cfg, err := kb.WithInstanceTypes([]InstanceTypeRow{{Name: "h200-141gb-sxm-ib.8x", Model: "B200", Count: 8}})
	if err != nil {
		t.Fatal(err)
	}
	if in = cfg.Infer(Node{Labels: labels(LabelInstanceType, "h200-141gb-sxm-ib.8x")}); in.Value() != "b200" || in.Source != SourceConfig {
		t.Errorf("the config's row: %q from %q", in.Value(), in.Source)
	}
	in = kb.Infer(Node{Labels: labels(LabelGFDProduct, "NVIDIA-H100-80GB-HBM3", LabelInstanceType, "gpu-h200x8-1128gb")})
	if in.Value() != "h100" || in.Source != SourceGFD || len(in.Conflicts) != 1 || in.Conflicts[0].Source != SourceInstanceTypeName {
		t.Errorf("GFD is more trusted than a name: %q from %q, conflicts %+v", in.Value(), in.Source, in.Conflicts)
	}
}

type cpuType struct{ cloud, name, source string }

func readCPUTypes(t *testing.T) []cpuType {
	t.Helper()
	f, err := os.Open("testdata/cpu-instance-types.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sources := map[string]bool{}
	var out []cpuType
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if key, ok := strings.CutPrefix(line, "# "); ok {
			if k, _, ok := strings.Cut(key, " "); ok && !strings.HasSuffix(k, ":") {
				sources[k] = true
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 3 || !sources[c[2]] {
			t.Fatalf("%q: want cloud, instance type and a source the header names", line)
		}
		out = append(out, cpuType{c[0], c[1], c[2]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Precision: wherever the name reader names a model for a row of the tables, it is the
// row's, with the row's count; it finds no accelerator in any CPU type of any cloud. It
// logs what the reader names with the instance-type table removed, per cloud.
func TestInstanceTypeNamesAgreeWithTheTables(t *testing.T) {
	kb := Default()
	noTable := withoutInstanceTypes(t)
	type tally struct{ rows, named, family int }
	clouds := map[string]*tally{}
	for _, it := range kb.InstanceTypes() {
		r := kb.ReadInstanceTypeName(it.Name)
		if r.Model != nil && r.Model != it.Model {
			t.Errorf("%s %s: the name reads %s, the table says %s", it.Cloud, it.Name, r.Model.Name, it.Model.Name)
		}
		if r.Count > 0 && float64(r.Count) != it.Count {
			t.Errorf("%s %s: the name reads %d devices, the table says %v", it.Cloud, it.Name, r.Count, it.Count)
		}
		c := clouds[it.Cloud]
		if c == nil {
			c = &tally{}
			clouds[it.Cloud] = c
		}
		c.rows++
		in := noTable.Infer(Node{Labels: labels(LabelInstanceType, it.Name)})
		switch {
		case in.Model == nil && in.GPU():
			c.family++
		case in.Model != nil && in.Model.Name == it.Model.Name:
			c.named++
		case in.Model != nil:
			t.Errorf("%s %s without the table: %s, the table says %s", it.Cloud, it.Name, in.Model.Name, it.Model.Name)
		}
	}
	cpu := readCPUTypes(t)
	perCloud := map[string]int{}
	for _, c := range cpu {
		perCloud[c.cloud]++
		if _, listed := kb.LookupInstanceType(c.name); listed {
			t.Errorf("%s %s is a CPU type and a table row", c.cloud, c.name)
		}
		if r := kb.ReadInstanceTypeName(c.name); r.GPU || r.Model != nil {
			t.Errorf("%s CPU type %s read as an accelerator: %+v", c.cloud, c.name, r)
		}
	}
	for cloud, least := range map[string]int{"aws": 1000, "azure": 1000, "gcp": 200, "ibm": 250, "sagemaker": 70} {
		if perCloud[cloud] < least {
			t.Errorf("%d CPU types of %s, want at least %d", perCloud[cloud], cloud, least)
		}
	}
	names := make([]string, 0, len(clouds))
	for c := range clouds {
		names = append(names, c)
	}
	sort.Strings(names)
	var total tally
	var lines []string
	for _, c := range names {
		v := clouds[c]
		total.rows, total.named, total.family = total.rows+v.rows, total.named+v.named, total.family+v.family
		lines = append(lines, fmt.Sprintf("%s %d/%d (+%d unknown model)", c, v.named, v.rows, v.family))
	}
	t.Logf("without the instance-type table the names name %d of %d rows and show %d more as GPUs of unknown model: %s; %d CPU types read as none",
		total.named, total.rows, total.family, strings.Join(lines, ", "), len(cpu))
}
