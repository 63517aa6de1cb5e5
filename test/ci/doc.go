// Package ci holds the tests of the repository's own plumbing rather than of the webhook:
// the GitHub workflows pass actionlint, `make tools` reuses control-plane binaries from
// KUBEBUILDER_ASSETS, `make demo` builds only what it runs, `make dist` makes the release
// assets the Krew manifest points at, and `make chart` the chart a release publishes.
// They run make and the tools the Makefile runs, from the repository's root.
package ci
