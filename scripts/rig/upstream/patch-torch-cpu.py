"""Make PyPI's CUDA-linked torchvision/torchaudio importable beside the CPU build of torch (test rig only).

torchvision registers fake kernels for ops its C extension never loaded, and torchaudio raises when its
library cannot find libc10_cuda.so; both skip that work instead. ComfyUI only needs them importable.
"""
import importlib.util
import pathlib

# find_spec locates a top-level package without importing it (importing is what fails)
site = pathlib.Path(importlib.util.find_spec("torchvision").origin).parent.parent

meta = site / "torchvision" / "_meta_registrations.py"
text = meta.read_text()
if "_comfyops_fake" not in text:
    text = text.replace("@torch.library.register_fake(", "@_comfyops_fake(")
    text = text.replace(
        "@functools.lru_cache(None)\ndef get_meta_lib():",
        "def _comfyops_fake(name):\n"
        "    return torch.library.register_fake(name) if torchvision.extension._has_ops() else (lambda fn: fn)\n\n\n"
        "@functools.lru_cache(None)\ndef get_meta_lib():", 1)
    assert "def _comfyops_fake" in text, meta
    meta.write_text(text)

utils = site / "torchaudio" / "_extension" / "utils.py"
text = utils.read_text()
if "_comfyops_" not in text:
    old = "    torch.ops.load_library(paths[0])\n    return True\n"
    assert old in text, utils
    text = text.replace(old, "    try:\n        torch.ops.load_library(paths[0])\n    except OSError:  # _comfyops_ CUDA build\n"
                             "        return False\n    return True\n", 1)
    utils.write_text(text)
print("patched", meta, utils)
