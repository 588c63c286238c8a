#!/usr/bin/env bash
# Prints first-converge time on fresh Debian 13 rig hosts, re-run time, and their ratio.
#   bench/converge.sh docker    the docker role alone (site.yml --tags docker), one host
#   bench/converge.sh site      the whole site.yml as the local inventory configures it (Docker, ComfyUI + LTX-2
#                               nodes, NGINX), one host that is GPU host and proxy
#   bench/converge.sh fleet     the whole site.yml on 1 host, then on 3 hosts at once (forks >= 3): how the
#                               converge time grows with the fleet
#   bench/converge.sh fleet-build   3 hosts at once, first converge with comfyui_image_distribution build_each,
#                               then (fresh hosts) build_once through a registry on the first host: the ratio
# The hosts run what inventories/local deploys: the real ComfyUI + LTX-2 nodes on the rig's CPU torch image.
# Needs scripts/setup.sh to have run. The hosts are removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_HOME="$PWD/.ansible"
what=${1:-docker}
inv=$(mktemp --suffix=.yml)
hosts_json=
log=${COMFYOPS_BENCH_LOG:-/tmp/comfyops-bench-converge.log}  # the runs' output
: >"$log"
trap 'remove_hosts; rm -f "$inv"' EXIT

remove_hosts() {
  [ -z "$hosts_json" ] || ansible-playbook -i "$inv" scripts/rig/local-host.yml -e rig_state=absent -e "$hosts_json" >/dev/null
  hosts_json=
}

# make_hosts N: N fresh hosts, each a GPU host and its own proxy (as inventories/local), prepared for the rig
make_hosts() {
  local n=$1 i names=()
  for ((i = 0; i < n; i++)); do names+=("comfyops-bench-$i"); done
  hosts_json=$(printf '{"name":"%s","image":"comfyops-rig/debian:trixie"},' "${names[@]}")
  hosts_json="{\"rig_hosts\":[${hosts_json%,}]}"
  {
    echo "all:"
    echo "  vars: {ansible_connection: community.docker.docker, ansible_user: root}"
    echo "  children:"
    for group in gpu_hosts comfyui_proxies; do
      echo "    $group:"
      echo "      hosts:"
      for name in "${names[@]}"; do echo "        $name: {ansible_host: $name}"; done
    done
  } >"$inv"
  ansible-playbook -i "$inv" scripts/rig/local-host.yml -e "$hosts_json" >/dev/null
  ansible-playbook -i "$inv" molecule/resources/prepare.yml >/dev/null
  if [ "$what" != docker ]; then
    # The site run needs the rig's base image and git repos on the host (not timed: not part of a deploy).
    ansible-playbook -i "$inv" -e @inventories/local/group_vars/all.yml -e rig_comfyui=upstream "${extra[@]}" \
      molecule/resources/prepare_comfyui_host.yml >/dev/null
  fi
  if [ "$what" = fleet-build ]; then
    # a registry on the first host for build_once (Debian's package, auth off: test only)
    # (as molecule/fleet/prepare.yml), then wait until it answers
    ansible -i "$inv" comfyops-bench-0 -m ansible.builtin.shell -a "DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      docker-registry >/dev/null && sed -i '/^auth:/,/^[a-z]/{/^auth:/d;/^  /d}' /etc/docker/registry/config.yml \
      && systemctl restart docker-registry && for i in \$(seq 100); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null \
      && exit 0; sleep 0.2; done; exit 1" >>"$log" 2>&1
  fi
}
extra=()
if [ "$what" = fleet-build ]; then
  extra=(-e '{"docker_daemon_options": {"insecure-registries": ["comfyops-bench-0:5000"]}}')
fi

args=()
[ "$what" != docker ] || args=(--tags docker)
timed() {  # seconds of one site.yml run over the inventory (its output in $log, its tail on failure)
  local s; s=$(date +%s%N)
  ansible-playbook -i "$inv" --forks 10 -e @inventories/local/group_vars/all.yml "${extra[@]}" "$@" playbooks/site.yml \
    "${args[@]}" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; echo "site.yml failed; whole output: $log" >&2; return 1; }
  python3 -c 'import sys; print(f"{(int(sys.argv[2]) - int(sys.argv[1])) / 1e9:.1f}")' "$s" "$(date +%s%N)"
}

case $what in
  docker | site)
    make_hosts 1
    first=$(timed)
    rerun=$(timed)
    echo "$what (Debian 13 rig host): first converge $first s, re-run $rerun s," \
      "re-run/first $(python3 -c "print(round(100 * $rerun / $first))")%"
    ;;
  fleet)
    make_hosts 1
    one=$(timed)
    remove_hosts
    make_hosts 3
    three=$(timed)
    rerun=$(timed)
    echo "fleet (Debian 13 rig hosts, $(nproc) cores): first converge 1 host $one s, 3 hosts $three s" \
      "(3 hosts/1 host $(python3 -c "print(round($three / $one, 2))")x), 3-host re-run $rerun s"
    ;;
  fleet-build)
    make_hosts 3
    each=$(timed -e comfyui_image_distribution=build_each)
    echo "build_each: $each s" >&2
    remove_hosts
    make_hosts 3
    once=$(timed -e comfyui_image_distribution=build_once -e comfyui_registry=comfyops-bench-0:5000/comfyops)
    echo "fleet-build (3 Debian 13 rig hosts, $(nproc) cores): first converge build_each $each s," \
      "build_once $once s (build_once/build_each $(python3 -c "print(round($once / $each, 2))")x)"
    ;;
  *) echo "usage: $0 docker|site|fleet|fleet-build" >&2; exit 2 ;;
esac
