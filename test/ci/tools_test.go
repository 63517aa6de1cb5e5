package ci

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var k8sBinaries = []string{"kube-apiserver", "kubectl", "etcd"}

// fakeGo stands in for go in `make tools GO=...`: it logs each build and writes the binaries
// asked for, so a test sees what make would build without spending minutes building it.
func fakeGo(t *testing.T) (gobin, log string) {
	t.Helper()
	dir := t.TempDir()
	gobin, log = filepath.Join(dir, "go"), filepath.Join(dir, "builds.log")
	script := `#!/bin/sh
echo "go $*" >> '` + log + `'
while [ $# -gt 0 ] && [ "$1" != -o ]; do shift; done
[ $# -gt 0 ] || exit 0 # go run: nothing to write
out=$2
shift 2
case $out in
  */) for p in "$@"; do echo built > "$out${p##*/}"; done ;;
  *) echo built > "$out" ;;
esac
`
	if err := os.WriteFile(gobin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return gobin, log
}

// fakeAssets writes a setup-envtest-like folder whose binaries report the given version.
func fakeAssets(t *testing.T, version string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	say := map[string]string{
		"kube-apiserver": "Kubernetes " + version,
		"kubectl":        "Client Version: " + version + "\nKustomize Version: v5.8.1",
		"etcd":           "etcd Version: 3.6.4",
	}
	for _, b := range names {
		script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' '%s'\n", strings.ReplaceAll(say[b], "\n", "' '"))
		if err := os.WriteFile(filepath.Join(dir, b), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// withoutHelm drops the builds of helm and cert-manager's binaries from a build log: make
// tools builds them whatever KUBEBUILDER_ASSETS holds, as setup-envtest's folders have none.
func withoutHelm(builds string) string {
	var keep []string
	for _, l := range strings.Split(builds, "\n") {
		if l != "" && !strings.Contains(l, "helm.sh/helm") && !strings.Contains(l, "./controller ./cainjector") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// makeTools runs `make tools` with the given KUBEBUILDER_ASSETS ("" for none) into bin,
// building with gobin, and returns its output and the builds gobin logged.
func makeTools(t *testing.T, assets, bin, gobin, log string) (out, builds string) {
	t.Helper()
	return makeTarget(t, "tools", assets, bin, gobin, log)
}

func makeTarget(t *testing.T, target, assets, bin, gobin, log string) (out, builds string) {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "-C", root, target,
		"KUBEBUILDER_ASSETS="+assets, "BIN="+bin, "GO="+gobin)
	o, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", target, err, o)
	}
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(o), string(b)
}

func TestToolsReusesKubebuilderAssets(t *testing.T) {
	tests := map[string]struct {
		assets   func(t *testing.T) string
		reused   bool
		wantSaid string
	}{
		"links binaries of the tested minor and builds nothing": {
			assets:   func(t *testing.T) string { return fakeAssets(t, "v1.37.0", k8sBinaries...) },
			reused:   true,
			wantSaid: "linked from KUBEBUILDER_ASSETS=",
		},
		"builds when the apiserver there is another minor": {
			assets:   func(t *testing.T) string { return fakeAssets(t, "v1.36.3", k8sBinaries...) },
			wantSaid: "holds kube-apiserver 'Kubernetes v1.36.3', not v1.37.x; building from source",
		},
		"builds when kubectl there is another minor": {
			assets: func(t *testing.T) string {
				dir := fakeAssets(t, "v1.37.0", "kube-apiserver", "etcd")
				kubectl := fakeAssets(t, "v1.31.0", "kubectl")
				if err := os.Rename(filepath.Join(kubectl, "kubectl"), filepath.Join(dir, "kubectl")); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantSaid: "holds kubectl 'Client Version: v1.31.0', not v1.37.x",
		},
		"builds when one binary is missing": {
			assets:   func(t *testing.T) string { return fakeAssets(t, "v1.37.0", "kube-apiserver", "kubectl") },
			wantSaid: "has no executable etcd; building from source",
		},
		"builds when KUBEBUILDER_ASSETS is not set": {
			assets: func(t *testing.T) string { return "" },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assets, bin := tc.assets(t), filepath.Join(t.TempDir(), "bin")
			gobin, log := fakeGo(t)
			out, builds := makeTools(t, assets, bin, gobin, log)
			if tc.wantSaid != "" && !strings.Contains(out, tc.wantSaid) {
				t.Errorf("make tools said\n%s\nwant %q", out, tc.wantSaid)
			}
			for _, b := range k8sBinaries {
				path := filepath.Join(bin, "k8s", b)
				target, err := os.Readlink(path)
				switch {
				case tc.reused && target != filepath.Join(assets, b):
					t.Errorf("bin/k8s/%s links to %q (%v), want %s", b, target, err, filepath.Join(assets, b))
				case !tc.reused && err == nil:
					t.Errorf("bin/k8s/%s links to %s, want it built", b, target)
				}
			}
			// helm is built either way: setup-envtest's folders have none.
			if !strings.Contains(builds, "helm.sh/helm/v3/cmd/helm") {
				t.Errorf("make tools did not build helm:\n%s", builds)
			}
			if tc.reused && withoutHelm(builds) != "" {
				t.Errorf("make tools built although it linked:\n%s", builds)
			}
			// Each build once: kube-apiserver and kubectl in one go build, etcd, helm and
			// cert-manager's two in others.
			if !tc.reused && (strings.Count(builds, "go build") != 4 || !strings.Contains(builds, "cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl") || !strings.Contains(builds, "go.etcd.io/etcd/server/v3")) {
				t.Errorf("make tools ran\n%s\nwant the four builds", builds)
			}
		})
	}
}

// Inside make's own recipes KUBEBUILDER_ASSETS is bin/k8s; pointing at it must not link a
// file to itself, and a link left from an earlier reuse is replaced by a build, never
// written through into the user's folder.
func TestToolsNeverWritesIntoKubebuilderAssets(t *testing.T) {
	assets, bin := fakeAssets(t, "v1.37.0", k8sBinaries...), filepath.Join(t.TempDir(), "bin")
	gobin, log := fakeGo(t)
	makeTools(t, assets, bin, gobin, log)

	out, builds := makeTools(t, filepath.Join(bin, "k8s"), bin, gobin, log)
	if builds = withoutHelm(builds); builds != "" {
		t.Errorf("KUBEBUILDER_ASSETS=bin/k8s built:\n%s\n%s", builds, out)
	}
	for _, b := range k8sBinaries {
		if target, err := os.Readlink(filepath.Join(bin, "k8s", b)); err != nil || target != filepath.Join(assets, b) {
			t.Errorf("bin/k8s/%s: link %q (%v), want it left pointing at %s", b, target, err, assets)
		}
	}

	// The user's binaries older than the tools' go.mod: make holds the links stale.
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range k8sBinaries {
		if err := os.Chtimes(filepath.Join(assets, b), old, old); err != nil {
			t.Fatal(err)
		}
	}
	_, builds = makeTools(t, "", bin, gobin, log)
	if strings.Count(withoutHelm(builds), "go build") != 2 {
		t.Errorf("stale links were not rebuilt:\n%s", builds)
	}
	for _, b := range k8sBinaries {
		fi, err := os.Lstat(filepath.Join(bin, "k8s", b))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("bin/k8s/%s after the build: %v (%v), want a file of its own", b, modeOf(fi), err)
		}
		data, err := os.ReadFile(filepath.Join(assets, b))
		if err != nil || strings.Contains(string(data), "built") {
			t.Errorf("the build wrote into KUBEBUILDER_ASSETS/%s (%v):\n%s", b, err, data)
		}
	}
}

// The same with real binaries, as setup-envtest leaves them: a copy of bin/k8s (or of the
// folder KUBEBUILDER_ASSETS names, which is bin/k8s under make). Skipped before `make tools`.
func TestToolsReusesRealBinaries(t *testing.T) {
	src := os.Getenv("KUBEBUILDER_ASSETS")
	if src == "" {
		src = filepath.Join(root, "bin", "k8s")
	}
	assets := t.TempDir()
	for _, b := range k8sBinaries {
		from, err := filepath.EvalSymlinks(filepath.Join(src, b))
		if err != nil {
			t.Skipf("no control-plane binaries to copy (run make tools): %v", err)
		}
		// A hard link where the file system allows: the apiserver alone is over 100 MB.
		if err := os.Link(from, filepath.Join(assets, b)); err != nil {
			data, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(assets, b), data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	bin := filepath.Join(t.TempDir(), "bin")
	gobin, log := fakeGo(t) // were reuse to fail, a fake build fails the test, not a real one runs
	out, builds := makeTools(t, assets, bin, gobin, log)
	if builds = withoutHelm(builds); builds != "" {
		t.Fatalf("make tools built instead of linking:\n%s\n%s", out, builds)
	}
	for b, args := range map[string][]string{
		"kube-apiserver": {"--version"},
		"kubectl":        {"version", "--client"},
		"etcd":           {"--version"},
	} {
		got, err := exec.Command(filepath.Join(bin, "k8s", b), args...).CombinedOutput()
		if err != nil {
			t.Errorf("bin/k8s/%s %s: %v\n%s", b, strings.Join(args, " "), err, got)
		}
		if b != "etcd" && !strings.Contains(string(got), "v1.37.") {
			t.Errorf("bin/k8s/%s reports %q, want v1.37.x", b, got)
		}
	}
}

// A first `make demo` builds what the demo runs and nothing more: the control plane and the
// webhook, not helm or cert-manager, which only the e2e tests run.
func TestDemoBuildsOnlyWhatItRuns(t *testing.T) {
	tests := map[string]struct {
		assets func(t *testing.T) string
		want   []string
	}{
		"from source": {
			assets: func(t *testing.T) string { return "" },
			want:   []string{"k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl", "go.etcd.io/etcd/server/v3", "./cmd/webhook", "go run ./test/demo"},
		},
		"with the control plane in KUBEBUILDER_ASSETS": {
			assets: func(t *testing.T) string { return fakeAssets(t, "v1.37.0", k8sBinaries...) },
			want:   []string{"./cmd/webhook", "go run ./test/demo"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			gobin, log := fakeGo(t)
			_, builds := makeTarget(t, "demo", tc.assets(t), filepath.Join(t.TempDir(), "bin"), gobin, log)
			lines := strings.Split(strings.TrimSpace(builds), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("make demo ran %d go commands, want %d:\n%s", len(lines), len(tc.want), builds)
			}
			for _, w := range tc.want {
				if !strings.Contains(builds, w) {
					t.Errorf("make demo did not run %q:\n%s", w, builds)
				}
			}
		})
	}
}

func modeOf(fi os.FileInfo) any {
	if fi == nil {
		return nil
	}
	return fi.Mode()
}
