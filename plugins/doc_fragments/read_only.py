# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment(object):

    # Attributes of the modules that only read (comfyui_health, nvidia_gpu_info): safe in check mode, never change.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    description: Running it again with the same input against an unchanged system gives the same result.
    support: full
  platform:
    platforms: posix
"""
