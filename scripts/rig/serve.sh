#!/usr/bin/env bash
# Serve the rig's apt repositories over HTTP on the rig's own Docker network, as $RIG_REPO_URL/<name>/.
set -euo pipefail
. "$(dirname "$0")/common.sh"

docker network inspect "$RIG_NETWORK" >/dev/null 2>&1 || docker network create "$RIG_NETWORK" >/dev/null
if [ "$(docker inspect -f '{{.State.Running}}' "$RIG_REPO_HOST" 2>/dev/null)" != "true" ]; then
  docker rm -f "$RIG_REPO_HOST" >/dev/null 2>&1 || true
  docker run -d --name "$RIG_REPO_HOST" --network "$RIG_NETWORK" --restart unless-stopped \
    -v "$RIG_APT_DIR:/srv:ro" comfyops-rig/debian:bookworm python3 -m http.server 80 --directory /srv >/dev/null
  log "apt repositories served at $RIG_REPO_URL on network $RIG_NETWORK"
fi
