# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a fetched output file holds: format, frame count and size of PNG/APNG, WebP, GIF and MP4/MOV files.

Reads only the container structure (standard library, no decoding); a truncated file is reported with valid=false.
Used by workflow_run (comfyops.comfyui.comfyui_workflow) for every output it fetches.
"""

from __future__ import annotations

import struct


def media_info(path):
    """{format, frames, width, height} of a PNG/APNG, WebP (still or animated), GIF or MP4/MOV file; None if unknown."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                return _png_info(f)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return _webp_info(f)
            if head[:6] in (b"GIF87a", b"GIF89a"):
                return _gif_info(f, head)
            if head[4:8] == b"ftyp":
                return _mp4_info(f)
    except (OSError, struct.error, ValueError):
        return dict(format="unknown", frames=None, width=None, height=None, valid=False)
    return None


def _png_info(f):
    f.seek(8)
    width = height = None
    frames = 1
    while True:
        hdr = f.read(8)
        if len(hdr) < 8:
            break
        length, ctype = struct.unpack(">I4s", hdr)
        data = f.read(length) if ctype in (b"IHDR", b"acTL") else f.seek(length, 1)
        f.seek(4, 1)
        if ctype == b"IHDR":
            width, height = struct.unpack(">II", data[:8])
        elif ctype == b"acTL":
            frames = struct.unpack(">I", data[:4])[0]
        elif ctype == b"IEND":
            return dict(format="apng" if frames > 1 else "png", frames=frames, width=width, height=height, valid=True)
    return dict(format="png", frames=frames, width=width, height=height, valid=False)


def _webp_info(f):
    f.seek(12)
    frames, width, height, animated = 0, None, None, False
    while True:
        hdr = f.read(8)
        if len(hdr) < 8:
            break
        ctype, length = struct.unpack("<4sI", hdr)
        data = f.read(min(length, 32))
        f.seek(length - len(data) + (length & 1), 1)
        if ctype == b"VP8X":
            animated = bool(data[0] & 0x02)
            width = 1 + int.from_bytes(data[4:7], "little")
            height = 1 + int.from_bytes(data[7:10], "little")
        elif ctype == b"ANMF":
            frames += 1
        elif ctype in (b"VP8 ", b"VP8L") and not animated:
            frames = 1
            if ctype == b"VP8 " and len(data) >= 10:
                width, height = struct.unpack("<HH", data[6:10])
                width, height = width & 0x3FFF, height & 0x3FFF
            elif ctype == b"VP8L" and len(data) >= 5:
                bits = int.from_bytes(data[1:5], "little")
                width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return dict(format="webp", frames=frames, width=width, height=height, valid=frames > 0)


def _gif_info(f, head):
    width, height = struct.unpack("<HH", head[6:10])
    f.seek(0)
    data = f.read()
    return dict(format="gif", frames=max(data.count(b"\x00\x21\xf9\x04"), 1), width=width, height=height, valid=True)


def _mp4_boxes(f, start, end):
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        size, btype = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            raise ValueError("bad MP4 box size")
        yield btype, pos + header, pos + size
        pos += size


def _mp4_info(f):
    f.seek(0, 2)
    end = f.tell()
    info = dict(format="mp4", frames=None, width=None, height=None, valid=False)
    has_mdat = False
    for btype, body, box_end in _mp4_boxes(f, 0, end):
        if btype == b"mdat":
            has_mdat = True
        if btype != b"moov":
            continue
        for ttype, tbody, tend in _mp4_boxes(f, body, box_end):
            if ttype != b"trak":
                continue
            track = _mp4_track(f, tbody, tend)
            if track.get("handler") == b"vide":
                info.update(frames=track.get("frames"), width=track.get("width"), height=track.get("height"))
    info["valid"] = has_mdat and info["frames"] is not None
    return info


def _mp4_track(f, start, end):
    track = {}

    def walk(s, e):
        for btype, body, box_end in _mp4_boxes(f, s, e):
            if btype in (b"mdia", b"minf", b"stbl"):
                walk(body, box_end)
            elif btype == b"tkhd":
                f.seek(box_end - 8)
                w, h = struct.unpack(">II", f.read(8))
                track["width"], track["height"] = w >> 16, h >> 16
            elif btype == b"hdlr":
                f.seek(body + 8)
                track["handler"] = f.read(4)
            elif btype == b"stsz":
                f.seek(body + 8)
                track["frames"] = struct.unpack(">I", f.read(4))[0]
            elif btype == b"stts" and "frames" not in track:
                f.seek(body + 4)
                count = struct.unpack(">I", f.read(4))[0]
                track["frames_stts"] = sum(struct.unpack(">II", f.read(8))[0] for _entry in range(count))
    walk(start, end)
    if "frames" not in track and "frames_stts" in track:
        track["frames"] = track["frames_stts"]
    return track
