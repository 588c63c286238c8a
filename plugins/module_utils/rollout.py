# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment transaction of comfyops.comfyui.comfyui_rollout.

The compose file describes the whole set of every instance (image with the node packs' requirements, the
pack checkouts mounted read-only, flags, environment). A new set arrives as a candidate compose file; the live
one stays in place until the candidate is proven:

1. canary: when the image or the packs change, a throw-away instance of the candidate (the compose file's
   ``canary`` profile: loopback, ``--cpu``) must load every expected class; if not, nothing live changed;
2. switch: one instance at a time, drained first (out of /ready, its jobs finished or cut), recreated from the
   candidate and verified, so the others keep serving;
3. commit (the candidate becomes compose.yml, the previous one is kept for pruning) or roll back (every
   switched instance recreated from the live file and verified again).

A journal written before the first switch lets the next run finish the job after a crash: it brings every
instance back to what compose.yml says, verifies it, and says what it repaired. A host lock keeps two runs
apart, and the commands a run starts hold it too (see run_to_the_end). Commands run through an injected
``run(argv) -> (rc, out, err)`` so tests can use fakes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time

from ansible_collections.comfyops.comfyui.plugins.module_utils.atomic_files import write_atomic
from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import (
    ComfyUIClient,
    ComfyUIError,
    WaitTimeout,
    wait_until,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import find_import_error
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock

JOURNAL_FORMAT = 1
CANARY_SERVICE = "comfyui-canary"
CANARY_PROFILE = "canary"
_TAIL_LINES = 15


class _Exited(ComfyUIError):
    """The container is gone: waiting longer cannot help."""

    @property
    def retryable(self):
        return False


class RolloutError(Exception):
    """A failure with a message for the user; result holds what the module reports with it."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.message = message
        self.result = result or {}

    def __str__(self):
        return self.message


def _tail(text, lines=_TAIL_LINES):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _sha256_file(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def run_to_the_end(argv, keep_fds=()):
    """(rc, stdout, stderr) of argv, run so that a killed module cannot cut it short. A pipe whose reader died
    kills docker's Go binaries at their next write, which halfway through a recreate leaves the new container
    created and never started: so the output goes to unlinked files, and the command gets a session of its own
    (no terminal signals). It inherits keep_fds (the host lock), which the kernel then holds until it exits too,
    so the next run waits for the command to finish before it looks at the containers."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            rc = subprocess.call(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 pass_fds=tuple(keep_fds), start_new_session=True)
        except OSError as e:
            return 127, "", "cannot run %s: %s" % (argv[0], e)
        out.seek(0)
        err.seek(0)
        return rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------------- docker


class Compose:
    """docker compose for one project, with the file chosen per call (live or candidate)."""

    def __init__(self, run, project, project_dir, docker_bin="docker"):
        self.run = run
        self.project = project
        self.project_dir = project_dir
        self.docker_bin = docker_bin

    def _base(self, file, profile=None):
        argv = [self.docker_bin, "compose", "-p", self.project, "--project-directory", self.project_dir, "-f", file]
        return argv + (["--profile", profile] if profile else [])

    def _check(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise RolloutError("%s failed (rc %s): %s" % (what, rc, _tail(err or out, 8)))
        return out

    def services(self, file):
        """{service: normalized config} as compose resolves the file (env files and defaults applied)."""
        out = self._check(self._base(file, CANARY_PROFILE) + ["config", "--format", "json"],
                          "docker compose config %s" % file)
        return json.loads(out).get("services", {})

    def up(self, file, services, profile=None):
        # images are built or pulled beforehand; compose must never go looking for one
        self._check(self._base(file, profile) + ["up", "-d", "--no-deps", "--pull", "never"] + list(services),
                    "docker compose up %s" % " ".join(services))

    def remove(self, file, services, profile=None):
        self._check(self._base(file, profile) + ["rm", "--stop", "--force"] + list(services),
                    "docker compose rm %s" % " ".join(services))

    def port(self, file, service, private_port, profile=None):
        out = self._check(self._base(file, profile) + ["port", service, str(private_port)],
                          "docker compose port %s" % service)
        return out.strip().splitlines()[-1] if out.strip() else None


class Docker:
    def __init__(self, run, docker_bin="docker"):
        self.run = run
        self.docker_bin = docker_bin

    def container(self, name):
        """docker inspect of a container, or None when there is none."""
        rc, out, _err = self.run([self.docker_bin, "inspect", "--type", "container", name])
        if rc != 0:
            return None
        data = json.loads(out or "[]")
        return data[0] if data else None

    def image_id(self, ref):
        if not ref:
            return None
        rc, out, _err = self.run([self.docker_bin, "image", "inspect", "--format", "{{.Id}}", ref])
        return out.strip() if rc == 0 and out.strip() else None

    def logs(self, name, since):
        rc, out, err = self.run([self.docker_bin, "logs", "--since", str(int(since)), name])
        return (out or "") + (err or "") if rc == 0 else ""

    def restart(self, name, timeout):
        rc, out, err = self.run([self.docker_bin, "restart", "-t", str(int(timeout)), name])
        if rc != 0:
            raise RolloutError("docker restart %s failed (rc %s): %s" % (name, rc, _tail(err or out, 5)))

    def images(self, repository):
        """[(reference, id)] of a repository's images, newest first."""
        rc, out, _err = self.run([self.docker_bin, "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                                  repository])
        if rc != 0:
            return []
        return [tuple(line.split(" ", 1)) for line in out.splitlines() if " " in line]

    def remove_image(self, ref):
        rc, _out, _err = self.run([self.docker_bin, "image", "rm", ref])
        return rc == 0


# ---------------------------------------------------------------------------------------------------- the run


class Instance:
    def __init__(self, name, url):
        self.name = name
        self.url = url
        self.action = "unchanged"  # unchanged | started | recreated | restarted | rolled_back
        self.drained_s = None
        self.cut_jobs = []
        self.verified = None
        self.version = None
        self.problem = None

    def report(self):
        return dict(name=self.name, url=self.url, action=self.action, drained_s=self.drained_s,
                    cut_jobs=self.cut_jobs, verified=self.verified, comfyui_version=self.version,
                    problem=self.problem)


class Rollout:
    def __init__(self, params, run=None, check_mode=False, clock=time.monotonic, wall_clock=time.time,
                 sleep=time.sleep):
        self.p = params
        self.lock = None
        run = run or self._run_holding_the_lock
        self.check_mode = check_mode
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.compose = Compose(run, params["project_name"], params["project_dir"], params.get("docker_bin") or "docker")
        self.docker = Docker(run, params.get("docker_bin") or "docker")
        self.live_file = params["compose_file"]
        self.state_dir = params["state_dir"]
        self.candidate_file = os.path.join(self.state_dir, "compose.candidate.yml")
        self.journal_path = os.path.join(self.state_dir, "rollout-journal.json")
        self.previous_file = os.path.join(self.state_dir, "compose.previous.yml")
        self.instances = [Instance(i["name"], i["url"]) for i in params["instances"]]
        self.packs = [p for p in params.get("packs") or [] if p.get("expected_classes")]
        self.repaired = []
        self.canary = None
        self.rolled_back = False
        self.changed = False
        self.drain_dir = params.get("drain_dir")
        self.pruned = []
        self.removed = []
        self.live = None

    # -- helpers

    def _run_holding_the_lock(self, argv):
        return run_to_the_end(argv, [self.lock.fd] if self.lock and self.lock.fd is not None else [])

    def _client(self, url):
        return ComfyUIClient.from_params(self.p, url)

    def _expected(self):
        return [c for p in self.packs for c in p["expected_classes"]]

    def _wait_classes(self, url, deadline, container=None):
        """(object_info, None) once the instance answers, or (None, problem text); gives up at once when its
        container has exited (a crash at start-up would otherwise cost the whole wait)."""
        client = self._client(url)

        def probe():
            try:
                info = client.object_info()
            except ComfyUIError:
                state = (self.docker.container(container) or {}).get("State") or {} if container else {"Running": True}
                if not state.get("Running") and not state.get("Restarting"):
                    raise _Exited("the container %s exited (code %s): %s" % (
                        container, state.get("ExitCode", "?"),
                        _tail(self.docker.logs(container, 0), 6).replace("\n", " | ")))
                raise
            if not isinstance(info, dict):
                raise ComfyUIError("GET %s: not an object_info answer" % client.url("/object_info"), status=502)
            return info
        try:
            return wait_until(deadline, probe, interval=self.p.get("delay") or 1.0, clock=self.clock,
                              sleep=self.sleep), None
        except WaitTimeout as e:
            return None, "not answering within %gs: %s" % (self.p["wait_timeout"], e.last_error)
        except ComfyUIError as e:
            return None, "not answering: %s" % e

    def _missing(self, info):
        """[(pack name, [missing classes])] for the packs whose classes are not all in info."""
        out = []
        for pack in self.packs:
            lost = [c for c in pack["expected_classes"] if c not in info]
            if lost:
                out.append((pack["name"], lost))
        return out

    def _explain_missing(self, missing, container, since):
        logs = self.docker.logs(container, since - 1)
        parts = []
        for name, lost in missing:
            error = find_import_error(logs, name)
            parts.append("%s: classes missing: %s; import error: %s"
                         % (name, ", ".join(lost), error or "none logged for %s" % name))
        return "; ".join(parts)

    def _verify(self, inst, since):
        """Wait for one instance and check every expected class; sets inst.verified/version/problem."""
        deadline = self.clock() + self.p["wait_timeout"]
        info, problem = self._wait_classes(inst.url, deadline, container=inst.name)
        if info is not None:
            missing = self._missing(info)
            problem = self._explain_missing(missing, inst.name, since) if missing else None
            try:
                stats = self._client(inst.url).get_json("/system_stats")
                inst.version = (stats.get("system") or {}).get("comfyui_version")
            except ComfyUIError:
                pass
        inst.verified = problem is None
        inst.problem = problem
        return inst.verified

    # -- drain

    def _mark_draining(self, name, on):
        if not self.drain_dir:
            return
        path = os.path.join(self.drain_dir, name)
        if on:
            os.makedirs(self.drain_dir, mode=0o755, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            os.close(fd)
        elif os.path.lexists(path):
            os.unlink(path)

    @staticmethod
    def _job_ids(queue):
        return [str(item[1]) for key in ("queue_running", "queue_pending") for item in queue.get(key) or []
                if isinstance(item, (list, tuple)) and len(item) > 1]

    def drain(self, inst):
        """Stop new work reaching the instance and let its jobs finish (wait), cut them (interrupt) or not
        look (skip); records how long it took and which jobs were cut."""
        mode = self.p.get("drain") or "wait"
        start = self.clock()
        self._mark_draining(inst.name, True)
        client = self._client(inst.url)
        try:
            queue = client.get_json("/queue")
        except ComfyUIError:
            inst.drained_s = 0.0  # not answering: nothing to drain
            return
        if mode == "skip":
            inst.cut_jobs = self._job_ids(queue)
        elif mode == "interrupt":
            inst.cut_jobs = self._job_ids(queue)
            if inst.cut_jobs:
                try:
                    client.post_json("/queue", {"clear": True})
                    client.post_json("/interrupt", {})
                except ComfyUIError:
                    pass  # it goes down next anyway; the jobs are reported as cut
        else:
            deadline = start + self.p.get("drain_timeout", 1800)
            while self._job_ids(queue) and self.clock() < deadline:
                self.sleep(min(1.0, max(0.0, deadline - self.clock())))
                try:
                    queue = client.get_json("/queue")
                except ComfyUIError:
                    break
            inst.cut_jobs = self._job_ids(queue)
        inst.drained_s = round(self.clock() - start, 1)

    # -- journal

    def _write_journal(self, **data):
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        data.update(format=JOURNAL_FORMAT)
        write_atomic(self.journal_path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)

    def _read_journal(self):
        try:
            with open(self.journal_path, "r", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except ValueError:
            return {"format": JOURNAL_FORMAT, "switched": [], "unreadable": True}

    def recover(self):
        """Finish an interrupted run: every instance back to what compose.yml says, verified."""
        journal = self._read_journal()
        if journal is None:
            return
        touched = [n for n in journal.get("switched") or [] if n in {i.name for i in self.instances}]
        if self.check_mode:
            self.repaired.append("would bring %s back to the live compose file (an earlier run was interrupted)"
                                 % (", ".join(touched) or "the instances"))
            return
        since = self.wall_clock()
        names = [i.name for i in self.instances]
        if os.path.exists(self.live_file):
            self.compose.up(self.live_file, names)
        for inst in self.instances:
            self._verify(inst, since)
        self.changed = True
        bad = [i for i in self.instances if not i.verified]
        self.repaired.append(
            "an earlier run was interrupted while switching %s: brought every instance back to the live "
            "compose file%s" % (", ".join(touched) or "instances",
                                "" if not bad else "; still failing: " + "; ".join(
                                    "%s: %s" % (i.name, i.problem) for i in bad)))
        os.unlink(self.journal_path)

    # -- planning

    @staticmethod
    def _set_of(service):
        """What the canary must prove: the image and the node pack mounts."""
        mounts = sorted(v.get("source", "") for v in service.get("volumes") or []
                        if isinstance(v, dict) and "/custom_nodes/" in (v.get("target") or ""))
        return service.get("image"), mounts

    def plan(self):
        """(instances to switch, canary needed, other services to bring up)."""
        candidate = self.compose.services(self.candidate_file)
        live = self.compose.services(self.live_file) if os.path.exists(self.live_file) else {}
        switch, set_changes = [], False
        for inst in self.instances:
            new = candidate.get(inst.name)
            if new is None:
                raise RolloutError("the candidate compose file has no service %s" % inst.name)
            old = live.get(inst.name)
            if old != new or not self._runs(inst.name, new):
                switch.append(inst)
                if old is None or self._set_of(old) != self._set_of(new):
                    set_changes = True
        names = {i.name for i in self.instances} | {CANARY_SERVICE}
        others = [name for name, service in sorted(candidate.items())
                  if name not in names and (live.get(name) != service or not self._runs(name, service))]
        serving = [i for i in self.instances if i not in switch or live.get(i.name)]
        canary = bool(set_changes and live and serving and self.p.get("canary", True) and CANARY_SERVICE in candidate)
        return switch, canary, others

    def _retired(self):
        """Services of the live file that the candidate no longer has (fewer GPUs or instances)."""
        if not os.path.exists(self.live_file):
            return []
        candidate = self.compose.services(self.candidate_file)
        return sorted(n for n in self.compose.services(self.live_file) if n not in candidate and n != CANARY_SERVICE)

    def _runs(self, name, service):
        """Whether the container of a service runs, from the image the service names."""
        container = self.docker.container(service.get("container_name") or name)
        return bool(container and (container.get("State") or {}).get("Running")
                    and container.get("Image") == self.docker.image_id(service.get("image")))

    # -- canary

    def run_canary(self):
        since = self.wall_clock()
        start = self.clock()
        self.canary = dict(ran=True, verified=False, seconds=None, problem=None)
        try:
            self.compose.up(self.candidate_file, [CANARY_SERVICE], profile=CANARY_PROFILE)
            address = self.compose.port(self.candidate_file, CANARY_SERVICE, self.p["container_port"],
                                        profile=CANARY_PROFILE)
            if not address:
                raise RolloutError("the canary publishes no port")
            host, _sep, port = address.rpartition(":")
            url = "http://%s:%s" % ("127.0.0.1" if host in ("0.0.0.0", "", "[::]", "::") else host, port)
            probe = Instance(CANARY_SERVICE, url)
            self._verify(probe, since)
            self.canary.update(verified=probe.verified, problem=probe.problem, comfyui_version=probe.version)
        finally:
            self.canary["seconds"] = round(self.clock() - start, 1)
            try:
                self.compose.remove(self.candidate_file, [CANARY_SERVICE], profile=CANARY_PROFILE)
            except RolloutError:
                pass
        return self.canary["verified"]

    # -- switch, commit, roll back

    def switch(self, insts):
        """Recreate each instance from the candidate, one at a time (all at once when none is serving yet)."""
        fresh = not os.path.exists(self.live_file)
        self._write_journal(phase="switching", started=self.wall_clock(), switched=[],
                            candidate_sha256=_sha256_file(self.candidate_file),
                            live_sha256=_sha256_file(self.live_file))
        switched = []
        if fresh:
            since = self.wall_clock()
            switched = list(insts)
            self._write_journal(phase="switching", started=self.wall_clock(), switched=[i.name for i in insts])
            self.compose.up(self.candidate_file, [i.name for i in insts])
            for inst in insts:
                inst.action = "started"
                self._verify(inst, since)
            return switched, [i for i in insts if not i.verified]
        for inst in insts:
            self.drain(inst)
            switched.append(inst)
            self._write_journal(phase="switching", started=self.wall_clock(), switched=[i.name for i in switched])
            since = self.wall_clock()
            try:
                self.compose.up(self.candidate_file, [inst.name])
            finally:
                self._mark_draining(inst.name, False)
            inst.action = "recreated"
            if not self._verify(inst, since):
                return switched, [inst]
        return switched, []

    def commit(self):
        if os.path.exists(self.live_file):
            with open(self.live_file, "r", encoding="utf-8") as f:
                write_atomic(self.previous_file, f.read(), mode=0o644)
        with open(self.candidate_file, "r", encoding="utf-8") as f:
            write_atomic(self.live_file, f.read(), mode=0o644)
        if os.path.exists(self.journal_path):
            os.unlink(self.journal_path)

    def roll_back(self, switched):
        since = self.wall_clock()
        self.compose.up(self.live_file, [i.name for i in switched])
        for inst in switched:
            inst.action = "rolled_back"
            self._verify(inst, since)
        self.rolled_back = True
        if os.path.exists(self.journal_path):
            os.unlink(self.journal_path)

    def prune_images(self):
        repository = self.p.get("image_repository")
        keep = self.p.get("keep_images", 2)
        if not repository or keep <= 0:
            return []
        in_use = set()
        for path in (self.live_file, self.previous_file):
            if os.path.exists(path):
                for service in self.compose.services(path).values():
                    if service.get("image"):
                        in_use.add(service["image"])
        removed, kept = [], 0
        for ref, _image_id in self.docker.images(repository):
            if ref in in_use or kept < keep - len(in_use):
                kept += ref not in in_use
                continue
            if self.docker.remove_image(ref):
                removed.append(ref)
        return removed

    # -- restart (restart.yml): the same drain and verification without a new set

    def restart(self, names):
        for inst in self.instances:
            if inst.name not in names:
                continue
            if self.check_mode:
                inst.action = "restarted"
                continue
            self.drain(inst)
            since = self.wall_clock()
            try:
                self.docker.restart(inst.name, self.p.get("stop_timeout", 30))
            finally:
                self._mark_draining(inst.name, False)
            inst.action = "restarted"
            self.changed = True
            if not self._verify(inst, since):
                raise RolloutError("%s restarted but is not healthy: %s" % (inst.name, inst.problem))

    # -- what is live

    def describe(self, file):
        """The set a compose file gives the first instance: image (tag and id) and node packs (name, commit)."""
        if not file or not os.path.exists(file):
            return None
        service = self.compose.services(file).get(self.instances[0].name) or {}
        packs = []
        for volume in service.get("volumes") or []:
            target = (volume.get("target") or "") if isinstance(volume, dict) else ""
            if "/custom_nodes/" in target:
                source = volume.get("source") or ""
                packs.append(dict(name=target.rstrip("/").rsplit("/", 1)[-1], path=source,
                                  commit=os.path.basename(source.rstrip("/"))))
        image = service.get("image")
        return dict(image=image, image_id=self.docker.image_id(image) if image else None, packs=packs)

    # -- the whole run

    def run(self):
        if self.check_mode:
            # nothing may change: no lock, no journal, the candidate in a temporary file
            with tempfile.TemporaryDirectory(prefix="comfyui-rollout-") as tmp:
                self.candidate_file = os.path.join(tmp, "compose.candidate.yml")
                return self._run_locked()
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.lock = FileLock(os.path.join(self.state_dir, "lock"), "comfyui_rollout of %s" % self.p["project_name"],
                             timeout=self.p.get("lock_timeout", 600))
        with self.lock:
            return self._run_locked()

    def _run_locked(self):
        try:
            self._transaction()
        except RolloutError as e:
            self.live = self.describe_quietly()
            e.result = self.result()
            raise
        self.live = self.describe(self.live_file)
        return self.result()

    def describe_quietly(self):
        try:
            return self.describe(self.live_file)
        except (RolloutError, ValueError):
            return None

    def _transaction(self):
        self.recover()
        if self.p.get("restart"):
            self.restart(self.p["restart"])
            return
        write_atomic(self.candidate_file, self.p["candidate_content"], mode=0o644)
        switch, canary, others = self.plan()
        retired = self._retired()
        if not switch and retired:
            if not self.check_mode:
                self.compose.remove(self.live_file, retired)
                self.commit()
            self.changed, self.removed = True, retired
            return
        if not switch:
            if others and not self.check_mode:
                self.compose.up(self.candidate_file, others)
                self.commit()
                self.changed = True
            if self.p.get("verify") or self.repaired:
                since = self.wall_clock()
                for inst in self.instances:
                    self._verify(inst, since)
            return
        self.changed = True
        if self.check_mode:
            for inst in switch:
                inst.action = "recreated" if os.path.exists(self.live_file) else "started"
            if canary:
                self.canary = dict(ran=False, verified=None, seconds=None, problem="not run in check mode")
            return
        if canary and not self.run_canary():
            raise RolloutError(
                "the new set failed on the canary, so nothing live changed (%s keep serving the previous set): %s"
                % (", ".join(i.name for i in self.instances), self.canary["problem"]))
        switched, failed = self.switch(switch)
        if failed and os.path.exists(self.live_file):
            problems = "; ".join("%s: %s" % (i.name, i.problem) for i in failed)
            self.roll_back(switched)
            bad = [i for i in switched if not i.verified]
            raise RolloutError(
                "the new set failed after the switch (%s), so %s went back to the previous set%s" % (
                    problems, ", ".join(i.name for i in switched),
                    ": every instance verified again" if not bad else
                    ", but still failing: " + "; ".join("%s: %s" % (i.name, i.problem) for i in bad)))
        if others:
            self.compose.up(self.candidate_file, others)
        if retired:
            # instances the new set no longer has: stopped (SIGINT, their grace period) once the others verified
            self.compose.remove(self.live_file, retired)
            self.removed = retired
        self.commit()
        self.pruned = self.prune_images()
        if failed:
            raise RolloutError("the instances started but did not verify: %s"
                               % "; ".join("%s: %s" % (i.name, i.problem) for i in failed))

    def result(self):
        return dict(changed=self.changed, instances=[i.report() for i in self.instances], canary=self.canary,
                    repaired=self.repaired, rolled_back=self.rolled_back, images_pruned=self.pruned,
                    removed=self.removed,
                    live=getattr(self, "live", None),
                    verified=all(i.verified for i in self.instances if i.verified is not None) if any(
                        i.verified is not None for i in self.instances) else None)
