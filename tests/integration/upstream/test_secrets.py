"""Secrets never appear in output, diffs, files other than the one that holds them, docker inspect or image
history (molecule scenario upstream). The scenario's secrets: a container environment value (comfyui_env) and
the basic-auth password of NGINX; both reach where they are needed, and nowhere else.
"""
import os
import subprocess

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
SENTINELS = ["env-sentinel-7c1e", "upstream scenario secret"]


def test_a_verbose_check_run_with_diffs_shows_no_secret(host):
    res = subprocess.run(["ansible-playbook", "-i", INVENTORY, "comfyops.comfyui.site", "--check", "--diff", "-vvv",
                          "-e", '{"comfyui_env": {"COMFYOPS_TEST_TOKEN": "env-sentinel-7c1e", "EXTRA": "1"}}'],
                         check=False, capture_output=True, text=True, timeout=1200)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert "runtime.env" in out  # the env file's task ran (and would change: EXTRA is new) ...
    for secret in SENTINELS:
        assert secret not in out  # ... without its content in the diff or -vvv's module arguments


def test_the_secret_reaches_comfyui_and_only_the_file_that_holds_it(host):
    # delivered: in the environment of ComfyUI's own process
    assert "COMFYOPS_TEST_TOKEN=env-sentinel-7c1e" in host.check_output(
        "docker exec comfyui-cpu0 cat /proc/1/environ | tr '\\\\0' '\\\\n'")
    env_file = host.file("/opt/comfyops/comfyui/runtime.env")
    assert env_file.mode == 0o640 and env_file.user == "root" and env_file.gid == 10001
    # nowhere else: the record, host-only state, compose files, docker inspect, the image's history
    places = {
        "record": "cat /etc/ansible/facts.d/comfyops.fact",
        "state": "grep -rI . /var/lib/comfyops /srv/comfyui/.comfyops --exclude-dir=packs 2>/dev/null || true",
        "compose": "cat /opt/comfyops/comfyui/compose.yml",
        "inspect": "docker inspect $(docker ps -aq)",
        "history": "docker history --no-trunc $(docker inspect -f '{{.Config.Image}}' comfyui-cpu0)",
        "nginx": "cat /etc/nginx/conf.d/*.conf /etc/nginx/comfyops.htpasswd",
    }
    for where, command in places.items():
        text = host.check_output(command)
        for secret in SENTINELS:
            assert secret not in text, "%s found in %s" % (secret, where)
