package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// The root of the repository, from this package's folder.
var root = filepath.Join("..", "..", "..")

var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// fakeELF is an ELF header for the machine and nothing else: enough for debug/elf, and
// distinct per machine, so a binary put under the wrong platform shows.
func fakeELF(t *testing.T, m elf.Machine) []byte {
	t.Helper()
	h := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(m),
		Version:   uint32(elf.EV_CURRENT),
		Ehsize:    64,
		Phentsize: 56,
		Shentsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testBinaries builds a small Go program for linux/amd64 and linux/arm64 (Go binaries record
// the build information the provenance reads, as make build's do), writes a CycloneDX SBOM
// for each, and returns the --binary and --sbom flags naming them, and the binaries by
// platform.
func testBinaries(t *testing.T) (flags []string, want map[string][]byte) {
	t.Helper()
	builtOnce.Do(func() { built, buildErr = buildTestBinaries() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	want = map[string][]byte{}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		b := built[p]
		want[p] = b.binary
		flags = append(flags, "--binary", p+"="+b.path, "--sbom", p+"="+b.sbom)
	}
	return flags, want
}

type testBinary struct {
	path, sbom string
	binary     []byte
}

var (
	builtOnce sync.Once
	built     map[string]testBinary
	buildErr  error
)

func buildTestBinaries() (map[string]testBinary, error) {
	dir, err := os.MkdirTemp("", "image-builder-test-")
	if err != nil {
		return nil, err
	}
	for name, body := range map[string]string{
		"go.mod":  "module example.com/hello\n\ngo 1.26\n",
		"main.go": "package main\n\nfunc main() { println(\"hello\") }\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	out := map[string]testBinary{}
	for _, arch := range []string{"amd64", "arm64"} {
		b := testBinary{path: filepath.Join(dir, "hello-"+arch), sbom: filepath.Join(dir, "hello-"+arch+".cdx.json")}
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.path, ".")
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		if o, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building the test binary for %s: %v\n%s", arch, err, o)
		}
		var err error
		if b.binary, err = os.ReadFile(b.path); err != nil {
			return nil, err
		}
		sbom := `{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"metadata":{"component":{"name":"example.com/hello","version":"v1.2.3"}},"components":[]}`
		if err := os.WriteFile(b.sbom, []byte(sbom), 0o644); err != nil {
			return nil, err
		}
		out["linux/"+arch] = b
	}
	return out, nil
}

// build runs the tool as make does and returns the archive's path and what it printed.
func build(t *testing.T, args ...string) (string, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	var said bytes.Buffer
	if err := run(append(args, "--out", out), &said, io.Discard); err != nil {
		t.Fatalf("image-builder %q: %v", args, err)
	}
	return out, said.String()
}

var date = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fakeArgs(binaries []string) []string {
	return append(binaries, "--tag", "gpu-label-webhook:latest", "--version", "v1.2.3",
		"--revision", "0123456789abcdef0123456789abcdef01234567", "--source-date", "1772366400")
}

func TestImage(t *testing.T) {
	binaries, want := testBinaries(t)
	path, said := build(t, fakeArgs(binaries)...)
	img := readArchive(t, path)
	img.check(t, want, "v1.2.3", date)

	d := img.index.Manifests[0].Digest.String()
	if !strings.Contains(said, "index        "+d) || !strings.Contains(said, "docker.io/library/gpu-label-webhook:latest") {
		t.Errorf("image-builder printed\n%s\nwant the name and the index digest %s", said, d)
	}
	for _, m := range img.top.Manifests {
		if !strings.Contains(said, m.Digest.String()) {
			t.Errorf("image-builder printed\n%s\nwithout %s's manifest digest %s", said, m.Platform, m.Digest)
		}
	}
	if !strings.Contains(said, "(SBOM and provenance of linux/arm64)") {
		t.Errorf("image-builder printed\n%s\nwithout naming what each attestation is of", said)
	}
}

// The same binaries, version, commit and date give the same bytes, whatever the order of
// the flags; another date gives another image.
func TestImageIsReproducible(t *testing.T) {
	binaries, _ := testBinaries(t)
	first, _ := build(t, fakeArgs(binaries)...)
	swapped := append(slices.Clone(binaries[4:]), binaries[:4]...) // arm64's flags first
	second, _ := build(t, fakeArgs(swapped)...)
	if a, b := fileSum(t, first), fileSum(t, second); a != b {
		t.Errorf("two builds of the same inputs differ: %s and %s", a, b)
	}

	later, _ := build(t, append(fakeArgs(binaries), "--source-date", "1772366401")...)
	if readArchive(t, later).index.Manifests[0].Digest == readArchive(t, first).index.Manifests[0].Digest {
		t.Error("another source date gave the same index digest")
	}
}

func TestImageRefusesBadInput(t *testing.T) {
	binaries, _ := testBinaries(t)
	dir := t.TempDir()
	notGo, notCycloneDX := filepath.Join(dir, "not-go"), filepath.Join(dir, "spdx.json")
	if err := os.WriteFile(notGo, fakeELF(t, elf.EM_X86_64), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notCycloneDX, []byte(`{"spdxVersion":"SPDX-2.3"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	amd64 := func(args ...string) []string {
		return append(args, "--tag", "x:y", "--version", "v1", "--revision", "r", "--source-date", "0")
	}
	sbom := built["linux/amd64"].sbom
	tests := map[string]struct {
		args []string
		want string
	}{
		"a platform given twice":                {append(fakeArgs(binaries), binaries[0], binaries[1]), "given twice"},
		"an SBOM for a platform with no binary": {append(fakeArgs(binaries), "--sbom", "linux/s390x="+sbom), "--sbom linux/s390x: no --binary"},
		"a binary without its SBOM":             {amd64("--binary", "linux/amd64="+built["linux/amd64"].path, "--binary", "linux/arm64="+built["linux/arm64"].path, "--sbom", "linux/amd64="+sbom), "--binary linux/arm64 has no --sbom"},
		"an SBOM that is not CycloneDX":         {amd64("--binary", "linux/amd64="+built["linux/amd64"].path, "--sbom", "linux/amd64="+notCycloneDX), "want a CycloneDX SBOM"},
		"an attested binary that is not Go's":   {amd64("--binary", "linux/amd64="+notGo, "--sbom", "linux/amd64="+sbom), "no Go build information"},
		"a binary without os/arch":              {append(fakeArgs(binaries), "--binary", "amd64=x"), "want os/arch=path"},
		"no binary":                             {fakeArgs(nil), "are all required"},
		"a date that is no number":              {append(fakeArgs(binaries), "--source-date", "yesterday"), "--source-date"},
		"a tag that is no name":                 {append(fakeArgs(binaries), "--tag", "Gpu Label:latest"), "--tag"},
		"a binary that is missing":              {append(fakeArgs(binaries), "--binary", "linux/s390x=/nonexistent"), "nonexistent"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := run(append(tc.args, "--out", filepath.Join(t.TempDir(), "x.tar")), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	tests := map[string]struct{ in, full, tag string }{
		"a bare name is Docker Hub's library": {"gpu-label-webhook:latest", "docker.io/library/gpu-label-webhook:latest", "latest"},
		"no tag means latest":                 {"gpu-label-webhook", "docker.io/library/gpu-label-webhook:latest", "latest"},
		"a Docker Hub user keeps its path":    {"someone/webhook:v1", "docker.io/someone/webhook:v1", "v1"},
		"a registry with a port":              {"localhost:5000/webhook:dev", "localhost:5000/webhook:dev", "dev"},
		"another registry":                    {"ghcr.io/owner/gpu-label-webhook:1.2.3", "ghcr.io/owner/gpu-label-webhook:1.2.3", "1.2.3"},
		"docker.io spelled out":               {"docker.io/library/gpu-label-webhook:latest", "docker.io/library/gpu-label-webhook:latest", "latest"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ref, err := parseRef(tc.in)
			if err != nil || ref.full != tc.full || ref.tag != tc.tag {
				t.Errorf("parseRef(%q) = %+v, %v; want %s and tag %s", tc.in, ref, err, tc.full, tc.tag)
			}
		})
	}
}

// The Dockerfile builds the same image with a Docker engine: its final stage must start
// the webhook as this image does, as the same user, from the same path.
func TestDockerfileAgrees(t *testing.T) {
	stage := finalStage(t, filepath.Join(root, "Dockerfile"))
	binaries, _ := testBinaries(t)
	path, _ := build(t, fakeArgs(binaries)...)
	for _, img := range readArchive(t, path).images {
		c := img.config.Config
		if got := stage["USER"]; len(got) != 1 || got[0] != c.User {
			t.Errorf("the Dockerfile's USER is %q, the image's %q", got, c.User)
		}
		if got := stage["ENTRYPOINT"]; !slices.Equal(got, c.Entrypoint) {
			t.Errorf("the Dockerfile's ENTRYPOINT is %q, the image's %q", got, c.Entrypoint)
		}
		if got := stage["CMD"]; !slices.Equal(got, c.Cmd) {
			t.Errorf("the Dockerfile's CMD is %q, the image's %q", got, c.Cmd)
		}
		if got := stage["COPY"]; len(got) == 0 || got[len(got)-1] != c.Entrypoint[0] {
			t.Errorf("the Dockerfile copies the binary to %q, the image runs %s", got, c.Entrypoint[0])
		}
	}
}

// finalStage reads the instructions of a Dockerfile's last stage: the arguments of each
// (the last one of a kind wins, as in Docker), JSON form parsed, shell form as Docker
// runs it.
func finalStage(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stage map[string][]string
	var line string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if line == "" && (text == "" || strings.HasPrefix(text, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(text, "\\"); ok {
			line += cont + " "
			continue
		}
		line += text
		inst, args, _ := strings.Cut(line, " ")
		inst, args, line = strings.ToUpper(inst), strings.TrimSpace(args), ""
		switch {
		case inst == "FROM":
			stage = map[string][]string{}
		case stage == nil:
		case strings.HasPrefix(args, "["):
			var list []string
			if err := json.Unmarshal([]byte(args), &list); err != nil {
				t.Fatalf("%s %s: %v", inst, args, err)
			}
			stage[inst] = list
		case inst == "CMD" || inst == "ENTRYPOINT":
			stage[inst] = []string{"/bin/sh", "-c", args}
		default:
			stage[inst] = strings.Fields(args)
		}
	}
	if stage == nil {
		t.Fatalf("%s has no FROM", path)
	}
	return stage
}

// What `make image` made: IMAGE_ARCHIVE names the archive, and the binaries `make build`
// wrote for it are beside it in linux_<arch>/webhook, each with its SBOM webhook.cdx.json
// (make image-test sets this up).
func TestMadeImage(t *testing.T) {
	path := os.Getenv("IMAGE_ARCHIVE")
	if path == "" {
		t.Skip("IMAGE_ARCHIVE is not set: run make image-test")
	}
	want := map[string][]byte{}
	var args []string
	for _, arch := range []string{"amd64", "arm64"} {
		exe := filepath.Join(filepath.Dir(path), "linux_"+arch, "webhook")
		data, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		want["linux/"+arch] = data
		args = append(args, "--binary", "linux/"+arch+"="+exe, "--sbom", "linux/"+arch+"="+exe+".cdx.json")
	}
	img := readArchive(t, path)
	version := img.images["linux/amd64"].config.Config.Labels["org.opencontainers.image.version"]
	created := img.images["linux/amd64"].config.Created.Time
	img.check(t, want, version, created)

	// The binary for this machine runs and reports the version the image is labelled with.
	if b, ok := img.images[runtime.GOOS+"/"+runtime.GOARCH]; ok {
		exe := filepath.Join(t.TempDir(), "webhook")
		if err := os.WriteFile(exe, b.files["webhook"].body, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(exe, "version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != "gpu-label-webhook "+version {
			t.Errorf("/webhook version: %q (%v), want gpu-label-webhook %s", got, err, version)
		}
	}

	// Each SBOM lists every module the binary links, at the version it links: the module's
	// dependencies as the binary records them, not a list written apart from the build.
	for p, exe := range want {
		info, err := buildinfo.Read(bytes.NewReader(exe))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		listed := map[string]bool{}
		for _, c := range img.attestations[img.digests[p]].sbom.Components {
			listed[c.Name+"@"+c.Version] = strings.HasPrefix(c.PURL, "pkg:golang/"+c.Name+"@"+c.Version)
		}
		if len(info.Deps) < 20 || !listed["k8s.io/client-go@"+dep(info, "k8s.io/client-go")] {
			t.Errorf("%s: the binary links %d modules; the SBOM lists %d, k8s.io/client-go among them: %v", p, len(info.Deps), len(listed), listed["k8s.io/client-go@"+dep(info, "k8s.io/client-go")])
		}
		for _, d := range info.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			if !listed[d.Path+"@"+d.Version] {
				t.Errorf("%s: the binary links %s@%s, the SBOM does not list it with its package URL", p, d.Path, d.Version)
			}
		}
	}

	// Built again from the same binaries, SBOMs, version, commit, date and builder: the same bytes.
	prov := img.attestations[img.digests["linux/amd64"]].provenance
	args = append(args, "--tag", img.index.Manifests[0].Annotations["io.containerd.image.name"],
		"--version", version, "--revision", img.images["linux/amd64"].config.Config.Labels["org.opencontainers.image.revision"],
		"--source-date", strconv.FormatInt(created.Unix(), 10), "--builder", prov.GetRunDetails().GetBuilder().GetId())
	again, _ := build(t, args...)
	if a, b := fileSum(t, path), fileSum(t, again); a != b {
		t.Errorf("%s is %s, built again from its inputs %s", path, a, b)
	}
}

// The release pushes the archive unpacked, with crane: the registry gets the index with every
// image and every attestation, and serves them back by the digests the archive holds.
func TestPushKeepsAttestations(t *testing.T) {
	binaries, _ := testBinaries(t)
	path, _ := build(t, fakeArgs(binaries)...)
	layout := t.TempDir()
	if out, err := exec.Command("tar", "-xf", path, "-C", layout).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/team/gpu-label-webhook:1.2.3"
	cmd := exec.Command("go", "tool", "crane", "push", "--insecure", layout, ref)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crane push: %v\n%s", err, out)
	}
	want := readArchive(t, path)
	if got := strings.TrimSpace(string(out)); !strings.HasSuffix(got, "@"+want.index.Manifests[0].Digest.String()) {
		t.Errorf("crane push printed %q, want the index digest %s", got, want.index.Manifests[0].Digest)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != len(want.top.Manifests) {
		t.Fatalf("the registry's index holds %d manifests, the archive's %d", len(m.Manifests), len(want.top.Manifests))
	}
	for subject, at := range want.attestations {
		img, err := idx.Image(at.desc.Digest)
		if err != nil {
			t.Fatalf("the attestation of %s: %v", subject, err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 2 {
			t.Fatalf("the attestation of %s: %d layers, %v", subject, len(layers), err)
		}
		for i, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, want.blobs[at.manifest.Layers[i].Digest.String()]) {
				t.Errorf("the attestation of %s: layer %d differs from the archive's", subject, i)
			}
		}
	}
}

// dep is the version of the module the binary links.
func dep(info *debug.BuildInfo, path string) string {
	for _, d := range info.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return ""
}

// archive is an OCI archive read back with nothing but tar and JSON.
type archive struct {
	layout []byte
	index  v1.IndexManifest // index.json
	blobs  map[string][]byte
	top    v1.IndexManifest // the image index it names
	images map[string]image // by os/arch
	// digests are the images' manifest digests by os/arch, and attestations the attestation
	// manifests by the digest they name.
	digests      map[string]string
	attestations map[string]attested
}

// attested is an attestation manifest read back: its descriptor in the index, its manifest,
// and the two statements with their predicates.
type attested struct {
	desc       v1.Descriptor
	manifest   v1.Manifest
	config     v1.ConfigFile
	statements []*intoto.Statement
	sbom       cyclonedx
	provenance *provenance.Provenance
}

// cyclonedx is what a consumer reads of the SBOM.
type cyclonedx struct {
	BOMFormat string `json:"bomFormat"`
	Metadata  struct {
		Component struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"component"`
	} `json:"metadata"`
	Components []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		PURL    string `json:"purl"`
	} `json:"components"`
}

type image struct {
	manifest v1.Manifest
	config   v1.ConfigFile
	names    []string // the layer's entries, in order
	files    map[string]entry
}

type entry struct {
	hdr  tar.Header
	body []byte
}

func readArchive(t *testing.T, path string) archive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := archive{blobs: map[string][]byte{}, images: map[string]image{}, digests: map[string]string{}, attestations: map[string]attested{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.Name == "oci-layout":
			a.layout = data
		case h.Name == "index.json":
			unmarshal(t, h.Name, data, &a.index)
		case strings.HasPrefix(h.Name, "blobs/sha256/") && h.Typeflag == tar.TypeReg:
			hex := strings.TrimPrefix(h.Name, "blobs/sha256/")
			if sum := sha256.Sum256(data); hexOf(sum[:]) != hex {
				t.Errorf("%s holds a blob whose digest is %x", h.Name, sum)
			}
			a.blobs["sha256:"+hex] = data
		case h.Name == "blobs/" || h.Name == "blobs/sha256/":
		default:
			t.Errorf("the archive holds %s, which is no part of an OCI layout", h.Name)
		}
	}
	if len(a.index.Manifests) != 1 {
		t.Fatalf("index.json names %d manifests, want the one image index", len(a.index.Manifests))
	}
	unmarshal(t, "the image index", a.blob(t, a.index.Manifests[0]), &a.top)
	for _, desc := range a.top.Manifests {
		if desc.Annotations[annotationReferenceType] == referenceTypeAttestation {
			a.attestations[desc.Annotations[annotationReferenceDigest]] = a.readAttestation(t, desc)
			continue
		}
		var img image
		unmarshal(t, "a manifest", a.blob(t, desc), &img.manifest)
		unmarshal(t, "a config", a.blob(t, img.manifest.Config), &img.config)
		img.files = map[string]entry{}
		for _, l := range img.manifest.Layers {
			gz, err := gzip.NewReader(bytes.NewReader(a.blob(t, l)))
			if err != nil {
				t.Fatal(err)
			}
			layer, err := io.ReadAll(gz)
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(layer); !slices.Contains(img.config.RootFS.DiffIDs, v1.Hash{Algorithm: "sha256", Hex: hexOf(sum[:])}) {
				t.Errorf("layer %s uncompressed is sha256:%x, not among the config's diff_ids %v", l.Digest, sum, img.config.RootFS.DiffIDs)
			}
			lr := tar.NewReader(bytes.NewReader(layer))
			for {
				h, err := lr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(lr)
				if err != nil {
					t.Fatal(err)
				}
				img.names = append(img.names, h.Name)
				img.files[h.Name] = entry{*h, body}
			}
		}
		p := "?"
		if desc.Platform != nil {
			p = desc.Platform.OS + "/" + desc.Platform.Architecture
		}
		a.images[p], a.digests[p] = img, desc.Digest.String()
	}
	return a
}

// readAttestation reads an attestation manifest's statements as in-toto's own types parse
// them, and their predicates as their consumers do.
func (a archive) readAttestation(t *testing.T, desc v1.Descriptor) attested {
	t.Helper()
	at := attested{desc: desc}
	unmarshal(t, "an attestation manifest", a.blob(t, desc), &at.manifest)
	unmarshal(t, "an attestation config", a.blob(t, at.manifest.Config), &at.config)
	for _, l := range at.manifest.Layers {
		st := &intoto.Statement{}
		if err := protojson.Unmarshal(a.blob(t, l), st); err != nil {
			t.Fatalf("attestation layer %s: %v", l.Digest, err)
		}
		at.statements = append(at.statements, st)
		pred, err := protojson.Marshal(st.GetPredicate())
		if err != nil {
			t.Fatal(err)
		}
		switch st.GetPredicateType() {
		case predicateCycloneDX:
			unmarshal(t, "the SBOM", pred, &at.sbom)
		case predicateProvenance:
			at.provenance = &provenance.Provenance{}
			if err := protojson.Unmarshal(pred, at.provenance); err != nil {
				t.Fatalf("the provenance: %v", err)
			}
		}
	}
	return at
}

func (a archive) blob(t *testing.T, d v1.Descriptor) []byte {
	t.Helper()
	data, ok := a.blobs[d.Digest.String()]
	if !ok {
		t.Fatalf("the archive has no blob %s (%s)", d.Digest, d.MediaType)
	}
	if int64(len(data)) != d.Size {
		t.Errorf("blob %s is %d bytes, its descriptor says %d", d.Digest, len(data), d.Size)
	}
	return data
}

// check holds the archive to what ctr, kubelets and registries need of it: the name, both
// platforms and no other, and each platform's config and files.
func (a archive) check(t *testing.T, binaries map[string][]byte, version string, created time.Time) {
	t.Helper()
	if string(a.layout) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout is %q", a.layout)
	}
	named := a.index.Manifests[0]
	if named.MediaType != types.OCIImageIndex || a.top.MediaType != types.OCIImageIndex {
		t.Errorf("index.json names a %s holding a %s, want an OCI image index", named.MediaType, a.top.MediaType)
	}
	if got := named.Annotations["io.containerd.image.name"]; got != "docker.io/library/gpu-label-webhook:latest" {
		t.Errorf("io.containerd.image.name is %q, want docker.io/library/gpu-label-webhook:latest", got)
	}
	if got := named.Annotations["org.opencontainers.image.ref.name"]; got != "latest" {
		t.Errorf("org.opencontainers.image.ref.name is %q, want the tag", got)
	}

	var platforms []string
	for _, d := range a.top.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		if d.Annotations[annotationReferenceType] != "" {
			continue
		}
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
		if d.MediaType != types.OCIManifestSchema1 || d.ArtifactType != "" || d.Platform.Variant != "" {
			t.Errorf("%s: a %s of artifact type %q, variant %q; want a plain OCI image manifest", d.Platform, d.MediaType, d.ArtifactType, d.Platform.Variant)
		}
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("the index holds %q, want linux/amd64 and linux/arm64", platforms)
	}

	for _, p := range platforms {
		img := a.images[p]
		c := img.config
		if got := c.OS + "/" + c.Architecture; got != p {
			t.Errorf("%s: the config says %s", p, got)
		}
		if img.manifest.Config.MediaType != types.OCIConfigJSON || len(img.manifest.Layers) != 1 || img.manifest.Layers[0].MediaType != types.OCILayer {
			t.Errorf("%s: config %s, layers %v; want an OCI config and one gzip layer", p, img.manifest.Config.MediaType, img.manifest.Layers)
		}
		if c.Config.User != "65532:65532" || !slices.Equal(c.Config.Entrypoint, []string{"/webhook"}) || !slices.Equal(c.Config.Cmd, []string{"serve"}) || c.Config.WorkingDir != "/" {
			t.Errorf("%s: user %q, entrypoint %q, cmd %q, workdir %q; want 65532:65532 running /webhook serve in /", p, c.Config.User, c.Config.Entrypoint, c.Config.Cmd, c.Config.WorkingDir)
		}
		if !c.Created.Time.Equal(created) || len(c.History) != 1 || !c.History[0].Created.Time.Equal(created) {
			t.Errorf("%s: created %v, history %v; want everything dated %v", p, c.Created, c.History, created)
		}
		for k, v := range map[string]string{
			"org.opencontainers.image.source":  "https://github.com/gpu-label-webhook/gpu-label-webhook",
			"org.opencontainers.image.version": version,
			"org.opencontainers.image.title":   "gpu-label-webhook",
		} {
			if c.Config.Labels[k] != v || a.top.Annotations[k] != v {
				t.Errorf("%s: label %s is %q, on the index %q; want %q", p, k, c.Config.Labels[k], a.top.Annotations[k], v)
			}
		}

		if want := []string{"etc/", "etc/group", "etc/passwd", "webhook"}; !slices.Equal(img.names, want) {
			t.Errorf("%s: the layer holds %q, want %q", p, img.names, want)
		}
		for name, e := range img.files {
			mode := int64(0o644)
			if name == "webhook" || name == "etc/" {
				mode = 0o755
			}
			if e.hdr.Mode != mode || e.hdr.Uid != 0 || e.hdr.Gid != 0 || !e.hdr.ModTime.Equal(created) {
				t.Errorf("%s: /%s is mode %o, owner %d:%d, dated %v; want %o, 0:0, %v", p, name, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime, mode, created)
			}
		}
		if !strings.Contains(string(img.files["etc/passwd"].body), "\nnonroot:x:65532:65532:") || !strings.Contains(string(img.files["etc/group"].body), "\nnonroot:x:65532:") {
			t.Errorf("%s: /etc/passwd %q and /etc/group %q do not name 65532 nonroot", p, img.files["etc/passwd"].body, img.files["etc/group"].body)
		}

		exe := img.files["webhook"].body
		if !bytes.Equal(exe, binaries[p]) {
			t.Errorf("%s: /webhook (%d bytes) is not the binary built for it (%d bytes)", p, len(exe), len(binaries[p]))
		}
		f, err := elf.NewFile(bytes.NewReader(exe))
		if err != nil {
			t.Errorf("%s: /webhook is no ELF: %v", p, err)
			continue
		}
		if arch := strings.TrimPrefix(p, "linux/"); f.Machine != machines[arch] {
			t.Errorf("%s: /webhook is an ELF for %v, want %v", p, f.Machine, machines[arch])
		}
		a.checkAttestation(t, p, exe, version)
	}
	if len(a.attestations) != len(platforms) || len(a.top.Manifests) != 2*len(platforms) {
		t.Errorf("the index holds %d manifests, %d of them attestations, for %d platforms; want one attestation for each", len(a.top.Manifests), len(a.attestations), len(platforms))
	}
}

// checkAttestation holds the platform's attestation manifest to BuildKit's layout and its
// statements to what they claim: about this image's manifest, the SBOM of its binary, the
// provenance of this version, commit and binary.
func (a archive) checkAttestation(t *testing.T, p string, binary []byte, version string) {
	t.Helper()
	digest := a.digests[p]
	at, ok := a.attestations[digest]
	if !ok {
		t.Errorf("%s: no attestation manifest names its image %s", p, digest)
		return
	}
	if pl := at.desc.Platform; pl == nil || pl.OS != "unknown" || pl.Architecture != "unknown" || at.desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("%s: the attestation manifest is a %s for %v; want an OCI manifest for unknown/unknown, which runtimes skip", p, at.desc.MediaType, pl)
	}
	if at.config.OS != "unknown" || at.config.Architecture != "unknown" {
		t.Errorf("%s: the attestation's config is for %s/%s", p, at.config.OS, at.config.Architecture)
	}
	var predicates []string
	for i, l := range at.manifest.Layers {
		st := at.statements[i]
		predicates = append(predicates, st.GetPredicateType())
		if l.MediaType != mediaTypeInToto || l.Annotations[annotationPredicateType] != st.GetPredicateType() {
			t.Errorf("%s: attestation layer %s, annotated %q, holds a %s statement", p, l.MediaType, l.Annotations[annotationPredicateType], st.GetPredicateType())
		}
		if err := st.Validate(); err != nil || st.GetType() != intoto.StatementTypeUri {
			t.Errorf("%s: the %s statement is no valid in-toto v1 statement: %v", p, st.GetPredicateType(), err)
		}
		subjects := st.GetSubject()
		if len(subjects) != 1 || "sha256:"+subjects[0].GetDigest()["sha256"] != digest || !strings.Contains(subjects[0].GetName(), url.QueryEscape(p)) {
			t.Errorf("%s: the %s statement is about %v; want the image manifest %s alone", p, st.GetPredicateType(), subjects, digest)
		}
	}
	if !slices.Equal(predicates, []string{predicateCycloneDX, predicateProvenance}) {
		t.Fatalf("%s: the attestation holds %q, want a CycloneDX SBOM and a SLSA v1 provenance", p, predicates)
	}

	info, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if c := at.sbom.Metadata.Component; at.sbom.BOMFormat != "CycloneDX" || c.Name != info.Main.Path || c.Version != version {
		t.Errorf("%s: the SBOM is a %q of %s@%s; want CycloneDX of %s@%s", p, at.sbom.BOMFormat, c.Name, c.Version, info.Main.Path, version)
	}

	prov := at.provenance
	if err := prov.Validate(); err != nil {
		t.Errorf("%s: the provenance is not valid SLSA v1: %v", p, err)
	}
	def := prov.GetBuildDefinition()
	ext, internal := def.GetExternalParameters().AsMap(), def.GetInternalParameters().AsMap()
	revision := a.images[p].config.Config.Labels["org.opencontainers.image.revision"]
	if def.GetBuildType() != buildType || ext["version"] != version || ext["revision"] != revision || ext["platform"] != p || ext["source"] != source {
		t.Errorf("%s: the provenance's build: %s with %v; want %s of %s at %s for %s", p, def.GetBuildType(), ext, source, version, revision, p)
	}
	if internal["goVersion"] != info.GoVersion || internal["mainModule"] != info.Main.Path {
		t.Errorf("%s: the provenance says %v; the binary was built by %s from %s", p, internal, info.GoVersion, info.Main.Path)
	}
	sum := sha256.Sum256(binary)
	if bp := prov.GetRunDetails().GetByproducts(); len(bp) != 1 || bp[0].GetName() != "/webhook" || bp[0].GetDigest()["sha256"] != hexOf(sum[:]) {
		t.Errorf("%s: the provenance's byproducts %v; want /webhook, sha256 %x", p, bp, sum)
	}
	if prov.GetRunDetails().GetBuilder().GetId() == "" {
		t.Errorf("%s: the provenance names no builder", p)
	}
}

func unmarshal(t *testing.T, what string, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func fileSum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hexOf(sum[:])
}
