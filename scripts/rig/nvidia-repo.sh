#!/usr/bin/env bash
# NVIDIA's libnvidia-container apt repository, stood in for: NVIDIA's packages cannot be fetched here, so
# stand-ins with the real names, versions and inter-package relations are built from
# tests/fixtures/nvidia_standins/ (see its README) and served as a signed FLAT repository, laid out like
# https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH):  $RIG_REPO_URL/nvidia/stable/deb/$(ARCH) /
#   libnvidia-container1, libnvidia-container-tools, nvidia-container-toolkit-base (nvidia-ctk stand-in,
#   nvidia-container-runtime = a shim that execs runc), nvidia-container-toolkit: 1.17.4-1 (below the 1.17.8
#   security floor, for the refusal test), 1.17.8-1 and 1.18.1-1;
#   nvidia-driver-standin 580.159.04-1: a fake nvidia-smi replaying the H100 captures (no driver, no GPU).
set -euo pipefail
. "$(dirname "$0")/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
src="$root/tests/fixtures/nvidia_standins"
captures="$root/tests/fixtures/reference/nvidia-smi"

work="$RIG_CACHE/nvidia-standins"
stamp=$(cat "$0" "$src"/* "$captures"/* | sha256sum | cut -c1-16)
if [ -f "$work/.stamp" ] && [ "$(cat "$work/.stamp")" = "$stamp" ] && [ -d "$RIG_APT_DIR/nvidia" ]; then
  log "nvidia stand-in repo is current"; exit 0
fi
rm -rf "$work"; mkdir -p "$work/debs"

pkg() {  # name version "control fields" -- files are placed in $work/pkg before the call
  local name=$1 version=$2 fields=$3 d="$work/pkg"
  mkdir -p "$d/DEBIAN" "$d/usr/share/doc/$name"
  echo "comfyops test rig STAND-IN for NVIDIA's $name $version: not the real package." >"$d/usr/share/doc/$name/STANDIN"
  {
    echo "Package: $name"; echo "Version: $version"; echo "Architecture: all"
    echo "Maintainer: comfyops test rig <rig@comfyops.invalid>"; echo "Section: utils"; echo "Priority: optional"
    [ -z "$fields" ] || printf '%s\n' "$fields"
    echo "Description: comfyops test stand-in for NVIDIA's $name"
  } >"$d/DEBIAN/control"
  dpkg-deb -Zgzip -z1 --build --root-owner-group "$d" "$work/debs/" >/dev/null
  rm -rf "$d"
}

for v in 1.17.4-1 1.17.8-1 1.18.1-1; do
  upstream=${v%-*}
  d="$work/pkg"
  mkdir -p "$d/usr/lib/x86_64-linux-gnu"
  echo "stand-in" >"$d/usr/lib/x86_64-linux-gnu/libnvidia-container.so.$upstream.standin"
  pkg libnvidia-container1 "$v" ""

  mkdir -p "$d/usr/bin"
  printf '#!/bin/sh\n# comfyops test stand-in\n[ "$1" = --version ] && { echo "cli-version: %s"; exit 0; }\necho "nvidia-container-cli stand-in: no driver here" >&2; exit 1\n' \
    "$upstream" >"$d/usr/bin/nvidia-container-cli"
  chmod 0755 "$d/usr/bin/nvidia-container-cli"
  pkg libnvidia-container-tools "$v" "Depends: libnvidia-container1 (= $v)"

  mkdir -p "$d/usr/bin"
  sed "s/@VERSION@/$upstream/" "$src/nvidia-ctk" >"$d/usr/bin/nvidia-ctk"
  # The real runtime is a runc shim that edits the OCI spec for GPU containers; this one only passes through.
  printf '#!/bin/sh\n# comfyops test stand-in for nvidia-container-runtime: passes everything to runc\nexec runc "$@"\n' \
    >"$d/usr/bin/nvidia-container-runtime"
  chmod 0755 "$d/usr/bin/nvidia-ctk" "$d/usr/bin/nvidia-container-runtime"
  pkg nvidia-container-toolkit-base "$v" "Depends: python3
Breaks: nvidia-container-toolkit (<< $v)
Replaces: nvidia-container-toolkit (<< $v)"

  mkdir -p "$d/usr/bin"
  printf '#!/bin/sh\n# comfyops test stand-in\nexit 0\n' >"$d/usr/bin/nvidia-container-runtime-hook"
  chmod 0755 "$d/usr/bin/nvidia-container-runtime-hook"
  pkg nvidia-container-toolkit "$v" "Depends: nvidia-container-toolkit-base (= $v), libnvidia-container-tools (>= $v), libnvidia-container-tools (<< 2.0.0)
Breaks: nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook
Replaces: nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook"
done

d="$work/pkg"
mkdir -p "$d/usr/bin" "$d/usr/share/nvidia-driver-standin"
install -m 0755 "$src/nvidia-smi" "$d/usr/bin/nvidia-smi"
cp "$captures"/*.txt "$captures"/*.csv "$captures"/*.xml "$d/usr/share/nvidia-driver-standin/"
pkg nvidia-driver-standin 580.159.04-1 "Depends: python3"

"$(dirname "$0")/apt-repo.sh" nvidia "$work/debs" --flat stable/deb
echo "$stamp" >"$work/.stamp"
