#!/usr/bin/env bash
# Serve the rig's apt repositories and package index over HTTP on the rig's own Docker network, as
# $RIG_REPO_URL/<name>/, and again behind basic auth as $RIG_REPO_URL/private/<name>/ (repo_server.py).
set -euo pipefail
. "$(dirname "$0")/common.sh"

server="$(cd "$(dirname "$0")" && pwd)/repo_server.py"
want=$(sha256sum "$server" | cut -c1-12)
docker network inspect "$RIG_NETWORK" >/dev/null 2>&1 || docker network create "$RIG_NETWORK" >/dev/null
# a server started by an older rig (another server script) is replaced
if [ "$(docker inspect -f '{{.State.Running}} {{index .Config.Labels "comfyops.rig.server"}}' "$RIG_REPO_HOST" 2>/dev/null)" \
     != "true $want" ]; then
  docker rm -f "$RIG_REPO_HOST" >/dev/null 2>&1 || true
  mkdir -p "$RIG_CACHE/server"
  cp "$server" "$RIG_CACHE/server/repo_server.py"
  docker run -d --name "$RIG_REPO_HOST" --network "$RIG_NETWORK" --restart unless-stopped \
    --label "comfyops.rig.server=$want" -v "$RIG_APT_DIR:/srv:ro" -v "$RIG_CACHE/server:/rig:ro" \
    comfyops-rig/debian:bookworm python3 /rig/repo_server.py /srv >/dev/null
  log "apt repositories served at $RIG_REPO_URL on network $RIG_NETWORK"
fi
