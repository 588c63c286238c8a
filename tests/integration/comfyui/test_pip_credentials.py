"""An index that needs a login (molecule scenario comfyui): the scenario's pip index is the rig's copy behind basic
auth, and comfyui_pip_index_credentials holds its login. pip gets it in the image build as a BuildKit secret; the
login is nowhere else: not in output (-vvv --diff), argv, the Dockerfile, the image's history or files, docker
inspect, the record or the host's files. A wrong login fails the build and leaves the instances as they were.
Runs last of the scenario's tests: its rebuild leaves the instances on a new image.
"""
import base64
import os
import sys
import urllib.request
from pathlib import Path

import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from failure_support import assert_fails_cleanly, run_playbook, scenario_vars  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
CONVERGE = Path(__file__).resolve().parents[3] / "molecule" / "comfyui" / "converge.yml"
LOGIN = scenario_vars("comfyui")["comfyui_pip_index_credentials"][0]
PASSWORD = LOGIN["password"]
WRONG = "pip-wrong-sentinel-81d0"
NETRC = "/var/lib/comfyops/comfyui/pip-netrc"
# what finds the password in a host command without being it: modules log their command lines in the journal
FINDS_PASSWORD = "%s[%s]" % (PASSWORD[:-1], PASSWORD[-1])


def index_url(host):
    ip = host.check_output("getent hosts comfyops-rig-repo").split()[0]
    return "http://%s/private/pypi/simple/comfyops-probe-dep/" % ip


def running_image(host):
    return host.check_output("docker inspect -f '{{.Config.Image}}' comfyui-cpu0")


def places_without_the_login(host, image):
    """Every place on the host a login could leak to, each with what it holds."""
    places = {
        "build files": "cat /opt/comfyops/comfyui/build/Dockerfile* /opt/comfyops/comfyui/build/constraints.txt",
        "record": "cat /etc/ansible/facts.d/comfyops.fact",
        "state": "grep -rI . /var/lib/comfyops /srv/comfyui/.comfyops --exclude-dir=packs 2>/dev/null || true",
        "compose": "cat /opt/comfyops/comfyui/compose.yml /opt/comfyops/comfyui/runtime.env",
        "inspect": "docker inspect $(docker ps -aq) %s" % image,
        "history": "docker history --no-trunc %s" % image,
        # every layer's files, unpacked: a netrc left behind, pip's cache or config
        "image files": "docker save %s | tar -xO | grep -ac -- '%s' || true" % (image, FINDS_PASSWORD),
    }
    return {where: host.check_output(command) for where, command in places.items()}


def assert_login_nowhere(host, image):
    for where, text in places_without_the_login(host, image).items():
        if where == "image files":
            assert text.strip() == "0", "the login is in a layer of %s" % image
        else:
            assert PASSWORD not in text and WRONG not in text, "the login is in the %s" % where
    assert not host.file(NETRC).exists  # on the host only while a build runs


def test_the_index_admits_only_the_login(host):
    url = index_url(host)
    assert host.check_output("curl -s -o /dev/null -w '%%{http_code}' %s" % url) == "401"
    # with the login (from here, the controller, also on the rig's network: the host's command lines are logged)
    login = base64.b64encode(("%s:%s" % (LOGIN["username"], PASSWORD)).encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": "Basic " + login})
    with urllib.request.urlopen(request, timeout=30) as response:  # nosec: the rig's own server
        assert "comfyops_probe_dep-1.0.0" in response.read().decode()


def test_the_build_used_the_login_and_kept_it(host):
    image = running_image(host)
    # the probe pack's requirement exists only on the index behind the login
    host.run_expect([0], "docker exec comfyui-cpu0 python3 -c 'import comfyops_probe_dep'")
    dockerfile = host.file("/opt/comfyops/comfyui/build/Dockerfile").content_string
    assert dockerfile.count("--mount=type=secret,id=pip_netrc,required=true") == 3  # requirements, manager, packs
    assert "NETRC=/run/secrets/pip_netrc PIP_NO_INPUT=1 python3 -m pip install" in dockerfile
    # BuildKit ran the pip steps with the secret mounted: it removed the mount point after the step
    host.run_expect([1, 2], "docker run --rm --entrypoint ls %s /run/secrets/pip_netrc" % image)
    assert_login_nowhere(host, image)


def test_a_wrong_login_fails_the_build_and_changes_nothing(host):
    before = running_image(host)
    wrong = dict(LOGIN, password=WRONG)
    # a new build input, so the build runs (and fails at the first pip step that needs the index)
    out = assert_fails_cleanly(
        CONVERGE, host, lambda h: (running_image(h), h.check_output("docker inspect -f '{{.State.StartedAt}}' "
                                                                    "comfyui-cpu0 comfyui-cpu1")),
        {"comfyui_pip_index_credentials": [wrong], "comfyui_build_env": {"COMFYOPS_LOGIN_TEST": "wrong"}},
        ["from versions: none", "the instances keep their image",
         "check the entry of that index host in comfyui_pip_index_credentials"])
    assert WRONG not in out and PASSWORD not in out
    assert running_image(host) == before
    assert_login_nowhere(host, before)


def test_a_verbose_run_with_diffs_builds_with_the_login_and_shows_none(host):
    before = running_image(host)
    res = run_playbook(CONVERGE, host, {"comfyui_build_env": {"COMFYOPS_LOGIN_TEST": "rebuild"}},
                       options=["-vvv", "--diff"], timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert "Write the package index logins for the build" in out and "id=pip_netrc,src=" + NETRC in out
    assert PASSWORD not in out
    after = running_image(host)
    assert after != before  # rebuilt (the new build input) and rolled out
    host.run_expect([0], "docker exec comfyui-cpu0 python3 -c 'import comfyops_probe_dep'")
    assert_login_nowhere(host, after)
    # the host's journal, where modules log their arguments: the logins' task logged none
    assert host.check_output("journalctl -q --no-pager | grep -c -- '%s' || true" % FINDS_PASSWORD) == "0"
