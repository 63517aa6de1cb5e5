package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
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

// fakeBinaries writes a fake webhook for linux/amd64 and linux/arm64 and returns the
// --binary flags naming them, and their contents by platform.
func fakeBinaries(t *testing.T) (flags []string, want map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	want = map[string][]byte{}
	for _, arch := range []string{"amd64", "arm64"} {
		path := filepath.Join(dir, arch)
		want["linux/"+arch] = fakeELF(t, machines[arch])
		if err := os.WriteFile(path, want["linux/"+arch], 0o755); err != nil {
			t.Fatal(err)
		}
		flags = append(flags, "--binary", "linux/"+arch+"="+path)
	}
	return flags, want
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
	binaries, want := fakeBinaries(t)
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
}

// The same binaries, version, commit and date give the same bytes, whatever the order of
// the flags; another date gives another image.
func TestImageIsReproducible(t *testing.T) {
	binaries, _ := fakeBinaries(t)
	first, _ := build(t, fakeArgs(binaries)...)
	swapped := append(slices.Clone(binaries[2:4]), binaries[0:2]...)
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
	binaries, _ := fakeBinaries(t)
	tests := map[string]struct {
		args []string
		want string
	}{
		"a platform given twice":   {append(fakeArgs(binaries), binaries[0], binaries[1]), "given twice"},
		"a binary without os/arch": {append(fakeArgs(binaries), "--binary", "amd64=x"), "want os/arch=path"},
		"no binary":                {fakeArgs(nil), "are all required"},
		"a date that is no number": {append(fakeArgs(binaries), "--source-date", "yesterday"), "--source-date"},
		"a tag that is no name":    {append(fakeArgs(binaries), "--tag", "Gpu Label:latest"), "--tag"},
		"a binary that is missing": {append(fakeArgs(binaries), "--binary", "linux/s390x=/nonexistent"), "nonexistent"},
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
	binaries, _ := fakeBinaries(t)
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
// wrote for it are beside it in linux_<arch>/webhook (make image-test sets this up).
func TestMadeImage(t *testing.T) {
	path := os.Getenv("IMAGE_ARCHIVE")
	if path == "" {
		t.Skip("IMAGE_ARCHIVE is not set: run make image-test")
	}
	want := map[string][]byte{}
	for _, arch := range []string{"amd64", "arm64"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(path), "linux_"+arch, "webhook"))
		if err != nil {
			t.Fatal(err)
		}
		want["linux/"+arch] = data
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

	// Built again from the same binaries, version, commit and date: the same bytes.
	dir := t.TempDir()
	args := []string{"--tag", img.index.Manifests[0].Annotations["io.containerd.image.name"],
		"--version", version, "--revision", img.images["linux/amd64"].config.Config.Labels["org.opencontainers.image.revision"],
		"--source-date", strconv.FormatInt(created.Unix(), 10)}
	for p, data := range want {
		exe := filepath.Join(dir, strings.ReplaceAll(p, "/", "_"))
		if err := os.WriteFile(exe, data, 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--binary", p+"="+exe)
	}
	again, _ := build(t, args...)
	if a, b := fileSum(t, path), fileSum(t, again); a != b {
		t.Errorf("%s is %s, built again from its inputs %s", path, a, b)
	}
}

// archive is an OCI archive read back with nothing but tar and JSON.
type archive struct {
	layout []byte
	index  v1.IndexManifest // index.json
	blobs  map[string][]byte
	top    v1.IndexManifest // the image index it names
	images map[string]image // by os/arch
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
	a := archive{blobs: map[string][]byte{}, images: map[string]image{}}
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
		a.images[p] = img
	}
	return a
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
