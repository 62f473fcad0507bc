#!/usr/bin/env bash
# `make test`: static checks, then every test (unit and on the real control plane), then one
# plain summary line "N passed, N failed". Exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
mkdir -p .local
echo "--- checks: typecheck, lint, generated files"
npm run --silent check
checks=$?
[ $checks -eq 0 ] || echo "checks failed (exit $checks)"
echo "--- tests"
rm -f .local/vitest-results.json
vitest run --reporter=default --reporter=json --outputFile.json=.local/vitest-results.json "$@"
node hack/test-summary.ts .local/vitest-results.json "$checks"
