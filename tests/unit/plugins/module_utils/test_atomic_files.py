"""module_utils.atomic_files: the one file writer of the modules (journal, record, caches, pack state)."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.comfyops.comfyui.plugins.module_utils import atomic_files
from ansible_collections.comfyops.comfyui.plugins.module_utils.atomic_files import write_atomic


def test_replaces_the_file_with_the_mode_asked_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "journal.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_atomic(str(target), "new ✓", mode=0o600)
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["journal.json"]


def test_bytes_are_written_as_they_are(tmp_path):
    target = tmp_path / "requirements.txt"
    write_atomic(str(target), b"torch==2.9\n\xff")
    assert target.read_bytes() == b"torch==2.9\n\xff"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_link_in_place_of_the_target_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("keep")
    target = tmp_path / "state.json"
    target.symlink_to(outside)
    write_atomic(str(target), "{}")
    assert outside.read_text() == "keep"
    assert not target.is_symlink() and target.read_text() == "{}"


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, monkeypatch):
    target = tmp_path / "record.fact"
    target.write_text("old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_files.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(str(target), "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["record.fact"]
