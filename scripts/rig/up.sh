#!/usr/bin/env bash
# Bring the whole offline test rig up (idempotent): Docker, base images, image tarballs, apt repos.
set -euo pipefail
here=$(dirname "$0")
"$here/docker.sh"
command -v debootstrap >/dev/null && command -v apt-ftparchive >/dev/null && command -v gpg >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap apt-utils gnupg dpkg-dev busybox-static >/dev/null
}
"$here/base-images.sh" bookworm trixie
"$here/test-images.sh"
"$here/docker-repo.sh"
"$here/nvidia-repo.sh"
"$here/pypi.sh"
"$here/upstream.sh"
"$here/serve.sh"
