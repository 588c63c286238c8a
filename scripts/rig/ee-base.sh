#!/usr/bin/env bash
# The local base image the test rig builds the execution environment from (no registry here to pull
# execution-environment.yml's default, debian:trixie-slim): comfyops-rig/ee-base:trixie, the rig's Debian 13 image
# plus pip's trust of this machine's CA bundle, without which image builds do not reach PyPI here (test-only).
# Labelled with a hash of the recipe (this script, the trixie image, the CA bundle): an unchanged one costs nothing.
set -euo pipefail
. "$(dirname "$0")/common.sh"

image=comfyops-rig/ee-base:trixie
ca=/etc/ssl/certs/ca-certificates.crt
base_id=$(docker image inspect -f '{{.Id}}' comfyops-rig/debian:trixie)
hash=$({ cat "$0"; echo "$base_id"; sha256sum <"$ca"; } | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "comfyops.recipe" }}' "$image" 2>/dev/null)" = "$hash" ]; then
  log "EE base image $image is current (recipe $hash)"
  exit 0
fi
ctx="$RIG_CACHE/ee-base"
rm -rf "$ctx"
mkdir -p "$ctx"
cp "$ca" "$ctx/ca-certificates.crt"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM comfyops-rig/debian:trixie
COPY ca-certificates.crt /etc/comfyops-rig/ca-certificates.crt
RUN printf '[global]\ncert = /etc/comfyops-rig/ca-certificates.crt\n' >/etc/pip.conf
ENV container=
LABEL comfyops.recipe=$hash
CMD ["/bin/bash"]
DOCKERFILE
docker build -q -t "$image" "$ctx" >/dev/null
rm -rf "$ctx"
log "built $image (recipe $hash)"
