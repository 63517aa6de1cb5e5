package main

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Each platform's image is attested as BuildKit stores attestations, so the tools that read
// those (docker buildx imagetools, registries' UIs, policy engines) find them: one more
// manifest in the index, of platform unknown/unknown, annotated with the digest of the image
// it is about, whose layers are in-toto statements with that image as their subject.
// (docs.docker.com/build/metadata/attestations/attestation-storage)
const (
	mediaTypeInToto           = "application/vnd.in-toto+json"
	annotationPredicateType   = "in-toto.io/predicate-type"
	annotationReferenceType   = "vnd.docker.reference.type"
	annotationReferenceDigest = "vnd.docker.reference.digest"
	referenceTypeAttestation  = "attestation-manifest"

	// The predicate types: the SBOM is CycloneDX (what cyclonedx-gomod writes, as for the
	// release archives), the provenance SLSA v1.
	predicateCycloneDX  = "https://cyclonedx.org/bom"
	predicateProvenance = "https://slsa.dev/provenance/v1"

	// buildType names what the provenance's parameters mean: this file says it. External:
	// source (the repository), revision (the commit), version (the tag the binaries are
	// stamped with), platform. Internal: the Go toolchain and build settings the binary
	// records. Byproducts: the binary itself.
	buildType = source + "/blob/main/test/tools/image/attest.go"
)

var gitCommit = regexp.MustCompile(`^[0-9a-f]{40}$|^[0-9a-f]{64}$`)

// attestation is the manifest attesting the image of platform p whose manifest digest is
// subject: the binary's SBOM and the build's provenance.
func attestation(s imageSpec, p platform, subject v1.Hash) (v1.Image, error) {
	sbom, err := sbomPredicate(s.sboms[p])
	if err != nil {
		return nil, fmt.Errorf("--sbom %s: %w", p, err)
	}
	prov, err := provenancePredicate(s, p)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, pred := range []struct {
		typ  string
		body *structpb.Struct
	}{{predicateCycloneDX, sbom}, {predicateProvenance, prov}} {
		blob, err := statement(s, p, subject, pred.typ, pred.body)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:       static.NewLayer(blob, mediaTypeInToto),
			MediaType:   mediaTypeInToto,
			Annotations: map[string]string{annotationPredicateType: pred.typ},
		})
		if err != nil {
			return nil, err
		}
	}
	// The config is there for registries that want one; it says nothing of the attestations.
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg.OS, cfg.Architecture, cfg.History = "unknown", "unknown", nil
	return mutate.ConfigFile(img, cfg)
}

// statement wraps a predicate in an in-toto v1 statement about the image manifest.
func statement(s imageSpec, p platform, subject v1.Hash, predicateType string, predicate *structpb.Struct) ([]byte, error) {
	st := &intoto.Statement{
		Type: intoto.StatementTypeUri,
		Subject: []*intoto.ResourceDescriptor{{
			// A package URL without the tag: the same image is pushed under several.
			Name:   "pkg:docker/" + title + "?platform=" + url.QueryEscape(p.String()),
			Digest: map[string]string{subject.Algorithm: subject.Hex},
		}},
		PredicateType: predicateType,
		Predicate:     predicate,
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	raw, err := protojson.Marshal(st)
	if err != nil {
		return nil, err
	}
	// protojson varies its whitespace on purpose; compacted, the same statement is the same bytes.
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// sbomPredicate reads a CycloneDX JSON document.
func sbomPredicate(data []byte) (*structpb.Struct, error) {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if doc["bomFormat"] != "CycloneDX" {
		return nil, fmt.Errorf("bomFormat is %v, want a CycloneDX SBOM", doc["bomFormat"])
	}
	return structpb.NewStruct(doc)
}

// provenancePredicate says what was built from what: the parameters make image was given,
// and what the binary records of its own build.
func provenancePredicate(s imageSpec, p platform) (*structpb.Struct, error) {
	bin := s.binaries[p]
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("%s: the binary has no Go build information to attest: %w", p, err)
	}
	settings := map[string]any{}
	for _, kv := range info.Settings {
		settings[kv.Key] = kv.Value
	}
	external, err := structpb.NewStruct(map[string]any{"source": source, "revision": s.revision, "version": s.version, "platform": p.String()})
	if err != nil {
		return nil, err
	}
	internal, err := structpb.NewStruct(map[string]any{"goVersion": info.GoVersion, "mainModule": info.Main.Path, "buildSettings": settings})
	if err != nil {
		return nil, err
	}
	var deps []*intoto.ResourceDescriptor
	if gitCommit.MatchString(s.revision) {
		deps = append(deps, &intoto.ResourceDescriptor{Uri: "git+" + source + "@" + s.revision, Digest: map[string]string{"gitCommit": s.revision}})
	}
	sum := sha256.Sum256(bin)
	pred := &provenance.Provenance{
		BuildDefinition: &provenance.BuildDefinition{
			BuildType:            buildType,
			ExternalParameters:   external,
			InternalParameters:   internal,
			ResolvedDependencies: deps,
		},
		RunDetails: &provenance.RunDetails{
			Builder:    &provenance.Builder{Id: s.builder},
			Byproducts: []*intoto.ResourceDescriptor{{Name: "/" + binaryName(s), Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}},
		},
	}
	if err := pred.Validate(); err != nil {
		return nil, err
	}
	raw, err := protojson.Marshal(pred)
	if err != nil {
		return nil, err
	}
	out := &structpb.Struct{}
	return out, protojson.Unmarshal(raw, out)
}
