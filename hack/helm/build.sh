#!/usr/bin/env bash
# Builds helm from the Go module proxy into the cache (no replace directives needed).
# Prints the binary's path; a no-op when it is already built.
set -euo pipefail
version=v3.21.4
out=${GHAT_HELM_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghat/helm/$version}
if [ -x "$out/helm" ]; then echo "$out/helm"; exit 0; fi
# Runs "$@" and prints a line to stderr every 30 s with the elapsed time while it runs, so
# that a cold build (minutes) never leaves a silent terminal. The ticker (and its sleep) is
# killed when the command ends, fails or the script exits; its sleep holds none of our output
# pipes either way (a caller reading them to the end must never wait for it).
ticker=""
stop_ticker() {
  if [ -n "$ticker" ]; then
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    ticker=""
  fi
}
trap stop_ticker EXIT
trap 'stop_ticker; exit 130' INT
trap 'stop_ticker; exit 143' TERM
with_progress() {
  local label=$1 t0 rc=0
  shift
  t0=$(date +%s)
  (
    nap=""
    trap '[ -z "$nap" ] || kill "$nap" 2>/dev/null; exit 0' TERM
    while :; do
      sleep 30 </dev/null >/dev/null 2>&1 &
      nap=$!
      wait "$nap"
      echo "  still building $label: $(( $(date +%s) - t0 ))s elapsed" >&2
    done
  ) &
  ticker=$!
  "$@" || rc=$?
  stop_ticker
  return "$rc"
}
mkdir -p "$out"
start=$(date +%s)
echo "Building helm $version into $out (go install from the Go module proxy; a cold build takes minutes)" >&2
GOBIN="$out" CGO_ENABLED=0 with_progress "helm $version" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$version"
echo "Built helm $version in $(( $(date +%s) - start ))s" >&2
echo "$out/helm"
