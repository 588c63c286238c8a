"""comfyui_image_distribution: build_once (molecule scenario fleet): fleet-gpu0 built the image and pushed it to
its registry; fleet-gpu1 runs exactly that image (the same image ID), pulled by digest, and did not build it.
Numbers and booleans of the nginx role typed on the command line change nothing on the separate proxy."""
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from failure_support import scenario_vars, typed_as_an_operator_would  # noqa: E402
from nginx_support import INVENTORY, host  # noqa: E402

GPU0, GPU1 = host("fleet-gpu0"), host("fleet-gpu1")
SITE = Path(__file__).resolve().parents[3] / "playbooks" / "site.yml"


def image(host):
    data = json.loads(host.check_output("docker inspect comfyui-cpu0"))[0]
    return data["Config"]["Image"], data["Image"]


def test_every_host_runs_the_build_hosts_image():
    (ref0, id0), (ref1, id1) = image(GPU0), image(GPU1)
    assert ref0 == ref1 and id0 == id1, (ref0, ref1, id0, id1)
    # fleet-gpu1 got it from the registry by digest (no build context was used there)
    digests = json.loads(GPU1.check_output("docker image inspect %s", ref1))[0]["RepoDigests"]
    assert any(d.startswith("fleet-gpu0:5000/comfyops/comfyui@sha256:") for d in digests), digests


def test_nginx_numbers_and_booleans_typed_on_the_command_line_change_nothing():
    typed = typed_as_an_operator_would(["nginx"], scenario_vars("fleet", "fleet-proxy"))
    assert "nginx_prompt_rate_burst=5" in typed and "nginx_hsts=true" in typed
    res = subprocess.run(["ansible-playbook", "-i", INVENTORY, "--limit", "fleet-proxy", "--tags", "nginx",
                          str(SITE), *typed],
                         check=False, capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and re.search(r"fleet-proxy +: ok=\d+ +changed=0 ", out), out
