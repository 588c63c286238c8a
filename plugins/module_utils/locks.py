# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Advisory file locks (flock) for the comfyops.comfyui modules' mutating steps.

One lock per host around a deployment change, one per data root (or per file in it) around model and node
pack writes, so two runs (two operators, or two hosts on one NFS/EFS data root) never interleave. The lock
file holds who has it (host, pid, what, since) so a run that gives up can say who holds it. The kernel drops
a flock when its holder dies, so a killed run never leaves a stale lock behind. Lock files live where the
ComfyUI containers cannot write.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time


class LockTimeout(Exception):
    """The lock stayed taken for the whole timeout; the message says who holds it."""


def _describe_holder(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return "an unknown holder"
    since = info.get("since")
    age = " for %ds" % max(0, int(time.time() - since)) if isinstance(since, (int, float)) else ""
    return "%s (pid %s on %s%s)" % (info.get("what", "another run"), info.get("pid", "?"), info.get("host", "?"), age)


class FileLock:
    """with FileLock(path, what, timeout): ... ; waits up to timeout seconds, then raises LockTimeout."""

    def __init__(self, path, what, timeout=600.0, interval=0.5, clock=time.monotonic, sleep=time.sleep):
        self.path = path
        self.what = what
        self.timeout = timeout
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.fd = None
        self.waited = 0.0

    def acquire(self):
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        # O_NOFOLLOW: a planted symlink must not turn the lock file into a write elsewhere
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        start = self.clock()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if self.clock() - start >= self.timeout:
                    raise LockTimeout("%s: could not take the lock %s within %gs: it is held by %s"
                                      % (self.what, self.path, self.timeout, _describe_holder(self.path)))
                self.sleep(self.interval)
        except BaseException:
            os.close(fd)
            raise
        self.waited = self.clock() - start
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(dict(what=self.what, pid=os.getpid(), host=socket.gethostname(),
                                     since=time.time())).encode("utf-8"))
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
