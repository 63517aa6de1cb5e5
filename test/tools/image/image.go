package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// How the container runs. The Dockerfile's final stage says the same (a test compares
// them), so the image starts alike whichever way it was built.
const (
	user       = "65532:65532"
	workingDir = "/"
)

var (
	entrypoint = []string{"/webhook"}
	cmd        = []string{"serve"}
	// The real-node tests' sandbox image: another program, on its own, without arguments.
	pauseEntrypoint = []string{"/pause"}
	// No shell in the image to find anything on it, but runtimes and tools expect one.
	env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
)

const (
	title  = "gpu-label-webhook"
	source = "https://github.com/gpu-label-webhook/gpu-label-webhook"
)

type platform struct{ os, arch string }

func (p platform) String() string { return p.os + "/" + p.arch }

// imageSpec is everything the image is made of: the same spec gives the same bytes.
type imageSpec struct {
	binaries map[platform][]byte
	// sboms are the binaries' CycloneDX SBOMs, by platform: given, each image is attested
	// (attest.go).
	sboms map[platform][]byte
	// builder is the provenance's builder.id: who ran the build.
	builder string
	// pause makes the tests' pod sandbox image (/pause) instead of the webhook's.
	pause    bool
	version  string
	revision string
	created  time.Time
}

// binaryName is the one file the image runs, at its root.
func binaryName(s imageSpec) string {
	if s.pause {
		return "pause"
	}
	return "webhook"
}

// labels go on each platform's config (what `docker inspect` shows) and on the index
// (what registries show for a multi-platform image).
func (s imageSpec) labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       title,
		"org.opencontainers.image.description": "Kubernetes admission webhook that labels GPU nodes as they join",
		"org.opencontainers.image.source":      source,
		"org.opencontainers.image.version":     s.version,
		"org.opencontainers.image.revision":    s.revision,
		"org.opencontainers.image.created":     s.created.Format(time.RFC3339),
	}
}

// buildIndex makes one image per platform and the OCI index over them, in platform order
// whatever order the flags came in.
func buildIndex(s imageSpec) (v1.ImageIndex, error) {
	var platforms []platform
	for p := range s.binaries {
		platforms = append(platforms, p)
	}
	slices.SortFunc(platforms, func(a, b platform) int { return strings.Compare(a.String(), b.String()) })

	// The images first, then their attestations in the same order, as BuildKit lists them.
	var adds, attestations []mutate.IndexAddendum
	for _, p := range platforms {
		img, err := buildImage(s, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        plainImage{img},
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.os, Architecture: p.arch}},
		})
		if s.sboms == nil {
			continue
		}
		digest, err := img.Digest()
		if err != nil {
			return nil, err
		}
		att, err := attestation(s, p, digest)
		if err != nil {
			return nil, err
		}
		attestations = append(attestations, mutate.IndexAddendum{
			Add: plainImage{att},
			Descriptor: v1.Descriptor{
				Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{annotationReferenceType: referenceTypeAttestation, annotationReferenceDigest: digest.String()},
			},
		})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), append(adds, attestations...)...)
	return mutate.Annotations(idx, s.labels()).(v1.ImageIndex), nil
}

// plainImage describes an image in an index by media type, size and digest alone, as
// Docker's and containerd's own indexes do: go-containerregistry would also give it an
// artifactType (the config's media type), which marks artifacts, not images.
type plainImage struct{ v1.Image }

func (i plainImage) Descriptor() (*v1.Descriptor, error) {
	mt, err := i.MediaType()
	if err != nil {
		return nil, err
	}
	size, err := i.Size()
	if err != nil {
		return nil, err
	}
	digest, err := i.Digest()
	if err != nil {
		return nil, err
	}
	return &v1.Descriptor{MediaType: mt, Size: size, Digest: digest}, nil
}

func buildImage(s imageSpec, p platform) (v1.Image, error) {
	ep, args := entrypoint, cmd
	if s.pause {
		ep, args = pauseEntrypoint, nil
	}
	fsTar, err := rootfs(binaryName(s), s.binaries[p], s.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(fsTar)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching,
	)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: s.created}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: p.arch,
		OS:           p.os,
		Created:      created,
		Config: v1.Config{
			User:       user,
			Entrypoint: ep,
			Cmd:        args,
			WorkingDir: workingDir,
			Env:        env,
			Labels:     s.labels(),
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "make image", Comment: "the webhook built by make build, and a passwd naming 65532"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON), nil
}

// The image's only layer. A static binary needs nothing else; passwd and group give the
// numeric user a name, for tools that look it up.
var (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// rootfs writes the layer's tar: entries sorted, owned by root, all dated mtime.
func rootfs(name string, binary []byte, mtime time.Time) ([]byte, error) {
	entries := []struct {
		name string
		mode int64
		body []byte
	}{
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, []byte(group)},
		{"etc/passwd", 0o644, []byte(passwd)},
		{name, 0o755, binary},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: mtime,
		}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
