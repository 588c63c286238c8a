#!/usr/bin/env bash
# Prints first-converge time on a fresh Debian 13 rig host, re-run time, and their ratio.
#   bench/converge.sh docker    the docker role alone (site.yml --tags docker)
#   bench/converge.sh site      the whole site.yml as the local inventory configures it (Docker, ComfyUI, NGINX)
# Needs scripts/setup.sh to have run. The host is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_HOME="$PWD/.ansible"
what=${1:-docker}
host=comfyops-bench
inv=$(mktemp --suffix=.yml)
host_json="{\"rig_hosts\":[{\"name\":\"$host\",\"image\":\"comfyops-rig/debian:trixie\"}]}"
trap 'ansible-playbook -i "$inv" scripts/rig/local-host.yml -e rig_state=absent -e "$host_json" >/dev/null; rm -f "$inv"' EXIT
cat >"$inv" <<INV
all:
  children:
    gpu_hosts:
      hosts:
        $host: {ansible_connection: community.docker.docker, ansible_host: $host, ansible_user: root}
    comfyui_proxies:
      hosts:
        $host: {}
INV
ansible-playbook -i "$inv" scripts/rig/local-host.yml -e "$host_json" >/dev/null
ansible-playbook -i "$inv" molecule/resources/prepare.yml >/dev/null
args=(--tags docker)
if [ "$what" = site ]; then
  # The site run needs the rig's base image and git repos on the host (not timed: not part of a deploy).
  ansible-playbook -i "$inv" -e @inventories/local/group_vars/all.yml molecule/resources/prepare_comfyui_host.yml >/dev/null
  args=()
fi

timed() {
  local s; s=$(date +%s%N)
  ansible-playbook -i "$inv" -e @inventories/local/group_vars/all.yml playbooks/site.yml "${args[@]}" >/dev/null
  echo $(($(date +%s%N) - s))
}
first=$(timed)
rerun=$(timed)
python3 -c 'import sys; f, r = int(sys.argv[2]) / 1e9, int(sys.argv[3]) / 1e9
print(f"{sys.argv[1]} (Debian 13 rig host): first converge {f:.1f} s, re-run {r:.1f} s, re-run/first {100 * r / f:.0f}%")' \
  "$what" "$first" "$rerun"
