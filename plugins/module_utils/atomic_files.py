# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way the modules replace a file: a private temporary file beside it (mkstemp: a fresh name opened with
O_EXCL, so a planted link is never followed), its mode set, flushed to disk, then renamed over the target. A reader
sees the old file or the new one, never a half-written one, and a failure leaves no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile


def write_atomic(path, data, mode=0o644):
    """Replace path with data (str, written as UTF-8, or bytes)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
