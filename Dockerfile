# syntax=docker/dockerfile:1
# Two stages: bundle the operator into one file (dist/ghat.mjs, `npm run bundle`, hack/bundle.ts)
# plus lazily loaded signer chunks (dist/chunks) with the full toolchain, then ship those alone
# on distroless Node 24, as non-root.
# No node_modules, no package.json, no shell, no npm in the image. CI cannot run a Docker
# engine; test/unit/bundle.test.ts bundles into an empty directory and runs the file there.

# The base images (defaults: what the published image is built from). A local build without a
# registry names stand-ins with --build-arg (hack/image/build.sh).
ARG BUILD_IMAGE=node:24-bookworm-slim
ARG BASE_IMAGE=gcr.io/distroless/nodejs24-debian12@sha256:b35a10df56aa17825e81e836ff70fe3c27002809dd94e6bfd655ed05bac52230

# The bundle is plain JavaScript: build it once on the builder's own platform, also for a
# multi-platform image (no QEMU for npm ci and esbuild).
FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: esbuild finds its binary in the @esbuild/<platform> optional dependency
# without its postinstall, and `npm run` then uses this image's Node 24.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY hack/bundle.ts ./hack/bundle.ts
COPY src ./src
RUN npm run bundle

# gcr.io/distroless/nodejs24-debian12, pinned by digest (a multi-platform index). To update:
#   crane digest gcr.io/distroless/nodejs24-debian12:latest
#   (or: docker buildx imagetools inspect gcr.io/distroless/nodejs24-debian12:latest)
# and replace the digest below. Node is /nodejs/bin/node; the image's own ENTRYPOINT
# (["/nodejs/bin/node"]) is replaced below so that the arguments are ghat's flags alone.
FROM ${BASE_IMAGE}

ARG SOURCE=https://github.com/ghat-dev/ghat
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ghat" \
      org.opencontainers.image.description="Kubernetes operator that keeps GitHub App installation tokens fresh in Secrets" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV NODE_ENV=production
# What `ghat --version` and ghat_build_info report as the revision (the version is embedded
# in the bundle from package.json).
ENV GHAT_REVISION=${REVISION}
# A young generation of 8 MiB semi-spaces (fewer scavenges in a burst: about 9% less CPU than
# 2 MiB; the heap is given back once quiet, src/idlegc.ts), a capped heap, and two malloc
# arenas instead of one per thread (bench/results.md, "Memory"). The chart sets NODE_OPTIONS too.
ENV NODE_OPTIONS="--max-semi-space-size=8 --max-old-space-size=192"
ENV MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=build --chown=0:0 --chmod=0444 /src/dist/ghat.mjs ./dist/ghat.mjs
# Keyless signers and their SDKs, each loaded only when an App uses that backend. PKCS#11 needs
# the HSM's module and the pkcs11js addon: build a derived image that adds both (docs/keyless.md).
# 0555: a directory needs x to be entered (the files are read-only either way).
COPY --from=build --chown=0:0 --chmod=0555 /src/dist/chunks ./dist/chunks
# distroless's "nonroot" user; numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080 8081
# V8 flags that are not allowed in NODE_OPTIONS, so they are arguments here:
#   --max-opt=2          optimize no further than Maglev: TurboFan's code is never paged in and
#                        it compiles nothing (an I/O-bound controller gains little from it): about
#                        6 MiB less RSS and no more CPU per token (bench/results.md, the note).
#   --expose-gc          lets ghat give back the heap a burst grew once it is quiet again
#                        (src/idlegc.ts). Not --optimize-for-size: it pins the young generation
#                        at 1 MiB, and its scavenges cost about a seventh of a burst's CPU.
# bench/lib.ts starts the benchmarked operator with the flags and environment this file gives.
ENTRYPOINT ["/nodejs/bin/node", "--max-opt=2", "--expose-gc", "dist/ghat.mjs"]
