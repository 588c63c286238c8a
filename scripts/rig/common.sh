#!/usr/bin/env bash
# Shared settings of the offline test rig (sourced by the scripts beside it).
RIG_CACHE="${COMFYOPS_RIG_CACHE:-/var/cache/comfyops-rig}"
RIG_NETWORK=comfyops-rig
RIG_REPO_HOST=comfyops-rig-repo
RIG_REPO_URL="http://${RIG_REPO_HOST}"
RIG_IMAGES_DIR="$RIG_CACHE/images"
RIG_APT_DIR="$RIG_CACHE/apt"
RIG_GNUPGHOME="$RIG_CACHE/gnupg"
mkdir -p "$RIG_CACHE" "$RIG_IMAGES_DIR" "$RIG_APT_DIR"
log() { printf '[rig] %s\n' "$*" >&2; }
