#!/usr/bin/env bash
# Build the systemd Debian base images for test hosts (no registry here: debootstrap + docker import).
# Images are tagged comfyops-rig/debian:<suite> and labelled with a hash of this recipe, so a
# changed recipe rebuilds and an unchanged one costs nothing.
set -euo pipefail

MIRROR="${COMFYOPS_RIG_MIRROR:-http://deb.debian.org/debian}"
SUITES=("${@:-bookworm trixie}")
read -r -a SUITES <<<"${SUITES[*]}"
INCLUDE="python3,systemd,systemd-sysv,dbus,sudo,ca-certificates,iproute2,procps,curl"
CACHE="${COMFYOPS_RIG_CACHE:-/var/cache/comfyops-rig}"

recipe_hash() {
  # Hash this script plus the inputs that change the result.
  { cat "$0"; echo "$1 $MIRROR $INCLUDE"; } | sha256sum | cut -c1-16
}

build() {
  local suite=$1 hash image rootfs
  hash=$(recipe_hash "$suite")
  image="comfyops-rig/debian:${suite}"
  if [ "$(docker image inspect -f '{{ index .Config.Labels "comfyops.recipe" }}' "$image" 2>/dev/null)" = "$hash" ]; then
    echo "base image $image is current (recipe $hash)"
    return
  fi
  echo "building base image $image (recipe $hash)"
  rootfs="$CACHE/rootfs-$suite"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  debootstrap --variant=minbase --include="$INCLUDE" "$suite" "$rootfs" "$MIRROR" >"$CACHE/debootstrap-$suite.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap-$suite.log"; exit 1; }
  # A container host: no consoles or hardware units; an empty machine-id is filled at each boot.
  chroot "$rootfs" systemctl mask getty.target console-getty.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-logind.service sys-kernel-debug.mount >/dev/null 2>&1 || true
  : >"$rootfs/etc/machine-id"
  printf 'deb %s %s main\n' "$MIRROR" "$suite" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
    -c "LABEL comfyops.recipe=$hash" - "$image" >/dev/null
  rm -rf "$rootfs"
  echo "built $image"
}

mkdir -p "$CACHE"
for s in "${SUITES[@]}"; do build "$s"; done
