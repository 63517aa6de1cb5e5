package ci

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// What the Krew manifest downloads for each platform, read from the manifest itself.
var krewAsset = regexp.MustCompile(`matchLabels: \{os: (\w+), arch: (\w+)\}\s+\{\{ addURIAndSha "[^"]*/releases/download/\{\{ \.TagName \}\}/(\S+\.tar\.gz)" \.TagName \}\}\s+bin: (\S+)`)

// `make dist` is what the release workflow publishes: every archive the Krew manifest names,
// holding the binary under the name Krew runs, built for that platform and stamped with the
// tag; an SBOM of each binary; SHA256SUMS that match. Two runs give the same bytes.
func TestDistMatchesKrewManifest(t *testing.T) {
	manifest, err := os.ReadFile(filepath.Join(root, "plugins", "krew", "gpu-label.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	platforms := krewAsset.FindAllStringSubmatch(string(manifest), -1)
	if len(platforms) != 3 {
		t.Fatalf("read %d platforms from the Krew manifest, want 3", len(platforms))
	}

	const version = "v0.0.0-disttest"
	dist := func() string {
		bin := filepath.Join(t.TempDir(), "bin")
		out, err := exec.Command("make", "--no-print-directory", "-C", root, "dist", "VERSION="+version, "BIN="+bin).CombinedOutput()
		if err != nil {
			t.Fatalf("make dist: %v\n%s", err, out)
		}
		return filepath.Join(bin, "dist")
	}
	dir := dist()

	sums := readSums(t, filepath.Join(dir, "SHA256SUMS"))
	for _, p := range platforms {
		goos, goarch, archive, binary := p[1], p[2], p[3], p[4]
		t.Run(goos+"/"+goarch, func(t *testing.T) {
			if want := "kubectl-gpu_label_" + goos + "_" + goarch + ".tar.gz"; archive != want || binary != "kubectl-gpu_label" {
				t.Errorf("the Krew manifest names %s holding %s, want %s holding kubectl-gpu_label", archive, binary, want)
			}
			exe := unpack(t, filepath.Join(dir, archive), binary)
			checkPlatform(t, exe, goos, goarch)
			if goos == runtime.GOOS && goarch == runtime.GOARCH {
				out, err := exec.Command(exe, "version").CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "gpu-label-webhook "+version {
					t.Errorf("kubectl-gpu_label version: %q (%v), want the tag", out, err)
				}
			}
			sbom := strings.TrimSuffix(archive, ".tar.gz") + ".sbom.cdx.json"
			checkSBOM(t, filepath.Join(dir, sbom), version)
			for _, f := range []string{archive, sbom} {
				if got := fileSum(t, filepath.Join(dir, f)); sums[f] != got {
					t.Errorf("SHA256SUMS has %q for %s, the file is %s", sums[f], f, got)
				}
			}
		})
	}
	if len(sums) != 2*len(platforms) {
		t.Errorf("SHA256SUMS lists %d files, want an archive and an SBOM for each of %d platforms", len(sums), len(platforms))
	}

	// The same commit and tag give the same archives and SBOMs.
	again := readSums(t, filepath.Join(dist(), "SHA256SUMS"))
	for f, sum := range sums {
		if again[f] != sum {
			t.Errorf("%s differs between two runs of make dist", f)
		}
	}
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not sha256sum's", sc.Text())
		}
		sums[name] = sum
	}
	return sums
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// unpack checks the archive holds exactly the executable Krew will run and writes it out.
func unpack(t *testing.T, archive, binary string) string {
	t.Helper()
	files := untar(t, archive)
	if len(files) != 1 || files[binary] == nil {
		t.Fatalf("the archive holds %q, want only %s", keys(files), binary)
	}
	h := files[binary].hdr
	if h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 || h.Uid != 0 || h.Gid != 0 {
		t.Errorf("%s in the archive: type %c, mode %o, owner %d:%d; want an executable file owned by 0:0", binary, h.Typeflag, h.Mode, h.Uid, h.Gid)
	}
	exe := filepath.Join(t.TempDir(), binary)
	if err := os.WriteFile(exe, files[binary].body, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// untar reads a .tar.gz into memory, by path.
func untar(t *testing.T, path string) map[string]*tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*tarEntry{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		e := &tarEntry{hdr: h}
		if e.body, err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
		files[h.Name] = e
	}
}

type tarEntry struct {
	hdr  *tar.Header
	body []byte
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func checkPlatform(t *testing.T, exe, goos, goarch string) {
	t.Helper()
	switch goos {
	case "linux":
		f, err := elf.Open(exe)
		if err != nil {
			t.Fatalf("not an ELF executable: %v", err)
		}
		defer f.Close()
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Machine != want {
			t.Errorf("ELF machine %v, want %v", f.Machine, want)
		}
	case "darwin":
		f, err := macho.Open(exe)
		if err != nil {
			t.Fatalf("not a Mach-O executable: %v", err)
		}
		defer f.Close()
		want := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]
		if f.Cpu != want {
			t.Errorf("Mach-O CPU %v, want %v", f.Cpu, want)
		}
	default:
		t.Errorf("no check for %s", goos)
	}
}

// checkSBOM reads the parts of the CycloneDX document a consumer relies on: the format, the
// binary's module at the tag, and the modules linked into it.
func checkSBOM(t *testing.T, path, version string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var bom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name string `json:"name"`
			PURL string `json:"purl"`
		} `json:"components"`
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	main := bom.Metadata.Component
	if bom.BOMFormat != "CycloneDX" || main.Name != "github.com/gpu-label-webhook/gpu-label-webhook" || main.Version != version {
		t.Errorf("%s: format %q, component %s@%s; want CycloneDX of the module at %s", filepath.Base(path), bom.BOMFormat, main.Name, main.Version, version)
	}
	found := false
	for _, c := range bom.Components {
		found = found || c.Name == "k8s.io/client-go" && strings.HasPrefix(c.PURL, "pkg:golang/k8s.io/client-go@")
	}
	if !found {
		t.Errorf("%s lists %d modules, not k8s.io/client-go", filepath.Base(path), len(bom.Components))
	}
}
