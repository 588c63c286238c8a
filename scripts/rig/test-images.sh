#!/usr/bin/env bash
# Image tarballs that test hosts load into their nested Docker (no registry): a busybox image made
# from Debian's busybox-static, saved as busybox.tar.
set -euo pipefail
. "$(dirname "$0")/common.sh"

out="$RIG_IMAGES_DIR/busybox.tar"
[ -s "$out" ] && { log "test image tarballs are current"; exit 0; }
command -v busybox >/dev/null 2>&1 || [ -x /bin/busybox ] || \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
root=$(mktemp -d)
mkdir -p "$root/bin"
cp "$(command -v busybox || echo /bin/busybox)" "$root/bin/busybox"
for applet in sh echo cat ls sleep true uname; do ln -s busybox "$root/bin/$applet"; done
tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' - comfyops-rig/busybox:latest >/dev/null
docker save -o "$out.tmp" comfyops-rig/busybox:latest && mv "$out.tmp" "$out"
rm -rf "$root"
log "saved $out"
