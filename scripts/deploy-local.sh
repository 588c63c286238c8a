#!/usr/bin/env bash
# Deploy the whole stack (Docker, ComfyUI with the LTX-2 nodes, NGINX in front) into a disposable local systemd
# host (a container made by the test rig) and print what it deployed: proxy URL, endpoints, versions, node packs,
# health.
#   scripts/deploy-local.sh [--destroy] [extra ansible-playbook args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_HOME="$PWD/.ansible"

if [ "${1:-}" = "--destroy" ]; then
  ansible-playbook -i inventories/local scripts/rig/local-host.yml -e rig_state=absent
  echo "removed the disposable host comfyops-local"
  exit 0
fi
ansible-playbook -i inventories/local scripts/rig/local-host.yml
ansible-playbook -i inventories/local molecule/resources/prepare.yml
ansible-playbook -i inventories/local molecule/resources/prepare_comfyui_host.yml -e rig_comfyui=upstream
ansible-playbook -i inventories/local playbooks/site.yml "$@"
ansible-playbook -i inventories/local playbooks/status.yml
url=$(docker exec comfyops-local python3 -c 'import json; print(json.load(open("/etc/ansible/facts.d/comfyops.fact"))["nginx"]["url"])')
curl -fsS -o /dev/null "${url}system_stats"
echo "ComfyUI through NGINX: $url (answers from this machine; per instance: ${url}cpu0/, ...)"
