#!/usr/bin/env bash
# Docker's apt repository, stood in for: Docker's real packages cannot be fetched here. The stand-ins
# carry Docker's package names and versions but depend on Debian's engine (docker.io, containerd), and
# docker-compose-plugin ships the compose v2 binary from Debian 13's docker-compose package, so a
# Debian 12 host gets a working `docker compose` v2 from this repo. Two versions (26.1.0, 27.0.0) let
# the tests pin one while a newer one is offered.
set -euo pipefail
. "$(dirname "$0")/common.sh"

work="$RIG_CACHE/docker-standins"
stamp=$(sha256sum "$0" | cut -c1-16)
if [ -f "$work/.stamp" ] && [ "$(cat "$work/.stamp")" = "$stamp" ] && [ -d "$RIG_APT_DIR/docker" ]; then
  log "docker stand-in repo is current"; exit 0
fi
rm -rf "$work"; mkdir -p "$work/debs" "$work/src"

# Debian 13's compose v2 plugin, fetched through the trixie base image (Debian's mirror is reachable).
docker run --rm -v "$work/src:/out" comfyops-rig/debian:trixie sh -ec \
  'apt-get update -qq && cd /out && apt-get download -qq docker-compose' >/dev/null
dpkg-deb -x "$work"/src/docker-compose_*.deb "$work/src/compose"
compose_bin=$(find "$work/src/compose" -type f -name docker-compose -path '*cli-plugins*' | head -n1)
[ -n "$compose_bin" ] || { log "no compose plugin binary in Debian's docker-compose package"; exit 1; }

standin() {  # name version depends [file-to-ship dest]
  local name=$1 version=$2 depends=$3 d="$work/pkg-$1-$2"
  mkdir -p "$d/DEBIAN"
  {
    echo "Package: $name"; echo "Version: $version"; echo "Architecture: all"
    echo "Maintainer: comfyops test rig <rig@comfyops.invalid>"
    [ -n "$depends" ] && echo "Depends: $depends"
    echo "Description: comfyops test stand-in for Docker's $name"
  } >"$d/DEBIAN/control"
  if [ $# -ge 5 ]; then mkdir -p "$d$(dirname "$5")"; install -m 0755 "$4" "$d$5"; fi
  dpkg-deb --build --root-owner-group "$d" "$work/debs/${name}_${version}_all.deb" >/dev/null
}
for v in 26.1.0 27.0.0; do
  standin docker-ce "5:$v-1~comfyops" "docker.io, containerd.io"
  standin docker-ce-cli "5:$v-1~comfyops" ""
done
standin containerd.io 1.7.0-1~comfyops "containerd"
standin docker-buildx-plugin 0.20.0-1~comfyops ""
standin docker-compose-plugin 2.26.1-1~comfyops "" "$compose_bin" /usr/libexec/docker/cli-plugins/docker-compose

"$(dirname "$0")/apt-repo.sh" docker "$work/debs" stable bookworm trixie
echo "$stamp" >"$work/.stamp"
