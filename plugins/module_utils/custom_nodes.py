# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node pack store of comfyops.comfyui.comfyui_custom_node, and ComfyUI's import errors for comfyui_rollout.

Each pack commit gets its own directory, ``<store>/<name>/<commit>``, cloned in a staging directory and renamed
into place once complete; an entry is never changed afterwards. The comfyui role mounts the entries of a set
read-only into the containers (``custom_nodes/<name>``), so a new commit lands beside the live one without
touching it, a rollback is a compose file that names the previous entry, and no container can write into a
checkout that host root later runs git in. What a ref resolved to is remembered (``.state.json``), so a re-run
uses no git at all. Store metadata has names starting with ``.``, which no pack name may.

Git runs only in the staging directory or outside any repository, with hooks, fsmonitor, ``ext::`` URLs and
submodules turned off, and never with ``safe.directory``: the store is the module user's own. Commands run through
an injected ``run(argv) -> (rc, stdout, stderr)`` (AnsibleModule.run_command), never through a shell.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from urllib.parse import unquote

from ansible_collections.comfyops.comfyui.plugins.module_utils.atomic_files import write_atomic
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock, LockTimeout

_STATE_FORMAT = 2
_STATE_FILE = ".state.json"
_STATE_LOCK = ".state.lock"
_LOCKS_DIR = ".locks"
_REQUIREMENTS = "requirements.txt"
# a requirements.txt is a few lines; anything bigger is not one (or a FIFO/device planted to hang us)
_REQUIREMENTS_MAX_BYTES = 1 << 20
_DISABLED_SUFFIX = ".disabled"
_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_HEX = re.compile(r"^[0-9a-f]{4,64}$")
# a pack name becomes a directory and a line of compose.yml (<entry>:<code>/custom_nodes/<name>:ro)
_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")
# what git check-ref-format refuses in a ref name, plus whitespace
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# schemes where the user name itself may be the secret (https://<token>@github.com/...)
_HTTP_SCHEMES = ("http", "https", "ftp", "ftps")
# config that could make git run a command: hooks (a template dir, a global core.hooksPath), fsmonitor,
# ext:: transports, and submodules (URLs chosen by the pack's .gitmodules)
_GIT_SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "protocol.ext.allow=never",
             "-c", "submodule.recurse=false"]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CANNOT_IMPORT = re.compile(r"Cannot import (.+?) module for custom nodes: (.*)$")
_SKIPPED = re.compile(r"Skip (.+?) module for custom nodes due to (.*)$")


class CustomNodeError(Exception):
    """A failure with a message for the user."""


def _tail(text, lines=5):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------- input


class _Pack:
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
    """Why name cannot be a pack directory in custom_nodes, or None."""
    if not isinstance(name, str) or not name.strip():
        return "must be a non-empty directory name"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "must be a single directory name (no '/')"
    if name.startswith("."):
        return "must not start with '.'"
    if not _NAME.match(name):
        return "may only contain letters, digits and . _ + - (it becomes a directory and a compose mount)"
    if name.endswith(_DISABLED_SUFFIX):
        return "must not end in %s (use enabled: false)" % _DISABLED_SUFFIX
    if name == "__pycache__":
        return "is reserved by Python"
    return None


def _userinfo(url):
    """(scheme, user, password) of a URL's user info; password is None without a ':'. None when there is none.

    Parsed by hand: urlsplit raises on some malformed hosts, and a URL git cannot use may still carry a token.
    An scp-like address (git@host:path) has a user name and no password syntax: None.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" not in netloc:
        return None
    user, colon, password = netloc.rpartition("@")[0].partition(":")
    return scheme.lower(), user, password if colon else None


def repo_url_secrets(url):
    """The parts of a pack URL that are credentials (as written and percent-decoded), for masking; [] if none.

    A password anywhere, and for http(s)/ftp(s) the user name too: tokens go there (https://<token>@host/...).
    """
    info = _userinfo(url) if isinstance(url, str) else None
    if info is None:
        return []
    scheme, user, password = info
    parts = [password] + ([user] if scheme in _HTTP_SCHEMES else [])
    return sorted({v for p in parts if p for v in (p, unquote(p))})


def _masked_url(url):
    scheme, user, password = _userinfo(url)
    start = len(scheme) + 3
    end = url.index("@", start)
    shown = "***" if scheme in _HTTP_SCHEMES and user else user
    if password is not None:
        shown += ":***"
    return url[:start] + shown + url[end:]


def _repo_problem(repo):
    if repo.startswith("-"):
        return "must not start with '-'"
    if _CONTROL.search(repo):
        return "must be a single line without control characters"
    if repo_url_secrets(repo):
        return ("%s carries credentials, which would end up in results, the store's state and the checkout's "
                ".git/config. Take them out of the URL and give them to git: a credential helper (git config "
                "--global credential.helper store, ~/.git-credentials mode 0600) or a ~/.netrc (mode 0600) in the "
                "home of the user the module runs as (root with become)" % _masked_url(repo))
    return None


def _version_problem(version):
    if version.startswith("-"):
        return "must not start with '-'"
    if not version or _BAD_REF.search(version) or version.endswith((".", "/", ".lock")):
        return "must be a commit, tag or branch name (no spaces, control characters, ~ ^ : ? * [ \\ .. @{)"
    return None


def _constraint_problem(line):
    # the lines go to pip with -c, where options (--index-url, -e) would be honoured: requirement specifiers only
    stripped = line.strip()
    if stripped.startswith("-"):
        return "%r must not start with '-'" % line
    if _CONTROL.search(stripped):
        return "%r must be a single line" % line
    return None


def normalize_packs(items, global_constraints=()):
    """[_Pack] from the packs option (already type-checked by AnsibleModule); ValueError with a clear message."""
    packs, seen = [], set()
    if not items:
        raise ValueError("packs must not be empty")
    for pos, item in enumerate(items):
        name = item.get("name")
        where = "packs[%d] (%s)" % (pos, name if isinstance(name, str) and not _CONTROL.search(name) else
                                    repr(name))
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
        elif not repo or not repo.strip():
            raise ValueError("%s: repo is required with state=%s" % (where, state))
        problem = repo and _repo_problem(repo)
        if problem:
            raise ValueError("%s: repo %s" % (where, problem))
        problem = version is not None and _version_problem(version)
        if problem:
            raise ValueError("%s: version %s" % (where, problem))
        if version and _FULL_SHA.match(version.lower()):
            version = version.lower()  # git prints lower case; compare like with like
            if state == "latest":
                raise ValueError("%s: state=latest follows a branch or tag; for a fixed commit use state=present"
                                 % where)
        for line in item.get("constraints") or []:
            problem = _constraint_problem(line)
            if problem:
                raise ValueError("%s: constraint %s" % (where, problem))
        packs.append(_Pack(
            name, repo=repo, version=version, state=state, enabled=item.get("enabled", True),
            expected_classes=item.get("expected_classes"),
            constraints=[c.strip() for c in item.get("constraints") or [] if c.strip()],
            install_requirements=item.get("install_requirements", True)))
    for line in global_constraints or []:
        problem = _constraint_problem(line)
        if problem:
            raise ValueError("constraints: %s" % problem)
    return packs


def _merged_constraints(global_constraints, packs):
    """One constraint list for the whole Python environment: the packs share it, so every install honours all."""
    lines = []
    for line in list(global_constraints or []) + [c for p in packs if p.enabled for c in p.constraints]:
        line = line.strip()
        if line and line not in lines:
            lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------------- git


class _Git:
    """git with _GIT_SAFE, run in the checkout it works on, or in / (no repository around the module's working
    directory lends its config: credential helpers, insteadOf)."""

    def __init__(self, run, git_bin="git"):
        self.run = run
        self.git_bin = git_bin

    def _argv(self, cwd, *args):
        return [self.git_bin] + _GIT_SAFE + ["-C", cwd] + list(args)

    def _check(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise CustomNodeError("%s failed (rc %s): %s" % (what, rc, _tail(err or out)))
        return out

    def _rev(self, path, rev):
        rc, out, _err = self.run(self._argv(path, "rev-parse", "--verify", "-q", rev + "^{commit}"))
        return out.strip() if rc == 0 and out.strip() else None

    def resolve(self, path, version):
        """The commit a tag, branch (as cloned) or commit names in a clone, or None; no network."""
        candidates = ["refs/tags/%s" % version, "refs/remotes/origin/%s" % version]
        if _HEX.match(version):
            candidates.append(version)
        for ref in candidates:
            commit = self._rev(path, ref)
            if commit:
                return commit
        return None

    def ls_remote(self, repo, version):
        """The commit a tag or branch (or the default branch) points to on the remote, or None if unknown."""
        if version and _FULL_SHA.match(version):
            return version
        patterns = ["HEAD"] if not version else [
            "refs/tags/%s^{}" % version, "refs/tags/%s" % version, "refs/heads/%s" % version]
        out = self._check(self._argv("/", "ls-remote", "--", repo, *patterns), "git ls-remote %s" % repo)
        refs = {}
        for line in out.splitlines():
            sha, _tab, ref = line.partition("\t")
            refs[ref.strip()] = sha.strip()
        for ref in patterns:  # peeled annotated tag first, then the tag, then the branch
            if refs.get(ref):
                return refs[ref]
        return None

    def clone(self, repo, dest, version):
        """Clone repo into dest and check out version (default branch when None); returns the commit.

        --no-local: a local source is read through git's transport, so no object file is hard-linked to (or
        copied with the symlinks of) a directory someone else may write.
        """
        self._check(self._argv("/", "clone", "-q", "--no-checkout", "--no-local", "--", repo, dest),
                    "git clone %s" % repo)
        commit = self.resolve(dest, version) if version else self._rev(dest, "HEAD")
        if commit is None and version and _HEX.match(version):
            # a commit that no branch or tag reaches (a PR head): ask for it by name, into the staging clone
            rc, _out, _err = self.run(self._argv(dest, "fetch", "-q", "origin", version))
            commit = self._rev(dest, "FETCH_HEAD") if rc == 0 else None
        if commit is None:
            raise CustomNodeError("version %s not found in %s" % (version or "HEAD (default branch)", repo))
        self._check(self._argv(dest, "checkout", "-q", "--detach", commit), "git checkout %s" % commit)
        return commit


# ---------------------------------------------------------------------------------------------------- logs


def find_import_error(log_text, name):
    """The last import error ComfyUI logged for the pack directory name, or None."""
    found = None
    for line in _ANSI.sub("", log_text or "").splitlines():
        for pattern, fmt in ((_CANNOT_IMPORT, "%s"), (_SKIPPED, "skipped due to %s")):
            m = pattern.search(line)
            if m and m.group(1).rstrip("/").rsplit("/", 1)[-1] == name:
                found = fmt % m.group(2).strip()
    return found


# ---------------------------------------------------------------------------------------------------- files


def _is_regular(mode):
    return (mode & 0o170000) == 0o100000


def _read_plain(path, what):
    """Bytes of a regular file (no symlink, at most _REQUIREMENTS_MAX_BYTES), or None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CustomNodeError("%s %s cannot be read as a plain file (%s)" % (what, path, e.strerror or e))
    with os.fdopen(fd, "rb") as f:
        if not _is_regular(os.fstat(f.fileno()).st_mode):
            raise CustomNodeError("%s %s is not a regular file" % (what, path))
        data = f.read(_REQUIREMENTS_MAX_BYTES + 1)
    if len(data) > _REQUIREMENTS_MAX_BYTES:
        raise CustomNodeError("%s %s is larger than %d bytes: not a requirements file"
                              % (what, path, _REQUIREMENTS_MAX_BYTES))
    return data


def _existing_sha256(path):
    try:
        data = _read_plain(path, "requirements copy")
    except CustomNodeError:
        return "unreadable"  # not ours as it is: replace it
    return _sha256(data) if data is not None else None


# ---------------------------------------------------------------------------------------------------- the store


class PackStore:
    """Plans and places the store entries of one module run, and exports their requirements."""

    def __init__(self, params, run, check_mode=False):
        self.check_mode = check_mode
        self.git = _Git(run, params.get("git_bin") or "git")
        self.store = os.path.abspath(params["store_dir"])
        self.packs = normalize_packs(params["packs"], params.get("constraints"))
        self.constraints = _merged_constraints(params.get("constraints"), self.packs)
        self.requirements_dir = params.get("requirements_dir")
        self.state_path = os.path.join(self.store, _STATE_FILE)
        self.lock_timeout = params.get("lock_timeout", 600)

    # -- state: what refs resolved to (shared by the hosts of one store) and the commit each pack last got

    def _load_state(self):
        try:
            data = _read_plain(self.state_path, "state file")
            data = json.loads(data.decode("utf-8")) if data is not None else {}
        except (CustomNodeError, ValueError):
            data = {}  # a cache: losing it costs one clone per tag, never a wrong answer
        if not isinstance(data, dict):
            data = {}

        def commits(key):
            # the values become path components: only full commit names
            value = data.get(key)
            return {k: v for k, v in value.items() if isinstance(v, str) and _FULL_SHA.match(v)} \
                if isinstance(value, dict) else {}
        return dict(resolved=commits("resolved"), last=commits("last"))

    @staticmethod
    def _merge(current, resolved, last, dropped):
        state = dict(resolved={**current["resolved"], **resolved}, last={**current["last"], **last})
        for name in dropped:
            state["last"].pop(name, None)
        return state

    def _save_state(self, before, resolved, last, dropped):
        """Merge this run's entries into the state under a lock, so two hosts on one store keep each other's."""
        if self._merge(before, resolved, last, dropped) == before:
            return  # a no-op run takes no lock and writes nothing
        lock = FileLock(os.path.join(self.store, _STATE_LOCK), "comfyui_custom_node state of %s" % self.store,
                        timeout=self.lock_timeout)
        with lock:
            current = self._load_state()
            state = self._merge(current, resolved, last, dropped)
            if state != current:
                data = json.dumps(dict(state, format=_STATE_FORMAT), indent=2, sort_keys=True) + "\n"
                write_atomic(os.path.join(self.store, _STATE_FILE), data)

    @staticmethod
    def _key(pack):
        return "%s#%s" % (pack.repo, pack.version or "")

    def _entry(self, pack, commit):
        return os.path.join(self.store, pack.name, commit)

    # -- entries

    def _known(self, pack, resolved):
        """The commit a pack should be at without a clone, or None when only a clone can tell."""
        if pack.state == "latest":
            commit = self.git.ls_remote(pack.repo, pack.version)
            if commit is None:
                raise CustomNodeError("%s: version %s not found in %s" % (pack.name, pack.version or "HEAD", pack.repo))
            return commit
        if pack.version and _FULL_SHA.match(pack.version):
            return pack.version
        return resolved.get(self._key(pack))

    def _clone(self, pack, wanted):
        """Clone into a staging directory beside the entries and rename it into place: (commit, placed)."""
        parent = os.path.join(self.store, pack.name)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
        try:
            dest = os.path.join(staging, "tree")
            try:
                commit = self.git.clone(pack.repo, dest, wanted or pack.version)
            except CustomNodeError as e:
                raise CustomNodeError("%s: %s" % (pack.name, e))
            entry = self._entry(pack, commit)
            if os.path.isdir(entry):
                return commit, False
            os.rename(dest, entry)
            return commit, True
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _place(self, pack, resolved):
        """(commit or None, placed) for a pack that is not absent."""
        wanted = self._known(pack, resolved)
        if wanted and os.path.isdir(self._entry(pack, wanted)):
            return wanted, False
        if self.check_mode:
            # a tag seen for the first time: the remote can say which commit; an entry may already hold it
            wanted = wanted or self.git.ls_remote(pack.repo, pack.version)
            return wanted, not (wanted and os.path.isdir(self._entry(pack, wanted)))
        lock = FileLock(os.path.join(self.store, _LOCKS_DIR, pack.name + ".lock"),
                        "comfyui_custom_node store of %s" % pack.name, timeout=self.lock_timeout)
        try:
            with lock:
                # another host may have placed it while we waited
                if wanted and os.path.isdir(self._entry(pack, wanted)):
                    return wanted, False
                return self._clone(pack, wanted)
        except LockTimeout as e:
            raise CustomNodeError(str(e))

    # -- requirements for the image build

    def _requirements(self, pack, entry):
        """The pack's requirements.txt bytes when they go to the image build, else None."""
        if not (self.requirements_dir and pack.enabled and pack.install_requirements):
            return None
        return _read_plain(os.path.join(entry, _REQUIREMENTS), "%s: requirements" % pack.name)

    def _exported(self):
        """{file name: sha256} of the copies in requirements_dir."""
        if not (self.requirements_dir and os.path.isdir(self.requirements_dir)):
            return {}
        return {n: _existing_sha256(os.path.join(self.requirements_dir, n))
                for n in os.listdir(self.requirements_dir) if n.endswith(".txt")}

    def _sync_requirements(self, exported, wanted, unknown):
        """Make requirements_dir hold exactly wanted ({file name: bytes}), leaving the files of unknown alone (in
        check mode: packs not cloned yet); returns the names written or removed."""
        changes = {n for n, data in wanted.items() if exported.get(n) != _sha256(data)}
        stale = set(exported) - set(wanted) - set(unknown)
        if not self.check_mode:
            if changes:
                os.makedirs(self.requirements_dir, mode=0o755, exist_ok=True)
            for name in sorted(changes):
                write_atomic(os.path.join(self.requirements_dir, name), wanted[name])
            for name in sorted(stale):
                os.unlink(os.path.join(self.requirements_dir, name))
        return changes | stale

    # -- the whole run

    def run(self):
        if not self.check_mode:
            os.makedirs(self.store, mode=0o755, exist_ok=True)
        before = self._load_state()
        resolved, last, dropped, placed = {}, {}, [], {}
        try:
            for pack in self.packs:  # every clone before any requirements file changes
                if pack.state == "absent":
                    dropped.append(pack.name)
                    continue
                commit, placed[pack.name] = self._place(pack, before["resolved"])
                if commit:
                    last[pack.name] = commit
                    if pack.state != "latest" and not (pack.version and _FULL_SHA.match(pack.version)):
                        resolved[self._key(pack)] = commit
            requirements, unknown = {}, set()
            for pack in self.packs:
                entry = self._entry(pack, last[pack.name]) if pack.name in last else None
                if entry is None or not os.path.isdir(entry):
                    if pack.state != "absent":
                        unknown.add(pack.name + ".txt")  # check mode: its requirements come with the clone
                    continue
                data = self._requirements(pack, entry)
                if data is not None:
                    requirements[pack.name + ".txt"] = data
        finally:
            # what was placed and resolved stays known even when a later pack failed
            if not self.check_mode:
                self._save_state(before, resolved, last, dropped)
        exported = self._exported()
        synced = self._sync_requirements(exported, requirements, unknown)
        return self._result(before, last, placed, requirements, unknown, exported, synced)

    def _result(self, before, last, placed, requirements, unknown, exported, synced):
        results, diff_before, diff_after = [], {}, {}
        names = [p.name for p in self.packs]
        names += sorted(n[:-4] for n in exported if n[:-4] not in names)
        for name in names:  # the packs of the run, then those whose requirements copy goes away
            old = dict(commit=before["last"].get(name), requirements_sha256=exported.get(name + ".txt"))
            if any(old.values()):
                diff_before[name] = old
        for pack in self.packs:
            txt = pack.name + ".txt"
            commit = last.get(pack.name)
            sha = _sha256(requirements[txt]) if txt in requirements else None
            if pack.state != "absent":
                diff_after[pack.name] = dict(
                    commit=commit or "unknown: would clone %s %s" % (pack.repo, pack.version or "HEAD"),
                    requirements_sha256="unknown until cloned" if txt in unknown and self.requirements_dir and
                    pack.enabled and pack.install_requirements else sha)
            results.append(dict(
                name=pack.name, state=pack.state, repo=pack.repo, version=pack.version, commit=commit,
                path=self._entry(pack, commit) if commit else None, enabled=pack.enabled,
                changed=bool(placed.get(pack.name)) or txt in synced,
                expected_classes=pack.expected_classes, requirements_sha256=sha))
        return dict(changed=any(r["changed"] for r in results) or bool(synced), packs=results,
                    store_dir=self.store, constraints=self.constraints,
                    diff=dict(before=diff_before, after=diff_after, before_header=self.store,
                              after_header=self.store))
