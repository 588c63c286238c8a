"""Changes go live only after `nginx -t` passed, by a reload; bad input fails in preflight and changes nothing.

Re-runs the scenario's converge playbook on fleet-proxy only (it runs no ComfyUI, so the runs are short).
"""
import requests
from nginx_support import AUTH, CONVERGE, address, host, nginx_master_and_workers, nginx_pids
from failure_support import assert_fails_cleanly, run_playbook  # after nginx_support: it sets sys.path

PROXY = host("fleet-proxy")
P = address("fleet-proxy")
CONF = "/etc/nginx/conf.d/comfyops-comfyui.conf"


def fingerprint(h):
    return h.check_output(f"sha256sum {CONF} /etc/ansible/facts.d/comfyops.fact"), nginx_pids(h)


def serving():
    return requests.get(f"https://{P}/comfyui/system_stats", auth=AUTH, verify=False, timeout=10).status_code == 200


def fails_cleanly(extra_vars, *expected):
    assert_fails_cleanly(CONVERGE, PROXY, fingerprint, extra_vars, expected)
    assert serving()


def converge(extra_vars=None):
    res = run_playbook(CONVERGE, PROXY, extra_vars, timeout=900)
    return res.returncode, res.stdout + res.stderr


def test_broken_directive_keeps_the_old_config_live():
    fails_cleanly({"nginx_extra_directives": ["this_is_not_a_directive on;"]},
                  'unknown directive "this_is_not_a_directive"', CONF, "previous one stays live")
    assert not PROXY.file(CONF).contains("this_is_not_a_directive")


def test_change_is_reloaded_not_restarted():
    master, workers = nginx_master_and_workers(PROXY)
    try:
        rc, out = converge({"nginx_proxy_read_timeout": "1799s"})
        assert rc == 0, out
        assert "proxy_read_timeout 1799s;" in PROXY.check_output("nginx -T 2>/dev/null")
        new_master, new_workers = nginx_master_and_workers(PROXY)
        assert new_master == master and not new_workers & workers
    finally:
        rc, out = converge()
        assert rc == 0, out
    assert serving()


def test_auth_without_users():
    fails_cleanly({"nginx_basic_auth_users": []}, "nginx_basic_auth_users is empty")


def test_certificate_and_key_mismatch():
    PROXY.check_output("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out /root/other.key")
    fails_cleanly({"nginx_tls_certificate_key": "/root/other.key"},
                  "nginx_tls_certificate_key (/root/other.key)", "not issued for this key")


def test_port_clash():
    fails_cleanly({"nginx_https_port": 80}, "port clash")
