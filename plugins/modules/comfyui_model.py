#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comfyui_model
short_description: Ensure ComfyUI model files from HTTP(S) URLs, resumable and verified by SHA-256
description:
  - Ensures model files under C(<models_dir>/<folder>/<filename>), the layout ComfyUI reads (C(checkpoints),
    C(loras), C(text_encoders), C(latent_upscale_models), ...). Works for Hugging Face and any HTTP(S) server.
  - The data goes to C(<filename>.partial) next to the final file. The SHA-256 is computed while the bytes arrive,
    so a verified download reads the data once. The file is renamed to its final name only after the checksum
    matched; a mismatch deletes the partial file and fails with both checksums.
  - An interrupted download resumes with an HTTP C(Range) request, on a retry within the run
    (O(retries)) and on the next run. The answer must be C(206) with the matching C(Content-Range); a server that
    answers C(200) (no range support) gets a full download instead. On resume the bytes already on disk are hashed
    once, then the rest is hashed as it streams in.
  - A file that exists with the right checksum is left alone. Its hash is cached with its size and modification
    time in O(cache_file), so a no-op run does not read a 50 GB file again. A file that exists with another
    checksum is downloaded again and replaced atomically.
  - Files of a list are downloaded in parallel, at most O(max_parallel) at a time. Before a file's data is written,
    the free space of its directory is checked against the size the server announces (minus what is already there,
    plus what parallel downloads reserved, plus O(min_free_mb)); an entry's C(size) allows the same check before
    any request.
  - Progress (bytes, percent, rate, ETA, state per file) is written to O(status_file) as JSON about once a second,
    for the operator to watch (C(watch cat ...), or a playbook that polls it with C(async)).
  - "The token is sent as an C(Authorization: Bearer) header to the URL's own host only; redirects to another
    host (Hugging Face sends downloads to a CDN with signed URLs) do not get it. It never appears on a command line
    (the module downloads in-process) and is masked in every message and result."
version_added: "0.1.0"
author:
  - comfyops contributors (@comfyops)
options:
  models_dir:
    description:
      - ComfyUI's C(models) directory on the target, for example V(/srv/comfyui/models). Created if missing.
    type: path
    required: true
  models:
    description:
      - The model files. Mutually exclusive with O(url); one of the two is required.
    type: list
    elements: dict
    suboptions:
      name:
        description: Label used in messages and results (defaults to C(folder/filename)).
        type: str
      url:
        description:
          - HTTP(S) URL of the file, for example
            V(https://huggingface.co/Lightricks/LTX-2.3/resolve/main/ltx-2.3-22b-dev.safetensors).
          - Required unless O(models[].state=absent). No credentials in the URL; use O(token).
        type: str
      folder:
        description: Folder below O(models_dir), for example V(checkpoints) or V(loras/ltxv/ltx2).
        type: str
        required: true
      filename:
        description:
          - File name in O(models[].folder); may contain subdirectories (V(gemma-3-12b-it/model-00001-of-00005.safetensors)).
          - Defaults to the last path component of O(models[].url).
        type: str
      sha256:
        description:
          - Expected SHA-256 (64 hex digits). Strongly recommended; without it an existing file counts as present
            whatever its content, and a download is not verified (its hash is still computed and returned).
        type: str
      size:
        description:
          - Expected size in bytes (optional). Enables the free-space check before any request, and a download
            whose server announces another size fails.
        type: int
      state:
        description: Overrides O(state) for this file.
        type: str
        choices: [present, absent]
  url:
    description:
      - Shorthand for a single file; with O(folder), O(filename), O(sha256) and O(size) it is the same as a
        one-element O(models).
    type: str
  folder:
    description: Folder of the single file given with O(url).
    type: str
  filename:
    description: File name of the single file given with O(url) (defaults to the URL's last path component).
    type: str
  sha256:
    description: Expected SHA-256 of the single file given with O(url).
    type: str
  size:
    description: Expected size in bytes of the single file given with O(url).
    type: int
  state:
    description:
      - V(present) downloads missing (or wrong) files; V(absent) removes the file, its partial download and its
        cache entry.
    type: str
    choices: [present, absent]
    default: present
  token:
    description:
      - Bearer token, for example a Hugging Face access token (C(hf_...)) for gated repositories such as Gemma.
        Keep it in Ansible Vault.
      - Sent only to the host of each URL, never after a redirect to another host; never logged.
    type: str
  max_parallel:
    description: How many files are downloaded at the same time.
    type: int
    default: 2
  retries:
    description:
      - How many times a download that failed with a transient error (connection lost, timeout, HTTP 5xx, 408,
        429) is resumed within this run. HTTP 4xx answers such as 401, 403 and 404 fail at once.
    type: int
    default: 3
  retry_delay:
    description: Seconds to wait before a retry.
    type: float
    default: 2
  timeout:
    description: Socket timeout in seconds of each request (not a deadline for the whole download).
    type: float
    default: 60
  validate_certs:
    description: Whether to validate TLS certificates.
    type: bool
    default: true
  ca_path:
    description: PEM file of CA certificates used to validate C(https) URLs (a private mirror).
    type: path
  use_proxy:
    description: Whether to use the proxy from the target's environment (C(https_proxy), C(no_proxy)).
    type: bool
    default: true
  min_free_mb:
    description: MiB that must stay free on the file system of a model folder after a download.
    type: int
    default: 1024
  status_file:
    description:
      - JSON progress file. Defaults to C(<models_dir>/.comfyops/download_status.json). Not written in check mode.
    type: path
  cache_file:
    description:
      - Hash cache (path, size, modification time, SHA-256 of verified files). Defaults to
        C(<models_dir>/.comfyops/sha256_cache.json). Delete it to force a re-read of every file.
    type: path
  mode:
    description: Permissions of downloaded files, as an octal string.
    type: str
    default: "0644"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    description: Reports which files would be downloaded, resumed, replaced or removed; downloads and writes nothing.
      Existing files without a cached hash are read to compare their checksum.
    support: full
  diff_mode:
    description: Shows the SHA-256 (or C(absent)) of each changed file before and after.
    support: full
  idempotent:
    description: A second run with the same input finds every file present with its checksum and changes nothing.
    support: full
  platform:
    platforms: posix
notes:
  - Disk needs are the size of each file, plus nothing extra during the download (the partial file becomes the
    final file by a rename), plus O(min_free_mb).
  - Proxies from the environment apply to every request, including the token-bearing first one.
seealso:
  - module: comfyops.comfyui.comfyui_health
  - module: ansible.builtin.get_url
"""

EXAMPLES = r"""
- name: The LTX-2.3 distilled checkpoint and its spatial upscaler
  comfyops.comfyui.comfyui_model:
    models_dir: /srv/comfyui/models
    token: "{{ vault_hf_token | default(omit) }}"
    models:
      - url: https://huggingface.co/Lightricks/LTX-2.3/resolve/main/ltx-2.3-22b-distilled-1.1.safetensors
        folder: checkpoints
      - url: https://huggingface.co/Lightricks/LTX-2.3/resolve/main/ltx-2.3-spatial-upscaler-x2-1.1.safetensors
        folder: latent_upscale_models
        sha256: "{{ ltx_upscaler_sha256 }}"

- name: One file, from a local mirror
  comfyops.comfyui.comfyui_model:
    models_dir: /srv/comfyui/models
    url: http://mirror.internal/models/ltx-2.3-22b-distilled-lora-384-1.1.safetensors
    folder: loras/ltxv/ltx2
    sha256: 0f0e4c3c1f2f7a7b0f84b1e0f0c9f0b7a2c0d9d64a1e3f0b3f8b0c6d4d3e2f1a
    size: 7600000000

- name: Start a long download in the background and watch its status file
  comfyops.comfyui.comfyui_model:
    models_dir: /srv/comfyui/models
    models: "{{ comfyui_models }}"
    token: "{{ vault_hf_token | default(omit) }}"
  async: 7200
  poll: 0
  register: __models_job

- name: Remove a model
  comfyops.comfyui.comfyui_model:
    models_dir: /srv/comfyui/models
    folder: checkpoints
    filename: ltx-2-19b-dev.safetensors
    state: absent
"""

RETURN = r"""
models:
  description: One result per file, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Label of the file., type: str, sample: checkpoints/ltx-2.3-22b-dev.safetensors}
    folder: {description: Folder below O(models_dir)., type: str, sample: checkpoints}
    filename: {description: File name in the folder., type: str, sample: ltx-2.3-22b-dev.safetensors}
    path: {description: Absolute path of the file., type: str, sample: /srv/comfyui/models/checkpoints/ltx-2.3-22b-dev.safetensors}
    url: {description: The URL without its query string (signed URLs carry credentials there)., type: str}
    state: {description: Wanted state., type: str, sample: present}
    action:
      description:
        - What was done, V(none), V(downloaded), V(resumed), V(replaced), V(removed), or in check mode
          V(would_download), V(would_resume), V(would_replace), V(would_remove).
      type: str
      sample: resumed
    changed: {description: Whether this file changed (or would)., type: bool}
    sha256: {description: SHA-256 of the file (null when not known without reading it)., type: str}
    verified: {description: Whether the SHA-256 was compared with the expected one and matched., type: bool}
    hash_source:
      description: Where RV(models[].sha256) came from, V(cache) (no read), V(computed) (file read once), V(download).
      type: str
      sample: cache
    size: {description: Size in bytes., type: int}
    bytes_downloaded: {description: Bytes received in this run., type: int}
    resumed_from: {description: Bytes that were already in the partial file when the download started., type: int}
    seconds: {description: Duration of the download., type: float}
    mb_per_s: {description: Download rate in MiB/s., type: float}
    error: {description: Why this file failed (only on failure)., type: str}
changed:
  description: Whether any file changed.
  returned: always
  type: bool
status_file:
  description: Path of the progress file (null in check mode).
  returned: always
  type: str
  sample: /srv/comfyui/models/.comfyops/download_status.json
diff:
  description: SHA-256 (or V(absent)) of each changed file before and after.
  returned: in diff mode (C(--diff)) when something changed
  type: list
  elements: dict
"""

import os
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_download import (
    STATE_DIR,
    Downloader,
    DownloadError,
    HashCache,
    StatusFile,
    normalize_specs,
    redact,
)

SINGLE = ("url", "folder", "filename", "sha256", "size")


def build_specs(params):
    if params["models"] is not None:
        if any(params[k] is not None for k in SINGLE):
            raise ValueError("give either models or url/folder/filename/sha256/size, not both")
        items = params["models"]
    else:
        if not params["folder"]:
            raise ValueError("one of models or folder (with url) is required")
        items = [{k: params[k] for k in SINGLE if params[k] is not None}]
    if not items:
        return []
    return normalize_specs(items, params["state"])


def main():
    argument_spec = dict(
        models_dir=dict(type="path", required=True),
        models=dict(type="list", elements="dict", options=dict(
            name=dict(type="str"),
            url=dict(type="str"),
            folder=dict(type="str", required=True),
            filename=dict(type="str"),
            sha256=dict(type="str"),
            size=dict(type="int"),
            state=dict(type="str", choices=["present", "absent"]),
        )),
        url=dict(type="str"),
        folder=dict(type="str"),
        filename=dict(type="str"),
        sha256=dict(type="str"),
        size=dict(type="int"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        token=dict(type="str", no_log=True),
        max_parallel=dict(type="int", default=2),
        retries=dict(type="int", default=3),
        retry_delay=dict(type="float", default=2.0),
        timeout=dict(type="float", default=60.0),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        use_proxy=dict(type="bool", default=True),
        min_free_mb=dict(type="int", default=1024),
        status_file=dict(type="path"),
        cache_file=dict(type="path"),
        mode=dict(type="str", default="0644"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("models", "url")])
    p = module.params
    secrets = [p["token"]] if p["token"] else []
    try:
        specs = build_specs(p)
        mode = int(p["mode"], 8)
        if not 0 <= mode <= 0o7777:
            raise ValueError("mode out of range")
    except ValueError as e:
        module.fail_json(msg="comfyui_model: %s" % redact(e, secrets))
    for name in ("max_parallel",):
        if p[name] < 1:
            module.fail_json(msg="comfyui_model: %s must be at least 1" % name)
    for name in ("retries", "min_free_mb"):
        if p[name] < 0:
            module.fail_json(msg="comfyui_model: %s must not be negative" % name)

    models_dir = p["models_dir"]
    state_dir = os.path.join(models_dir, STATE_DIR)
    check = module.check_mode
    status_path = None if check else (p["status_file"] or os.path.join(state_dir, "download_status.json"))
    cache = HashCache(p["cache_file"] or os.path.join(state_dir, "sha256_cache.json"), enabled=not check)
    try:
        if not check:
            os.makedirs(models_dir, exist_ok=True)
        status = StatusFile(status_path, specs)
    except OSError as e:
        module.fail_json(msg="comfyui_model: %s" % e)
    downloader = Downloader(
        models_dir, token=p["token"], timeout=p["timeout"], validate_certs=p["validate_certs"], ca_path=p["ca_path"],
        use_proxy=p["use_proxy"], retries=p["retries"], retry_delay=p["retry_delay"],
        min_free_bytes=p["min_free_mb"] * 2**20, mode=mode, cache=cache, status=status)

    # up-front free-space check where the entries give sizes (the per-file check at download time covers the rest)
    problem = upfront_space_problem(downloader, specs, p["min_free_mb"] * 2**20) if not check else None
    if problem:
        status.finish()
        module.fail_json(msg="comfyui_model: " + problem, models=[], changed=False, status_file=status_path)

    def one(spec):
        try:
            return downloader.ensure(spec, check_mode=check)
        except DownloadError as e:
            dest, _partial = downloader.paths(spec)
            return dict(name=spec["name"], folder=spec["folder"], filename=spec["filename"], path=dest,
                        state=spec["state"], action="failed", changed=False, error=redact(e.message, secrets))

    with ThreadPoolExecutor(max_workers=min(p["max_parallel"], max(len(specs), 1))) as pool:
        results = list(pool.map(one, specs))
    try:
        cache.save()
    except OSError as e:
        module.warn("could not write the hash cache %s: %s" % (cache.path, e))
    status.finish()

    for r in results:
        before, after = r.pop("before", None), r.pop("after", None)
        r["_diff"] = dict(before_header=r["path"], after_header=r["path"], before="%s\n" % before,
                          after="%s\n" % after) if r.get("changed") else None
    diff = [r["_diff"] for r in results if r["_diff"]]
    for r in results:
        r.pop("_diff")
    out = dict(changed=any(r.get("changed") for r in results), models=results, status_file=status_path)
    if module._diff and diff:
        out["diff"] = diff
    failed = [r for r in results if r.get("action") == "failed"]
    if failed:
        module.fail_json(msg="comfyui_model: %d of %d file(s) failed: %s" % (
            len(failed), len(results), "; ".join(r["error"] for r in failed)), **out)
    module.exit_json(**out)


def upfront_space_problem(downloader, specs, min_free_bytes):
    """A message when the files with a known size cannot fit, grouped by file system; None otherwise."""
    need = {}
    for spec in specs:
        if spec["state"] != "present" or spec["size"] is None:
            continue
        dest, partial = downloader.paths(spec)
        if os.path.isfile(dest) and os.path.getsize(dest) == spec["size"]:
            continue
        have = os.path.getsize(partial) if os.path.isfile(partial) else 0
        directory = os.path.dirname(dest)
        probe = directory
        while not os.path.isdir(probe):
            probe = os.path.dirname(probe)
        dev = os.stat(probe).st_dev
        entry = need.setdefault(dev, dict(probe=probe, bytes=0, files=[]))
        entry["bytes"] += max(spec["size"] - have, 0)
        entry["files"].append(spec["rel"])
    for entry in need.values():
        free = downloader.disk_usage(entry["probe"]).free
        if free - entry["bytes"] < min_free_bytes:
            return ("not enough free space in %s: %d MiB needed for %s (+ %d MiB kept free, min_free_mb), %d MiB free"
                    % (entry["probe"], entry["bytes"] // 2**20, ", ".join(entry["files"]), min_free_bytes // 2**20,
                       free // 2**20))
    return None


if __name__ == "__main__":
    main()
