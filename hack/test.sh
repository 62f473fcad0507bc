#!/usr/bin/env bash
# `make test`: static checks, then every test (unit and on the real control plane), then one
# plain summary line "N passed, N failed". Exits non-zero when anything failed.
#
# Vitest runs every single-worker project one file at a time, whatever the project, so the
# "disruptive" project (files that restart the API server or etcd, on a control plane of their
# own) runs as a second vitest process beside "unit" and "cluster". Its output is printed
# after theirs. Arguments (files, -t) run one vitest over every project instead.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
mkdir -p .local
echo "--- checks: typecheck, lint, generated files"
npm run --silent check
checks=$?
[ $checks -eq 0 ] || echo "checks failed (exit $checks)"
echo "--- tests"
main=.local/vitest-results.json
side=.local/vitest-disruptive.json
rm -f "$main" "$side"
json() { echo --reporter=default --reporter=json "--outputFile.json=$1"; }
if [ $# -gt 0 ]; then
  vitest run $(json "$main") "$@"
  node hack/test-summary.ts "$checks" "$main"
  exit
fi
vitest run --project disruptive $(json "$side") >.local/vitest-disruptive.log 2>&1 &
side_pid=$!
trap 'kill $side_pid 2>/dev/null' EXIT
vitest run --project unit --project cluster --project image --project node $(json "$main")
wait $side_pid
trap - EXIT
echo "--- tests of the disruptive project (run beside the others)"
cat .local/vitest-disruptive.log
node hack/test-summary.ts "$checks" "$main" "$side"
