# ghat's front door. Every target is one npm script or script under hack/.
# npm scripts run with node_modules/.bin first on PATH, so they use Node 24 from the `node` package.
SHELL := /bin/bash
NPM := npm --silent
.DEFAULT_GOAL := help

.PHONY: help
help: ## List targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

node_modules: package.json package-lock.json
	npm ci
	@touch node_modules

.PHONY: install
install: node_modules ## Install npm packages (npm ci)

.PHONY: k8s
k8s: ## Build (or reuse) the control plane and node binaries (kubelet, kube-scheduler, kube-proxy), helm, local-kms and Flux source-controller into ~/.cache/ghat
	bash hack/k8s/build.sh
	bash hack/helm/build.sh
	bash hack/localkms/build.sh
	bash hack/flux/build.sh

.PHONY: build
build: node_modules ## Compile TypeScript to dist/
	$(NPM) run build

.PHONY: run
run: node_modules ## Run ghat: against the current kube context, or a local sandbox when there is none
	$(NPM) run sandbox

.PHONY: test
test: node_modules k8s ## Run every check and test, ending with "N passed, N failed" (what CI runs)
	bash hack/test.sh

.PHONY: test-unit
test-unit: node_modules ## Unit tests only (no control plane)
	$(NPM) run test:unit

.PHONY: lint
lint: node_modules ## Lint and format check (biome)
	$(NPM) run lint

.PHONY: format
format: node_modules ## Format the code (biome)
	$(NPM) run format

.PHONY: typecheck
typecheck: node_modules ## Type check (tsc)
	$(NPM) run typecheck

.PHONY: gen
gen: node_modules ## Regenerate CRDs and the permission table from their sources
	$(NPM) run gen

.PHONY: cluster
cluster: node_modules k8s ## Start a local control plane in the background (.local/kubeconfig); NODE=1 adds a node that runs Pods
	$(if $(filter 1,$(NODE)),bash hack/node/install.sh)
	$(NPM) run cluster -- $(if $(filter 1,$(NODE)),--node)

.PHONY: node
node: ## Same as make cluster NODE=1: control plane plus a node (containerd, kubelet, kube-scheduler; root)
	$(MAKE) --no-print-directory cluster NODE=1

.PHONY: cluster-down
cluster-down: node_modules ## Stop the local control plane (and its node)
	$(NPM) run cluster:down

.PHONY: sim
sim: node_modules ## Run the GitHub API simulator in the foreground
	$(NPM) run sim

.PHONY: bench
bench: node_modules k8s ## Benchmarks of the shipped bundle on a fresh control plane; writes bench/results.md (~25 min)
	$(NPM) run bench

.PHONY: soak
soak: node_modules k8s ## 30 min of random faults against the real control plane; report in .local/soak.json
	SOAK_MINUTES=$${SOAK_MINUTES:-30} $(NPM) run soak

.PHONY: kind-e2e
kind-e2e: node_modules ## With Docker and kind: image, chart and simulator in a kind cluster, then the e2e test of the installed operator (hack/kind-e2e.sh)
	bash hack/kind-e2e.sh

.PHONY: image
image: node_modules ## Build the container image from the Dockerfile with buildah (no Docker daemon; local stand-in base images) into .local/image/ghat.tar
	bash hack/image/build.sh
