#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, etcd, kube-scheduler, kubelet and kube-proxy for the
# pinned Kubernetes version from the Go module proxy (see docs/controlplane.md). Outputs are
# cached per version outside the repository: only missing binaries are built, so a second run
# is a no-op. kube-scheduler, kubelet and kube-proxy are for the optional local node (ghat cluster
# up --node).
# Usage: build.sh [binary...] (default: all six).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^\tk8s.io\/kubernetes v\(.*\)$/\1/p' "$here/go.mod")
major=${version%%.*}
minor=${version#*.}; minor=${minor%%.*}
out=${GHAT_K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghat/k8s/v$version}
# Arguments name a subset to build (the control plane alone asks for its three only).
if [ $# -gt 0 ]; then bins=("$@"); else bins=(kube-apiserver kube-controller-manager etcd kube-scheduler kubelet kube-proxy); fi
missing=()
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$out"
  exit 0
fi
# shellcheck source=../progress.sh
source "$here/../progress.sh"
mkdir -p "$out"
cd "$here"
start=$(date +%s)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=v$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
echo "To build: ${missing[*]} (Kubernetes v$version, from the Go module proxy)" >&2
for b in "${missing[@]}"; do
  t=$(date +%s)
  echo "Building $b v$version into $out (go build; a cold build takes minutes)" >&2
  CGO_ENABLED=0 with_progress "$b" go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "./cmd/$b"
  mv "$out/$b.tmp" "$out/$b"
  echo "Built $b in $(( $(date +%s) - t ))s" >&2
done
echo "Built ${missing[*]} in $(( $(date +%s) - start ))s" >&2
echo "$out"
