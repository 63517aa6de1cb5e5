package app

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// check reads every page and prints one JSON document on stdout; what it says while listing
// goes to stderr.
func TestCheckReadsEveryPageAndKeepsStdoutForTheReport(t *testing.T) {
	api := &testAPI{nodes: fleet(700, 100, 400)}
	stdout, stderr, code := runAgainst(t, context.Background(), api, "check", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Nodes []struct{ Name, Accelerator string } `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("stdout is not check's JSON alone: %v\n%s", err, stdout)
	}
	if len(doc.Nodes) != 1200 || doc.Nodes[1199].Name != "gpu-0699" || doc.Nodes[1199].Accelerator != "h100" {
		t.Errorf("%d records, the last %+v", len(doc.Nodes), doc.Nodes[len(doc.Nodes)-1])
	}
	if !strings.Contains(stderr, "listed 1000 nodes...") {
		t.Errorf("stderr: %s", stderr)
	}
}
