"""Unit tests of the emulator's standard-library stand-ins: the PNG codec and the YAML subset reader."""
import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import pytest

EMULATOR_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "comfyui_emulator"


def load(relative):
    """Import one emulator file by path, without leaving __pycache__ in the fixture tree."""
    spec = importlib.util.spec_from_file_location(f"emulator_{Path(relative).stem}", EMULATOR_DIR / relative)
    module = importlib.util.module_from_spec(spec)
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = previous
    return module


codec = load("comfy/image_codec.py")
yaml_subset = load("utils/yaml_subset.py")


def chunks(png):
    pos, found = 8, []
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        found.append((kind, body))
        pos += 12 + length
    return found


def test_png_is_well_formed_with_text_metadata():
    image = codec.ImageBatch(3, 2, 1, (255, 0, 0))
    png = codec.encode_png(image, text={"prompt": '{"1": {}}'})
    kinds = [kind for kind, _data in chunks(png)]
    assert png.startswith(codec.PNG_MAGIC) and kinds == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert dict(chunks(png))[b"tEXt"] == b'prompt\x00{"1": {}}'


def test_png_round_trip_of_pixels():
    pixels = bytes(range(2 * 2 * 3))
    png = codec.encode_png(codec.ImageBatch(2, 2, 1, frames=[pixels]))
    assert codec.decode_png(png) == (2, 2, pixels, b"\xff" * 4)


def _png(width, height, colour_type, filtered_rows):
    raw = b"".join(filtered_rows)
    return (codec.PNG_MAGIC + codec._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
            + codec._chunk(b"IDAT", zlib.compress(raw)) + codec._chunk(b"IEND", b""))


def test_decoder_undoes_png_filters_and_reads_alpha():
    # RGBA, 2x2; row 0 uses Sub (1), row 1 uses Up (2).
    row0 = bytes([1, 10, 20, 30, 255, 5, 5, 5, 0])       # second pixel = first + (5,5,5,0)
    row1 = bytes([2, 1, 1, 1, 0, 1, 1, 1, 0])             # each byte = above + 1
    width, height, rgb, alpha = codec.decode_png(_png(2, 2, 6, [row0, row1]))
    assert (width, height) == (2, 2)
    assert rgb == bytes([10, 20, 30, 15, 25, 35, 11, 21, 31, 16, 26, 36])
    assert alpha == bytes([255, 255, 255, 255])


def test_decoder_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="unsupported PNG"):
        codec.decode_png(_png(1, 1, 3, [b"\x00\x00"]))  # palette images
    with pytest.raises(ValueError, match="not a PNG"):
        codec.decode_png(b"GIF89a")


def test_yaml_subset_reads_extra_model_paths_files():
    text = """# extra_model_paths.yaml
comfyui:
    base_path: "/srv/models"   # quoted
    is_default: true
    checkpoints: checkpoints/
    text_encoders: |
        text_encoders/
        clip/

    empty:
other:
    loras: /abs/loras
"""
    assert yaml_subset.parse_yaml_mapping(text) == {
        "comfyui": {"base_path": "/srv/models", "is_default": True, "checkpoints": "checkpoints/",
                    "text_encoders": "text_encoders/\nclip/\n", "empty": None},
        "other": {"loras": "/abs/loras"},
    }


def test_yaml_subset_rejects_unsupported_lines():
    with pytest.raises(ValueError, match="unsupported YAML line"):
        yaml_subset.parse_yaml_mapping("comfyui:\n    - a list item\n")
