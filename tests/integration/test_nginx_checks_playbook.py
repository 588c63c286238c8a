"""The nginx role's setting checks (roles/nginx/tasks/checks.yml, the first thing its preflight does) through
ansible-playbook: one run, one local "host" per case, each with its own variables, so each case's verdict and
message is the role's own. The checks touch no host; tests/integration/fleet/test_nginx_staging.py shows on a
real proxy that a failing check leaves the config, the state and the running NGINX as they were.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from role_checks import check_case, verdicts

ROOT = Path(__file__).resolve().parents[2]
TLS = {"nginx_tls_mode": "selfsigned"}
USERS = {"nginx_basic_auth_users": [{"name": "artist", "password": "s3cret-sentinel"}]}

# name: (variables, None when the checks pass, else texts the failure says)
CASES = {
    # The authentication rule: beyond loopback, one of basic auth, allow-list, client certificates, or on purpose.
    "defaults": ({}, ["NGINX would listen on 0.0.0.0, [::] (nginx_listen_addresses, beyond loopback) without "
                      "authentication", "nginx_allow_anonymous: true", "nginx_allow: [10.0.0.0/8]",
                      "nginx_tls_client_ca", "nginx_basic_auth_users"]),
    "one-public-address": ({"nginx_listen_addresses": ["127.0.0.1", "192.0.2.10"]},
                           ["NGINX would listen on 192.0.2.10 (nginx_listen_addresses"]),
    "loopback-only": ({"nginx_listen_addresses": ["127.0.0.1", "[::1]"]}, None),
    "anonymous-on-purpose": ({"nginx_allow_anonymous": True}, None),
    "allow-list": ({"nginx_allow": ["10.0.0.0/8"]}, None),
    "basic-auth-with-tls": ({**TLS, **USERS}, None),
    "basic-auth-without-tls": ({"nginx_basic_auth": True, **USERS}, None),
    "tls-but-auth-switched-off": ({**TLS, "nginx_basic_auth": False}, ["without authentication"]),
    "tls-auth-no-users": (TLS, ["nginx_basic_auth_users is empty"]),
    "client-certificates": ({**TLS, "nginx_basic_auth": False, "nginx_tls_client_ca": "/etc/ssl/ca.pem"}, None),
    "client-certificates-without-tls": ({"nginx_tls_client_ca": "/etc/ssl/ca.pem"},
                                        ["nginx_tls_client_ca needs TLS"]),
    "allow-everyone-is-no-allow-list": ({"nginx_allow": ["0.0.0.0/0"]}, ["nginx_allow entry '0.0.0.0/0' allows every client"]),
    "allow-all-keyword": ({"nginx_allow": ["all"]}, ["nginx_allow entry 'all' is not an IPv4/IPv6 address or CIDR"]),
    # Values that would carry NGINX syntax into the config.
    "server-name-injection": ({"nginx_allow_anonymous": True, "nginx_server_name": "a.example;\n}\nserver {"},
                              ["nginx_server_name='a.example;\\n}\\nserver {' must not contain control characters"]),
    "realm-off": ({**TLS, **USERS, "nginx_basic_auth_realm": "off"}, ["nginx_basic_auth_realm='off' must not be 'off'"]),
    "realm-quote": ({**TLS, **USERS, "nginx_basic_auth_realm": 'x"; auth_basic off; "'},
                    ["nginx_basic_auth_realm='x\"; auth_basic off; \"' must not contain \""]),
    "header-newline": ({"nginx_allow_anonymous": True, "nginx_security_headers": {"X-A": "1\r\nSet-Cookie: s=1"}},
                       ["nginx_security_headers has a value for X-A that must not contain control characters"]),
    "port-range": ({"nginx_allow_anonymous": True, "nginx_http_port": 70000, "nginx_root_vhost_port": 0},
                   ["nginx_http_port=70000 must be between 1 and 65535", "nginx_root_vhost_port=0 must be between"]),
    "public-host-injection": ({"nginx_allow_anonymous": True, "nginx_public_host": "h; }"},
                              ["nginx_public_host='h; }' is not an IPv4 address, [IPv6] address or DNS name"]),
    "origin-with-slash": ({"nginx_allow_anonymous": True, "nginx_allowed_origins": ["https://comfy.example.com/"]},
                          ["nginx_allowed_origins entry 'https://comfy.example.com/' is not what a browser sends: "
                           "write https://comfy.example.com"]),
    "origin-injection": ({"nginx_allow_anonymous": True, "nginx_allowed_origins": ['https://a.example" 1; default 1; "']},
                         ["nginx_allowed_origins entry"]),
    "certificate-path-injection": ({**TLS, **USERS, "nginx_tls_selfsigned_dir": "/etc/ssl/x; ssl_verify_client off"},
                                   ["nginx_tls_selfsigned_dir='/etc/ssl/x; ssl_verify_client off' must be an absolute path"]),
    "listen-bare-ipv6": ({"nginx_allow_anonymous": True, "nginx_listen_addresses": ["::"]},
                         ["nginx_listen_addresses entry '::' is an IPv6 address without brackets: write [::]"]),
    # Default origins derived from the public host: checked and valid for IPv6 too.
    "ipv6-public-host": ({"nginx_allow_anonymous": True, "nginx_public_host": "fd00::1"}, None),
}


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    return verdicts("nginx", CASES, tmp_path_factory.mktemp("nginx-checks"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_case(found, case):
    check_case("nginx", CASES, found, case)


def test_no_secret_and_no_traceback_in_the_output(found):
    assert "s3cret-sentinel" not in found["_output"]
    assert "Traceback" not in found["_output"]
