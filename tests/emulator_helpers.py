"""Run the ComfyUI emulator (tests/fixtures/comfyui_emulator) from tests, and talk to it.

Typical use::

    from emulator_helpers import start_emulator

    def test_something(tmp_path):
        with start_emulator(tmp_path, custom_nodes=["ansible_probe_nodes"]) as emu:
            assert "AnsibleProbeNode" in emu.get_json("/object_info")

start_emulator() copies the emulator tree plus the chosen node packs (names of folders/files in
tests/fixtures/node_packs, or absolute paths) to <workdir>/ComfyUI, starts
``python main.py --listen 127.0.0.1 --port P --cpu <args>`` there with stdout+stderr going to
<workdir>/comfyui.log, waits until GET / answers 200, and yields an Emulator with .url, .port,
.process, .log_path and .root. On exit it sends SIGINT (a clean "Stopped server" exit) and kills
the process if it has not stopped after 10 s; either way the process is reaped.

Every emulator starts through popen(), which gives the child SIGINT's default action whatever this
process inherited: a shell starts background jobs (`nohup scripts/test.sh &`) with SIGINT ignored,
exec keeps that, and the emulator, like ComfyUI, would then never stop on SIGINT. Code that starts
an emulator by hand stops it with stop_process() in a `finally`.

Also here: free_port(), http_request() (plain http.client, returns the status for 4xx/5xx
instead of raising), encode_multipart(), and WSClient, a minimal RFC 6455 client for /ws.
The emulator's own switches (COMFYUI_EMULATOR_STARTUP_DELAY, COMFYUI_EMULATOR_FAIL, ...) are
described in tests/fixtures/comfyui_emulator/README.md; pass them with env={...}.
"""
import base64
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
EMULATOR_DIR = TESTS_DIR / "fixtures" / "comfyui_emulator"
NODE_PACKS_DIR = TESTS_DIR / "fixtures" / "node_packs"
REFERENCE_DIR = TESTS_DIR / "fixtures" / "reference" / "comfyui-api"


class EmulatorStartError(RuntimeError):
    pass


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class HTTPResult:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


def http_request(base_url, method, path, body=None, headers=None, timeout=10):
    """One HTTP request; dict/list bodies are sent as JSON. Never raises for HTTP error statuses."""
    parsed = urllib.parse.urlsplit(base_url)
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return HTTPResult(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def encode_multipart(fields=None, files=None):
    """(body, content type) for multipart/form-data; files maps a field to (filename, bytes, mime type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, mime) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {mime}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class WSClient:
    """Minimal WebSocket client: masked text frames out, text/binary frames in."""

    def __init__(self, url, timeout=10):
        parsed = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        target = parsed.path + ("?" + parsed.query if parsed.query else "")
        self.sock.sendall((f"GET {target} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self._buffer = b""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        expected = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if not head.startswith("HTTP/1.1 101") or expected.decode() not in head:
            raise ConnectionError(f"WebSocket handshake failed: {head!r}")

    def _read_until(self, marker):
        while marker not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(marker, 1)
        return head

    def _read_exact(self, n):
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send_text(self, text):
        payload = text.encode("utf-8")
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x81])
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", length)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self, timeout=10):
        """(opcode, payload): 1 = text (str), 2 = binary (bytes), 8 = close."""
        self.sock.settimeout(timeout)
        b1, b2 = self._read_exact(2)
        length = b2 & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read_exact(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read_exact(8))[0]
        payload = self._read_exact(length)
        opcode = b1 & 0x0F
        return opcode, payload.decode("utf-8") if opcode == 1 else payload

    def recv_json(self, timeout=10):
        """The next text message as JSON (binary frames are skipped)."""
        while True:
            opcode, payload = self.recv(timeout)
            if opcode == 1:
                return json.loads(payload)
            if opcode == 8:
                raise ConnectionError("server closed the WebSocket")

    def collect_until(self, predicate, timeout=20):
        """Text messages up to and including the first one for which predicate(msg) is true."""
        deadline = time.monotonic() + timeout
        messages = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message; got {[m['type'] for m in messages]}")
            messages.append(self.recv_json(remaining))
            if predicate(messages[-1]):
                return messages

    def close(self):
        with contextlib.suppress(OSError):
            mask = os.urandom(4)
            self.sock.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")))
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Emulator:
    def __init__(self, root, port, process, log_path):
        self.root = Path(root)
        self.port = port
        self.process = process
        self.log_path = Path(log_path)
        self.url = f"http://127.0.0.1:{port}"

    def request(self, method, path, body=None, headers=None, timeout=10):
        return http_request(self.url, method, path, body=body, headers=headers, timeout=timeout)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def get_json(self, path):
        result = self.get(path)
        assert result.status == 200, f"GET {path} -> {result.status}: {result.body[:300]!r}"
        return result.json()

    def post_json(self, path, data, **kwargs):
        return self.request("POST", path, body=data, **kwargs)

    def ws(self, client_id=None, timeout=10):
        query = f"?clientId={client_id}" if client_id else ""
        return WSClient(f"ws://127.0.0.1:{self.port}/ws{query}", timeout=timeout)

    def log_text(self):
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_history(self, prompt_id, timeout=20):
        """The /history entry of a prompt once it has finished (successfully or not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None:
                return entry
            time.sleep(0.02)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")

    def stop(self, sig=signal.SIGINT, timeout=10):
        """Signal the process and wait; kills it after timeout. Returns the exit status."""
        return stop_process(self.process, sig, timeout)


def stop_process(process, sig=signal.SIGINT, timeout=10):
    """Signal process and reap it; SIGKILL if it has not exited after timeout. Returns the exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def prepare_tree(workdir, custom_nodes=(), version=None):
    """Copy the emulator and the given node packs to <workdir>/ComfyUI; returns that path."""
    root = Path(workdir) / "ComfyUI"
    shutil.copytree(EMULATOR_DIR, root, ignore=shutil.ignore_patterns("__pycache__", "user", "temp"))
    for pack in custom_nodes:
        source = Path(pack) if os.path.isabs(pack) else NODE_PACKS_DIR / pack
        target = root / "custom_nodes" / source.name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    if version is not None:
        (root / "comfyui_version.py").write_text(f'__version__ = "{version}"\n', encoding="utf-8")
    return root


def emulator_command(port, args=(), cpu=True):
    return [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port)] \
        + (["--cpu"] if cpu else []) + [str(a) for a in args]


def _default_sigint():
    # runs in the child between fork and exec: an ignored SIGINT would survive exec, a default one does
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen(command, env=None, **kwargs):
    """subprocess.Popen for an emulator: SIGINT at its default action in the child, env added to os.environ."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.Popen(command, env=full_env, preexec_fn=_default_sigint, **kwargs)


def spawn(root, command, log_path, env=None):
    with open(log_path, "wb") as log:
        return popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(url, process, log_path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorStartError(f"emulator exited with {process.returncode}:\n"
                                     + Path(log_path).read_text(errors="replace")[-3000:])
        try:
            if http_request(url, "GET", "/", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise EmulatorStartError(f"emulator not ready after {timeout}s:\n" + Path(log_path).read_text(errors="replace")[-3000:])


@contextlib.contextmanager
def start_emulator(workdir, port=None, args=(), env=None, custom_nodes=(), startup_timeout=30, *,
                   version=None, cpu=True, tree=None):
    """Start the emulator in <workdir> and yield an Emulator; stops it (SIGINT, then kill) on exit.

    version rewrites comfyui_version.py (e.g. "0.28.0", which ComfyUI-LTXVideo needs); cpu=False
    leaves out --cpu (e.g. to simulate a GPU with --cuda-device); tree reuses a tree made by
    prepare_tree() instead of copying a new one.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tree) if tree else prepare_tree(workdir, custom_nodes, version)
    port = port or free_port()
    log_path = workdir / "comfyui.log"
    process = spawn(root, emulator_command(port, args, cpu), log_path, env)
    emulator = Emulator(root, port, process, log_path)
    try:
        wait_ready(emulator.url, process, log_path, startup_timeout)
        yield emulator
    finally:
        emulator.stop()
