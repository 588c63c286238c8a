from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
# cryptography comes with ansible-core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.comfyops.comfyui.plugins.module_utils import comfyui_api as api
from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import (
    ComfyUIClient,
    ComfyUIError,
    WaitTimeout,
    _join_url,
    _path_segment,
    excerpt,
    wait_until,
)


@pytest.mark.parametrize("base, path, expected", [
    ("http://h:8188", "/queue", "http://h:8188/queue"),
    ("http://h:8188/", "/queue", "http://h:8188/queue"),
    ("http://h:8188/", "queue", "http://h:8188/queue"),
    # a proxy sub-path must survive (urljoin would drop "gpu0" without the trailing slash)
    ("https://p/comfyui/gpu0", "/queue", "https://p/comfyui/gpu0/queue"),
    ("https://p/comfyui/gpu0/", "/models/checkpoints", "https://p/comfyui/gpu0/models/checkpoints"),
    ("http://h:8188", "", "http://h:8188"),
])
def test_join_url(base, path, expected):
    assert _join_url(base, path) == expected


def test_path_segment_quotes_spaces_and_slashes():
    assert _path_segment("Set VAE Decoder Noise") == "Set%20VAE%20Decoder%20Noise"
    assert _path_segment("a/b+c") == "a%2Fb%2Bc"


def test_excerpt_is_single_line_and_bounded():
    assert excerpt(b"500 Internal Server Error\n\nServer got itself in trouble") == \
        "500 Internal Server Error Server got itself in trouble"
    long = excerpt("x" * 1000, limit=10)
    assert long == "xxxxxxxxxx..."
    assert excerpt(b"\xff\xfeok") == "\ufffd\ufffdok"
    assert excerpt(None) == ""


@pytest.mark.parametrize("url", ["127.0.0.1:8188", "ftp://h/", "http://", "", None])
def test_client_rejects_non_http_urls(url):
    with pytest.raises(ValueError, match="not an http"):
        ComfyUIClient(url)


def test_get_json_and_raw(comfy):
    client = ComfyUIClient(comfy.url)
    assert client.get_json("/queue") == {"queue_running": [], "queue_pending": []}
    resp = client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert resp.body.startswith(b"<!doctype html>")


def test_object_info_single_class_with_spaces_and_unknown_class(comfy):
    client = ComfyUIClient(comfy.url)
    assert "Set VAE Decoder Noise" in client.object_info("Set VAE Decoder Noise")
    assert comfy.requests[-1]["path"] == "/object_info/Set VAE Decoder Noise"
    # an unknown class is 200 with {} in ComfyUI, not an error
    assert client.object_info("NoSuchNode") == {}


def test_models_folder(comfy):
    comfy.set("/models/latent_upscale_models", ["ltx-2.3-spatial-upscaler-x2-1.1.safetensors"])
    assert ComfyUIClient(comfy.url).models("latent_upscale_models") == ["ltx-2.3-spatial-upscaler-x2-1.1.safetensors"]


def test_post_json_sends_json_and_parses_answer(comfy):
    client = ComfyUIClient(comfy.url)
    answer = client.post_json("/prompt", {"prompt": {}, "client_id": "x"})
    assert answer["prompt_id"]
    sent = comfy.requests[-1]
    assert sent["method"] == "POST"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["body"] == b'{"prompt": {}, "client_id": "x"}'


def test_post_json_empty_answer_is_none(comfy):
    comfy.set("/interrupt", b"", content_type="text/plain")
    assert ComfyUIClient(comfy.url).post_json("/interrupt", {}) is None


def test_headers_and_basic_auth_are_sent(comfy):
    client = ComfyUIClient(comfy.url, headers={"X-Trace": "abc"}, url_username="ops", url_password="s3cret")
    client.get("/queue")
    headers = comfy.requests[-1]["headers"]
    assert headers["X-Trace"] == "abc"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"ops:s3cret").decode()
    assert headers["User-Agent"] == api.USER_AGENT


def test_no_auth_header_without_username(comfy):
    ComfyUIClient(comfy.url).get("/queue")
    assert "Authorization" not in comfy.requests[-1]["headers"]


def test_from_params_uses_module_options(comfy):
    params = dict(headers={"X-A": "1"}, url_username=None, url_password=None, validate_certs=True,
                  ca_path=None, timeout=3.0, use_proxy=False)
    client = ComfyUIClient.from_params(params, comfy.url)
    assert client.timeout == 3.0
    client.get("/queue")
    assert comfy.requests[-1]["headers"]["X-A"] == "1"


def test_http_500_carries_status_and_body_excerpt(comfy):
    comfy.set("/prompt", b"500 Internal Server Error\n\nServer got itself in trouble", status=500,
              content_type="text/plain")
    with pytest.raises(ComfyUIError) as exc:
        ComfyUIClient(comfy.url).post_json("/prompt", {})
    err = exc.value
    assert err.status == 500
    assert err.body == "500 Internal Server Error Server got itself in trouble"
    assert err.retryable
    assert str(err) == "POST %s/prompt: HTTP 500: 500 Internal Server Error Server got itself in trouble" % comfy.url


def test_http_404_is_not_retryable(comfy):
    with pytest.raises(ComfyUIError) as exc:
        ComfyUIClient(comfy.url).get_json("/models/nonexistent")
    assert exc.value.status == 404
    assert not exc.value.retryable
    assert "HTTP 404" in str(exc.value)


def test_non_json_answer(comfy):
    comfy.set("/system_stats", b"<html>maintenance</html>", content_type="text/html")
    with pytest.raises(ComfyUIError, match="answer is not JSON.*maintenance") as exc:
        ComfyUIClient(comfy.url).get_json("/system_stats")
    assert exc.value.status == 200
    assert not exc.value.retryable


def test_connection_refused(free_port):
    with pytest.raises(ComfyUIError, match="Connection refused") as exc:
        ComfyUIClient("http://127.0.0.1:%d" % free_port).get("/")
    assert exc.value.status is None
    assert exc.value.retryable


def test_per_request_timeout(comfy):
    comfy.set("/object_info", b"{}", delay=1.0)
    client = ComfyUIClient(comfy.url, timeout=30)
    t0 = time.monotonic()
    with pytest.raises(ComfyUIError, match="timed out") as exc:
        client.get("/object_info", timeout=0.2)
    assert time.monotonic() - t0 < 0.9
    assert exc.value.retryable


def test_connection_closed_without_answer(comfy):
    comfy.set("/v2/manager/reboot", close=True)
    with pytest.raises(ComfyUIError) as exc:
        ComfyUIClient(comfy.url).post_json("/v2/manager/reboot", {})
    assert exc.value.status is None


def test_ssl_context_is_built_once_per_settings():
    assert api.ssl_context(True, None) is api.ssl_context(True, None)
    assert api.ssl_context(False, None) is not api.ssl_context(True, None)
    assert api.shared_context(["https://a/", "http://b/"]) is api.ssl_context(True, None)
    plain = api.shared_context(["http://a/", "http://b/"])
    # trusts nothing: an unexpected redirect to https fails closed
    assert plain.verify_mode == ssl.CERT_REQUIRED
    assert plain.cert_store_stats()["x509_ca"] == 0


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 with a throwaway self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "comfyops-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"tls": true}')

    server = HTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "https://127.0.0.1:%d" % server.server_address[1], str(d / "cert.pem")
    server.shutdown()


def test_https_unknown_ca_fails_then_ca_path_or_no_validation_works(tls_server):
    url, ca = tls_server
    with pytest.raises(ComfyUIError, match="CERTIFICATE_VERIFY_FAILED"):
        ComfyUIClient(url).get_json("/")
    assert ComfyUIClient(url, ca_path=ca).get_json("/") == {"tls": True}
    assert ComfyUIClient(url, validate_certs=False).get_json("/") == {"tls": True}


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_until_retries_until_probe_succeeds():
    clock = FakeClock()
    answers = [ComfyUIError("refused"), ComfyUIError("HTTP 502", status=502), "ready"]

    def probe():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until(110.0, probe, interval=2.0, clock=clock.clock, sleep=clock.sleep) == "ready"
    assert clock.sleeps == [2.0, 2.0]


def test_wait_until_gives_up_at_deadline_without_overshooting():
    clock = FakeClock()
    calls = []

    def probe():
        calls.append(clock.now)
        raise ComfyUIError("GET /system_stats: Connection refused")

    with pytest.raises(WaitTimeout) as exc:
        wait_until(105.0, probe, interval=2.0, clock=clock.clock, sleep=clock.sleep)
    assert calls == [100.0, 102.0, 104.0, 105.0]
    assert clock.sleeps == [2.0, 2.0, 1.0]
    assert str(exc.value) == "gave up after 4 attempt(s): GET /system_stats: Connection refused"
    assert str(exc.value.last_error) == "GET /system_stats: Connection refused"


def test_wait_until_probes_once_when_deadline_already_passed():
    clock = FakeClock()
    with pytest.raises(WaitTimeout):
        wait_until(50.0, lambda: (x for x in ()).throw(ComfyUIError("down")), clock=clock.clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_wait_until_raises_non_retryable_at_once():
    clock = FakeClock()
    err = ComfyUIError("HTTP 401", status=401)

    def probe():
        raise err

    with pytest.raises(ComfyUIError) as exc:
        wait_until(1000.0, probe, clock=clock.clock, sleep=clock.sleep)
    assert exc.value is err
    assert clock.sleeps == []


def test_wait_until_with_real_server_that_starts_late(comfy_factory, free_port):
    # the port refuses connections until the server binds it
    threading.Timer(0.4, lambda: comfy_factory(free_port).start()).start()
    client = ComfyUIClient("http://127.0.0.1:%d" % free_port, timeout=1)
    t0 = time.monotonic()
    stats = wait_until(time.monotonic() + 10, lambda: client.get_json("/system_stats"), interval=0.1)
    assert stats["system"]["comfyui_version"] == "0.28.0"
    assert 0.3 < time.monotonic() - t0 < 5


def test_redirect_is_followed(comfy):
    # a proxy's /comfyui -> /comfyui/ style redirect: the direct path hands it to Request, which follows it
    comfy.set("/moved", b"", status=301, headers={"Location": "/queue"})
    assert ComfyUIClient(comfy.url).get_json("/moved") == json.loads(comfy.routes["/queue"].body)
    assert [r["path"] for r in comfy.requests] == ["/moved", "/moved", "/queue"]


def test_environment_proxy_is_honoured(comfy, monkeypatch):
    # use_proxy (the default) with http_proxy set: requests go to the proxy, like open_url does
    monkeypatch.setenv("http_proxy", comfy.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # a proxy is asked for the absolute URL
    comfy.set("http://comfyui.invalid:8188/queue", b'{"queue_running": [], "queue_pending": []}')
    client = ComfyUIClient("http://comfyui.invalid:8188")
    assert client.get_json("/queue") == {"queue_running": [], "queue_pending": []}
    assert [r["path"] for r in comfy.requests] == ["http://comfyui.invalid:8188/queue"]


def test_use_proxy_false_ignores_the_environment(comfy, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    client = ComfyUIClient(comfy.url, use_proxy=False)
    assert client.get("/queue").status == 200


def test_a_url_with_credentials_is_refused_without_repeating_the_password():
    from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import redact_url, url_problem
    problem = url_problem("https://operator:s3cret-sentinel@proxy.example/comfyui/")
    assert "url_username and url_password" in problem and "s3cret-sentinel" not in problem
    assert "operator:***@proxy.example" in problem
    assert url_problem("https://proxy.example/comfyui/") is None
    assert redact_url("http://u:p@h:1/x") == "http://u:***@h:1/x"
    with pytest.raises(ValueError) as err:
        ComfyUIClient("http://u:s3cret-sentinel@127.0.0.1:8188")
    assert "s3cret-sentinel" not in str(err.value)


def test_headers_are_never_logged():
    # they carry Authorization tokens; no_log keeps them out of -vvv invocation output
    assert api.comfyui_http_argument_spec()["headers"]["no_log"] is True
