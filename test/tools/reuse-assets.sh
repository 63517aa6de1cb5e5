#!/usr/bin/env bash
# `make tools` calls this first: when KUBEBUILDER_ASSETS names a folder that already holds
# kube-apiserver, kubectl and etcd (as setup-envtest leaves them), link those into bin/k8s
# instead of spending minutes building them from source.
#
# Only the Kubernetes minor the tests are written against is taken: the e2e tests, the demo
# and the bench use that release's APIs (MutatingAdmissionPolicy v1, for one), so an older
# apiserver would make them fail for reasons that are not the webhook's.
#
# Usage: reuse-assets.sh ASSETS_DIR DEST_DIR MINOR (MINOR like 1.37)
# Exit 0: linked. Exit 1: nothing usable there (the reason on stderr); the caller builds.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 ASSETS_DIR DEST_DIR MINOR" >&2
  exit 2
fi
src=$1 dest=$2 minor=$3
[ -n "$src" ] || exit 1

for b in kube-apiserver kubectl etcd; do
  if [ -d "$src/$b" ] || [ ! -x "$src/$b" ]; then
    echo "tools: KUBEBUILDER_ASSETS=$src has no executable $b; building from source" >&2
    exit 1
  fi
done

src=$(cd "$src" && pwd -P)
mkdir -p "$dest"
# Inside make's recipes KUBEBUILDER_ASSETS is bin/k8s itself: linking a file to itself would
# destroy it, and there is nothing to reuse; the caller's build rules decide what is stale.
if [ "$src" = "$(cd "$dest" && pwd -P)" ]; then
  exit 1
fi

# "Kubernetes v1.37.2" and "Client Version: v1.37.2".
apiserver=$("$src/kube-apiserver" --version 2>/dev/null | head -n 1 || true)
kubectl=$("$src/kubectl" version --client 2>/dev/null | head -n 1 || true)
case "$apiserver" in
  "Kubernetes v$minor".*) ;;
  *)
    echo "tools: KUBEBUILDER_ASSETS=$src holds kube-apiserver '${apiserver:-unknown version}', not v$minor.x; building from source" >&2
    exit 1
    ;;
esac
case "$kubectl" in
  "Client Version: v$minor".*) ;;
  *)
    echo "tools: KUBEBUILDER_ASSETS=$src holds kubectl '${kubectl:-unknown version}', not v$minor.x; building from source" >&2
    exit 1
    ;;
esac

# Symbolic links: no copy of a few hundred MB; the build rules remove them before building,
# so a later build from source never writes through them into the user's folder.
for b in kube-apiserver kubectl etcd; do
  ln -sfn "$src/$b" "$dest/$b"
done
echo "tools: $dest/{kube-apiserver,kubectl,etcd} linked from KUBEBUILDER_ASSETS=$src (${apiserver#Kubernetes }), not built; unset KUBEBUILDER_ASSETS to build them from source"
