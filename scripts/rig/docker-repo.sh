#!/usr/bin/env bash
# Docker's apt repository, stood in for: Docker's own packages cannot be fetched here, so Debian 12's
# engine is re-served under Docker's package names and relations:
#   docker-ce        = docker.io's files (engine + CLI), Conflicts/Replaces docker.io, two versions
#                      (26.1.0, 27.0.0) so the tests can pin one while a newer one is offered;
#   containerd.io    = containerd + runc's files, Provides/Conflicts/Replaces containerd and runc;
#   docker-ce-cli, docker-buildx-plugin = empty (the CLI is inside docker-ce here);
#   docker-compose-plugin = the compose v2 binary from Debian 13's docker-compose package, which is how
#                      the Debian 12 test host gets `docker compose` v2.
set -euo pipefail
. "$(dirname "$0")/common.sh"

work="$RIG_CACHE/docker-standins"
stamp=$(sha256sum "$0" | cut -c1-16)
if [ -f "$work/.stamp" ] && [ "$(cat "$work/.stamp")" = "$stamp" ] && [ -d "$RIG_APT_DIR/docker" ]; then
  log "docker stand-in repo is current"; exit 0
fi
rm -rf "$work"; mkdir -p "$work/debs" "$work/src"

# Debian's packages, fetched through the base images (Debian's mirror is reachable).
docker run --rm -v "$work/src:/out" comfyops-rig/debian:bookworm sh -ec \
  'apt-get update -qq && cd /out && apt-get download -qq docker.io containerd runc' >/dev/null 2>&1
docker run --rm -v "$work/src:/out" comfyops-rig/debian:trixie sh -ec \
  'apt-get update -qq && cd /out && apt-get download -qq docker-compose' >/dev/null 2>&1

unpack() {  # deb dir: files and control data of a .deb
  dpkg-deb -R "$1" "$2"
}
build() {  # dir name version [field=value...]: rewrite the control file's relations, then build
  local d=$1 name=$2 version=$3
  shift 3
  python3 - "$d/DEBIAN/control" "$name" "$version" "$@" <<'PY'
import sys
path, name, version, *fields = sys.argv[1:]
keep = {}
if not fields or fields[0] != "--fresh":
    for block in open(path).read().split("\n"):
        if block and not block.startswith(" ") and ":" in block:
            key, _, value = block.partition(":")
            keep[key] = value.strip()
else:
    fields = fields[1:]
keep = {k: v for k, v in keep.items() if k in ("Architecture", "Installed-Size", "Section", "Priority", "Depends")}
keep.setdefault("Architecture", "all")
for field in fields:
    key, _, value = field.partition("=")
    if value:
        keep[key] = value
    else:
        keep.pop(key, None)
lines = [f"Package: {name}", f"Version: {version}", "Maintainer: comfyops test rig <rig@comfyops.invalid>"]
lines += [f"{k}: {v}" for k, v in keep.items()]
lines.append(f"Description: comfyops test stand-in for Docker's {name}")
open(path, "w").write("\n".join(lines) + "\n")
PY
  dpkg-deb -Zgzip -z1 --build --root-owner-group "$d" "$work/debs/" >/dev/null  # names it name_version_arch.deb
}

for v in 26.1.0 27.0.0; do
  rm -rf "$work/engine"; unpack "$work"/src/docker.io_*.deb "$work/engine"
  build "$work/engine" docker-ce "5:$v-1~comfyops" \
    "Depends=libc6 (>= 2.34), libdevmapper1.02.1, libsystemd0, adduser, containerd.io (>= 1.6), iptables, tini" \
    "Conflicts=docker.io, docker-engine" "Replaces=docker.io, docker-engine"
  mkdir -p "$work/cli/DEBIAN"
  build "$work/cli" docker-ce-cli "5:$v-1~comfyops" --fresh
done

rm -rf "$work/containerd" "$work/runc"
unpack "$work"/src/containerd_*.deb "$work/containerd"
unpack "$work"/src/runc_*.deb "$work/runc"
cp -a "$work/runc/usr/." "$work/containerd/usr/"
build "$work/containerd" containerd.io 1.6.20-1~comfyops \
  "Depends=libc6 (>= 2.34), libseccomp2 (>= 2.5.0)" \
  "Provides=containerd (= 1.6.20), runc (= 1.1.5)" "Conflicts=containerd, runc" "Replaces=containerd, runc"

mkdir -p "$work/buildx/DEBIAN"
build "$work/buildx" docker-buildx-plugin 0.20.0-1~comfyops --fresh

mkdir -p "$work/compose/DEBIAN" "$work/compose-src"
dpkg-deb -x "$work"/src/docker-compose_*.deb "$work/compose-src"
compose_bin=$(find "$work/compose-src" -type f -name docker-compose -path '*cli-plugins*' | head -n1)
[ -n "$compose_bin" ] || { log "no compose plugin binary in Debian's docker-compose package"; exit 1; }
install -D -m 0755 "$compose_bin" "$work/compose/usr/libexec/docker/cli-plugins/docker-compose"
build "$work/compose" docker-compose-plugin 2.26.1-1~comfyops --fresh "Architecture=amd64"

"$(dirname "$0")/apt-repo.sh" docker "$work/debs" stable bookworm
echo "$stamp" >"$work/.stamp"
