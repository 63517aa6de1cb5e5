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
K8S_LDFLAGS := -s -w $(foreach kv,gitVersion=$(K8S_VERSION) gitMajor=1 gitMinor=37 gitTreeState=clean gitCommit=0000000000000000000000000000000000000000 buildDate=2026-01-01T00:00:00Z,-X k8s.io/component-base/version.$(kv))

SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c

export KUBEBUILDER_ASSETS := $(abspath $(K8S_BIN))

.PHONY: install help build test unit e2e verify manifests demo bench fuzz tools docker-build deploy undeploy clean

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

test: verify unit e2e ## Everything: verify, unit tests with -race, end-to-end tests on a real apiserver

# Minimizing each new input is bounded, or a 15 KB seed keeps the fuzzer minimizing, not fuzzing.
FUZZ := -run '^$$' -fuzzminimizetime 200x

unit: ## Unit tests with the race detector, and each fuzz target for a few seconds
	$(GO) test -race -count=1 ./...
	$(GO) test $(FUZZ) -fuzz FuzzInfer -fuzztime 10s ./internal/gpuinfo
	$(GO) test $(FUZZ) -fuzz FuzzReview -fuzztime 10s ./internal/admit
	$(GO) test $(FUZZ) -fuzz FuzzSkim -fuzztime 10s ./internal/admit

e2e: tools build ## End-to-end tests against kube-apiserver and etcd built from source
	$(GO) test -tags e2e -count=1 -timeout 40m -v ./test/e2e/ 2>&1 | tee $(BIN)/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'

verify: ## gofmt, go vet, and the manifests match their generator
	@test -z "$$(gofmt -l cmd internal certs test)" || { gofmt -l cmd internal certs test; echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	$(GO) test -count=1 -run 'TestManifestsUpToDate|TestREADMEUpToDate' ./internal/manifests

manifests: ## Regenerate manifests/ and the README's reference sections
	$(GO) run ./cmd/webhook manifests --dir manifests --readme README.md

demo: tools build ## Tell the story on a local control plane (KEEP=1 leaves it running)
	$(GO) run ./test/demo $(if $(KEEP),--keep)

bench: tools build ## Benchmarks: handler vs the idiomatic way, served throughput, the real apiserver; writes bin/bench.json
	$(GO) run ./test/bench

fuzz: ## Run the fuzz targets longer
	$(GO) test $(FUZZ) -fuzz FuzzInfer -fuzztime 2m ./internal/gpuinfo
	$(GO) test $(FUZZ) -fuzz FuzzReview -fuzztime 2m ./internal/admit
	$(GO) test $(FUZZ) -fuzz FuzzSkim -fuzztime 2m ./internal/admit

TOOL_BINS := $(K8S_BIN)/kube-apiserver $(K8S_BIN)/kubectl $(K8S_BIN)/etcd $(CM_BIN)/controller $(CM_BIN)/cainjector

# The three module builds are independent; run them side by side (each go build already uses
# every core for compiling, so this mostly overlaps their serial link steps).
tools: ## Build kube-apiserver, kubectl and etcd into bin/k8s, cert-manager's controller and cainjector into bin/cert-manager
	@$(MAKE) --no-print-directory -j3 $(TOOL_BINS)

$(K8S_BIN)/kube-apiserver $(K8S_BIN)/kubectl &: test/tools/k8s/go.mod test/tools/k8s/go.sum
	mkdir -p $(K8S_BIN)
	cd test/tools/k8s && $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" -o $(abspath $(K8S_BIN))/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl

$(K8S_BIN)/etcd: test/tools/etcd/go.mod test/tools/etcd/go.sum
	mkdir -p $(K8S_BIN)
	cd test/tools/etcd && $(GO) build -trimpath -ldflags "-s -w" -o $(abspath $(K8S_BIN))/etcd go.etcd.io/etcd/server/v3

$(CM_BIN)/controller $(CM_BIN)/cainjector &: test/tools/certmanager/go.mod test/tools/certmanager/go.sum $(wildcard test/tools/certmanager/*/*.go)
	mkdir -p $(CM_BIN)
	cd test/tools/certmanager && $(GO) build -trimpath -ldflags "-s -w" -o $(abspath $(CM_BIN))/ ./controller ./cainjector

docker-build: ## Build the image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

deploy: ## Install with cert-manager
	kubectl apply -k manifests/overlays/cert-manager

undeploy: ## Remove the install
	kubectl delete -k manifests/overlays/cert-manager --ignore-not-found

clean:
	rm -rf $(BIN)
