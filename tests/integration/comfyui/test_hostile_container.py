"""A hostile container (molecule scenario comfyui): from inside a running ComfyUI container, as its own user, plant
the traps of issue 15, then run the role and the modules as host root: no host file outside the data root changes
(hashes, owners and modes before and after), the tampered model is hashed again and repaired, and what cannot be
made safe fails with a message instead of being followed.

Runs after test_comfyui.py and test_comfyui_errors.py (file order); each case cleans up after itself.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from failure_support import run_playbook  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
CONVERGE = Path(__file__).resolve().parents[3] / "molecule" / "comfyui" / "converge.yml"
MODEL_SERVER = Path(__file__).resolve().parents[2] / "model_http_server.py"
DATA = "/srv/comfyui"
# host files a container must never reach through a planted link
WATCHED = ["/etc/passwd", "/etc/shadow", "/etc/hostname", "/root/.bashrc", "/etc/ssh", "/etc"]


def inside(host, command):
    """Run a shell command inside comfyui-cpu0, as the container's (unprivileged) user."""
    return host.run("docker exec comfyui-cpu0 sh -c %s", command)


def snapshot(host):
    return host.check_output("stat -c '%%n %%u %%g %%a %%s %%Y' %s; sha256sum /etc/passwd /etc/shadow /etc/hostname "
                             "/root/.bashrc; ls -la /etc | md5sum", " ".join(WATCHED))


def module(host, name, args):
    """(rc, the module's result) of an ad-hoc run on the host."""
    res = subprocess.run(["ansible", "-i", INVENTORY, host.backend.get_hostname(), "-m", "comfyops.comfyui." + name,
                          "-a", json.dumps(args)], check=False, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
                                  ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    out = res.stdout
    try:
        return res.returncode, json.loads(out[out.index("{"):out.rindex("}") + 1])
    except ValueError:
        return res.returncode, {"output": out + res.stderr}


def model_args(model_server, **extra):
    """comfyui_model's arguments for the served file in models/checkpoints of the scenario's data root."""
    return {"models_dir": DATA + "/models", "url": model_server["url"], "folder": "checkpoints",
            "sha256": model_server["sha256"], **extra}


@pytest.fixture(scope="module")
def model_server(host):
    host.check_output("mkdir -p /root/hostile-src && head -c 2000000 /dev/urandom > /root/hostile-src/h.safetensors")
    host.check_output("cat > /root/model_http_server.py <<'PY'\n%s\nPY" % MODEL_SERVER.read_text())
    host.check_output("setsid nohup python3 /root/model_http_server.py --port 8766 /root/hostile-src/h.safetensors "
                      ">/root/hostile_server.log 2>&1 < /dev/null &")
    host.check_output("for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8766/ && exit 0; sleep 0.2; done; "
                      "exit 1")
    yield {"url": "http://127.0.0.1:8766/h.safetensors",
           "sha256": host.check_output("sha256sum /root/hostile-src/h.safetensors").split()[0]}
    host.run("pkill -f 'model_http_server.py --port 8766'")


def test_the_container_runs_as_its_own_user_and_cannot_write_the_packs(host):
    assert inside(host, "id -u").stdout.strip() == "10001"
    res = inside(host, "touch /opt/comfyui/custom_nodes/ComfyUI-LTXVideo/.git/hooks/post-checkout")
    assert res.rc != 0  # read-only: no hook can be planted for host root's git
    assert not host.file(DATA + "/.comfyops/packs").mode & 0o002


def test_a_folder_linked_out_of_the_models_dir_is_refused(host, model_server):
    assert inside(host, "mkdir -p /opt/comfyui/models/loras && ln -sfn /etc /opt/comfyui/models/loras/evil").rc == 0
    before = snapshot(host)
    try:
        rc, result = module(host, "comfyui_model", model_args(model_server, folder="loras/evil"))
        assert rc != 0 and "loras/evil" in json.dumps(result), result
        assert snapshot(host) == before
        assert not host.file("/etc/h.safetensors").exists
    finally:
        inside(host, "rm -f /opt/comfyui/models/loras/evil")


def test_a_model_changed_in_place_is_hashed_again_and_repaired(host, model_server):
    args = model_args(model_server)
    rc, result = module(host, "comfyui_model", args)
    assert rc == 0 and result["models"][0]["verified"], result
    path = DATA + "/models/checkpoints/h.safetensors"
    f = "/opt/comfyui/models/checkpoints/h.safetensors"
    # the module's file is not the container's to write in place ...
    assert inside(host, "printf x | dd of=%s bs=1 seek=1000 conv=notrunc" % f).rc != 0
    # ... but its folder is (ComfyUI-Manager saves models there): a tampered copy of the same size with the mtime put
    # back, renamed over it; only the inode and ctime (which no container can set) tell
    assert inside(host, "f=%s; t=$(stat -c %%Y $f); cp $f $f.new && printf tampered | dd of=$f.new bs=1 seek=1000 "
                        "conv=notrunc 2>/dev/null && touch -d @$t $f.new && mv -f $f.new $f" % f).rc == 0
    assert host.check_output("sha256sum %s", path).split()[0] != model_server["sha256"]
    # and a forged cache entry for the tampered file where earlier versions kept the cache (models/.comfyops)
    forged = json.dumps({"version": 1, "files": {"checkpoints/h.safetensors": dict(
        size=host.file(path).size, mtime_ns=int(host.file(path).mtime.timestamp()) * 10 ** 9,
        sha256=model_server["sha256"])}})
    assert inside(host, "mkdir -p /opt/comfyui/models/.comfyops && printf '%%s' '%s' "
                        "> /opt/comfyui/models/.comfyops/sha256_cache.json" % forged).rc == 0
    rc, result = module(host, "comfyui_model", args)
    entry = result["models"][0] if rc == 0 else result
    # not believed from the cache: read again, found wrong, downloaded again and verified
    assert rc == 0 and entry["hash_source"] != "cache" and entry["action"] in ("replaced", "downloaded"), result
    assert entry["verified"] and result["changed"]
    assert host.check_output("sha256sum %s", path).split()[0] == model_server["sha256"]


def test_a_model_folder_replaced_by_a_link_fails_the_role_and_is_not_followed(host):
    # the role keeps models/<folder> owned by the containers' user: following a planted link would hand /etc to it
    assert inside(host, "rm -rf /opt/comfyui/models/vae && ln -s /etc /opt/comfyui/models/vae").rc == 0
    before = snapshot(host)
    try:
        res = run_playbook(CONVERGE, host)
        out = res.stdout + res.stderr
        assert res.returncode != 0 and "models/vae already exists as a link" in " ".join(out.split()), out
        assert snapshot(host) == before
        assert host.file("/etc").user == "root" and host.file("/etc").mode == 0o755
    finally:
        inside(host, "rm -f /opt/comfyui/models/vae")
    res = run_playbook(CONVERGE, host)
    assert res.returncode == 0, res.stdout + res.stderr
    assert host.file(DATA + "/models/vae").is_directory and not host.file(DATA + "/models/vae").is_symlink


def test_the_hash_cache_and_download_state_are_out_of_the_containers_reach(host):
    # what the module trusts (hash cache, partials, locks) lives in data_root/.comfyops; the only part of it a
    # container sees is the pack store, read-only
    mounts = json.loads(host.check_output("docker inspect -f '{{json .Mounts}}' comfyui-cpu0"))
    writable = sorted(m["Source"] for m in mounts if m["RW"])
    assert writable == [DATA + "/" + d for d in ("input", "instances/comfyui-cpu0/user", "models", "output")], mounts
    assert all(m["Source"].startswith(DATA + "/.comfyops/packs/") for m in mounts
               if not m["RW"] and m["Destination"].startswith("/opt/comfyui/custom_nodes/")), mounts
    cache = DATA + "/.comfyops/models/sha256_cache.json"
    assert host.file(cache).exists  # written by the model tests above
    for path in (DATA + "/.comfyops", DATA + "/.comfyops/models", cache):
        assert host.file(path).user == "root" and not host.file(path).mode & 0o022, path


@pytest.mark.parametrize("trap", ["a partial linked to /etc/shadow", "a FIFO as the partial"])
def test_a_partial_planted_by_the_container_is_never_used(host, model_server, trap):
    # earlier versions kept <file>.partial beside the file, where a container can plant one
    name = "/opt/comfyui/models/checkpoints/h2.safetensors"
    plant = "ln -sfn /etc/shadow %s.partial" % name if "linked" in trap else "mkfifo %s.partial" % name
    assert inside(host, plant).rc == 0
    before = snapshot(host)
    try:
        rc, result = module(host, "comfyui_model", model_args(model_server, filename="h2.safetensors"))
        assert rc == 0, result
        r = result["models"][0]
        assert (r["action"], r["resumed_from"], r["verified"]) == ("downloaded", 0, True), r
        assert snapshot(host) == before  # /etc/shadow not appended to, not chmod-ed
        path = DATA + "/models/checkpoints/h2.safetensors"
        assert host.file(path).is_file and not host.file(path).is_symlink
        assert host.run("test -L {0}.partial || test -p {0}.partial".format(path)).rc != 0  # the planted one is gone
        assert host.check_output("sha256sum %s", path).split()[0] == model_server["sha256"]
    finally:
        inside(host, "rm -f %s %s.partial" % (name, name))


def test_a_fifo_planted_at_a_model_name_fails_the_module_without_hanging(host, model_server):
    name = "/opt/comfyui/models/checkpoints/h3.safetensors"
    assert inside(host, "mkfifo %s" % name).rc == 0
    try:
        rc, result = module(host, "comfyui_model", model_args(model_server, filename="h3.safetensors"))
        assert rc != 0 and "checkpoints/h3.safetensors is a FIFO, not a regular file" in json.dumps(result), result
        assert host.file(DATA + "/models/checkpoints/h3.safetensors").is_pipe
    finally:
        inside(host, "rm -f %s" % name)
