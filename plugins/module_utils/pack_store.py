# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node pack store of comfyops.comfyui.comfyui_custom_node (option store_dir).

Each pack commit gets its own directory, ``<store>/<name>/<commit>``, cloned in a staging directory and renamed
into place once complete; an entry is never changed afterwards. The comfyui role mounts the entries of a set
read-only into the containers (``custom_nodes/<name>``), so a new commit lands beside the live one without
touching it, a rollback is a compose file that names the previous entry, and no container can write into a
checkout that host root later runs git in. A lock per pack keeps two hosts on one NFS/EFS data root from cloning
the same commit twice; what a ref resolved to is remembered (state.json), so a re-run uses no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

from ansible_collections.comfyops.comfyui.plugins.module_utils.custom_nodes import (
    FULL_SHA,
    CustomNodeError,
    Git,
    normalize_packs,
    sha256_file,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.locks import FileLock, LockTimeout

_STATE_FORMAT = 1
_REQUIREMENTS = "requirements.txt"
# a requirements.txt is a few lines; anything bigger is not one (or a FIFO/device planted to hang us)
_REQUIREMENTS_MAX_BYTES = 1 << 20


def _read_requirements(path):
    """Bytes of a pack's requirements.txt (a regular file, no symlink), or None when it has none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CustomNodeError("%s: cannot be read as a plain file (%s)" % (path, e))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not _is_regular(st.st_mode):
            raise CustomNodeError("%s is not a regular file" % path)
        data = f.read(_REQUIREMENTS_MAX_BYTES + 1)
    if len(data) > _REQUIREMENTS_MAX_BYTES:
        raise CustomNodeError("%s is larger than %d bytes: not a requirements file" % (path, _REQUIREMENTS_MAX_BYTES))
    return data


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _is_regular(mode):
    return (mode & 0o170000) == 0o100000


class PackStore:
    """Plans and places the store entries of one module run."""

    def __init__(self, params, run, check_mode=False):
        self.p = params
        self.check_mode = check_mode
        self.git = Git(run, params.get("git_bin") or "git")
        self.store = os.path.abspath(params["store_dir"])
        self.packs = normalize_packs(params["packs"], params.get("constraints"))
        self.requirements_dir = params.get("requirements_dir")
        self.state_path = os.path.join(self.store, "state.json")
        self.lock_timeout = params.get("lock_timeout", 600)

    def _load_state(self):
        try:
            with open(self.state_path, "r", encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict):
                return dict(resolved=data.get("resolved") or {}, last=data.get("last") or {})
        except (FileNotFoundError, ValueError):
            pass
        return dict(resolved={}, last={})

    def _save_state(self, state):
        tmp = tempfile.NamedTemporaryFile("w", dir=self.store, prefix=".state.", delete=False, encoding="utf-8")
        with tmp:
            json.dump(dict(state, format=_STATE_FORMAT), tmp, indent=2, sort_keys=True)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, self.state_path)

    @staticmethod
    def _key(pack):
        return "%s#%s" % (pack.repo, pack.version or "")

    def _entry(self, pack, commit):
        return os.path.join(self.store, pack.name, commit)

    def _wanted(self, pack, resolved):
        """The commit a pack should be at, or None when only a clone can tell (a ref seen for the first time)."""
        if pack.state == "latest":
            commit = self.git.ls_remote(pack.repo, pack.version)
            if commit is None:
                raise CustomNodeError("%s: version %s not found in %s" % (pack.name, pack.version or "HEAD", pack.repo))
            return commit
        if pack.version and FULL_SHA.match(pack.version):
            return pack.version
        return resolved.get(self._key(pack))

    def _clone(self, pack, wanted):
        """Clone into a staging directory beside the entries and rename it into place; returns the commit."""
        parent = os.path.join(self.store, pack.name)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
        try:
            dest = os.path.join(staging, "tree")
            commit = self.git.clone(pack.repo, dest, wanted or pack.version)
            entry = self._entry(pack, commit)
            if not os.path.isdir(entry):
                os.rename(dest, entry)
            return commit
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _export_requirements(self, pack, entry):
        """Copy the pack's requirements.txt to requirements_dir/<name>.txt; returns its sha256 or None."""
        if not (self.requirements_dir and pack.enabled and pack.install_requirements):
            return None
        data = _read_requirements(os.path.join(entry, _REQUIREMENTS)) if os.path.isdir(entry) else None
        target = os.path.join(self.requirements_dir, pack.name + ".txt")
        if data is None:
            return None
        if not self.check_mode and sha256_file(target) != _sha256(data):
            os.makedirs(self.requirements_dir, mode=0o755, exist_ok=True)
            with tempfile.NamedTemporaryFile("wb", dir=self.requirements_dir, delete=False) as tmp:
                tmp.write(data)
            os.chmod(tmp.name, 0o644)
            os.replace(tmp.name, target)
        return _sha256(data)

    def _drop_stale_requirements(self, keep):
        if not self.requirements_dir or self.check_mode or not os.path.isdir(self.requirements_dir):
            return
        for name in os.listdir(self.requirements_dir):
            if name.endswith(".txt") and name not in keep:
                os.unlink(os.path.join(self.requirements_dir, name))

    def run(self):
        if not self.check_mode:
            os.makedirs(self.store, mode=0o755, exist_ok=True)
        before = self._load_state()
        resolved, last = dict(before["resolved"]), {}
        results, changed, exported = [], False, set()
        for pack in self.packs:
            if pack.state == "absent":
                results.append(dict(name=pack.name, state="absent", changed=False, path=None, commit=None,
                                    enabled=False, requirements_sha256=None))
                continue
            wanted = self._wanted(pack, resolved)
            entry = self._entry(pack, wanted) if wanted else None
            cloned = False
            if entry is None or not os.path.isdir(entry):
                cloned = True
                if self.check_mode:
                    wanted = wanted or self.git.ls_remote(pack.repo, pack.version)
                else:
                    lock = FileLock(os.path.join(self.store, pack.name + ".lock"),
                                    "comfyui_custom_node store of %s" % pack.name, timeout=self.lock_timeout)
                    try:
                        with lock:
                            # another host may have placed it while we waited
                            if wanted is None or not os.path.isdir(self._entry(pack, wanted)):
                                wanted = self._clone(pack, wanted)
                            else:
                                cloned = False
                    except LockTimeout as e:
                        raise CustomNodeError(str(e))
                entry = self._entry(pack, wanted) if wanted else None
            if wanted and not (pack.version and FULL_SHA.match(pack.version)) and pack.state != "latest":
                resolved[self._key(pack)] = wanted
            changed = changed or cloned
            if wanted:
                last[pack.name] = wanted
            sha = self._export_requirements(pack, entry) if entry else None
            if sha:
                exported.add(pack.name + ".txt")
            results.append(dict(name=pack.name, state=pack.state, repo=pack.repo, version=pack.version,
                                commit=wanted, path=entry, enabled=pack.enabled, changed=cloned,
                                expected_classes=pack.expected_classes, requirements_sha256=sha))
        self._drop_stale_requirements(exported)
        state = dict(resolved=resolved, last=last)
        if not self.check_mode and state != before:
            self._save_state(state)
        return dict(changed=changed, packs=results, store_dir=self.store,
                    diff=dict(before=before["last"], after=last, before_header=self.store, after_header=self.store))
