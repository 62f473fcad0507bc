#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow linter) from the Go module proxy into the
# cache, as hack/helm/build.sh does for helm. `npm run check` lints .github/workflows with it.
# Prints the binary's path on stdout (progress goes to stderr); a no-op when already built.
set -euo pipefail
version=v1.7.12
out=${GHAT_ACTIONLINT_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghat/actionlint/$version}
if [ -x "$out/actionlint" ]; then echo "$out/actionlint"; exit 0; fi
mkdir -p "$out"
start=$(date +%s)
echo "Building actionlint $version into $out" >&2
# -ldflags -X sets the version `actionlint -version` reports (go install builds with no VCS data).
GOBIN="$out" CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X github.com/rhysd/actionlint.version=$version" \
  "github.com/rhysd/actionlint/cmd/actionlint@$version"
echo "Built actionlint $version in $(( $(date +%s) - start ))s" >&2
echo "$out/actionlint"
