# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Git, state, swap and verification code of the comfyops.comfyui.comfyui_custom_node module.

Commands run through an injected ``run(argv) -> (rc, stdout, stderr)`` (AnsibleModule.run_command in the
module), never through a shell, so the tests can use fakes and the module stays a thin wrapper.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time

from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import (
    ComfyUIClient,
    ComfyUIError,
    WaitTimeout,
    shared_context,
    wait_until,
)

STATE_FORMAT = 1
STATE_FILE = "state.json"
# A plain file in custom_nodes is visible inside the containers; ComfyUI imports only directories and *.py files.
CONSTRAINTS_FILE = ".comfyops-constraints.txt"
DISABLED_SUFFIX = ".disabled"
DEFAULT_PIP_COMMAND = ["python3", "-m", "pip", "install", "--user", "--no-warn-script-location"]
FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
HEX = re.compile(r"^[0-9a-f]{4,64}$")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CANNOT_IMPORT = re.compile(r"Cannot import (.+?) module for custom nodes: (.*)$")
SKIPPED = re.compile(r"Skip (.+?) module for custom nodes due to (.*)$")
OUTPUT_TAIL_LINES = 20


class CustomNodeError(Exception):
    """A failure with a message for the user; result holds what the module reports with it."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.message = message
        self.result = result or {}

    def __str__(self):
        return self.message


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    try:
        with open(path, "rb") as f:
            return sha256_bytes(f.read())
    except FileNotFoundError:
        return None


def tail(text, lines=OUTPUT_TAIL_LINES):
    return "\n".join((text or "").strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------- input


class Pack:
    """One validated item of the packs option."""

    def __init__(self, name, repo=None, version=None, state="present", enabled=True, expected_classes=(),
                 constraints=(), install_requirements=True):
        self.name = name
        self.repo = repo
        self.version = version
        self.state = state
        self.enabled = enabled if state != "absent" else False
        self.expected_classes = list(expected_classes or [])
        self.constraints = list(constraints or [])
        self.install_requirements = install_requirements


def pack_name_problem(name):
    """Why name cannot be a custom_nodes entry, or None. It becomes a path, so it must be one plain component."""
    if not isinstance(name, str) or not name.strip():
        return "must be a non-empty directory name"
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        return "must be a single directory name (no '/')"
    if name.startswith("."):
        return "must not start with '.'"
    if name.endswith(DISABLED_SUFFIX):
        return "must not end in %s (use enabled: false)" % DISABLED_SUFFIX
    if name == "__pycache__":
        return "is reserved by Python"
    return None


def _arg_problem(value):
    """Why a value handed to git/pip on a command line or in a file is unsafe, or None."""
    if value.startswith("-"):
        return "must not start with '-'"
    if any(c in value for c in "\r\n\0"):
        return "must be a single line"
    return None


def constraint_problem(line):
    # a constraints file may carry pip options (--index-url, -e): allow only requirement specifiers
    problem = _arg_problem(line.strip())
    return problem and "%r %s" % (line, problem)


def normalize_packs(items, global_constraints=()):
    """[Pack] from the packs option (already type-checked by AnsibleModule); ValueError with a clear message."""
    packs, seen = [], set()
    if not items:
        raise ValueError("packs must not be empty")
    for pos, item in enumerate(items):
        name = item.get("name")
        where = "packs[%d] (%s)" % (pos, name)
        problem = pack_name_problem(name)
        if problem:
            raise ValueError("%s: name %s" % (where, problem))
        if name in seen:
            raise ValueError("packs: name %r is given more than once" % name)
        seen.add(name)
        state = item.get("state") or "present"
        repo, version = item.get("repo"), item.get("version")
        if state == "absent":
            if version:
                raise ValueError("%s: state=absent takes no version" % where)
        elif not repo:
            raise ValueError("%s: repo is required with state=%s" % (where, state))
        for option, value in (("repo", repo), ("version", version)):
            problem = value is not None and _arg_problem(value)
            if problem:
                raise ValueError("%s: %s %s" % (where, option, problem))
        if version is not None and (not version.strip() or any(c.isspace() for c in version)):
            raise ValueError("%s: version must be a commit, tag or branch name without spaces" % where)
        if state == "latest" and version and FULL_SHA.match(version.lower()):
            raise ValueError("%s: state=latest follows a branch or tag; for a fixed commit use state=present"
                             % where)
        for line in item.get("constraints") or []:
            problem = constraint_problem(line)
            if problem:
                raise ValueError("%s: constraint %s" % (where, problem))
        packs.append(Pack(
            name, repo=repo, version=version.lower() if version and FULL_SHA.match(version.lower()) else version,
            state=state, enabled=item.get("enabled", True), expected_classes=item.get("expected_classes"),
            constraints=[c.strip() for c in item.get("constraints") or [] if c.strip()],
            install_requirements=item.get("install_requirements", True)))
    for line in global_constraints or []:
        problem = constraint_problem(line)
        if problem:
            raise ValueError("constraints: %s" % problem)
    return packs


def merged_constraints(global_constraints, packs):
    """One constraint list for the whole Python environment: the packs share it, so every install honours all."""
    lines = []
    for line in list(global_constraints or []) + [c for p in packs if p.enabled for c in p.constraints]:
        line = line.strip()
        if line and line not in lines:
            lines.append(line)
    return lines


def same_repo(a, b):
    def norm(url):
        url = (url or "").strip().rstrip("/")
        return url[:-4] if url.endswith(".git") else url
    return norm(a) == norm(b)


# ---------------------------------------------------------------------------------------------------- commands


class Git:
    def __init__(self, run, git_bin="git"):
        self.run = run
        self.git_bin = git_bin

    def _in(self, path, *args):
        # checkouts may belong to the container's user: without safe.directory git refuses "dubious ownership"
        return [self.git_bin, "-c", "safe.directory=" + path, "-C", path] + list(args)

    def _check(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise CustomNodeError("%s failed (rc %s): %s" % (what, rc, tail(err or out, 5)))
        return out

    @staticmethod
    def is_checkout(path):
        # without its own .git, git would walk up and answer for an enclosing repository (a ComfyUI checkout)
        return os.path.isdir(path) and os.path.exists(os.path.join(path, ".git"))

    def _rev(self, path, rev):
        rc, out, _err = self.run(self._in(path, "rev-parse", "--verify", "-q", rev + "^{commit}"))
        return out.strip() if rc == 0 and out.strip() else None

    def head(self, path):
        return self._rev(path, "HEAD") if self.is_checkout(path) else None

    def origin(self, path):
        if not self.is_checkout(path):
            return None
        rc, out, _err = self.run(self._in(path, "config", "--get", "remote.origin.url"))
        return out.strip() if rc == 0 else None

    def resolve(self, path, version):
        """The commit a tag, branch (as last fetched) or commit names in a local clone, or None; no network."""
        candidates = ["refs/tags/%s" % version, "refs/remotes/origin/%s" % version]
        if HEX.match(version):
            candidates.append(version)
        for ref in candidates:
            commit = self._rev(path, ref)
            if commit:
                return commit
        return None

    def fetch(self, path):
        """Refresh the tags and remote branches of a checkout (its working tree stays as it is)."""
        self._check(self._in(path, "fetch", "-q", "--tags", "origin"), "git fetch in %s" % path)

    def ls_remote(self, repo, version):
        """The commit a tag or branch (or the default branch) points to on the remote, or None if unknown."""
        if version and FULL_SHA.match(version):
            return version
        patterns = ["HEAD"] if not version else [
            "refs/tags/%s^{}" % version, "refs/tags/%s" % version, "refs/heads/%s" % version]
        out = self._check([self.git_bin, "ls-remote", repo] + patterns, "git ls-remote %s" % repo)
        refs = {}
        for line in out.splitlines():
            sha, _tab, ref = line.partition("\t")
            refs[ref.strip()] = sha.strip()
        for ref in patterns:  # peeled annotated tag first, then the tag, then the branch
            if refs.get(ref):
                return refs[ref]
        return None

    def clone(self, repo, dest, version):
        """Clone repo into dest and check out version (default branch when None); returns the commit."""
        self._check([self.git_bin, "clone", "-q", "--no-checkout", "--", repo, dest], "git clone %s" % repo)
        commit = self.resolve(dest, version) if version else self.head(dest)
        if commit is None and version and HEX.match(version):
            # a commit that no branch or tag reaches (a PR head): ask for it by name
            rc, _out, _err = self.run(self._in(dest, "fetch", "-q", "origin", version))
            commit = self._rev(dest, "FETCH_HEAD") if rc == 0 else None
        if commit is None:
            raise CustomNodeError("version %s not found in %s" % (version or "HEAD (default branch)", repo))
        self._check(self._in(dest, "checkout", "-q", "--detach", commit), "git checkout %s" % commit)
        return commit


class Docker:
    def __init__(self, run, docker_bin="docker"):
        self.run = run
        self.docker_bin = docker_bin

    def image(self, container):
        rc, out, err = self.run([self.docker_bin, "inspect", "--type", "container", "--format", "{{.Image}}",
                                 container])
        if rc != 0 or not out.strip():
            raise CustomNodeError("docker inspect %s failed (rc %s): %s" % (container, rc, tail(err or out, 5)))
        return out.strip()

    def exec(self, container, argv):
        return self.run([self.docker_bin, "exec", container] + list(argv))

    def restart(self, containers):
        rc, out, err = self.run([self.docker_bin, "restart"] + list(containers))
        if rc != 0:
            raise CustomNodeError("docker restart %s failed (rc %s): %s"
                                  % (" ".join(containers), rc, tail(err or out, 5)))

    def logs(self, container, since):
        # ComfyUI logs to stderr; docker logs keeps the streams apart
        rc, out, err = self.run([self.docker_bin, "logs", "--since", str(int(since)), container])
        return (out or "") + (err or "") if rc == 0 else ""


# ---------------------------------------------------------------------------------------------------- files


def read_text(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_atomic(path, content, mode=0o644):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def load_state(path):
    """(packs entries, warning or None). A state file that cannot be read only costs re-installs."""
    text = read_text(path)
    if text is None:
        return {}, None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("packs"), dict):
            return data["packs"], None
    except ValueError:
        pass
    return {}, "ignoring unreadable state file %s: requirements will be installed again" % path


def save_state(path, packs):
    write_atomic(path, json.dumps(dict(format=STATE_FORMAT, packs=packs), indent=2, sort_keys=True) + "\n")


def chown_tree(path, uid, gid):
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def remove_path(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


class Transaction:
    """File system changes undone in reverse order on rollback; the backups they leave are deleted on commit."""

    def __init__(self):
        self._undo = []
        self._backups = []

    def move(self, src, dst, backup=False):
        os.rename(src, dst)
        self._undo.append(lambda: os.rename(dst, src))
        if backup:
            self._backups.append(dst)

    def place(self, src, dst):
        """Move a new tree in; rollback deletes it."""
        os.rename(src, dst)
        self._undo.append(lambda: remove_path(dst))

    def write(self, path, content):
        """Write (or, with None, remove) a small text file; rollback restores the old content."""
        old = read_text(path)
        if content is None:
            os.unlink(path)
        else:
            write_atomic(path, content)
        self._undo.append(lambda: write_atomic(path, old) if old is not None else os.unlink(path))

    @property
    def empty(self):
        return not self._undo

    def rollback(self):
        """Undo everything; returns the errors (rollback goes on past them)."""
        errors = []
        while self._undo:
            try:
                self._undo.pop()()
            except OSError as e:
                errors.append(str(e))
        self._backups = []
        return errors

    def commit(self):
        for path in self._backups:
            remove_path(path)
        self._undo, self._backups = [], []


# ---------------------------------------------------------------------------------------------------- logs


def find_import_error(log_text, name):
    """The last import error ComfyUI logged for the pack directory name, or None."""
    found = None
    for line in ANSI.sub("", log_text or "").splitlines():
        for pattern, fmt in ((CANNOT_IMPORT, "%s"), (SKIPPED, "skipped due to %s")):
            m = pattern.search(line)
            if m and m.group(1).rstrip("/").rsplit("/", 1)[-1] == name:
                found = fmt % m.group(2).strip()
    return found


# ---------------------------------------------------------------------------------------------------- the work


class Plan:
    """What one pack is and what it becomes."""

    def __init__(self, pack, paths):
        self.pack = pack
        self.current_path, self.current_enabled = paths
        self.before = None
        self.after = None
        self.clone = False       # a new tree must come from the repo (staging)
        self.rename = False      # the same tree moves between <name> and <name>.disabled
        self.remove = False
        self.removals = []       # absent: the paths to take away (<name> and/or <name>.disabled)
        self.install = False     # pip runs for its requirements.txt
        self.record = None       # what the state file remembers about the last install
        self.classes_found = None
        self.classes_missing = None
        self.import_error = None

    @property
    def changed(self):
        return self.clone or self.rename or self.remove or self.install

    @property
    def touches_loaded_code(self):
        """Whether a running ComfyUI must restart to see it: disabled packs are never imported."""
        return self.install or ((self.clone or self.rename or self.remove)
                                and bool(self.pack.enabled or self.current_enabled))


class NodeManager:
    """Plans, applies, verifies and (on failure) rolls back one module run."""

    def __init__(self, params, run, check_mode=False, warn=None, uid=-1, gid=-1, clock=time.monotonic,
                 sleep=time.sleep, wall_clock=time.time):
        self.p = params
        self.check_mode = check_mode
        self.warn = warn or (lambda msg: None)
        self.clock, self.sleep, self.wall_clock = clock, sleep, wall_clock
        self.git = Git(run, params.get("git_bin") or "git")
        self.docker = Docker(run, params.get("docker_bin") or "docker")
        self.cn = os.path.abspath(params["custom_nodes_dir"])
        self.state_dir = os.path.abspath(params.get("state_dir")
                                         or os.path.join(os.path.dirname(self.cn), ".comfyops-nodes"))
        real_cn, real_state = os.path.realpath(self.cn), os.path.realpath(self.state_dir)
        if real_state == real_cn or real_state.startswith(real_cn.rstrip("/") + "/"):
            raise CustomNodeError("state_dir %s must not be inside custom_nodes_dir %s: ComfyUI would try to "
                                  "import the staging and backup directories" % (self.state_dir, self.cn))
        self.packs = normalize_packs(params["packs"], params.get("constraints"))
        self.containers = list(params.get("containers") or [])
        self.urls = list(params.get("urls") or [])
        self.constraints = merged_constraints(params.get("constraints"), self.packs)
        self.constraints_sha = sha256_bytes("\n".join(self.constraints).encode()) if self.constraints else None
        self.uid, self.gid = uid, gid
        self.state_path = os.path.join(self.state_dir, STATE_FILE)
        self.image = None
        self.pip_argv = None
        self.restarted = False
        self.verified = False

    # -- planning (read-only; the only network use is ls-remote when the local clone cannot answer)

    def _paths(self, name):
        enabled, disabled = os.path.join(self.cn, name), os.path.join(self.cn, name + DISABLED_SUFFIX)
        present = [p for p in (enabled, disabled) if os.path.lexists(p)]
        return present, enabled, disabled

    def plan(self, pack, state_entry):
        present, enabled_path, disabled_path = self._paths(pack.name)
        if pack.state == "absent":
            plan = Plan(pack, (present[0] if present else None, present[0] == enabled_path if present else None))
            plan.removals = present
            plan.remove = bool(present)
            plan.before = self.git.head(present[0]) if present else None
            return plan
        if len(present) == 2:
            raise CustomNodeError("%s: both %s and %s exist; remove one of them" % (pack.name, enabled_path, disabled_path))
        current = present[0] if present else None
        plan = Plan(pack, (current, current == enabled_path if current else None))
        plan.before = self.git.head(current) if current else None
        ours = plan.before is not None and same_repo(self.git.origin(current), pack.repo)
        # wanted None means only a clone can tell; _stage drops the clone if it turns out to be the same commit
        if not ours:
            wanted = self.git.ls_remote(pack.repo, pack.version) if self.check_mode else \
                (pack.version if pack.version and FULL_SHA.match(pack.version) else None)
        elif pack.state == "latest":
            wanted = self.git.ls_remote(pack.repo, pack.version)
            if wanted is None:
                raise CustomNodeError("%s: version %s not found in %s" % (pack.name, pack.version or "HEAD", pack.repo))
        elif pack.version is None:
            wanted = plan.before  # present without a version: any commit of this repository will do
        elif FULL_SHA.match(pack.version):
            wanted = pack.version
        else:
            wanted = self.git.resolve(current, pack.version)
            if wanted is None and self.check_mode:
                wanted = self.git.ls_remote(pack.repo, pack.version)
        plan.clone = not (ours and wanted == plan.before)
        plan.after = wanted if plan.clone else plan.before
        plan.rename = not plan.clone and current != self._target(pack)
        self._plan_install(plan, state_entry)
        return plan

    def _target(self, pack):
        return os.path.join(self.cn, pack.name + ("" if pack.enabled else DISABLED_SUFFIX))

    def _install_wanted(self, pack):
        return bool(pack.state != "absent" and pack.enabled and pack.install_requirements and self.containers)

    def _plan_install(self, plan, state_entry, tree=None):
        """Set plan.record/install from the requirements.txt in tree (the live dir unless it is being replaced)."""
        plan.record, plan.install = None, False
        if not self._install_wanted(plan.pack):
            return
        if tree is None:
            if plan.clone:
                # check mode cannot see the new commit's requirements.txt: assume they need installing
                plan.install = True
                return
            tree = plan.current_path
        req_sha = sha256_file(os.path.join(tree, "requirements.txt"))
        if req_sha is None:
            return
        plan.record = dict(requirements_sha256=req_sha, constraints_sha256=self.constraints_sha, image=self.image)
        plan.install = (state_entry or {}).get("requirements") != plan.record

    # -- the whole run

    def run(self):
        state, warning = load_state(self.state_path)
        if warning:
            self.warn(warning)
        if self.containers and any(self._install_wanted(p) for p in self.packs):
            # one docker call per run: an image change means the user base was built for other libraries
            self.image = self.docker.image(self.containers[0])
        plans = [self.plan(pack, state.get(pack.name)) for pack in self.packs]
        if not self.check_mode and any(p.changed for p in plans):
            self.apply(plans, state)
        restart_needed = any(p.touches_loaded_code for p in plans)
        if restart_needed and not self.containers and not self.check_mode:
            self.warn("no containers given: ComfyUI must be restarted to load the changed node packs")
        return self.result(plans, restart_needed)

    def apply(self, plans, state):
        staging_root = os.path.join(self.state_dir, "staging")
        previous_root = os.path.join(self.state_dir, "previous")
        for path in (self.cn, staging_root, previous_root):
            os.makedirs(path, exist_ok=True)
        if os.stat(self.cn).st_dev != os.stat(self.state_dir).st_dev:
            raise CustomNodeError("state_dir %s and custom_nodes_dir %s are on different file systems; the swap "
                                  "needs a rename: set state_dir next to custom_nodes_dir" % (self.state_dir, self.cn))
        txn = Transaction()
        try:
            staged = self._stage(plans, staging_root, state)
            self._swap(plans, staged, previous_root, txn)
            self._write_constraints(txn)
            self._pip(plans)
        except (CustomNodeError, OSError) as e:
            rolled_back = not txn.empty
            errors = txn.rollback()
            remove_path(staging_root)
            note = "; rollback incomplete: %s" % "; ".join(errors) if errors else ""
            raise CustomNodeError("%s%s" % (e, note), result=dict(self.result(plans, False), rolled_back=rolled_back))
        restart_needed = any(p.touches_loaded_code for p in plans)
        if restart_needed and self.containers:
            since = self.wall_clock()
            self.docker.restart(self.containers)
            self.restarted = True
            if self.urls:
                problems = self.verify(plans)
                if problems:
                    self._fail_and_roll_back(plans, txn, problems, since)
                self.verified = True
        txn.commit()
        remove_path(staging_root)
        for plan in plans:
            if plan.pack.state == "absent":
                state.pop(plan.pack.name, None)
                continue
            entry = dict(state.get(plan.pack.name) or {})
            entry.update(repo=plan.pack.repo, commit=plan.after, enabled=plan.pack.enabled)
            if plan.install or plan.clone:
                entry["requirements"] = plan.record
            state[plan.pack.name] = entry
        save_state(self.state_path, state)

    def _stage(self, plans, staging_root, state):
        staged = {}
        for plan in plans:
            if not plan.clone:
                continue
            dest = os.path.join(staging_root, plan.pack.name)
            remove_path(dest)
            try:
                plan.after = self.git.clone(plan.pack.repo, dest, plan.after or plan.pack.version)
            except CustomNodeError as e:
                raise CustomNodeError("%s: %s" % (plan.pack.name, e))
            if plan.after == plan.before and plan.current_path and same_repo(
                    self.git.origin(plan.current_path), plan.pack.repo):
                # the ref was unknown locally but names the commit already there: keep the live tree, and
                # fetch its refs so the next run resolves the ref without the network
                plan.clone = False
                remove_path(dest)
                self.git.fetch(plan.current_path)
                plan.rename = plan.current_path != self._target(plan.pack)
                self._plan_install(plan, state.get(plan.pack.name))
                continue
            if self.uid != -1 or self.gid != -1:
                chown_tree(dest, self.uid, self.gid)
            self._plan_install(plan, state.get(plan.pack.name), tree=dest)
            staged[plan.pack.name] = dest
        return staged

    def _swap(self, plans, staged, previous_root, txn):
        for plan in plans:
            name = plan.pack.name
            target = self._target(plan.pack)
            if plan.remove:
                for i, path in enumerate(plan.removals):
                    backup = os.path.join(previous_root, name + ("" if i == 0 else DISABLED_SUFFIX))
                    remove_path(backup)
                    txn.move(path, backup, backup=True)
            elif name in staged:
                if plan.current_path:
                    backup = os.path.join(previous_root, name)
                    remove_path(backup)
                    txn.move(plan.current_path, backup, backup=True)
                txn.place(staged[name], target)
            elif plan.rename:
                txn.move(plan.current_path, target)

    def _write_constraints(self, txn):
        path = os.path.join(self.cn, CONSTRAINTS_FILE)
        content = None
        if self.constraints:
            content = "# Managed by comfyops.comfyui.comfyui_custom_node: pip constraints for every pack\n" \
                      + "\n".join(self.constraints) + "\n"
        if read_text(path) != content:
            txn.write(path, content)
            if content is not None and (self.uid != -1 or self.gid != -1):
                os.lchown(path, self.uid, self.gid)

    def _pip(self, plans):
        installs = [p for p in plans if p.install]
        if not installs:
            return
        ccn = self.p["container_custom_nodes_dir"].rstrip("/")
        argv = list(self.p.get("pip_command") or DEFAULT_PIP_COMMAND) + list(self.p.get("pip_extra_args") or [])
        for plan in installs:  # one pip run resolves all packs together
            argv += ["-r", "%s/%s/requirements.txt" % (ccn, plan.pack.name)]
        if self.constraints:
            argv += ["-c", "%s/%s" % (ccn, CONSTRAINTS_FILE)]
        self.pip_argv = argv
        rc, out, err = self.docker.exec(self.containers[0], argv)
        if rc != 0:
            raise CustomNodeError(
                "pip install in container %s failed (rc %s) for %s: %s; the node packs were rolled back (packages "
                "pip installed before it failed stay in the user base)"
                % (self.containers[0], rc, ", ".join(p.pack.name for p in installs), tail(err or out)))

    # -- verification

    def _clients(self):
        context = shared_context(self.urls, self.p.get("validate_certs", True), self.p.get("ca_path"))
        return [ComfyUIClient.from_params(self.p, url, context=context) for url in self.urls]

    def _wait(self, client, deadline):
        def probe():
            info = client.object_info()
            if not isinstance(info, dict):
                raise ComfyUIError("GET %s: not a ComfyUI object_info answer" % client.url("/object_info"),
                                   url=client.url("/object_info"), status=200)
            return info
        return wait_until(deadline, probe, interval=self.p.get("delay") or 1.0, clock=self.clock, sleep=self.sleep)

    def wait_ready(self):
        """{url: object_info or error text} for every URL, with one deadline for all."""
        deadline = self.clock() + self.p["wait_timeout"]
        answers = {}
        for client in self._clients():
            try:
                answers[client.base_url] = self._wait(client, deadline)
            except WaitTimeout as e:
                answers[client.base_url] = "not ready within %g s: %s" % (self.p["wait_timeout"], e.last_error)
            except ComfyUIError as e:
                answers[client.base_url] = "not ready: %s" % e
        return answers

    def verify(self, plans):
        """Problem lines (empty when every instance serves every expected class of the enabled packs)."""
        answers = self.wait_ready()
        problems = [("%s: %s" % (url, a), None) for url, a in answers.items() if isinstance(a, str)]
        infos = [(url, info) for url, info in answers.items() if isinstance(info, dict)]
        for plan in plans:
            if not plan.pack.enabled or not plan.pack.expected_classes:
                continue
            missing, where = [], None
            for url, info in infos:
                lost = [c for c in plan.pack.expected_classes if c not in info and c not in missing]
                if lost and where is None:
                    where = url
                missing += lost
            plan.classes_missing = missing
            plan.classes_found = [c for c in plan.pack.expected_classes if c not in missing]
            if missing:
                label = plan.pack.name + (" at %s" % plan.after[:12] if plan.after else "")
                problems.append(("%s: classes missing on %s: %s" % (label, where, ", ".join(missing)),
                                 (plan, where)))
        return problems

    def _import_error(self, plan, url, since):
        client = self._clients()[self.urls.index(url)]
        try:
            logs = client.get_json("/internal/logs")
            error = find_import_error(logs if isinstance(logs, str) else json.dumps(logs), plan.pack.name)
        except ComfyUIError:
            error = None
        if error is None:
            # /internal/logs is a 300-line ring buffer, or a proxy hides it: ask the container
            index = self.urls.index(url)
            container = self.containers[index] if len(self.containers) == len(self.urls) else self.containers[0]
            error = find_import_error(self.docker.logs(container, since - 1), plan.pack.name)
        return error

    def _fail_and_roll_back(self, plans, txn, problems, since):
        lines = []
        for text, where in problems:
            if where is not None:
                plan, url = where
                plan.import_error = self._import_error(plan, url, since)
                text += "; import error: %s" % (plan.import_error or "none logged for %s" % plan.pack.name)
            else:
                logs = tail(self.docker.logs(self.containers[0], since - 1), 10)
                text += "; last log lines of %s:\n%s" % (self.containers[0], logs) if logs else ""
            lines.append(text)
        changed = [p.pack.name for p in plans if p.clone or p.rename or p.remove]
        errors = txn.rollback()
        note = "rolled back %s" % (", ".join(changed) if changed else "nothing (no pack was replaced)")
        if errors:
            note += " (incomplete: %s)" % "; ".join(errors)
        try:
            self.docker.restart(self.containers)
            after = [a for a in self.wait_ready().values() if isinstance(a, str)]
            note += "; restarted %s" % ", ".join(self.containers)
            note += ": previous set answering again" if not after else ", but: %s" % "; ".join(after)
        except CustomNodeError as e:
            note += "; restart after rollback failed: %s" % e
        raise CustomNodeError("node pack verification failed: %s. %s" % (" | ".join(lines), note),
                              result=dict(self.result(plans, True), rolled_back=True))

    # -- reporting

    def result(self, plans, restart_needed):
        packs, before, after = [], {}, {}
        for plan in plans:
            pack = plan.pack
            if plan.current_path:
                before[pack.name] = dict(commit=plan.before, enabled=bool(plan.current_enabled))
            if pack.state != "absent":
                after[pack.name] = dict(commit=plan.after if plan.after else "unknown: would clone %s %s"
                                        % (pack.repo, pack.version or "HEAD"), enabled=pack.enabled)
            path = self._target(pack) if pack.state != "absent" else None
            packs.append(dict(
                name=pack.name, state=pack.state, repo=pack.repo, version=pack.version, path=path,
                before=plan.before, after=plan.after if pack.state != "absent" else None,
                changed=plan.changed, enabled=pack.enabled, requirements_installed=plan.install,
                classes_found=plan.classes_found, classes_missing=plan.classes_missing,
                import_error=plan.import_error,
            ))
        return dict(
            changed=any(p.changed for p in plans), restarted=self.restarted, restart_needed=restart_needed,
            verified=self.verified, packs=packs, image=self.image, pip_command=self.pip_argv,
            state_file=self.state_path, rolled_back=False,
            diff=dict(before=before, after=after, before_header=self.cn, after_header=self.cn),
        )
