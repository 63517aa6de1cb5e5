package ci

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const releaseRepository = "registry.example/team/gpu-label-webhook"

// makeChart runs `make chart` as the release does, into a folder of its own.
func makeChart(t *testing.T, tag, repository string) (dir string, out []byte, err error) {
	t.Helper()
	dir = t.TempDir()
	out, err = exec.Command("make", "--no-print-directory", "-C", root, "chart",
		"VERSION="+tag, "IMAGE_REPOSITORY="+repository, "CHART_DIR="+dir).CombinedOutput()
	return dir, out, err
}

// `make chart` is the chart the release pushes beside the image: version and appVersion are
// the tag without its v, which is the tag the image is pushed as, and the image is the
// release's; a pre-release says so. helm installs the packaged chart with that image.
func TestChartRelease(t *testing.T) {
	tests := map[string]struct {
		tag, version string
		prerelease   bool
	}{
		"a release":     {"v1.2.3", "1.2.3", false},
		"a pre-release": {"v1.3.0-rc.1", "1.3.0-rc.1", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir, out, err := makeChart(t, tc.tag, releaseRepository)
			if err != nil {
				t.Fatalf("make chart: %v\n%s", err, out)
			}
			pkg := filepath.Join(dir, "gpu-label-webhook-"+tc.version+".tgz")
			files := untar(t, pkg)
			var chart struct {
				Version, AppVersion string
				Annotations         map[string]string
			}
			if err := yaml.Unmarshal(files["gpu-label-webhook/Chart.yaml"].body, &chart); err != nil {
				t.Fatal(err)
			}
			image := releaseRepository + ":" + tc.version
			if chart.Version != tc.version || chart.AppVersion != tc.version {
				t.Errorf("Chart.yaml: version %q, appVersion %q; want both %s", chart.Version, chart.AppVersion, tc.version)
			}
			if got, want := chart.Annotations["artifacthub.io/prerelease"], map[bool]string{true: "true", false: "false"}[tc.prerelease]; got != want {
				t.Errorf("artifacthub.io/prerelease is %q, want %s", got, want)
			}
			if !strings.Contains(chart.Annotations["artifacthub.io/images"], "image: "+image+"\n") {
				t.Errorf("artifacthub.io/images is %q, want %s", chart.Annotations["artifacthub.io/images"], image)
			}
			rendered, err := exec.Command(filepath.Join(root, "bin", "k8s", "helm"), "template", "gpu-label-webhook", pkg, "--kube-version", "1.37.2").CombinedOutput()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, rendered)
			}
			if !strings.Contains(string(rendered), `image: "`+image+`"`) {
				t.Errorf("the packaged chart does not install %s:\n%s", image, rendered)
			}
			if _, ok := files["gpu-label-webhook/ci/defaults-values.yaml"]; !ok {
				t.Errorf("the package lacks the chart's documented values combinations (ci/): %v", keys(files))
			}
		})
	}
}

// What the release could not publish is refused before anything is written.
func TestChartReleaseRefuses(t *testing.T) {
	tests := map[string]struct{ tag, repository, want string }{
		"a commit, not a tag":        {"5f91aec-dirty", releaseRepository, "want a version tag"},
		"a tag without its v":        {"1.2.3", releaseRepository, "want a version tag"},
		"a tag of two numbers":       {"v1.2", releaseRepository, "want a version tag"},
		"build metadata":             {"v1.2.3+build.1", releaseRepository, "want a version tag"},
		"no image repository":        {"v1.2.3", "", "go together"},
		"a repository with a tag":    {"v1.2.3", releaseRepository + ":latest", "without a tag"},
		"a repository with no owner": {"v1.2.3", "gpu-label-webhook", "registry/owner/name"},
		"a repository with a digest": {"v1.2.3", releaseRepository + "@sha256:0", "without a tag or digest"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir, out, err := makeChart(t, tc.tag, tc.repository)
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("make chart: %v\n%s\nwant it to fail saying %q", err, out, tc.want)
			}
			if pkgs, _ := filepath.Glob(filepath.Join(dir, "*.tgz")); len(pkgs) > 0 {
				t.Errorf("make chart failed and still wrote %v", pkgs)
			}
		})
	}
}
