# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files in the models tree, which containers running third-party code can write (as root).

Everything below the models directory is opened relative to a directory file descriptor, one component at a
time, with O_NOFOLLOW: a symbolic link planted anywhere below the models directory is refused, never followed.
Files are opened with O_NONBLOCK (a planted FIFO cannot hang the module) and checked to be regular files on the
open descriptor (fstat), and permissions are set on that descriptor (fchmod), so what is checked is what is used.
The models directory itself is the operator's path and may be a link (for example to a larger disk).
"""

from __future__ import annotations

import errno
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_READ_CHUNK = 4 * 1024 * 1024


class UnsafePathError(Exception):
    """A path in the models tree that the module refuses to use (a symbolic link, a FIFO, a hard link...)."""


def open_models_dir(path, create):
    """A descriptor of the models directory (created when `create`), or None when it does not exist."""
    if create:
        os.makedirs(path, exist_ok=True)
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def open_subdir(root_fd, parts, create, label):
    """A descriptor of root/parts[0]/parts[1]/..., every component a real directory (not a link).

    Missing components are created (mode 0755) when `create`; otherwise None is returned for a missing one.
    `label` is the path shown in messages. The caller closes the descriptor.
    """
    fd = os.dup(root_fd)
    done = []
    try:
        for part in parts:
            done.append(part)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made by a parallel download in the meantime
                child = _open_dir_or_refuse(fd, part, label, done)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                child = _open_dir_or_refuse(fd, part, label, done)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_dir_or_refuse(fd, part, label, done):
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    where = os.path.join(label, *done)
    st = lstat_at(fd, part)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise UnsafePathError("%s is a symbolic link; links below the models directory are never followed (a "
                              "container can plant them). Replace it with a real directory, or point models_dir "
                              "at the real location" % where)
    raise UnsafePathError("%s is not a directory" % where)


def lstat_at(dir_fd, name):
    """lstat of dir_fd/name (never follows a link), None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def describe(st):
    """What a non-regular file is, for messages."""
    mode = st.st_mode
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a regular file"


def open_regular(dir_fd, name, flags, label, create_mode=None, single_link=False):
    """Open dir_fd/name as a regular file without following a link; returns (fd, fstat).

    flags: os.O_RDONLY or os.O_RDWR (plus os.O_CREAT | os.O_EXCL to create, with create_mode).
    single_link: refuse a file with other hard links (writes through it would change another file).
    """
    try:
        if create_mode is None:
            fd = os.open(name, flags | _FILE_FLAGS, dir_fd=dir_fd)
        else:
            fd = os.open(name, flags | _FILE_FLAGS, create_mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            st = lstat_at(dir_fd, name)
            raise UnsafePathError("%s is %s, not a regular file; refusing to use it" % (
                label, describe(st) if st else "gone")) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError("%s is %s, not a regular file; refusing to use it" % (label, describe(st)))
        if single_link and st.st_nlink > 1:
            raise UnsafePathError("%s has %d hard links; refusing to write through it" % (label, st.st_nlink))
        os.set_blocking(fd, True)
        return fd, st
    except BaseException:
        os.close(fd)
        raise


def unlink_at(dir_fd, name):
    """Remove dir_fd/name (a link is removed itself, its target is untouched); False when it was not there."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def pwrite_all(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def hash_range(fd, hasher, start, end, chunk=_READ_CHUNK):
    """Feed bytes [start, end) of fd to hasher (end None: to the end of the file); returns the bytes read."""
    buf = bytearray(chunk)
    view = memoryview(buf)
    pos = start
    while end is None or pos < end:
        want = chunk if end is None else min(chunk, end - pos)
        n = os.preadv(fd, [view[:want]], pos)
        if not n:
            if end is not None:
                raise OSError(errno.EIO, "file ended at byte %d, expected %d (truncated while being read)" % (pos, end))
            break
        hasher.update(view[:n])
        pos += n
    return pos - start
