"""nginx.org's repository (nginx_install_source: nginx_org) when apt cannot read it: the run fails naming the variable
and its value, puts the earlier source, key and pin back byte for byte (comfyops.comfyui._common's rollback, the same
for the docker and nvidia_container_toolkit roles), and NGINX keeps serving, not reloaded. nginx.org itself is not
reachable from the rig, so the rig's repository server stands in for a mirror: a wrong URL on it fails the run.

Re-runs the scenario's converge playbook on fleet-proxy only (no ComfyUI there, so the run is short).
"""
import requests
import urllib3
from nginx_support import AUTH, CONVERGE, address, host, nginx_pids
from failure_support import assert_fails_cleanly  # after nginx_support: it sets sys.path

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

PROXY = host("fleet-proxy")
P = address("fleet-proxy")
RIG = "http://comfyops-rig-repo"
SOURCE = "/etc/apt/sources.list.d/nginx-org.sources"
KEY = "/etc/apt/keyrings/nginx-org.asc"
PREFS = "/etc/apt/preferences.d/nginx-org"
WATCHED = [SOURCE, KEY, PREFS, "/etc/nginx/conf.d/comfyops-comfyui.conf", "/etc/ansible/facts.d/comfyops.fact"]
# An earlier nginx_org set-up that works, through a mirror (the rig's server, its stand-in Docker repository); its key
# carries an armour header, so its bytes differ from the key the failing run fetches (apt reads both).
EARLIER_SOURCE = f"Types: deb\nURIs: {RIG}/docker\nSuites: bookworm\nComponents: stable\nSigned-By: {KEY}\n"
EARLIER_PREFS = 'Package: nginx\nPin: origin "comfyops-rig-repo"\nPin-Priority: 900\n'


def snapshot(h):
    return h.run("sha256sum %s 2>&1" % " ".join(WATCHED)).stdout, nginx_pids(h)


def apt_reads_the_source():
    """apt-get update of this source alone, into lists of its own (the host's stay as they are): (worked without a
    warning, output); fetched as root, as _apt cannot enter /root."""
    res = PROXY.run(f"mkdir -p /root/only-nginx-org/lists/partial && cp {SOURCE} /root/only-nginx-org/ && apt-get update"
                    " -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/root/only-nginx-org"
                    " -o Dir::State::Lists=/root/only-nginx-org/lists -o APT::Sandbox::User=root")
    out = res.stdout + res.stderr
    return res.rc == 0 and "W:" not in out and "E:" not in out, out


def test_unreadable_repo_puts_back_the_source_key_and_pin():
    PROXY.run_expect([0], f"mkdir -p /etc/apt/keyrings && printf '%s' '{EARLIER_SOURCE}' > {SOURCE}"
                          f" && printf '%s' '{EARLIER_PREFS}' > {PREFS}"
                          f" && curl -fsS {RIG}/docker/gpg | sed '1a Comment: an earlier copy' > {KEY}")
    try:
        ok, out = apt_reads_the_source()
        assert ok, out
        url = f"{RIG}/nope"
        out = assert_fails_cleanly(CONVERGE, PROXY, snapshot,
                                   {"nginx_install_source": "nginx_org", "nginx_org_repo_url": url,
                                    "nginx_org_repo_key_url": f"{RIG}/docker/gpg", "nginx_org_repo_suite": "bookworm"},
                                   ["nginx role: nginx.org's apt repository is not usable", f"nginx_org_repo_url='{url}'",
                                    "were put back as they were"])
        # the run did replace all three (its own source, the fetched key, nginx.org's pin), so the unchanged
        # checksums prove the rollback
        for path in (SOURCE, KEY, PREFS):
            assert f"changed: [fleet-proxy] => (item={path})" in out, out
        assert PROXY.file(SOURCE).content_string == EARLIER_SOURCE
        ok, out = apt_reads_the_source()
        assert ok, out
        assert requests.get(f"https://{P}/comfyui/system_stats", auth=AUTH, verify=False, timeout=10).status_code == 200
    finally:
        PROXY.run_expect([0], f"rm -rf {SOURCE} {KEY} {PREFS} /root/only-nginx-org")
