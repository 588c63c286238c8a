#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install it from the distribution and start it
# (through systemd when it runs, else by hand: CI machines have no init system).
set -euo pipefail
. "$(dirname "$0")/common.sh"

if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if [ -d /run/systemd/system ]; then
  systemctl start docker
else
  log "starting dockerd (log: /var/log/comfyops-dockerd.log)"
  nohup dockerd >/var/log/comfyops-dockerd.log 2>&1 &
fi
for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
log "dockerd did not answer within 60 s; see /var/log/comfyops-dockerd.log"
exit 1
