# gpu-label-webhook. `make demo` and `make test` do everything on a fresh machine.
GO          ?= go
BIN         := bin
K8S_BIN     := $(BIN)/k8s
CM_BIN      := $(BIN)/cert-manager
K8S_VERSION := v1.37.2
IMAGE       ?= gpu-label-webhook:latest
# The one build command: `make build` and the Dockerfile both run it.
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
BUILD_CMD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/gpu-label-webhook/gpu-label-webhook/cmd/webhook/app.version=$(VERSION)" -o $(BIN)/webhook ./cmd/webhook
# Unstamped, kubectl and the apiserver report v0.0.0-master, which clients fail to parse.
# client-go's copy of the version is what the kubelet's user agent says.
K8S_LDFLAGS := -s -w $(foreach kv,gitVersion=$(K8S_VERSION) gitMajor=1 gitMinor=37 gitTreeState=clean gitCommit=0000000000000000000000000000000000000000 buildDate=2026-01-01T00:00:00Z,-X k8s.io/component-base/version.$(kv) -X k8s.io/client-go/pkg/version.$(kv))

SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c

# KUBEBUILDER_ASSETS as the user set it (setup-envtest's folder, say), read before the line
# below points it at bin/k8s: `make tools` reuses the binaries found there.
K8S_ASSETS  := $(KUBEBUILDER_ASSETS)
K8S_MINOR   := $(subst v,,$(basename $(K8S_VERSION)))
# override: the tests run bin/k8s even when KUBEBUILDER_ASSETS is given on the command line.
override KUBEBUILDER_ASSETS := $(abspath $(K8S_BIN))
export KUBEBUILDER_ASSETS

.PHONY: install help build test unit e2e e2e-node node-tools verify manifests demo bench fuzz control-plane tools k8s-build dist image image-test chart docker-build deploy undeploy clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## Build bin/webhook (static)
	$(BUILD_CMD)

# Where `make install` puts the binary, as gpu-label-webhook and as the kubectl plugin.
BINDIR      ?= $(HOME)/.local/bin

install: build ## Install bin/webhook into BINDIR as gpu-label-webhook and as kubectl-gpu_label (kubectl gpu-label ...)
	install -d $(BINDIR)
	install -m 0755 $(BIN)/webhook $(BINDIR)/gpu-label-webhook
	install -m 0755 $(BIN)/webhook $(BINDIR)/kubectl-gpu_label

test: verify unit e2e e2e-node ## Everything: verify, unit tests with -race, end-to-end tests on a real apiserver and on a real node

# Minimizing each new input is bounded, or a 15 KB seed keeps the fuzzer minimizing, not fuzzing.
FUZZ := -run '^$$' -fuzzminimizetime 200x

unit: ## Unit tests with the race detector, and each fuzz target for a few seconds
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test $(FUZZ) -fuzz FuzzInfer -fuzztime 10s ./internal/gpuinfo
	$(GO) test $(FUZZ) -fuzz FuzzReview -fuzztime 10s ./internal/review
	$(GO) test $(FUZZ) -fuzz FuzzSkim -fuzztime 10s ./internal/review
	$(MAKE) --no-print-directory image-test

e2e: tools build ## End-to-end tests against kube-apiserver and etcd built from source
	$(GO) test -tags e2e -count=1 -timeout 40m -v ./test/e2e/ 2>&1 | tee $(BIN)/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'

# A real node (root, containerd, runc, the CNI plugins): the webhook's image installed from
# manifests/ onto a cluster whose node is a real kubelet. See test/e2e/node.
e2e-node: tools node-tools build image $(BIN)/image/pause.tar ## End-to-end tests on a real node: kubelet, containerd, the image, the README's install (root)
	$(GO) test -tags e2e -count=1 -timeout 20m -v ./test/e2e/node/ 2>&1 | tee $(BIN)/e2e-node.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'

verify: $(BIN)/actionlint $(BIN)/promtool ## gofmt, go vet, the manifests match their generator, the chart lints and validates against the 1.37 API, the workflows pass actionlint, the alerts pass promtool
	@test -z "$$(gofmt -l cmd internal certs test)" || { gofmt -l cmd internal certs test; echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...
	$(GO) vet -C test/tools/image ./...
	$(GO) vet -C test/tools/helm ./...
	$(GO) test -count=1 -run 'TestManifestsUpToDate|TestDocsUpToDate|TestChartExamples' ./internal/manifests
	$(GO) test -C test/tools/helm -count=1 ./...
	ACTIONLINT=$(abspath $(BIN)/actionlint) $(GO) test -count=1 -run 'TestWorkflows' ./test/ci
	$(GO) vet -C test/tools/prometheus ./...
	PROMTOOL=$(abspath $(BIN)/promtool) $(GO) test -C test/tools/prometheus -count=1 ./...

manifests: ## Regenerate manifests/, the Helm chart and the reference sections of the README and docs/
	$(GO) run ./cmd/webhook manifests --dir manifests --chart-dir charts/gpu-label-webhook --docs .

demo: control-plane build ## Tell the story on a local control plane (KEEP=1 leaves it running)
	$(GO) run ./test/demo $(if $(KEEP),--keep)

bench: control-plane build ## Benchmarks: handler vs the idiomatic way, served throughput, the real apiserver, the CLI on fleets of up to 15,000 nodes vs kubectl; writes bin/bench.json
	$(GO) run ./test/bench

fuzz: ## Run the fuzz targets longer
	$(GO) test $(FUZZ) -fuzz FuzzInfer -fuzztime 2m ./internal/gpuinfo
	$(GO) test $(FUZZ) -fuzz FuzzReview -fuzztime 2m ./internal/review
	$(GO) test $(FUZZ) -fuzz FuzzSkim -fuzztime 2m ./internal/review

# What a real node runs besides the control plane above, from the same module.
NODE_TOOLS  := $(addprefix $(K8S_BIN)/,kubelet kube-controller-manager kube-scheduler kube-proxy)
node-tools: $(NODE_TOOLS) ## kubelet, kube-controller-manager, kube-scheduler, kube-proxy in bin/k8s (make e2e-node)

$(NODE_TOOLS) &: test/tools/k8s/go.mod test/tools/k8s/go.sum
	mkdir -p $(K8S_BIN)
	cd test/tools/k8s && $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o $(abspath $(K8S_BIN))/ $(addprefix k8s.io/kubernetes/cmd/,$(notdir $(NODE_TOOLS)))

# The control plane the demo, the bench and the e2e tests run, and what only the e2e tests
# run besides: helm, and cert-manager's controller and cainjector (no setup-envtest folder
# holds those).
CONTROL_PLANE := $(K8S_BIN)/kube-apiserver $(K8S_BIN)/kubectl $(K8S_BIN)/etcd
OTHER_TOOLS := $(K8S_BIN)/helm $(CM_BIN)/controller $(CM_BIN)/cainjector
PARALLEL    = $(if $(findstring jobserver,$(MAKEFLAGS)),,-j2)

control-plane: ## kube-apiserver, kubectl, etcd in bin/k8s (linked from KUBEBUILDER_ASSETS if those are v1.37, else built): all make demo and make bench need
	@test/tools/reuse-assets.sh "$(K8S_ASSETS)" "$(K8S_BIN)" "$(K8S_MINOR)" || \
	  $(MAKE) --no-print-directory $(PARALLEL) $(CONTROL_PLANE)

tools: ## The control plane as make control-plane does, helm, cert-manager's controller and cainjector
	@if test/tools/reuse-assets.sh "$(K8S_ASSETS)" "$(K8S_BIN)" "$(K8S_MINOR)"; then \
	  $(MAKE) --no-print-directory $(PARALLEL) $(OTHER_TOOLS); \
	else \
	  $(MAKE) --no-print-directory $(PARALLEL) k8s-build; \
	fi

# The builds share nothing but the Go build cache, so they run side by side: -j2 above,
# unless make already runs in parallel (make -j4 test), whose job slots the sub-make shares.
k8s-build: $(CONTROL_PLANE) $(OTHER_TOOLS)

# rm -f first: a target may be a link into the user's KUBEBUILDER_ASSETS (see tools), which
# a build must replace, not write through.
$(K8S_BIN)/kube-apiserver $(K8S_BIN)/kubectl &: test/tools/k8s/go.mod test/tools/k8s/go.sum
	mkdir -p $(K8S_BIN) && rm -f $(K8S_BIN)/kube-apiserver $(K8S_BIN)/kubectl
	cd test/tools/k8s && $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o $(abspath $(K8S_BIN))/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl

HELM_VERSION := $(shell awk '{for (i = 1; i < NF; i++) if ($$i == "helm.sh/helm/v3") print $$(i+1)}' test/tools/helm/go.mod)
$(K8S_BIN)/helm: test/tools/helm/go.mod test/tools/helm/go.sum
	mkdir -p $(K8S_BIN)
	cd test/tools/helm && $(GO) build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" -o $(abspath $(K8S_BIN))/helm helm.sh/helm/v3/cmd/helm

$(K8S_BIN)/etcd: test/tools/etcd/go.mod test/tools/etcd/go.sum
	mkdir -p $(K8S_BIN) && rm -f $(K8S_BIN)/etcd
	cd test/tools/etcd && $(GO) build -trimpath -ldflags "-s -w" -o $(abspath $(K8S_BIN))/etcd go.etcd.io/etcd/server/v3

$(CM_BIN)/controller $(CM_BIN)/cainjector &: test/tools/certmanager/go.mod test/tools/certmanager/go.sum $(wildcard test/tools/certmanager/*/*.go)
	mkdir -p $(CM_BIN)
	cd test/tools/certmanager && $(GO) build -trimpath -ldflags "-s -w" -o $(abspath $(CM_BIN))/ ./controller ./cainjector

# image-builder (make image) and crane (the release pushes the image with it), at the
# go-containerregistry version test/tools/image pins.
$(BIN)/image-builder: test/tools/image/go.mod test/tools/image/go.sum $(filter-out %_test.go,$(wildcard test/tools/image/*.go))
	$(GO) build -C test/tools/image -trimpath -o $(abspath $@) .

$(BIN)/crane: test/tools/image/go.mod test/tools/image/go.sum
	$(GO) build -C test/tools/image -trimpath -o $(abspath $@) github.com/google/go-containerregistry/cmd/crane

# promtool (make verify checks the PrometheusRule and runs its unit tests), at the Prometheus
# version test/tools/prometheus pins.
$(BIN)/promtool: test/tools/prometheus/go.mod test/tools/prometheus/go.sum
	$(GO) build -C test/tools/prometheus -trimpath -ldflags "-s -w" -o $(abspath $@) github.com/prometheus/prometheus/cmd/promtool

# actionlint (make verify) and cyclonedx-gomod (make dist), at the versions test/tools/ci pins.
$(BIN)/actionlint: test/tools/ci/go.mod test/tools/ci/go.sum
	$(GO) build -C test/tools/ci -trimpath -o $(abspath $@) github.com/rhysd/actionlint/cmd/actionlint

$(BIN)/cyclonedx-gomod: test/tools/ci/go.mod test/tools/ci/go.sum
	$(GO) build -C test/tools/ci -trimpath -o $(abspath $@) github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod

# Release assets, what .github/workflows/release.yaml publishes: for each platform the Krew
# manifest (plugins/krew/gpu-label.yaml) lists, kubectl-gpu_label_<os>_<arch>.tar.gz holding
# `make build`'s binary as kubectl-gpu_label, and its CycloneDX SBOM read from that binary;
# SHA256SUMS over all. Reproducible: archives of fixed owner, mode and commit-time mtime, SBOMs
# without a serial number or time.
PLATFORMS   := linux/amd64 linux/arm64 darwin/arm64
DIST        := $(BIN)/dist
SOURCE_DATE := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

dist: $(BIN)/cyclonedx-gomod ## Release archives, SBOMs and SHA256SUMS for linux/amd64, linux/arm64, darwin/arm64 in bin/dist (VERSION=tag)
	rm -rf $(DIST) && mkdir -p $(DIST)
	$(foreach p,$(PLATFORMS),$(call dist-platform,$(word 1,$(subst /, ,$(p))),$(word 2,$(subst /, ,$(p))))$(newline))
	cd $(DIST) && sha256sum *.tar.gz *.cdx.json > SHA256SUMS
	@cat $(DIST)/SHA256SUMS

define newline


endef

# $(1) GOOS, $(2) GOARCH, $(3) folder: `make build` itself for that platform, into that folder
# (make dist and make image).
build-for = GOOS=$(1) GOARCH=$(2) $(MAKE) --no-print-directory build BIN=$(3) VERSION=$(VERSION)

# $(1) a binary, $(2) the CycloneDX SBOM to write of it, read from the module information the
# binary records; without a serial number or a time, so the same binary gives the same bytes.
sbom = $(BIN)/cyclonedx-gomod bin -json -noserial -notimestamp -version $(VERSION) -output $(2) $(1)

# $(1) GOOS, $(2) GOARCH: one platform's archive and SBOM.
define dist-platform
$(call build-for,$(1),$(2),$(DIST)/$(1)_$(2))
	mv $(DIST)/$(1)_$(2)/webhook $(DIST)/$(1)_$(2)/kubectl-gpu_label
	tar -C $(DIST)/$(1)_$(2) --sort=name --owner=0 --group=0 --numeric-owner --mode=0755 --mtime=@$(SOURCE_DATE) -cf - kubectl-gpu_label | gzip -n > $(DIST)/kubectl-gpu_label_$(1)_$(2).tar.gz
	$(call sbom,$(DIST)/$(1)_$(2)/kubectl-gpu_label,$(DIST)/kubectl-gpu_label_$(1)_$(2).sbom.cdx.json)
	rm -r $(DIST)/$(1)_$(2)
endef

# The image, without a Docker engine: `make build` for each platform into a folder of its own
# (as make dist does) and its SBOM beside it, then image-builder puts each binary on an empty
# base, attests each image with its SBOM and a provenance statement (in-toto, in the index as
# BuildKit stores them), and writes one OCI archive holding the index, named $(IMAGE).
# Reproducible like the archives. BUILDER is the provenance's builder.id (the release sets
# its workflow's).
IMAGE_PLATFORMS := linux/amd64 linux/arm64
IMAGE_DIR   := $(BIN)/image
IMAGE_TAR   := $(IMAGE_DIR)/gpu-label-webhook.tar
REVISION    := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
image-bin    = $(IMAGE_DIR)/$(subst /,_,$(1))/webhook

image: $(BIN)/image-builder $(BIN)/cyclonedx-gomod ## The multi-arch image (linux/amd64, linux/arm64) with its SBOMs and provenance as an OCI archive, bin/image/gpu-label-webhook.tar, no Docker needed (IMAGE=name:tag, VERSION=tag)
	$(foreach p,$(IMAGE_PLATFORMS),$(call build-for,$(word 1,$(subst /, ,$(p))),$(word 2,$(subst /, ,$(p))),$(IMAGE_DIR)/$(subst /,_,$(p)))$(newline))
	$(foreach p,$(IMAGE_PLATFORMS),$(call sbom,$(call image-bin,$(p)),$(call image-bin,$(p)).cdx.json)$(newline))
	$(BIN)/image-builder $(foreach p,$(IMAGE_PLATFORMS),--binary $(p)=$(call image-bin,$(p)) --sbom $(p)=$(call image-bin,$(p)).cdx.json) \
	  --tag $(IMAGE) --out $(IMAGE_TAR) --version $(VERSION) --revision $(REVISION) --source-date $(SOURCE_DATE) $(if $(BUILDER),--builder $(BUILDER))

# The pod sandbox image the real-node tests run (no registry to pull one from).
$(IMAGE_DIR)/pause.tar: $(BIN)/image-builder test/e2e/node/pause/main.go
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(IMAGE_DIR)/pause/pause ./test/e2e/node/pause
	$(BIN)/image-builder --pause --binary linux/$(shell $(GO) env GOARCH)=$(IMAGE_DIR)/pause/pause --tag gpu-label-webhook.test/pause:1 \
	  --out $@ --version test --revision $(REVISION) --source-date $(SOURCE_DATE)

image-test: image ## Check make image's archive (platforms, user, entrypoint, files, attestations, the Dockerfile agrees, reproducible, crane pushes it whole) and image-builder itself
	IMAGE_ARCHIVE=$(abspath $(IMAGE_TAR)) $(GO) test -C test/tools/image -count=1 ./...

# The chart a release publishes beside the image: the chart generated with version and
# appVersion from the tag (v1.2.3 gives 1.2.3, the image's tag) and the image from
# IMAGE_REPOSITORY, packaged by helm into bin/chart/gpu-label-webhook-<version>.tgz.
CHART_DIR   ?= $(BIN)/chart

chart: $(K8S_BIN)/helm ## The chart a release publishes, bin/chart/gpu-label-webhook-<version>.tgz (VERSION=vX.Y.Z, IMAGE_REPOSITORY=registry/owner/name)
	rm -rf $(CHART_DIR) && mkdir -p $(CHART_DIR)
	$(GO) run ./cmd/webhook manifests --dir "" --chart-dir $(CHART_DIR)/gpu-label-webhook --release "$(VERSION)" --image-repository "$(IMAGE_REPOSITORY)"
	$(K8S_BIN)/helm package $(CHART_DIR)/gpu-label-webhook --destination $(CHART_DIR)

docker-build: ## Build the image with a Docker engine, from the Dockerfile
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

deploy: ## Install with cert-manager
	kubectl apply -k manifests/overlays/cert-manager

undeploy: ## Remove the install
	kubectl delete -k manifests/overlays/cert-manager --ignore-not-found

clean:
	rm -rf $(BIN)
