// Package chart checks the Helm chart as chart-testing's `ct lint` would, with what runs
// here: `helm lint --strict` and a render for each documented values combination (the
// chart's ci/*-values.yaml), and every rendered object validated against the Kubernetes 1.37
// API's OpenAPI schemas (the k8s.io/kubernetes module's api/openapi-spec, the release
// test/tools/k8s builds) and cert-manager's CRDs (the release test/tools/certmanager builds),
// offline. `make verify` runs it.
package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// gvk is an object's apiVersion and kind.
type gvk struct{ apiVersion, kind string }

func (g gvk) String() string { return g.apiVersion + " " + g.kind }

// schemas validates objects by their kind against the schemas loaded.
type schemas struct {
	compiler *jsonschema.Compiler
	where    map[gvk]string // the schema's location, to compile on first use
	compiled map[gvk]*jsonschema.Schema
}

func newSchemas() *schemas {
	c := jsonschema.NewCompiler()
	// OpenAPI 3.0's schema object is draft 4's, near enough; formats are annotations, as the
	// apiserver treats most of them.
	c.DefaultDraft(jsonschema.Draft4)
	return &schemas{compiler: c, where: map[gvk]string{}, compiled: map[gvk]*jsonschema.Schema{}}
}

// moduleDir is where the go command keeps a module, at the version the given tools module
// requires: from the module cache, fetched into it first if it is not there yet (as a build
// of those tools would).
func moduleDir(toolsModule, module string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = toolsModule
	out, err := cmd.Output()
	var m struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &m); err != nil || jerr != nil || m.Dir == "" {
		return "", fmt.Errorf("locating %s from %s: %v %s", module, toolsModule, err, m.Error)
	}
	return m.Dir, nil
}

// addKubernetes loads the OpenAPI v3 documents of every built-in group version.
func (s *schemas) addKubernetes(specDir string) error {
	files, err := filepath.Glob(filepath.Join(specDir, "*_openapi.json"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no OpenAPI documents in %s: %v", specDir, err)
	}
	for _, f := range files {
		doc, err := readJSON(f)
		if err != nil {
			return err
		}
		components, _ := doc["components"].(map[string]any)
		defs, _ := components["schemas"].(map[string]any)
		url := "file://" + f
		for name, d := range defs {
			def, _ := d.(map[string]any)
			strict(def)
			kinds, _ := def["x-kubernetes-group-version-kind"].([]any)
			for _, k := range kinds {
				k := k.(map[string]any)
				apiVersion := k["version"].(string)
				if g := k["group"].(string); g != "" {
					apiVersion = g + "/" + apiVersion
				}
				// Each group version's document holds its own kinds; the same kind listed in
				// another (as in the list of all groups) is no better.
				if _, seen := s.where[gvk{apiVersion, k["kind"].(string)}]; !seen || strings.Contains(f, groupFile(apiVersion)) {
					s.where[gvk{apiVersion, k["kind"].(string)}] = url + "#/components/schemas/" + name
				}
			}
		}
		if err := s.compiler.AddResource(url, doc); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// groupFile is how api/openapi-spec/v3 names a group version's document.
func groupFile(apiVersion string) string {
	if !strings.Contains(apiVersion, "/") {
		return "api__" + apiVersion + "_openapi.json"
	}
	g, v, _ := strings.Cut(apiVersion, "/")
	return "apis__" + g + "__" + v + "_openapi.json"
}

// addCRDs loads the openAPIV3Schema of every version of every CRD in the folder's YAML files.
func (s *schemas) addCRDs(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in %s: %v", dir, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for _, doc := range bytes.Split(data, []byte("\n---")) {
			var crd struct {
				Kind string
				Spec struct {
					Group    string
					Names    struct{ Kind string }
					Versions []struct {
						Name   string
						Schema struct {
							OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
						}
					}
				}
			}
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, v := range crd.Spec.Versions {
				schema, err := jsonschema.UnmarshalJSON(bytes.NewReader(v.Schema.OpenAPIV3Schema))
				if err != nil {
					return fmt.Errorf("%s %s: %w", f, v.Name, err)
				}
				def, _ := schema.(map[string]any)
				strict(def)
				key := gvk{crd.Spec.Group + "/" + v.Name, crd.Spec.Names.Kind}
				url := "crd:///" + crd.Spec.Group + "/" + v.Name + "/" + crd.Spec.Names.Kind
				if err := s.compiler.AddResource(url, def); err != nil {
					return err
				}
				s.where[key] = url
			}
		}
	}
	return nil
}

// strict makes a schema refuse what it does not declare, as the apiserver's strict field
// validation does (kubectl apply's default) and as kubeconform's -strict does: every object
// schema that lists its properties gets additionalProperties: false, unless it keeps unknown
// fields on purpose. OpenAPI 3.0's nullable becomes a null type, which JSON Schema knows.
func strict(s map[string]any) {
	if s == nil {
		return
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for _, p := range props {
			p, _ := p.(map[string]any)
			strict(p)
		}
		if _, set := s["additionalProperties"]; !set && s["x-kubernetes-preserve-unknown-fields"] != true {
			s["additionalProperties"] = false
		}
	}
	if s["nullable"] == true {
		if t, ok := s["type"].(string); ok {
			s["type"] = []any{t, "null"}
		}
	}
	for _, key := range []string{"items", "additionalProperties", "not"} {
		sub, _ := s[key].(map[string]any)
		strict(sub)
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		list, _ := s[key].([]any)
		for _, sub := range list {
			sub, _ := sub.(map[string]any)
			strict(sub)
		}
	}
}

// validate checks one object against its kind's schema.
func (s *schemas) validate(obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	key := gvk{apiVersion, kind}
	sch, ok := s.compiled[key]
	if !ok {
		loc, known := s.where[key]
		if !known {
			return fmt.Errorf("%s: no schema for this kind in Kubernetes 1.37 or the CRDs loaded", key)
		}
		var err error
		if sch, err = s.compiler.Compile(loc); err != nil {
			return fmt.Errorf("%s: compiling its schema: %w", key, err)
		}
		s.compiled[key] = sch
	}
	// The validator wants JSON's own values: numbers as json.Number.
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

func readJSON(path string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not a JSON object", path)
	}
	return m, nil
}
