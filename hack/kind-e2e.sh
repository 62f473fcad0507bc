#!/usr/bin/env bash
# `make kind-e2e`: ghat as users install it, on a kind cluster. Needs Docker, kind, kubectl and
# helm. It cannot run on the project's CI machine (no Docker engine there); every piece it
# drives is tested there instead: the image's steps (test/e2e/production.test.ts), the chart
# (test/integration/chart.test.ts), and test/e2e/installed.test.ts, which this script points
# at the kind cluster (in CI it runs against local stand-ins started the way the image starts).
#
#   KIND_CLUSTER=ghat-e2e  cluster name (created if missing, kept afterwards: `kind delete cluster --name ghat-e2e`)
#   SUITE=installed        "installed" (default: the installed operator only) or "all" (the whole
#                          e2e suite against the kind cluster; tests that restart the local
#                          API server or etcd fail there by design)
set -euo pipefail
cd "$(dirname "$0")/.."
# Node 24 from the `node` package first (vitest 5 needs Node >= 22), as npm scripts do.
export PATH="$PWD/node_modules/.bin:$PATH"
cluster=${KIND_CLUSTER:-ghat-e2e}
suite=${SUITE:-installed}
image=ghat:e2e
ns=ghat-installed
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-e2e needs $tool on PATH" >&2; exit 2; }
done

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
kubeconfig="$work/kubeconfig"
kind get kubeconfig --name "$cluster" >"$kubeconfig"
export KUBECONFIG=$kubeconfig

echo "--- image"
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

echo "--- simulator in the cluster (the same image: ghat sim)"
openssl genrsa -traditional -out "$work/app.pem" 2048 2>/dev/null || openssl genrsa -out "$work/app.pem" 2048
openssl rsa -in "$work/app.pem" -pubout -out "$work/app.pub" 2>/dev/null
node hack/kind/seed.ts "$work/app.pub" >"$work/seed.json"
kubectl create namespace ghat-sim --dry-run=client -o yaml | kubectl apply -f -
kubectl -n ghat-sim create configmap ghat-sim-seed --from-file=seed.json="$work/seed.json" --dry-run=client -o yaml | kubectl apply -f -
sed "s|IMAGE|$image|" hack/kind/simulator.yaml | kubectl apply -f -
kubectl -n ghat-sim rollout status deploy/ghat-sim --timeout=120s

echo "--- chart"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install ghat charts/ghat --namespace ghat-system --create-namespace \
  --set image.repository=ghat --set image.tag=e2e --set image.pullPolicy=Never \
  --set "watchNamespaces={$ns}" --wait --timeout 180s

echo "--- tests"
kubectl -n ghat-sim port-forward svc/ghat-sim 18080:8080 >/dev/null &
for _ in $(seq 50); do curl -fsS http://127.0.0.1:18080/_sim/counts >/dev/null 2>&1 && break; sleep 0.2; done
files=(test/e2e/installed.test.ts)
[ "$suite" = all ] && files=(test/e2e)
GHAT_TEST_KUBECONFIG=$kubeconfig \
GHAT_E2E_NAMESPACE=$ns \
GHAT_E2E_SIM_ADMIN=http://127.0.0.1:18080 \
GHAT_E2E_SIM_URL=http://ghat-sim.ghat-sim.svc:8080 \
GHAT_E2E_APP_KEY_FILE=$work/app.pem \
  npx vitest run --project cluster --project disruptive "${files[@]}"
