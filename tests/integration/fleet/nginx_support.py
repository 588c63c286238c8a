"""Shared helpers of the fleet scenario's tests: host addresses, requests through the proxies, WebSockets."""
import base64
import os
import random
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import testinfra

TESTS = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(TESTS), str(TESTS / "contract"), str(TESTS / "integration")]

from emulator_helpers import WSClient  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
CONVERGE = TESTS.parent / "molecule" / "fleet" / "converge.yml"
AUTH = ("artist", "correct horse battery staple")
PROVIDED_CERT = "/etc/ssl/comfyops-test/proxy.crt"
SELFSIGNED_CERT = "/etc/ssl/comfyops/selfsigned.crt"
# the separate proxy's per-instance paths
PROXY_PATHS = ["fleet-gpu0/cpu0/", "fleet-gpu0/cpu1/", "fleet-gpu1/cpu0/"]


def host(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def address(name):
    """The test host's address on the rig network (the controller reaches it directly)."""
    return subprocess.check_output(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name], text=True).strip()


def graph():
    """A graph no instance has cached (a fresh colour), so every node runs and reports."""
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": random.randint(0, 0xFFFFFF)}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "nginx_test"}}}


def finished(prompt_id):
    return lambda m: m["type"] == "executing" and m["data"]["node"] is None and m["data"]["prompt_id"] == prompt_id


def wait_history(session, base, prompt_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = session.get(f"{base}history/{prompt_id}", timeout=10).json().get(prompt_id)
        if entry is not None:
            return entry
        time.sleep(0.1)
    raise TimeoutError(prompt_id)


def tls_ws(host_addr, port, path, auth=None, origin=None, timeout=10):
    """A WSClient over TLS (optionally with basic auth and an Origin, as a browser sends it): the handshake here,
    the framing from emulator_helpers."""
    raw = socket.create_connection((host_addr, port), timeout=timeout)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = context.wrap_socket(raw)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = ""
    if auth:
        extra = "Authorization: Basic " + base64.b64encode(":".join(auth).encode()).decode() + "\r\n"
    if origin:
        extra += f"Origin: {origin}\r\n"
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host_addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    client = WSClient.__new__(WSClient)
    client.sock, client._buffer = sock, b""
    head = client._read_until(b"\r\n\r\n").decode("latin-1")
    if not head.startswith("HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(head)
    return client


def client_id():
    return "nginx-test-" + uuid.uuid4().hex[:8]


# Every instance, asked on its GPU host directly (not through a proxy).
INSTANCES = {"fleet-gpu0": (8188, 8189), "fleet-gpu1": (8188,)}


def seen_by_an_instance(marker):
    """Whether any instance has `marker` (a prompt's client_id) in its queue or history."""
    for name, ports in INSTANCES.items():
        for port in ports:
            if marker in host(name).check_output(
                    f"curl -fsS http://127.0.0.1:{port}/queue http://127.0.0.1:{port}/history"):
                return True
    return False


def nginx_pids(h):
    """Master and worker PIDs (as in converge.yml's record): a reload replaces every worker, a restart the master too."""
    return h.check_output("pgrep -f '^nginx: '").split()


def nginx_master_and_workers(h):
    return h.check_output("pgrep -f '^nginx: master'"), set(h.check_output("pgrep -f '^nginx: worker'").split())
