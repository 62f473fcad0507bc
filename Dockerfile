# syntax=docker/dockerfile:1
# Multi-stage: build with the full toolchain, ship production dependencies only, run as non-root.
# CI cannot run a Docker engine; test/e2e/production-install.test.ts repeats these steps
# (npm ci --omit=dev into a clean directory, then node dist/cli.js run) to test the image's content.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node_modules/.bin/tsc -p tsconfig.build.json

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# A small young generation and a capped heap keep RSS near what is live (bench/results.md).
ENV NODE_OPTIONS="--max-semi-space-size=2 --max-old-space-size=192"
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["node", "dist/main.js"]
