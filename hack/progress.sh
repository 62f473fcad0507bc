# Sourced by the build scripts (hack/k8s/build.sh, hack/helm/build.sh): with_progress.
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
