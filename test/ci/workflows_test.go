package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// root is the repository's root, from this package's folder (where go test runs).
var root = filepath.Join("..", "..")

// actionlint returns the actionlint binary: the one `make verify` built (ACTIONLINT), or one
// built here from the version test/tools/ci pins, so plain `go test ./...` checks too.
func actionlint(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ACTIONLINT"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "actionlint")
	cmd := exec.Command("go", "build", "-C", filepath.Join(root, "test", "tools", "ci"), "-o", bin, "github.com/rhysd/actionlint/cmd/actionlint")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building actionlint: %v\n%s", err, out)
	}
	return bin
}

func workflows(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ci.yaml", "release.yaml"} {
		if !contains(files, filepath.Join(root, ".github", "workflows", want)) {
			t.Errorf("no .github/workflows/%s", want)
		}
	}
	return files
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The workflows cannot run here, so actionlint stands in: syntax, expressions and the
// contexts each may read, every popular action's inputs, and the run: scripts through
// shellcheck when it is installed (as it is on GitHub's runners).
func TestWorkflowsLint(t *testing.T) {
	workflows(t)
	cmd := exec.Command(actionlint(t), "-no-color")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("actionlint: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Log("shellcheck is not installed: the run: scripts were not checked by it")
	}
}

// The check above is only worth having if actionlint fails on the mistakes that are easy to
// make in a workflow nobody can run before a tag is pushed.
func TestWorkflowsLintCatchesMistakes(t *testing.T) {
	const head = "on: push\njobs:\n  test:\n    runs-on: ubuntu-24.04\n"
	tests := map[string]struct{ workflow, want string }{
		"an input the action does not have": {
			head + "    steps:\n      - uses: actions/setup-go@v6\n        with:\n          go-version-fil: go.mod\n",
			`input "go-version-fil" is not defined`,
		},
		"a context the job's env cannot read": {
			head + "    env:\n      DIR: ${{ runner.temp }}/x\n    steps:\n      - run: echo \"$DIR\"\n",
			`context "runner" is not allowed here`,
		},
		"a step output that does not exist": {
			head + "    steps:\n      - id: k8s\n        uses: actions/cache/restore@v4\n        with:\n          path: x\n          key: k\n      - if: steps.k8s.outputs.cache-hits != 'true'\n        run: echo\n",
			`property "cache-hits" is not defined`,
		},
	}
	lint := actionlint(t)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "wf.yaml")
			if err := os.WriteFile(path, []byte(tc.workflow), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(lint, "-no-color", path).CombinedOutput()
			if err == nil {
				t.Fatalf("actionlint passed a workflow with %s", name)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("actionlint said\n%s\nwant it to say %q", out, tc.want)
			}
		})
	}
}

// A version tag, or a commit: a branch (@main) would run whatever was pushed to it last.
var pinned = regexp.MustCompile(`^v[0-9]+(\.[0-9]+){0,2}$|^[0-9a-f]{40}$`)

func TestWorkflowsPinActionsByVersion(t *testing.T) {
	type step struct {
		Uses string `json:"uses"`
	}
	type workflow struct {
		Jobs map[string]struct {
			Uses  string `json:"uses"`
			Steps []step `json:"steps"`
		} `json:"jobs"`
	}
	for _, path := range workflows(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var wf workflow
		if err := yaml.Unmarshal(data, &wf); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var uses []string
		for _, job := range wf.Jobs {
			uses = append(uses, job.Uses)
			for _, s := range job.Steps {
				uses = append(uses, s.Uses)
			}
		}
		for _, u := range uses {
			if u == "" || strings.HasPrefix(u, "./") { // run: steps; this repository's own
				continue
			}
			_, ref, _ := strings.Cut(u, "@")
			if !pinned.MatchString(ref) {
				t.Errorf("%s: %s is not pinned to a version tag or commit", filepath.Base(path), u)
			}
		}
	}
}
