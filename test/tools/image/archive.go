package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// reference is the image's name both ways an OCI archive carries it: in full, as containerd
// names images (`ctr images import` reads io.containerd.image.name), and the tag alone, the
// OCI layout's org.opencontainers.image.ref.name (what skopeo's oci-archive:FILE:TAG picks).
type reference struct{ full, tag string }

func parseRef(s string) (reference, error) {
	t, err := name.NewTag(s)
	if err != nil {
		return reference{}, fmt.Errorf("--tag %q: %v", s, err)
	}
	// go-containerregistry spells Docker Hub index.docker.io; containerd and docker say docker.io.
	registry := t.RegistryStr()
	if registry == name.DefaultRegistry {
		registry = "docker.io"
	}
	return reference{full: registry + "/" + t.RepositoryStr() + ":" + t.TagStr(), tag: t.TagStr()}, nil
}

// writeArchive writes idx as an OCI image layout in one tar: oci-layout, index.json naming
// idx, and every blob under blobs/sha256. Entries are sorted and dated mtime, so the same
// index gives the same archive.
func writeArchive(w io.Writer, idx v1.ImageIndex, ref reference, mtime time.Time) error {
	blobs := map[string][]byte{}
	add := func(want v1.Hash, data []byte) error {
		got, _, err := v1.SHA256(bytes.NewReader(data))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("blob %s hashes to %s", want, got)
		}
		blobs[got.Hex] = data
		return nil
	}

	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if err := add(digest, raw); err != nil {
		return err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range m.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		if err := addImage(img, desc.Digest, add); err != nil {
			return err
		}
	}

	top, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIImageIndex,
			Digest:    digest,
			Size:      int64(len(raw)),
			Annotations: map[string]string{
				"io.containerd.image.name":          ref.full,
				"org.opencontainers.image.ref.name": ref.tag,
			},
		}},
	})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	entry := func(name string, data []byte) error {
		h := &tar.Header{Name: name, Mode: 0o644, ModTime: mtime, Typeflag: tar.TypeReg, Size: int64(len(data))}
		if data == nil {
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := entry("blobs/", nil); err != nil {
		return err
	}
	if err := entry("blobs/sha256/", nil); err != nil {
		return err
	}
	hexes := make([]string, 0, len(blobs))
	for h := range blobs {
		hexes = append(hexes, h)
	}
	slices.Sort(hexes)
	for _, h := range hexes {
		if err := entry("blobs/sha256/"+h, blobs[h]); err != nil {
			return err
		}
	}
	if err := entry("index.json", top); err != nil {
		return err
	}
	if err := entry("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	return tw.Close()
}

// addImage adds an image's manifest, config and compressed layers.
func addImage(img v1.Image, digest v1.Hash, add func(v1.Hash, []byte) error) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	if err := add(digest, raw); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := add(m.Config.Digest, config); err != nil {
		return err
	}
	for _, desc := range m.Layers {
		layer, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			return err
		}
		rc, err := layer.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := add(desc.Digest, data); err != nil {
			return err
		}
	}
	return nil
}
