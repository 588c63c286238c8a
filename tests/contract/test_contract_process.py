"""The emulator as a process: flags, start-up, failures and signals (comfyui-facts.md sections 4 and 10)."""
import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

from contract_support import REFERENCE_DIR
from emulator_helpers import (EmulatorStartError, emulator_command, free_port, popen, prepare_tree, spawn,
                              start_emulator, stop_process, wait_ready)

ERROR = "\x1b[1m\x1b[31m[ERROR]\x1b[0m "


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return prepare_tree(tmp_path_factory.mktemp("tree"))


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("flags, message", [
    (["--no-such-flag"], "main.py: error: unrecognized arguments: --no-such-flag"),
    (["--port", "abc"], "main.py: error: argument --port: invalid int value: 'abc'"),
    (["--highvram"], "main.py: error: argument --highvram: not allowed with argument --cpu"),
    (["--preview-method", "bogus"], "main.py: error: argument --preview-method: invalid choice: 'bogus'"),
    (["--user-directory", "/no/such/dir"], "The path '/no/such/dir' does not exist."),
    (["--verbose", "LOUD"], "main.py: error: argument --verbose: invalid choice: 'LOUD'"),
])
def test_bad_flags_exit_2_with_usage_like_argparse(tree, flags, message):
    result = subprocess.run(emulator_command(free_port(), flags), cwd=tree,
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: main.py [-h] [--listen [IP]] [--port PORT]")
    assert message in result.stderr
    assert result.stdout == ""


def test_help_lists_the_server_flags(tree):
    result = subprocess.run([sys.executable, "main.py", "--help"], cwd=tree,
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for flag in ("--listen", "--base-directory", "--extra-model-paths-config", "--database-url", "--enable-manager",
                 "--whitelist-custom-nodes", "--disable-api-nodes", "--cuda-device", "--normalvram", "--log-stdout"):
        assert flag in result.stdout


def test_sigint_stops_cleanly(tmp_path):
    with start_emulator(tmp_path) as emu:
        assert (emu.root / "temp").is_dir()
        assert emu.stop(signal.SIGINT) == 0
        assert emu.log_text().endswith("\x1b[32m[INFO]\x1b[0m \nStopped server\n")
        assert not (emu.root / "temp").exists()


def test_sigterm_kills_at_once(tmp_path):
    with start_emulator(tmp_path) as emu:
        started = time.monotonic()
        assert emu.stop(signal.SIGTERM) == -signal.SIGTERM
        assert time.monotonic() - started < 2
        assert "Stopped server" not in emu.log_text()


def test_startup_delay_keeps_the_port_closed(tmp_path):
    root, port = prepare_tree(tmp_path), free_port()
    process = spawn(root, emulator_command(port), tmp_path / "log", env={"COMFYUI_EMULATOR_STARTUP_DELAY": "1.0"})
    started = time.monotonic()
    try:
        time.sleep(0.5)
        assert process.poll() is None and not port_open(port)
        wait_ready(f"http://127.0.0.1:{port}", process, tmp_path / "log", 20)
        assert time.monotonic() - started >= 1.0
    finally:
        returncode = stop_process(process)
    assert returncode == 0


def test_exit_before_listen(tmp_path):
    with pytest.raises(EmulatorStartError, match="exited with 1"):
        with start_emulator(tmp_path, env={"COMFYUI_EMULATOR_FAIL": "exit_before_listen"}):
            pass
    log = (tmp_path / "comfyui.log").read_text()
    assert "ModuleNotFoundError: No module named 'torchaudio'" in log and "To see the GUI" not in log


def test_hang_before_listen(tmp_path):
    with pytest.raises(EmulatorStartError, match="not ready after 1.0s"):
        with start_emulator(tmp_path, env={"COMFYUI_EMULATOR_FAIL": "hang_before_listen"}, startup_timeout=1.0):
            pass
    assert "Import times for custom nodes" in (tmp_path / "comfyui.log").read_text()


def test_crash_after(tmp_path):
    with start_emulator(tmp_path, env={"COMFYUI_EMULATOR_FAIL": "crash_after:0.5"}) as emu:
        assert emu.process.wait(10) == 1
        assert "simulated crash" in emu.log_text()


def test_second_instance_reports_db_lock_and_busy_port(tmp_path):
    """Reproduces reference logs/startup_v0.28.0_port_in_use.log: same code dir, same port."""
    recorded = (REFERENCE_DIR / "logs" / "startup_v0.28.0_port_in_use.log").read_text().splitlines()
    with start_emulator(tmp_path / "first") as first:
        second_log = tmp_path / "second.log"
        second = spawn(first.root, emulator_command(first.port), second_log)
        try:
            second.wait(20)
        finally:
            returncode = stop_process(second)
        assert returncode == 1
        log = second_log.read_text()
    assert "Import times for custom nodes" in log  # the whole start-up ran before the bind failed
    for line in (line for line in recorded if line.startswith(ERROR)):
        assert line.replace("/opt/comfyui/ComfyUI", str(first.root)).replace("8289", str(first.port)) in log


def test_base_directory_without_custom_nodes_crashes(tmp_path, tree):
    base = tmp_path / "base1"
    base.mkdir()
    result = subprocess.run(emulator_command(free_port(), ["--base-directory", base]), cwd=tree,
                            check=False, capture_output=True, text=True, timeout=30)
    recorded = (REFERENCE_DIR / "logs" / "startup_v0.33.0_base_directory_missing_custom_nodes.log").read_text()
    assert result.returncode == 1
    assert recorded.splitlines()[0].replace("/opt/comfyui/base1", str(base)) in result.stderr
    assert recorded.splitlines()[-1].replace("/opt/comfyui/base1", str(base)) in result.stderr
    assert not (base / "models").exists()


def test_base_directory_extra_paths_and_upload_limit(tmp_path):
    base, extra = tmp_path / "base", tmp_path / "shared-models"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / "base.safetensors").write_bytes(b"\0")
    (extra / "ckpts").mkdir(parents=True)
    (extra / "ckpts" / "shared.safetensors").write_bytes(b"\0")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"""# comment
comfyui:
    base_path: {extra}
    is_default: true
    checkpoints: ckpts/
    text_encoders: |
        text_encoders/
        clip/
other:
    loras: {extra}/loras   # absolute
""")
    args = ["--base-directory", base, "--extra-model-paths-config", config, "--max-upload-size", "0.001"]
    with start_emulator(tmp_path / "run", args=args) as emu:
        paths = emu.get_json("/internal/folder_paths")
        assert paths["checkpoints"][:2] == [str(extra / "ckpts"), str(base / "models" / "checkpoints")]
        # is_default puts each path first, one after the other (upstream's insert(0)).
        assert paths["text_encoders"][:3] == [str(extra / "clip"), str(extra / "text_encoders"),
                                              str(base / "models" / "text_encoders")]
        assert str(extra / "loras") in paths["loras"]
        assert paths["custom_nodes"] == [str(base / "custom_nodes")]
        assert emu.get_json("/models/checkpoints") == ["base.safetensors", "shared.safetensors"]
        assert emu.get_json("/features")["max_upload_size"] == 1049
        assert emu.request("POST", "/upload/image", body=b"x" * 2000,
                           headers={"Content-Type": "multipart/form-data; boundary=x"}).status == 413
        assert "SaveImageWebsocket" not in emu.get_json("/object_info")  # custom_nodes now come from the base
        log = emu.log_text()
    assert f"Adding extra search path checkpoints {extra / 'ckpts'}" in log
    assert f"Setting base directory to: {base}" in log
    # input/ and user/ are created (temp/ too, but it is removed again on exit); output/ only when saving.
    assert {p.name for p in base.iterdir()} == {"custom_nodes", "models", "input", "user"}


def test_directory_flags_and_real_sized_object_info(tmp_path):
    out, inp, user, temp = (tmp_path / name for name in ("out", "in", "user", "tmp"))
    user.mkdir()
    (temp / "temp").mkdir(parents=True)
    (temp / "temp" / "stale.png").write_bytes(b"old")
    args = ["--output-directory", out, "--input-directory", inp, "--user-directory", user, "--temp-directory", temp]
    with start_emulator(tmp_path / "run", args=args, env={"COMFYUI_EMULATOR_OBJECT_INFO_PAD": "1"}) as emu:
        assert not (temp / "temp" / "stale.png").exists()  # wiped at start
        assert 1_400_000 < len(emu.get("/object_info").body) < 1_800_000  # upstream: 1612569 bytes
        graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
                 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
                 "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        entry = emu.wait_for_history(emu.post_json("/prompt", {"prompt": graph}).json()["prompt_id"])
        assert (out / "x_00001_.png").is_file()
        assert (temp / "temp" / entry["outputs"]["3"]["images"][0]["filename"]).is_file()
        assert str(out / "checkpoints") in emu.get_json("/internal/folder_paths")["checkpoints"]
        assert inp.is_dir()
        log = emu.log_text()
    for kind, path in (("output", out), ("input", inp), ("user", user), ("temp", temp / "temp")):
        assert f"Setting {kind} directory to: {path}" in log


def test_cors_api_nodes_listen_and_quiet_flags(tmp_path):
    args = ["--enable-cors-header", "--disable-api-nodes", "--dont-print-server", "--listen", "127.0.0.1,127.0.0.2"]
    with start_emulator(tmp_path, args=args) as emu:
        foreign = emu.get("/system_stats", headers={"Origin": "http://evil.example"})
        assert foreign.status == 200 and foreign.headers["access-control-allow-origin"] == "*"
        preflight = emu.request("OPTIONS", "/prompt", headers={"Origin": "http://evil.example"})
        assert preflight.status == 200 and "POST" in preflight.headers["access-control-allow-methods"]
        info = emu.get_json("/object_info")
        assert not [n for n, v in info.items() if v["python_module"].startswith("comfy_api_nodes")]
        assert "KlingTextToVideoNode" not in info and "KSampler" in info
        with socket.create_connection(("127.0.0.2", emu.port), timeout=2):
            pass
        log = emu.log_text()
    assert "Starting server" not in log and "To see the GUI" not in log


def test_log_stdout_and_verbose_file(tmp_path):
    root, port = prepare_tree(tmp_path), free_port()
    log_file = tmp_path / "debug.log"
    command = emulator_command(port, ["--log-stdout", "--verbose", "DEBUG", log_file])
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        process = popen(command, cwd=root, stdout=out, stderr=err)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, tmp_path / "err", 20)
        assert process.poll() is None
    finally:
        returncode = stop_process(process)
    assert returncode == 0
    stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert "To see the GUI go to" in stdout and "[INFO]" not in stderr
    debug = log_file.read_text()
    assert "[DEBUG] Trying to load custom node" in debug and "\x1b[" not in debug


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a certificate")
def test_tls_listener(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    root, port = prepare_tree(tmp_path), free_port()
    process = spawn(root, emulator_command(port, ["--tls-keyfile", key, "--tls-certfile", cert]), tmp_path / "log")
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        deadline = time.monotonic() + 20
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        conn.request("GET", "/system_stats")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        returncode = stop_process(process)
    assert returncode == 0
    assert f"To see the GUI go to: https://127.0.0.1:{port}" in (tmp_path / "log").read_text()
