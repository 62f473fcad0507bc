#!/usr/bin/env bash
# Builds helm from the Go module proxy into the cache (no replace directives needed).
# Prints the binary's path; a no-op when it is already built.
set -euo pipefail
version=v3.21.4
out=${GHAT_HELM_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghat/helm/$version}
if [ -x "$out/helm" ]; then echo "$out/helm"; exit 0; fi
# shellcheck source=../progress.sh
source "$(dirname "$0")/../progress.sh"
mkdir -p "$out"
start=$(date +%s)
echo "Building helm $version into $out (go install from the Go module proxy; a cold build takes minutes)" >&2
GOBIN="$out" CGO_ENABLED=0 with_progress "helm $version" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$version"
echo "Built helm $version in $(( $(date +%s) - start ))s" >&2
echo "$out/helm"
