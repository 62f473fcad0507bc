#!/usr/bin/env bash
# Builds local-kms (a local AWS KMS for the awsKms signer's tests) from the Go module proxy
# into the cache. Prints the binary's path; a no-op when it is already built.
set -euo pipefail
version=v0.0.0-20260228092603-2a5e92d09ab6
out=${GHAT_LOCALKMS_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghat/local-kms/$version}
if [ -x "$out/local-kms" ]; then echo "$out/local-kms"; exit 0; fi
# shellcheck source=../progress.sh
source "$(dirname "$0")/../progress.sh"
mkdir -p "$out"
start=$(date +%s)
echo "Building local-kms $version into $out (go install from the Go module proxy; a cold build takes a minute or two)" >&2
GOBIN="$out" CGO_ENABLED=0 with_progress "local-kms $version" go install -trimpath -ldflags "-s -w" "github.com/nsmithuk/local-kms@$version"
echo "Built local-kms $version in $(( $(date +%s) - start ))s" >&2
echo "$out/local-kms"
