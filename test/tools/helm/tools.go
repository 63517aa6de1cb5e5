//go:build tools

// Package tools pins the helm CLI that `make tools` builds into bin/k8s.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
