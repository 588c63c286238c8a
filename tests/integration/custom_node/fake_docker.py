#!/usr/bin/env python3
"""A stand-in for the docker CLI, for the comfyui_custom_node tests: "containers" are ComfyUI emulator processes.

As a program (the wrapper script FakeDocker writes runs ``python fake_docker.py <config.json> <docker args>``):

* ``inspect --type container --format {{.Image}} NAME``: prints the image ID from the image file the test controls.
* ``exec NAME ARGV...``: records ARGV (JSON lines) and checks that every file pip would read through ``-r``/``-c``
  exists at its container path (mapped to the host through the configured mount), failing like pip if not; it
  fails with the text of the pip_fail file when that file exists. Nothing is installed (no index to install from).
* ``restart NAME...``: stops each emulator (SIGTERM, as docker does; ComfyUI dies at once) and starts it again on
  the same port, from the same tree, so it re-imports custom_nodes. Returns before the new one listens, as docker.
* ``start NAME...``: starts stopped emulators (the tests start their containers this way, so the emulators are
  never children of the test process).
* ``logs [--since T] NAME``: prints the container's log (everything the emulator wrote since its last start).

Every call is appended to calls.jsonl. As a library (from the tests), FakeDocker sets this up, starts the
containers and stops them at the end.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[2]


def _load(config_path):
    return json.loads(Path(config_path).read_text())


def _append(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already died
    except (FileNotFoundError, IndexError):
        return False


def stop_container(spec):
    pidfile = Path(spec["pidfile"])
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.01)
    pidfile.unlink()


def start_container(spec):
    sys.path.insert(0, str(TESTS_DIR))
    from emulator_helpers import emulator_command, popen

    with open(spec["log"], "wb") as log:
        # a session of its own and no inherited pipes: the caller (the module, ansible) must not wait for it
        process = popen(emulator_command(spec["port"], spec.get("args", [])), cwd=spec["root"],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=spec.get("env", {}),
                        start_new_session=True)
    Path(spec["pidfile"]).write_text(str(process.pid))


def main(config_path, args):
    config = _load(config_path)
    _append(config["calls_log"], args)
    containers = config["containers"]
    command, rest = (args[0], args[1:]) if args else ("", [])
    names = [a for a in rest if not a.startswith("-")]

    def unknown(name):
        sys.stderr.write("Error response from daemon: No such container: %s\n" % name)
        return 1

    if command == "inspect":
        name = rest[-1]
        if name not in containers:
            return unknown(name)
        print(Path(config["image_file"]).read_text().strip())
        return 0
    if command == "exec":
        name, argv = rest[0], rest[1:]
        if name not in containers:
            return unknown(name)
        _append(config["exec_log"], dict(container=name, argv=argv))
        for flag, path in zip(argv, argv[1:]):
            if flag in ("-r", "-c"):
                host = path
                for inside, outside in config["mounts"].items():
                    if path.startswith(inside.rstrip("/") + "/"):
                        host = outside.rstrip("/") + path[len(inside.rstrip("/")):]
                if not os.path.isfile(host):
                    sys.stderr.write("ERROR: Could not open requirements file: [Errno 2] No such file or "
                                     "directory: '%s'\n" % path)
                    return 1
        fail = Path(config["pip_fail_file"])
        if fail.exists():
            sys.stderr.write(fail.read_text())
            return 1
        print("Successfully installed (fake)")
        return 0
    if command in ("restart", "start"):
        for name in names:
            if name not in containers:
                return unknown(name)
        for name in names:
            stop_container(containers[name])
            start_container(containers[name])
            print(name)
        return 0
    if command == "logs":
        name = rest[-1]
        if name not in containers:
            return unknown(name)
        sys.stderr.write(Path(containers[name]["log"]).read_text(errors="replace"))
        return 0
    sys.stderr.write("fake docker: unsupported command %r\n" % (args,))
    return 2


class FakeDocker:
    """Writes the config and an executable ``docker`` wrapper into workdir; one emulator per container."""

    def __init__(self, workdir, root, container_custom_nodes_dir="/opt/comfyui/custom_nodes"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = Path(root)
        self.config_path = self.workdir / "fake_docker.json"
        self.calls_log = self.workdir / "calls.jsonl"
        self.exec_log = self.workdir / "exec.jsonl"
        self.image_file = self.workdir / "image"
        self.pip_fail_file = self.workdir / "pip_fail"
        self.image_file.write_text("sha256:" + "1" * 64 + "\n")
        self.config = dict(containers={}, image_file=str(self.image_file), exec_log=str(self.exec_log),
                           calls_log=str(self.calls_log), pip_fail_file=str(self.pip_fail_file),
                           mounts={container_custom_nodes_dir: str(self.root / "custom_nodes")})
        self.bin = self.workdir / "docker"
        self.bin.write_text("#!/bin/sh\nexec '%s' '%s' '%s' \"$@\"\n" % (sys.executable, __file__, self.config_path))
        self.bin.chmod(0o755)
        self._save()

    def _save(self):
        self.config_path.write_text(json.dumps(self.config, indent=1))

    def add(self, name, port, args=(), env=None):
        """Declare a container: the emulator from root on port (0.28.0 tree prepared by the caller)."""
        n = len(self.config["containers"])
        self.config["containers"][name] = dict(
            root=str(self.root), port=port, log=str(self.workdir / ("%s.log" % name)),
            pidfile=str(self.workdir / ("%s.pid" % name)), env=dict(env or {}),
            # instances share the tree (and custom_nodes) but not the database or temp dir
            args=["--database-url", "sqlite:///%s/%s.db" % (self.workdir, name),
                  "--temp-directory", str(self.workdir / ("temp%d" % n))] + list(args))
        self._save()

    def spec(self, name):
        return self.config["containers"][name]

    def pid(self, name):
        return int(Path(self.spec(name)["pidfile"]).read_text())

    def log_text(self, name):
        return Path(self.spec(name)["log"]).read_text(errors="replace")

    def url(self, name):
        return "http://127.0.0.1:%d" % self.spec(name)["port"]

    def start(self, *names, timeout=30):
        """Start the containers (through the wrapper, like a test's docker call) and wait until they listen."""
        subprocess.run([str(self.bin), "start"] + list(names), check=True, capture_output=True)
        try:
            self.wait_ready(*names, timeout=timeout)
        except BaseException:
            for name in names:
                stop_container(self.spec(name))
            raise

    def wait_ready(self, *names, timeout=30):
        sys.path.insert(0, str(TESTS_DIR))
        from emulator_helpers import http_request

        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                try:
                    if http_request(self.url(name), "GET", "/", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("%s not ready after %ss:\n%s" % (name, timeout, self.log_text(name)[-3000:]))
                time.sleep(0.05)

    def remove(self, name):
        stop_container(self.spec(name))
        del self.config["containers"][name]
        self._save()

    def stop_all(self):
        for spec in self.config["containers"].values():
            stop_container(spec)

    def calls(self, command=None):
        if not self.calls_log.exists():
            return []
        calls = [json.loads(line) for line in self.calls_log.read_text().splitlines()]
        return [c for c in calls if command is None or (c and c[0] == command)]

    def execs(self):
        if not self.exec_log.exists():
            return []
        return [json.loads(line) for line in self.exec_log.read_text().splitlines()]

    def set_image(self, image_id):
        self.image_file.write_text(image_id + "\n")

    def fail_pip(self, message):
        if message is None:
            self.pip_fail_file.unlink(missing_ok=True)
        else:
            self.pip_fail_file.write_text(message)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
