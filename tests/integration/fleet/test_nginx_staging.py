"""Changes go live only after `nginx -t` passed, by a reload; bad input fails in preflight and changes nothing.

Re-runs the scenario's converge playbook on fleet-proxy only (it runs no ComfyUI, so the runs are short).
"""
import json
import shlex

import pytest
import requests
from nginx_support import AUTH, CONVERGE, address, host, nginx_master_and_workers, nginx_pids
from failure_support import assert_fails_cleanly, run_playbook  # after nginx_support: it sets sys.path

PROXY = host("fleet-proxy")
GPU1 = host("fleet-gpu1")
FACT = "/etc/ansible/facts.d/comfyops.fact"
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


def test_listening_beyond_loopback_without_auth_fails_preflight():
    # The role's defaults (0.0.0.0 and [::], no TLS, so basic auth off by default; no allow-list, no client CA)
    fails_cleanly({"nginx_tls_mode": "none"},
                  "NGINX would listen on 0.0.0.0, [::] (nginx_listen_addresses, beyond loopback) without authentication",
                  "nginx_basic_auth_users", "nginx_allow: [10.0.0.0/8]", "nginx_tls_client_ca",
                  "nginx_allow_anonymous: true")


def test_settings_carrying_nginx_syntax_fail_preflight():
    # one run: every bad setting is reported at once (tests/unit/plugins/filter/test_nginx.py has the whole table)
    fails_cleanly({"nginx_server_name": "fleet-proxy; return 200 pwned", "nginx_allow": ["all"],
                   "nginx_basic_auth_realm": "off", "nginx_proxy_read_timeout": "30m; proxy_pass http://evil",
                   "nginx_security_headers": {"X-Test": "a\r\nSet-Cookie: s=1"}},
                  "nginx_server_name='fleet-proxy; return 200 pwned' has 'fleet-proxy;'",
                  "nginx_allow entry 'all' is not an IPv4/IPv6 address or CIDR",
                  "nginx_basic_auth_realm='off' must not be 'off'",
                  "nginx_proxy_read_timeout='30m; proxy_pass http://evil' must be an NGINX time",
                  "nginx_security_headers has a value for X-Test that must not contain control characters")


def test_upstream_address_carrying_nginx_syntax_fails_preflight():
    fails_cleanly({"nginx_upstream_address": "10.0.0.1; }"},
                  "host fleet-gpu0: its address '10.0.0.1; }' (nginx_upstream_address")


@pytest.mark.parametrize("damage, expected", [
    # NGINX syntax in an instance URL of a GPU host's fact file
    (lambda state: state["comfyui"]["instances"][0].update(url="http://127.0.0.1:8188; } server { listen 9999; #"),
     "comfyui.instances[0]: url 'http://127.0.0.1:8188; } server { listen 9999; #' is not an http URL"),
    (None, "deployment record " + FACT + " is not valid JSON"),  # truncated
])
def test_hostile_or_broken_fact_file_on_a_gpu_host_fails_preflight(damage, expected):
    original = GPU1.file(FACT).content_string
    if damage:
        state = json.loads(original)
        damage(state)
        text = json.dumps(state)
    else:
        text = original[:len(original) // 2]
    GPU1.check_output(f"cp {FACT} /root/comfyops.fact.orig")
    try:
        GPU1.check_output(f"printf %s {shlex.quote(text)} > {FACT}")
        fails_cleanly({}, expected, "re-run the comfyui role on fleet-gpu1")
        assert "9999" not in PROXY.check_output("nginx -T 2>/dev/null")
    finally:
        GPU1.check_output(f"cp /root/comfyops.fact.orig {FACT}")
    assert GPU1.file(FACT).content_string == original


def test_client_certificates():
    """With nginx_tls_client_ca (and basic auth off) only clients with a certificate from that CA get through."""
    PROXY.check_output(
        "set -e; mkdir -p /root/clientca; cd /root/clientca;"
        " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca"
        " -keyout ca.key -out ca.crt 2>/dev/null;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=artist -keyout client.key"
        " -out client.csr 2>/dev/null;"
        " openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt 2>/dev/null")
    curl = "curl -sk -o /dev/null -w '%{http_code}' "
    try:
        # site.yml's check through the proxy has no client certificate: skipped here
        res = run_playbook(CONVERGE, PROXY, {"nginx_tls_client_ca": "/root/clientca/ca.crt", "nginx_basic_auth": False},
                           options=["--skip-tags", "verify"], timeout=900)
        assert res.returncode == 0, res.stdout + res.stderr
        assert PROXY.check_output(curl + "https://127.0.0.1/comfyui/system_stats") == "400"  # no certificate
        assert PROXY.check_output(curl + "--cert /root/clientca/client.crt --key /root/clientca/client.key "
                                  "https://127.0.0.1/comfyui/system_stats") == "200"
        # a certificate from another CA (the proxy's own) is refused
        assert PROXY.check_output(curl + "--cert /etc/ssl/comfyops-test/proxy.crt --key /etc/ssl/comfyops-test/proxy.key "
                                  "https://127.0.0.1/comfyui/system_stats") == "400"
        assert PROXY.check_output(curl + "http://127.0.0.1/comfyui/system_stats") == "301"  # to HTTPS
    finally:
        rc, out = converge()
        assert rc == 0, out
    assert serving()
