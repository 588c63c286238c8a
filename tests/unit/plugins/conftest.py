"""Shared fixtures: a real HTTP server on 127.0.0.1 that answers like ComfyUI, and a module runner."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "reference"
API = REFERENCE / "comfyui-api"
GPU = API / "gpu-h100"


def reference_object_info():
    """/object_info of the H100 capture: the 880 real class names, with the recorded entries where we have them."""
    names = [n for n in (GPU / "object_info_classes.txt").read_text().splitlines() if n]
    detail = json.loads((API / "object_info_excerpt.json").read_text())
    detail.update(json.loads((API / "ltxvideo_object_info_excerpt.json").read_text()))
    return {name: detail.get(name, {"name": name, "display_name": name, "python_module": "nodes"}) for name in names}


class Route:
    """One canned answer; status may be a list consumed one per request (e.g. 502, 502, 200)."""

    def __init__(self, body=b"", status=200, content_type="application/json", delay=0.0, close=False, headers=None):
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.status = status
        self.content_type = content_type
        self.delay = delay
        self.close = close
        self.headers = headers or {}

    def next_status(self):
        if isinstance(self.status, list):
            return self.status.pop(0) if len(self.status) > 1 else self.status[0]
        return self.status


class FakeComfyUI:
    """ThreadingHTTPServer serving reference payloads; unknown paths get ComfyUI's static 404 (empty body)."""

    def __init__(self, port=0):
        self.routes = {
            "/": Route((API / "root_index_head.txt").read_bytes(), content_type="text/html"),
            "/system_stats": Route((GPU / "system_stats.json").read_bytes()),
            "/queue": Route((GPU / "queue.json").read_bytes()),
            "/object_info": Route(reference_object_info()),
            "/models": Route((GPU / "models.json").read_bytes()),
            "/models/checkpoints": Route((API / "models_checkpoints.json").read_bytes()),
            "/models/loras": Route([]),
            "/prompt": Route((API / "prompt_post_success.json").read_bytes()),
        }
        self.requests = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = unquote(self.path.split("?", 1)[0])
                with fake.lock:
                    fake.requests.append(dict(method=self.command, path=path, headers=dict(self.headers), body=body))
                route = fake.routes.get(path)
                if route is None and path.startswith("/object_info/"):
                    # ComfyUI answers an unknown class with 200 {}
                    known = fake.routes["/object_info"]
                    entry = json.loads(known.body).get(path[len("/object_info/"):], {})
                    route = Route({path[len("/object_info/"):]: entry} if entry else {})
                if route is None:
                    route = Route(b"", status=404, content_type="application/octet-stream")
                time.sleep(route.delay)
                if route.close:
                    # like ComfyUI-Manager's reboot: the process goes away without answering
                    self.close_connection = True
                    return
                self.send_response(route.next_status())
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def set(self, path, *args, **kwargs):
        self.routes[path] = Route(*args, **kwargs)

    def count(self, path):
        return sum(1 for r in self.requests if r["path"] == path)


@pytest.fixture
def comfy():
    server = FakeComfyUI().start()
    yield server
    server.stop()


@pytest.fixture
def comfy_factory():
    servers = []

    def make(port=0):
        server = FakeComfyUI(port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture
def free_port():
    """A port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result)
        self.result = result
        self.failed = failed


@pytest.fixture
def run_module(monkeypatch):
    """Run a module's main() in-process; returns (failed, result) instead of exiting, warnings in result."""

    warnings = []

    def warn(self, warning, **kwargs):
        warnings.append(warning)

    def exit_json(self, **kwargs):
        raise ModuleExit(dict(kwargs, warnings=list(warnings)), failed=False)

    def fail_json(self, msg, **kwargs):
        raise ModuleExit(dict(kwargs, msg=msg, warnings=list(warnings)), failed=True)

    monkeypatch.setattr(basic.AnsibleModule, "warn", warn)
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(main, args, check_mode=False):
        warnings.clear()
        args = dict(args)
        if check_mode:
            args["_ansible_check_mode"] = True
        with patch_module_args(args):
            with pytest.raises(ModuleExit) as exc:
                main()
        return exc.value.failed, exc.value.result

    return run


def _argument_spec_of(module):
    """The argument_spec main() passes to AnsibleModule, captured without running the module."""
    mod = __import__("ansible_collections.comfyops.comfyui.plugins.modules." + module, fromlist=["main"])
    captured = {}

    class Stop(Exception):
        pass

    class Capture:
        def __init__(self, argument_spec, **kwargs):
            captured.update(argument_spec)
            raise Stop()

    original = mod.AnsibleModule
    mod.AnsibleModule = Capture
    try:
        with pytest.raises(Stop):
            mod.main()
    finally:
        mod.AnsibleModule = original
    return captured


@pytest.fixture
def argument_spec_of():
    """The argument_spec a module's main() passes to AnsibleModule (for docs-vs-spec tests)."""
    return _argument_spec_of
