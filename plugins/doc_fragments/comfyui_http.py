# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment(object):

    # HTTP options of every module that talks to the ComfyUI API (module_utils comfyui_api.comfyui_http_argument_spec)
    DOCUMENTATION = r"""
options:
  headers:
    description:
      - Extra HTTP headers sent with every request, for example an C(Authorization) header for a proxy in front
        of ComfyUI. ComfyUI itself has no authentication.
    type: dict
    default: {}
  url_username:
    description:
      - User name for HTTP basic authentication (a reverse proxy in front of ComfyUI).
      - The credentials are sent with the first request (no extra round trip for a 401 challenge).
    type: str
  url_password:
    description:
      - Password for HTTP basic authentication. Used only with O(url_username).
    type: str
  validate_certs:
    description:
      - Whether to validate TLS certificates of C(https) URLs. Set to V(false) only for self-signed test setups;
        prefer O(ca_path).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of CA certificates used to validate C(https) URLs (for example a private CA of the proxy).
    type: path
  timeout:
    description:
      - Timeout in seconds of each HTTP request (socket timeout, not a total deadline).
    type: float
    default: 10
  use_proxy:
    description:
      - Whether to use the HTTP proxy defined in the environment of the target (C(http_proxy), C(https_proxy),
        C(no_proxy)). Set to V(false) to always connect directly.
    type: bool
    default: true
"""
