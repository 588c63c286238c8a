#!/usr/bin/env bash
# The real upstream trees for tests (issue: test against the real thing), from the git bundles in
# ../shared/upstream (COMFYOPS_UPSTREAM_DIR):
#   $RIG_CACHE/upstream/ComfyUI, ComfyUI-LTXVideo   plain git clones of the bundles (tags v0.28.0, v0.29.0,
#                                                    upstream-aceeae96), copied into test hosts as file:// repos;
#   images/comfyui-cpu.tar                          comfyops-rig/comfyui-cpu:bookworm (upstream/Dockerfile), the
#                                                    base the comfyui role builds the real ComfyUI on, CPU torch.
# Both are rebuilt only when their inputs change (the bundles' hashes; the recipe hash of the image).
set -euo pipefail
. "$(dirname "$0")/common.sh"
here=$(cd "$(dirname "$0")" && pwd)
bundles="${COMFYOPS_UPSTREAM_DIR:-$here/../../../shared/upstream}"
if [ ! -s "$bundles/ComfyUI.bundle" ] || [ ! -s "$bundles/ComfyUI-LTXVideo.bundle" ]; then
  log "no upstream bundles in $bundles (set COMFYOPS_UPSTREAM_DIR to the folder with ComfyUI.bundle and ComfyUI-LTXVideo.bundle)"
  exit 1
fi
out="$RIG_CACHE/upstream"
mkdir -p "$out"
for name in ComfyUI ComfyUI-LTXVideo; do
  stamp=$(sha256sum "$bundles/$name.bundle" | cut -c1-16)
  if [ "$(cat "$out/$name.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "${out:?}/$name"
    git clone -q --no-checkout "$bundles/$name.bundle" "$out/$name"
    git -C "$out/$name" remote remove origin
    echo "$stamp" >"$out/$name.stamp"
    log "upstream $name cloned from $bundles/$name.bundle"
  fi
done

image=comfyops-rig/comfyui-cpu:bookworm
tarball="$RIG_IMAGES_DIR/comfyui-cpu.tar"
wheel=$(find /opt/wheels -maxdepth 1 -name 'torch-2.13.0+cpu-cp311-*.whl' 2>/dev/null | head -n1)
[ -n "$wheel" ] || { log "the CPU torch 2.13.0 wheel for Python 3.11 is not in /opt/wheels"; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
git -C "$out/ComfyUI" show v0.28.0:requirements.txt >"$ctx/requirements.txt"
git -C "$out/ComfyUI" show v0.28.0:manager_requirements.txt >"$ctx/manager_requirements.txt"
# The compatibility set's pins (one owner: the comfyui role's defaults).
"$here/../../.venv/bin/python" - "$here/../../roles/comfyui/defaults/main.yml" >"$ctx/constraints.txt" <<'PY'
import sys, yaml
print("\n".join(yaml.safe_load(open(sys.argv[1]))["comfyui_pip_constraints"] + ["torch==2.13.0"]))
PY
cp "$here/upstream/Dockerfile" "$here/upstream/patch-torch-cpu.py" "$ctx/"
hash=$( (cd "$ctx" && cat Dockerfile patch-torch-cpu.py requirements.txt manager_requirements.txt constraints.txt; \
         basename "$wheel"; docker image inspect -f '{{.Id}}' comfyops-rig/debian:bookworm) | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "comfyops.recipe" }}' "$image" 2>/dev/null)" != "$hash" ]; then
  log "building $image (recipe $hash; about 1 GB from PyPI)"
  mkdir -p "$ctx/wheels"
  cp "$wheel" "$ctx/wheels/"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  start=$(date +%s)
  docker build -q --label "comfyops.recipe=$hash" -t "$image" "$ctx" >/dev/null
  log "built $image in $(($(date +%s) - start)) s, $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1/1e9}')"
fi
if [ ! -s "$tarball" ] || [ "$(cat "$tarball.stamp" 2>/dev/null)" != "$hash" ]; then
  docker save -o "$tarball.tmp" "$image" && mv "$tarball.tmp" "$tarball"
  echo "$hash" >"$tarball.stamp"
  log "saved $tarball"
fi
log "upstream trees and $image are current"
