"""Verify the nginx role (testinfra, run by `molecule verify`) with real clients from the controller.

fleet-gpu0: NGINX on the ComfyUI host (local mode, /comfyui/cpu0/, HTTP and self-signed HTTPS, allow-list, root
vhost on 8080, 60m body limit). fleet-proxy: a separate proxy in front of fleet-gpu0 and fleet-gpu1
(/comfyui/<host>/cpu0/, provided certificate, HTTP->HTTPS redirect, HSTS, basic auth, prompt rate limit), its
allowed origin the default one, https://fleet-proxy.
"""
import json
import ssl
import time

import pytest
import requests
import urllib3
from nginx_support import (AUTH, PROVIDED_CERT, PROXY_PATHS, SELFSIGNED_CERT, WSClient, address, client_id, finished,
                           graph, host, nginx_pids, seen_by_an_instance, tls_ws, wait_history)
from contract_support import transcript_messages  # after nginx_support: it sets sys.path

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

GPU0, PROXY = host("fleet-gpu0"), host("fleet-proxy")
G, P = address("fleet-gpu0"), address("fleet-proxy")
LOCAL = f"http://{G}/comfyui/"
REMOTE = f"https://{P}/comfyui/"
EVIL = "http://evil.example"
PROXY_ORIGIN = "https://fleet-proxy"  # what a browser on https://fleet-proxy/comfyui/ sends
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN",
                    "Content-Security-Policy": "frame-ancestors 'self'", "Referrer-Policy": "same-origin",
                    "Cross-Origin-Opener-Policy": "same-origin-allow-popups"}


def session():
    """Basic auth, the test certificates unchecked (trust_env off, or REQUESTS_CA_BUNDLE would override verify)."""
    s = requests.Session()
    s.auth, s.verify, s.trust_env = AUTH, False, False
    return s


@pytest.fixture
def proxy():
    return session()


def test_idempotence_run_reloaded_nothing():
    # Recorded after the first converge; the idempotence run in between must not have reloaded (new workers).
    for h in (GPU0, PROXY):
        assert h.file("/root/nginx_pids.txt").content_string.split() == nginx_pids(h)


def test_base_path_redirects_to_slash():
    r = requests.get(f"http://{G}/comfyui", allow_redirects=False, timeout=10)
    assert r.status_code == 301 and r.headers["Location"] == "/comfyui/"
    r = requests.get(f"http://{G}/comfyui/cpu1", allow_redirects=False, timeout=10)
    assert r.status_code == 301 and r.headers["Location"] == "/comfyui/cpu1/"


@pytest.mark.parametrize("path", ["", "cpu0/", "cpu1/"])
def test_http_through_the_local_proxy(path):
    r = requests.get(f"{LOCAL}{path}system_stats", timeout=10)
    assert r.status_code == 200
    assert r.json()["system"]["comfyui_version"] == "0.28.0"
    assert r.headers["Server"] == "nginx"  # server_tokens off
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(f"{LOCAL}{path}", timeout=10).status_code == 200  # the UI, prefix stripped


def test_per_instance_paths_reach_their_instance():
    s = requests.Session()
    for mine, other in (("cpu0/", "cpu1/"), ("cpu1/", "cpu0/")):
        r = s.post(f"{LOCAL}{mine}prompt", json={"prompt": graph()}, timeout=10)
        assert r.status_code == 200, r.text
        prompt_id = r.json()["prompt_id"]
        wait_history(s, f"{LOCAL}{mine}", prompt_id)
        assert prompt_id not in s.get(f"{LOCAL}{other}history/{prompt_id}", timeout=10).json()


def test_same_client_lands_on_the_same_instance():
    s = requests.Session()
    r = s.post(f"{LOCAL}prompt", json={"prompt": graph()}, timeout=10)
    assert r.status_code == 200, r.text
    prompt_id = r.json()["prompt_id"]
    wait_history(s, LOCAL, prompt_id)
    # New connections each time: only the hash on the client address keeps them on the instance with the history.
    for attempt in range(8):
        assert prompt_id in requests.get(f"{LOCAL}history/{prompt_id}", timeout=10).json()


@pytest.mark.parametrize("path", ["", "cpu1/"])
def test_websocket_prompt_full_message_sequence(path):
    cid = client_id()
    with WSClient(f"ws://{G}:80/comfyui/{path}ws?clientId={cid}", timeout=10) as ws:
        received = [ws.recv_json()]
        answer = requests.post(f"{LOCAL}{path}prompt", json={"prompt": graph(), "client_id": cid}, timeout=10)
        assert answer.status_code == 200, answer.text
        received += ws.collect_until(finished(answer.json()["prompt_id"]))
    assert received[0]["data"]["sid"] == cid
    assert [m["type"] for m in received] == [m["type"] for m in transcript_messages("ws_transcript.jsonl")]


def test_websocket_through_the_tls_proxy_with_auth():
    cid = client_id()
    ws = tls_ws(P, 443, f"/comfyui/fleet-gpu1/cpu0/ws?clientId={cid}", auth=AUTH)
    try:
        assert ws.recv_json()["type"] == "status"
        answer = session().post(f"{REMOTE}fleet-gpu1/cpu0/prompt", json={"prompt": graph(), "client_id": cid}, timeout=10)
        assert answer.status_code == 200, answer.text
        messages = ws.collect_until(finished(answer.json()["prompt_id"]))
        assert "execution_success" in [m["type"] for m in messages]
    finally:
        ws.close()
    with pytest.raises(ConnectionError, match="401"):
        tls_ws(P, 443, f"/comfyui/ws?clientId={cid}")


def test_post_with_browser_origin_passes_the_origin_check():
    body = json.dumps({"prompt": graph()})
    # A browser on the host itself: loopback Host, so ComfyUI compares Origin with the Host NGINX passes on.
    out = GPU0.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1/comfyui/prompt "
        f"-H 'Origin: http://127.0.0.1' -H 'Content-Type: application/json' -d '{body}'")
    assert out == "200"
    r = requests.post(f"{LOCAL}prompt", data=body, timeout=10,
                      headers={"Origin": f"http://{G}", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    # Control: the same browser request with the instance's own Host (what a proxy without Host $host sends) is refused.
    out = GPU0.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8188/prompt "
        f"-H 'Origin: http://{G}' -H 'Content-Type: application/json' -d '{body}'")
    assert out == "403"


def test_cross_origin_prompt_is_refused_before_any_instance_sees_it(proxy):
    """What any web page an artist visits could send: a "simple" text/plain POST (no CORS preflight) with the
    artist's cached credentials. NGINX refuses it; no instance queues it."""
    refused = client_id()
    body = json.dumps({"prompt": graph(), "client_id": refused})
    for url in (f"{REMOTE}prompt", f"{REMOTE}fleet-gpu1/cpu0/prompt", f"{REMOTE}fleet-gpu0/cpu1/api/prompt"):
        for origin in (EVIL, "null", "https://fleet-proxy.evil.example", "https://fleet-proxy:8443"):
            r = proxy.post(url, data=body, headers={"Origin": origin, "Content-Type": "text/plain"}, timeout=10)
            assert r.status_code == 403 and "nginx" in r.text, (url, origin, r.status_code, r.text[:200])
    # fleet-gpu0's proxy (allow-list, no basic auth) refuses it too
    r = requests.post(f"{LOCAL}prompt", data=body, headers={"Origin": EVIL, "Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 403 and "nginx" in r.text
    # Control: the proxy's own origin (its UI) is accepted, and the check below sees such a prompt.
    accepted = client_id()
    r = proxy.post(f"{REMOTE}fleet-gpu1/cpu0/prompt", data=json.dumps({"prompt": graph(), "client_id": accepted}),
                   headers={"Origin": PROXY_ORIGIN, "Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 200, r.text
    wait_history(proxy, f"{REMOTE}fleet-gpu1/cpu0/", r.json()["prompt_id"])
    assert seen_by_an_instance(accepted)
    assert not seen_by_an_instance(refused)


def test_cross_origin_upload_and_interrupt_are_refused(proxy):
    files = {"image": ("x.png", b"\x89PNG\r\n\x1a\n", "image/png")}
    r = proxy.post(f"{REMOTE}upload/image", files=files, data={"overwrite": "true"}, headers={"Origin": EVIL}, timeout=10)
    assert r.status_code == 403
    assert proxy.post(f"{REMOTE}interrupt", headers={"Origin": EVIL}, timeout=10).status_code == 403
    # reading stays open to every origin (a link to the UI from elsewhere works); the browser keeps the answer
    # from the other site's scripts
    assert proxy.get(f"{REMOTE}queue", headers={"Origin": EVIL}, timeout=10).status_code == 200


def test_prompt_without_origin_with_auth_works(proxy):
    """API clients (curl, n8n, the collection's modules) send no Origin: they need only the credentials."""
    r = proxy.post(f"{REMOTE}fleet-gpu1/cpu0/prompt", json={"prompt": graph()}, timeout=10)
    assert r.status_code == 200 and "Origin" not in r.request.headers
    wait_history(proxy, f"{REMOTE}fleet-gpu1/cpu0/", r.json()["prompt_id"])
    assert requests.post(f"{REMOTE}prompt", json={"prompt": graph()}, verify=False, timeout=10).status_code == 401


def test_cross_origin_websocket_is_refused_the_allowed_one_works():
    with pytest.raises(ConnectionError, match="403"):
        tls_ws(P, 443, f"/comfyui/ws?clientId={client_id()}", auth=AUTH, origin=EVIL)
    with pytest.raises(ConnectionError, match="403"):
        tls_ws(P, 443, f"/comfyui/fleet-gpu0/cpu0/ws?clientId={client_id()}", auth=AUTH, origin="null")
    cid = client_id()
    ws = tls_ws(P, 443, f"/comfyui/fleet-gpu1/cpu0/ws?clientId={cid}", auth=AUTH, origin=PROXY_ORIGIN)  # 101
    try:
        assert ws.recv_json()["data"]["sid"] == cid
        answer = session().post(f"{REMOTE}fleet-gpu1/cpu0/prompt", json={"prompt": graph(), "client_id": cid},
                                headers={"Origin": PROXY_ORIGIN}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert "execution_success" in [m["type"] for m in ws.collect_until(finished(answer.json()["prompt_id"]))]
    finally:
        ws.close()


def test_security_headers_on_answers_and_errors(proxy):
    answers = {
        200: proxy.get(f"{REMOTE}system_stats", timeout=10),
        401: requests.get(f"{REMOTE}system_stats", verify=False, timeout=10),
        403: proxy.post(f"{REMOTE}prompt", data="{}", headers={"Origin": EVIL}, timeout=10),
        301: proxy.get(REMOTE[:-1], allow_redirects=False, timeout=10),
    }
    for status, r in answers.items():
        assert r.status_code == status, (status, r.status_code)
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (status, name, r.headers)  # one value: ComfyUI's own are hidden
        assert r.headers["Permissions-Policy"].startswith("geolocation=()")


def test_upload_above_nginx_default_accepted_over_limit_refused():
    files = {"image": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (50 * 1024 * 1024), "image/png")}
    r = requests.post(f"{LOCAL}upload/image", files=files, data={"overwrite": "true"}, timeout=120)
    assert r.status_code == 200, r.text[:300]
    files = {"image": ("huge.png", b"\0" * (70 * 1024 * 1024), "image/png")}
    r = requests.post(f"{LOCAL}upload/image", files=files, timeout=120)
    assert r.status_code == 413 and "nginx" in r.text  # NGINX's limit (60m here), not ComfyUI's (100 MB)
    GPU0.run("rm -f /srv/comfyui/input/big.png")


def test_configured_values_in_nginx_T():
    conf = GPU0.check_output("nginx -T 2>/dev/null")
    for line in ["proxy_connect_timeout 60s;", "proxy_send_timeout 1800s;", "proxy_read_timeout 1800s;",
                 "client_max_body_size 60m;", "proxy_buffering off;", "proxy_http_version 1.1;",
                 "proxy_set_header Host $host;", "hash $remote_addr consistent;", "server_tokens off;",
                 "map $http_upgrade $comfyops_connection_upgrade {"]:
        assert line in conf, line
    assert "max_fails=3" in conf
    assert "client_max_body_size 10G;" in PROXY.check_output("nginx -T 2>/dev/null")


def test_root_vhost_serves_comfyui_at_slash():
    r = requests.get(f"https://{G}:8080/system_stats", verify=False, timeout=10)
    assert r.status_code == 200 and r.json()["system"]["comfyui_version"] == "0.28.0"


def served_cert(addr, port):
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((addr, port)))


def test_tls_serves_the_configured_certificates():
    assert served_cert(P, 443) == ssl.PEM_cert_to_DER_cert(PROXY.file(PROVIDED_CERT).content_string)
    assert served_cert(G, 443) == ssl.PEM_cert_to_DER_cert(GPU0.file(SELFSIGNED_CERT).content_string)
    san = GPU0.check_output(f"openssl x509 -noout -ext subjectAltName -in {SELFSIGNED_CERT}")
    assert "DNS:fleet-gpu0" in san and "IP Address:127.0.0.1" in san
    assert GPU0.file("/etc/ssl/comfyops/selfsigned.key").mode == 0o600


def test_http_redirects_to_https_with_hsts():
    r = requests.get(f"http://{P}/comfyui/queue?x=1", allow_redirects=False, timeout=10)
    assert r.status_code == 301 and r.headers["Location"] == f"https://{P}/comfyui/queue?x=1"
    r = requests.get(f"{REMOTE}system_stats", auth=AUTH, verify=False, timeout=10)
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in requests.get(f"https://{G}/comfyui/", verify=False, timeout=10).headers


def test_basic_auth(proxy):
    assert requests.get(f"{REMOTE}system_stats", verify=False, timeout=10).status_code == 401
    assert requests.get(f"{REMOTE}system_stats", auth=("artist", "wrong"), verify=False, timeout=10).status_code == 401
    assert proxy.get(f"{REMOTE}system_stats", timeout=10).status_code == 200
    f = PROXY.file("/etc/nginx/comfyops.htpasswd")
    assert (f.user, f.group, f.mode) == ("root", "www-data", 0o640)
    assert f.content_string.startswith("artist:$apr1$")
    # TLS is on for fleet-gpu0 too, but auth was switched off explicitly there.
    assert requests.get(f"https://{G}/comfyui/system_stats", verify=False, timeout=10).status_code == 200


@pytest.mark.parametrize("path", PROXY_PATHS)
def test_proxy_host_reaches_every_instance_of_both_gpu_hosts(proxy, path):
    r = proxy.post(f"{REMOTE}{path}prompt", json={"prompt": graph()}, timeout=10)
    assert r.status_code == 200, r.text
    prompt_id = r.json()["prompt_id"]
    wait_history(proxy, f"{REMOTE}{path}", prompt_id)
    for other in PROXY_PATHS:
        if other != path:
            assert prompt_id not in proxy.get(f"{REMOTE}{other}history/{prompt_id}", timeout=10).json()


def test_proxy_sticky_over_three_instances(proxy):
    r = proxy.post(f"{REMOTE}prompt", json={"prompt": graph()}, timeout=10)
    prompt_id = r.json()["prompt_id"]
    wait_history(proxy, REMOTE, prompt_id)
    for attempt in range(8):
        assert prompt_id in requests.get(f"{REMOTE}history/{prompt_id}", auth=AUTH, verify=False, timeout=10).json()


def test_prompt_rate_limit(proxy):
    time.sleep(1.5)
    codes = [proxy.post(f"{REMOTE}prompt", json={"prompt": {}}, timeout=10).status_code for request_number in range(20)]
    assert 429 in codes and 400 in codes, codes  # 400: ComfyUI's own answer to an empty graph
    assert all(proxy.get(f"{REMOTE}queue", timeout=10).status_code == 200 for request_number in range(20))


def test_dead_instance_is_skipped():
    GPU0.check_output("docker stop -t 5 comfyui-cpu1")
    try:
        assert all(requests.get(f"{LOCAL}system_stats", timeout=10).status_code == 200 for request_number in range(6))
    finally:
        GPU0.check_output("docker start comfyui-cpu1")
        GPU0.run_expect([0], "for i in $(seq 60); do curl -fs http://127.0.0.1:8189/system_stats >/dev/null && exit 0; "
                             "sleep 1; done; exit 1")


def test_state_records_proxy_urls_and_keeps_comfyui():
    state = json.loads(GPU0.file("/etc/ansible/facts.d/comfyops.fact").content_string)
    assert [i["name"] for i in state["comfyui"]["instances"]] == ["comfyui-cpu0", "comfyui-cpu1"]
    assert state["nginx"]["url"] == "https://fleet-gpu0/comfyui/"
    assert state["nginx"]["root_url"] == "https://fleet-gpu0:8080/"
    assert [i["url"] for i in state["nginx"]["instances"]] == ["https://fleet-gpu0/comfyui/cpu0/",
                                                               "https://fleet-gpu0/comfyui/cpu1/"]
    state = json.loads(PROXY.file("/etc/ansible/facts.d/comfyops.fact").content_string)
    assert sorted(state) == ["format", "nginx"]  # the proxy records no comfyui section
    assert [i["url"] for i in state["nginx"]["instances"]] == [f"https://fleet-proxy/comfyui/{p}" for p in PROXY_PATHS]
    assert state["nginx"]["basic_auth"] is True and "artist" not in json.dumps(state)
