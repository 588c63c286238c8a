#!/usr/bin/env bash
# Prints the docker role's first-converge time on a fresh Debian 13 rig host, the re-run time, and their
# ratio.  bench/docker_role.sh [distro|docker_repo]   (needs scripts/setup.sh to have run)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_HOME="$PWD/.ansible"
source=${1:-distro}
host=comfyops-bench
inv=$(mktemp)
trap 'ansible-playbook -i "$inv" scripts/rig/local-host.yml -e rig_state=absent -e "{\"rig_hosts\":[{\"name\":\"$host\"}]}" >/dev/null; rm -f "$inv"' EXIT
cat >"$inv" <<INV
all:
  children:
    gpu_hosts:
      hosts:
        $host: {ansible_connection: community.docker.docker, ansible_host: $host, ansible_user: root}
  vars:
    docker_install_source: $source
    docker_repo_url: http://comfyops-rig-repo/docker
INV
host_json="{\"rig_hosts\":[{\"name\":\"$host\",\"image\":\"comfyops-rig/debian:trixie\"}]}"
ansible-playbook -i "$inv" scripts/rig/local-host.yml -e "$host_json" >/dev/null
ansible-playbook -i "$inv" molecule/resources/prepare.yml >/dev/null

timed() { local s; s=$(date +%s%N); ansible-playbook -i "$inv" playbooks/site.yml >/dev/null; echo $(($(date +%s%N) - s)); }
first=$(timed)
rerun=$(timed)
python3 -c 'import sys; f, r = int(sys.argv[2]) / 1e9, int(sys.argv[3]) / 1e9
print(f"docker role ({sys.argv[1]}, Debian 13): first converge {f:.1f} s, re-run {r:.1f} s, ratio {f / r:.1f}x")' \
  "$source" "$first" "$rerun"
