#!/usr/bin/env bash
# Image tarballs that test hosts load into their nested Docker (no registry):
#   busybox.tar  comfyops-rig/busybox:latest, from Debian's busybox-static;
#   python.tar   comfyops-rig/python:trixie, the trixie base plus python3-pip: the base image the
#                comfyui role builds from in tests (its Dockerfile skips apt when Python and pip are there).
set -euo pipefail
. "$(dirname "$0")/common.sh"

out="$RIG_IMAGES_DIR/busybox.tar"
if [ ! -s "$out" ]; then
  root=$(mktemp -d)
  mkdir -p "$root/bin"
  cp "$(command -v busybox || echo /bin/busybox)" "$root/bin/busybox"
  for applet in sh echo cat ls sleep true uname; do ln -s busybox "$root/bin/$applet"; done
  tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' - comfyops-rig/busybox:latest >/dev/null
  docker save -o "$out.tmp" comfyops-rig/busybox:latest && mv "$out.tmp" "$out"
  rm -rf "$root"
  log "saved $out"
fi

# Rebuilt when the trixie base image changes (its id is the stamp).
out="$RIG_IMAGES_DIR/python.tar"
base_id=$(docker image inspect -f '{{.Id}}' comfyops-rig/debian:trixie)
if [ ! -s "$out" ] || [ "$(cat "$out.stamp" 2>/dev/null)" != "$base_id" ]; then
  printf 'FROM comfyops-rig/debian:trixie\nRUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*\nCMD ["python3"]\n' \
    | docker build -q -t comfyops-rig/python:trixie - >/dev/null
  docker save -o "$out.tmp" comfyops-rig/python:trixie && mv "$out.tmp" "$out"
  echo "$base_id" >"$out.stamp"
  log "saved $out"
fi
log "test image tarballs are current"
