#!/usr/bin/env bash
# Installs the Debian packages the optional local node needs (ghat cluster up --node):
# containerd and runc (the container runtime), the CNI plugins (bridge, host-local, portmap,
# loopback in /usr/lib/cni), iptables (kubelet and the portmap plugin write rules), iproute2
# (ip: node address, cni0), gcc and libc6-dev (the static pause program), git (the consumer
# test image), busybox-static (the test image) and mount (findmnt, umount). Idempotent and quiet: a no-op when all are present.
set -euo pipefail
pkgs=(containerd runc containernetworking-plugins iptables iproute2 gcc libc6-dev busybox-static mount git)
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null | awk '$4 == "installed" { print $1 }' || true)
missing=()
for p in "${pkgs[@]}"; do grep -qx "$p" <<<"$installed" || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "hack/node/install.sh: missing ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "Installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-install-recommends: containerd would otherwise pull in more than the node needs.
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
# Debian's containerd package may start a system service; the node runs its own instance.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
