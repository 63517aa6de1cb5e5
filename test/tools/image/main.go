// Command image-builder writes the webhook's multi-platform OCI image as one OCI archive
// (oci-layout, index.json, blobs) without a Docker engine: `make image` runs it on the
// binaries `make build` made for each platform. Nothing is pulled: the image is built from
// an empty base, so the same inputs give the same bytes.
//
//	image-builder --binary linux/amd64=bin/image/linux_amd64/webhook \
//	  --binary linux/arm64=bin/image/linux_arm64/webhook --tag gpu-label-webhook:latest \
//	  --out bin/image/gpu-label-webhook.tar --version v1.2.3 --revision SHA --source-date EPOCH \
//	  --sbom linux/amd64=bin/image/linux_amd64/webhook.cdx.json --sbom linux/arm64=...
//
// With --sbom, each platform's image is attested in the index (attest.go): its binary's SBOM
// and a provenance statement, in-toto, reproducible like the rest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "image-builder:", err)
		}
		os.Exit(2)
	}
}

// binaries is the repeatable --binary os/arch=path flag.
type binaries map[platform]string

func (b binaries) String() string { return fmt.Sprint(map[platform]string(b)) }

func (b binaries) Set(s string) error {
	p, path, ok := strings.Cut(s, "=")
	goos, arch, ok2 := strings.Cut(p, "/")
	if !ok || !ok2 || goos == "" || arch == "" || path == "" {
		return fmt.Errorf("%q: want os/arch=path", s)
	}
	if _, dup := b[platform{goos, arch}]; dup {
		return fmt.Errorf("%s given twice", p)
	}
	b[platform{goos, arch}] = path
	return nil
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image-builder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bins, sboms := binaries{}, binaries{}
	fs.Var(bins, "binary", "os/arch=path of the webhook built for that platform (repeat for each)")
	fs.Var(sboms, "sbom", "os/arch=path of that binary's CycloneDX SBOM: attests each image with it and a SLSA provenance (repeat for each, or none)")
	builder := fs.String("builder", source+"/blob/main/Makefile", "who builds, as the provenance's builder.id says (the release: its workflow)")
	tag := fs.String("tag", "gpu-label-webhook:latest", "the image's name, as docker and containerd spell it")
	out := fs.String("out", "", "the OCI archive to write")
	version := fs.String("version", "", "the version the binaries are stamped with (org.opencontainers.image.version)")
	revision := fs.String("revision", "", "the commit built (org.opencontainers.image.revision)")
	pause := fs.Bool("pause", false, "make the real-node tests' pod sandbox image: the binary is /pause, run without arguments")
	sourceDate := fs.String("source-date", "", "seconds since the epoch: every time in the image (the commit's time makes it reproducible)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(bins) == 0 || *out == "" || *version == "" || *revision == "" || *sourceDate == "" {
		return fmt.Errorf("--binary, --out, --version, --revision and --source-date are all required")
	}
	secs, err := strconv.ParseInt(*sourceDate, 10, 64)
	if err != nil {
		return fmt.Errorf("--source-date %q: %v", *sourceDate, err)
	}
	ref, err := parseRef(*tag)
	if err != nil {
		return err
	}

	spec := imageSpec{
		binaries: map[platform][]byte{},
		pause:    *pause,
		version:  *version,
		revision: *revision,
		created:  time.Unix(secs, 0).UTC(),
	}
	for p, path := range bins {
		if spec.binaries[p], err = os.ReadFile(path); err != nil {
			return err
		}
	}
	if len(sboms) > 0 {
		spec.sboms, spec.builder = map[platform][]byte{}, *builder
	}
	for p, path := range sboms {
		if _, ok := bins[p]; !ok {
			return fmt.Errorf("--sbom %s: no --binary for that platform", p)
		}
		if spec.sboms[p], err = os.ReadFile(path); err != nil {
			return err
		}
	}
	for p := range bins {
		if len(sboms) > 0 && sboms[p] == "" {
			return fmt.Errorf("--binary %s has no --sbom: give one for every platform, or none", p)
		}
	}
	idx, err := buildIndex(spec)
	if err != nil {
		return err
	}

	// Written beside the target and renamed, so a failed run leaves no half archive.
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(*out), ".image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := writeArchive(f, idx, ref, spec.created); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), *out); err != nil {
		return err
	}
	return describe(stdout, *out, ref, idx)
}

// describe prints the digests a user pins or compares: the index's and each platform's.
func describe(w io.Writer, out string, ref reference, idx v1.ImageIndex) error {
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %s\n  index        %s\n", out, ref.full, d)
	platforms := map[string]string{}
	for _, desc := range m.Manifests {
		if subject := desc.Annotations[annotationReferenceDigest]; subject != "" {
			fmt.Fprintf(w, "  %-12s %s (SBOM and provenance of %s)\n", "attestation", desc.Digest, platforms[subject])
			continue
		}
		p := desc.Platform.OS + "/" + desc.Platform.Architecture
		platforms[desc.Digest.String()] = p
		fmt.Fprintf(w, "  %-12s %s\n", p, desc.Digest)
	}
	return nil
}
