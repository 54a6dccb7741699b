#!/usr/bin/env bash
# Build the systemd base images the Molecule scenarios and the demo run on.
# No registry is reachable: mmdebstrap makes a root file system, `docker import`
# turns it into an image. An image that already exists is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mirror="${DP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
pkgs="systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,procps,ca-certificates,curl,iputils-ping,less"

build() {
  local suite=$1 tag=$2
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "==> image $tag exists, skipped"
    return
  fi
  echo "==> building $tag from Debian $suite with mmdebstrap"
  local tmp
  tmp=$(mktemp -d)
  # --variant=minbase keeps the image small; the hook drops units that make no
  # sense in a container and would otherwise fail at boot. The package lists stay in the
  # image (like a cloud image's), so test containers don't each download them again.
  mmdebstrap --variant=minbase --include="$pkgs" --skip=cleanup/apt/lists \
    --customize-hook='chroot "$1" systemctl mask systemd-firstboot.service systemd-udevd.service systemd-modules-load.service getty.target console-getty.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount systemd-remount-fs.service >/dev/null 2>&1 || true' \
    --customize-hook='rm -f "$1"/etc/machine-id; : > "$1"/etc/machine-id' \
    "$suite" "$tmp/rootfs.tar" "$mirror" >"$tmp/mmdebstrap.log" 2>&1 \
    || { tail -30 "$tmp/mmdebstrap.log" >&2; rm -rf "$tmp"; exit 1; }
  docker import \
    --change 'CMD ["/sbin/init"]' \
    --change 'ENV container=docker' \
    "$tmp/rootfs.tar" "$tag" >/dev/null
  rm -rf "$tmp"
  echo "==> built $tag"
}

build bookworm "${DP_IMAGE_BOOKWORM:-dataplatform/debian:12}"
build trixie "${DP_IMAGE_TRIXIE:-dataplatform/debian:13}"
