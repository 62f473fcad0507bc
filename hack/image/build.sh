#!/usr/bin/env bash
# Builds ghat's container image from the repository's Dockerfile without a Docker daemon:
# buildah (Debian's, daemonless, `--isolation chroot`) against locally assembled stand-ins for
# the two base images, since no container registry can be reached. Writes a docker-save
# tarball (tag ghat.local/ghat:dev) that `docker load` or `ctr -n k8s.io images import` take.
#
#   bash hack/image/build.sh [OUT]      OUT defaults to .local/image/ghat.tar
#
# The stand-ins are assembled once into buildah's storage under the cache and reused:
#   - BUILD (for node:24-bookworm-slim): this repository's Node 24 binary
#     (node_modules/node/bin/node) as /usr/local/bin/node, npm $npm_version (the npm that Node
#     24.21.0 ships, `npm pack`ed from the registry) under /usr/local/lib/node_modules, dash as
#     /bin/sh, env, and the host's (Debian 12) libraries that they load.
#   - RUNTIME (for gcr.io/distroless/nodejs24-debian12): the same Node binary as
#     /nodejs/bin/node, glibc, libstdc++, libgcc_s, libm (from the host's Debian 12), Mozilla's
#     CA bundle, tzdata, /etc/passwd and /etc/group with root, nobody and nonroot (65532), no
#     shell; ENTRYPOINT ["/nodejs/bin/node"] as in distroless.
# The stand-ins are rebuilt when they are missing, or when their recipe ($standin_rev) or the
# Node binary changes.
#
# `npm ci` inside the build needs the npm registry. When NODE_EXTRA_CA_CERTS names a file (a
# TLS-intercepting egress proxy's CA), it is bind-mounted for the build's RUN steps only: it is
# in no layer of either image.
#
# Environment: GHAT_IMAGE_CACHE (default ~/.cache/ghat/image), GHAT_IMAGE_TAG (default
# ghat.local/ghat:dev), GHAT_IMAGE_STORAGE_DRIVER (overlay or vfs; default overlay when the
# kernel has it), GHAT_IMAGE_NO_CACHE=1 (build every Dockerfile step afresh).
set -euo pipefail

# shellcheck source=SCRIPTDIR/../progress.sh
source "$(dirname "$0")/../progress.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${1:-.local/image/ghat.tar}
case "$out" in /*) ;; *) out="$root/$out" ;; esac
tag=${GHAT_IMAGE_TAG:-ghat.local/ghat:dev}
cache=${GHAT_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ghat/image}
npm_version=11.19.0
# Bump when the stand-ins' recipe below changes: they are then assembled again.
standin_rev=1
build_standin=ghat.local/standin/node:24-bookworm-slim
runtime_standin=ghat.local/standin/distroless-nodejs24-debian12:latest
node_bin=$root/node_modules/node/bin/node

started=$(date +%s)
say() { echo "[image +$(( $(date +%s) - started ))s] $*" >&2; }

# --- buildah ----------------------------------------------------------------------------------
# chroot isolation and the overlay driver as root (as on CI); rootless buildah needs subuids.
if [ "$(id -u)" != 0 ]; then
  echo "hack/image/build.sh runs as root (buildah --isolation chroot, its own storage)" >&2
  exit 1
fi
if ! command -v buildah >/dev/null 2>&1; then
  say "installing buildah (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
fi
if [ -z "${GHAT_IMAGE_STORAGE_DRIVER:-}" ]; then
  if grep -qw overlay /proc/filesystems; then GHAT_IMAGE_STORAGE_DRIVER=overlay; else GHAT_IMAGE_STORAGE_DRIVER=vfs; fi
fi
mkdir -p "$cache/storage" "$cache/run"
export BUILDAH_ISOLATION=chroot
# Own storage under the cache: nothing shared with other users of buildah or podman on the host.
bah() {
  buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver "$GHAT_IMAGE_STORAGE_DRIVER" "$@"
}
say "buildah $(buildah --version | awk '{print $3}'), storage $GHAT_IMAGE_STORAGE_DRIVER in $cache/storage"

[ -x "$node_bin" ] || { echo "no $node_bin: run npm ci first" >&2; exit 1; }
node_version=$("$node_bin" --version)
case "$node_version" in v24.*) ;; *) echo "$node_bin is $node_version, not Node 24" >&2; exit 1 ;; esac
standin_id="rev$standin_rev-node$node_version-npm$npm_version"

# The libraries an executable loads (ldd), copied by their real file to the path ldd names.
copy_libs() {
  local dest=$1 lib
  shift
  for lib in $(ldd "$@" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | sort -u); do
    mkdir -p "$dest$(dirname "$lib")"
    cp -L "$lib" "$dest$lib"
  done
}

# Mozilla's CA bundle as Debian's ca-certificates package generates it, without the host's own
# CAs (/usr/local/share/ca-certificates).
ca_bundle() {
  cat /usr/share/ca-certificates/mozilla/*.crt
}

# Commits the directory $2 (as root-owned files) as image $1, with buildah config flags after.
commit_dir() {
  local name=$1 dir=$2 ctr
  shift 2
  tar -C "$dir" --owner=0 --group=0 --numeric-owner -cf "$dir.tar" .
  ctr=$(bah from --pull=never scratch)
  bah add "$ctr" "$dir.tar" / >/dev/null
  bah config "$@" "$ctr"
  bah commit --quiet --rm --format docker --identity-label=false "$ctr" "$name" >/dev/null
  rm -f "$dir.tar"
}

# A stand-in is reused when it is in storage and its stamp names this recipe and Node binary
# (a stamp, not a label: the final image would inherit a label of its base).
have_standin() {
  [ "$(cat "$cache/$(standin_stamp "$1")" 2>/dev/null)" = "$standin_id" ] &&
    bah inspect --type image "$1" >/dev/null 2>&1
}
standin_stamp() { echo "$1.stamp" | tr '/:' '__'; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/ghat-image.XXXXXX")
trap 'rm -rf "$stage"; stop_ticker' EXIT

# --- BUILD stand-in (node:24-bookworm-slim) ---------------------------------------------------
if have_standin "$build_standin"; then
  say "reusing $build_standin ($standin_id)"
else
  say "assembling $build_standin: Node $node_version, npm $npm_version, dash as /bin/sh"
  npm_tgz="$cache/npm-$npm_version.tgz"
  if [ ! -f "$npm_tgz" ]; then
    (cd "$stage" && npm pack --silent "npm@$npm_version" >/dev/null)
    mv "$stage/npm-$npm_version.tgz" "$npm_tgz"
  fi
  r="$stage/build"
  mkdir -p "$r"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,usr/local/lib/node_modules/npm,etc/ssl/certs,root,tmp,run}
  for l in bin lib lib64 sbin; do ln -s "usr/$l" "$r/$l"; done
  chmod 1777 "$r/tmp"
  chmod 0700 "$r/root"
  cp "$node_bin" "$r/usr/local/bin/node"
  tar -xzf "$npm_tgz" -C "$r/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$r/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$r/usr/local/bin/npx"
  cp /usr/bin/dash "$r/usr/bin/dash"
  ln -s dash "$r/usr/bin/sh"
  cp /usr/bin/env "$r/usr/bin/env"
  # ldd names /lib/... and /lib64/...: under usr/, merged /usr as in Debian 12 (lib -> usr/lib).
  copy_libs "$r/usr" "$node_bin" /usr/bin/dash /usr/bin/env
  printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n' >"$r/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$r/etc/nsswitch.conf"
  ca_bundle >"$r/etc/ssl/certs/ca-certificates.crt"
  mkdir -p "$r/home/node"
  commit_dir "$build_standin" "$r" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="${node_version#v}" \
    --env NODE_EXTRA_CA_CERTS=/run/ghat-build-ca.crt \
    --cmd node
  echo "$standin_id" >"$cache/$(standin_stamp "$build_standin")"
  say "assembled $build_standin"
fi

# --- RUNTIME stand-in (gcr.io/distroless/nodejs24-debian12) -----------------------------------
if have_standin "$runtime_standin"; then
  say "reusing $runtime_standin ($standin_id)"
else
  say "assembling $runtime_standin: /nodejs/bin/node, glibc, libstdc++, libgcc_s, CA bundle, nonroot 65532, no shell"
  r="$stage/runtime"
  mkdir -p "$r"/{nodejs/bin,etc/ssl/certs,tmp,root,home/nonroot,lib64,usr/share,var/lib/dpkg/status.d}
  chmod 1777 "$r/tmp"
  chmod 0700 "$r/root"
  chown 65532:65532 "$r/home/nonroot"
  cp "$node_bin" "$r/nodejs/bin/node"
  # Where Debian 12's packages (and so distroless) put them: not merged /usr.
  copy_libs "$r" "$node_bin"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$r/etc/group"
  printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
  printf 'PRETTY_NAME="Distroless stand-in (ghat hack/image/build.sh)"\nNAME="Debian GNU/Linux"\nID="debian"\nVERSION_ID="12"\nHOME_URL="https://github.com/GoogleContainerTools/distroless"\n' >"$r/etc/os-release"
  ca_bundle >"$r/etc/ssl/certs/ca-certificates.crt"
  for f in /etc/services /etc/protocols; do [ -f "$f" ] && cp "$f" "$r$f"; done
  [ -d /usr/share/zoneinfo ] && cp -a /usr/share/zoneinfo "$r/usr/share/zoneinfo"
  # The tree is root-owned except /home/nonroot: commit it with ownership kept.
  tar -C "$r" --numeric-owner -cf "$r.tar" .
  ctr=$(bah from --pull=never scratch)
  bah add "$ctr" "$r.tar" / >/dev/null
  rm -f "$r.tar"
  bah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --workingdir / --user 0 --entrypoint '["/nodejs/bin/node"]' "$ctr"
  bah commit --quiet --rm --format docker --identity-label=false "$ctr" "$runtime_standin" >/dev/null
  echo "$standin_id" >"$cache/$(standin_stamp "$runtime_standin")"
  say "assembled $runtime_standin"
fi

# --- the Dockerfile ---------------------------------------------------------------------------
version=$("$node_bin" -p 'require("./package.json").version')
# The full commit, as the release workflow labels it (github.sha); -dirty when tracked files
# differ from it.
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
ca=${NODE_EXTRA_CA_CERTS:-}
ca_args=()
if [ -n "$ca" ] && [ -f "$ca" ]; then
  ca_args=(--volume "$ca:/run/ghat-build-ca.crt:ro")
else
  ca_bundle >"$stage/ca.crt"
  ca_args=(--volume "$stage/ca.crt:/run/ghat-build-ca.crt:ro")
fi
layers=(--layers)
[ "${GHAT_IMAGE_NO_CACHE:-}" = 1 ] && layers=(--layers --no-cache)
say "buildah build: Dockerfile -> $tag (version $version, revision $revision); npm ci needs the registry, a cold build takes minutes"
t0=$(date +%s)
with_progress "the image" bah build "${layers[@]}" --force-rm --pull=never --format docker --identity-label=false \
  --isolation chroot --network host \
  "${ca_args[@]}" \
  --build-arg BUILD_IMAGE="$build_standin" \
  --build-arg BASE_IMAGE="$runtime_standin" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --tag "$tag" -f Dockerfile . >&2
say "built $tag in $(( $(date +%s) - t0 ))s"

mkdir -p "$(dirname "$out")"
rm -f "$out"
bah push --quiet --format v2s2 "$tag" "docker-archive:$out:$tag" >&2
say "wrote $out ($(du -h "$out" | cut -f1) docker-save tar; $(gzip -c "$out" | wc -c | awk '{printf "%.1f MiB", $1/1048576}') gzipped)"
echo "$out"
