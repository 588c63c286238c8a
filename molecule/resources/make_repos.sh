#!/bin/sh
# Turn the copied sources under /srv/git into git repositories (test fixture) and record commit ids.
set -eu
cd /srv/git
export GIT_AUTHOR_NAME=rig GIT_AUTHOR_EMAIL=rig@comfyops.invalid GIT_COMMITTER_NAME=rig GIT_COMMITTER_EMAIL=rig@comfyops.invalid
commit() { git add -A && git commit -qm "$1"; }
for d in ComfyUI ComfyUI-LTXVideo ansible_probe_nodes broken_pack; do
  (cd "$d" && git init -q -b main && commit "initial")
done
(cd ComfyUI && git tag v0.33.0 \
  && sed -i 's/__version__ = .*/__version__ = "0.28.0"/' comfyui_version.py && commit "ComfyUI v0.28.0" && git tag v0.28.0)
ltx1=$(git -C ComfyUI-LTXVideo rev-parse HEAD)
(cd ComfyUI-LTXVideo && echo "second commit" >>README.md && commit "second")
ltx2=$(git -C ComfyUI-LTXVideo rev-parse HEAD)
(cd ansible_probe_nodes && echo "comfyops-probe-dep==1.0.0" >requirements.txt && commit "requirements")
printf '{"ltxvideo": ["%s", "%s"]}\n' "$ltx1" "$ltx2" >commits.json
