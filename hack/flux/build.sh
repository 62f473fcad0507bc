#!/usr/bin/env bash
# Builds Flux's source-controller (the real consumer of test/e2e/flux.test.ts, see
# docs/consumers.md) from the Go module proxy through the wrapper module next to this script
# (go.mod repeats source-controller's replace directives, which `go install pkg@version`
# refuses). Also copies its CRDs (config/crd/bases in the module) to crds/ next to the binary.
# Outputs are cached per version outside the repository; a second run is a no-op.
# Prints the binary's path (last line).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^require github.com\/fluxcd\/source-controller \(v.*\)$/\1/p' "$here/go.mod")
[ -n "$version" ] || { echo "hack/flux/build.sh: no source-controller version in go.mod" >&2; exit 1; }
out=${GHAT_FLUX_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghat/flux/$version}
bin=$out/source-controller
if [ -x "$bin" ] && [ -f "$out/crds/source.toolkit.fluxcd.io_gitrepositories.yaml" ]; then
  echo "$bin"
  exit 0
fi
# shellcheck source=../progress.sh
source "$here/../progress.sh"
mkdir -p "$out/crds"
cd "$here"
start=$(date +%s)
dir=$(go mod download -json "github.com/fluxcd/source-controller@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$dir/config/crd/bases" ] || { echo "hack/flux/build.sh: no CRDs under $dir/config/crd/bases" >&2; exit 1; }
cp "$dir"/config/crd/bases/*.yaml "$out/crds/"
chmod u+w "$out"/crds/*.yaml
if [ ! -x "$bin" ]; then
  echo "Building source-controller $version into $out (go build from the Go module proxy; a cold build takes 10-20 min)" >&2
  CGO_ENABLED=0 with_progress "source-controller $version" \
    go build -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/fluxcd/source-controller
  mv "$bin.tmp" "$bin"
  echo "Built source-controller $version in $(( $(date +%s) - start ))s" >&2
fi
echo "$bin"
