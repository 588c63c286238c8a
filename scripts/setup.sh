#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine (as root) to run the collection and its tests:
# system packages, the pinned controller venv (.venv), the collection link, and the offline test rig.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for cmd in python3 git debootstrap apt-ftparchive gpg dpkg-scanpackages busybox shellcheck chromium promtool; do
  command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "[setup] installing system packages (missing: ${need[*]})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv git debootstrap apt-utils \
    gnupg dpkg-dev busybox-static ca-certificates shellcheck chromium >/dev/null
  # promtool (the exporter's metrics and alert rules are checked with it); its service stays off
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] creating .venv from requirements-dev.txt"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  echo "$want" >"$stamp"
fi

# The repo seen as ansible_collections/comfyops/comfyui, where ansible.cfg and molecule look for it.
link=.ansible/collections/ansible_collections/comfyops/comfyui
if [ ! -L "$link" ]; then
  mkdir -p "$(dirname "$link")"
  ln -sfn "$PWD" "$link"
fi

scripts/rig/up.sh
