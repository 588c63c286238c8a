#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comfyui_model
short_description: Ensure ComfyUI model files from HTTP(S) URLs, segmented, resumable and verified by SHA-256
description:
  - Ensures model files under C(<models_dir>/<folder>/<filename>), the layout ComfyUI reads (C(checkpoints),
    C(loras), C(text_encoders), C(latent_upscale_models), ...). Works for Hugging Face and any HTTP(S) server.
  - A large file is fetched over O(connections) ranged connections at once (pieces of 32 MiB taken in file order,
    one keep-alive connection each), so a CDN that caps each connection does not cap the download. Files of a list
    are downloaded in parallel, at most O(max_parallel) at a time.
  - The SHA-256 is computed from the bytes as they arrive, in file order (bytes that arrive ahead of the hash are
    kept in memory, at most (O(connections) + 2) x 32 MiB per file), so a verified download reads the data
    once, not again after the download. RV(models[].bytes_read_back) says how much was read back (the bytes of a
    resumed partial file, or bytes that arrived too far ahead).
  - When O(models[].sha256) is not given, the checksum the origin publishes is used (Hugging Face answers the
    LFS sha256 in C(X-Linked-Etag)); RV(models[].sha256_source) says where the checksum came from.
  - The data goes to a partial file in O(state_dir) (containers cannot see it) and is renamed to its final name
    only after the checksum matched; a mismatch deletes the partial file and fails with both checksums. When
    O(state_dir) is on another file system than the model folder, the partial file is kept next to the final
    file as C(<filename>.partial) instead (with a warning).
  - An interrupted download resumes, on a retry within the run (O(retries)) and on the next run, from the byte
    ranges recorded next to the partial file (URL, ETag, size). Every resumed request carries C(If-Range), so a file
    that changed on the server is downloaded again from the start, never spliced onto the old bytes.
  - A file that exists with the right checksum is left alone. Its hash is cached in O(cache_file), keyed by inode,
    size, mtime and ctime (ctime cannot be set back from user space), so a no-op run does not read a 50 GB file
    again and a file changed in place is read again. A file that exists with another checksum is downloaded
    again and replaced atomically.
  - The models directory is mounted into containers that run third-party code. Below O(models_dir), the module
    opens everything relative to a directory descriptor without following links and uses regular files only; a
    symbolic link planted as a folder or a file name makes the entry fail with a message, never a write outside
    O(models_dir). Cache, locks, partial files and progress files live in O(state_dir), outside the mounts.
  - Runs on several hosts that share a data root (NFS, EFS) download each file once; the others wait for the
    lock (O(lock_timeout)) and then find the file verified.
  - Before a file's data is written, the free space is checked against the size the server announces (minus what
    is already there, plus what parallel downloads reserved, plus O(min_free_mb)); an entry's C(size) allows the
    same check before any request.
  - Progress is written about once a second to O(status_file) (JSON) and, one line per file with MiB/s and ETA,
    to the C(.txt) file next to it (C(watch cat <state_dir>/download_status.txt)).
  - "The token is sent as an C(Authorization: Bearer) header to the URL's own host only; redirects to another
    host (Hugging Face sends downloads to a CDN with signed URLs) do not get it. It never appears on a command line
    (the module downloads in-process) and is masked in every message and result."
version_added: "0.1.0"
author:
  - comfyops contributors (@comfyops)
options:
  models_dir:
    description:
      - ComfyUI's C(models) directory on the target (an absolute path), for example V(/srv/comfyui/models).
        Created if missing.
    type: path
    required: true
  models:
    description:
      - The model files. Mutually exclusive with O(url); one of the two is required.
    type: list
    elements: dict
    suboptions:
      name:
        description: Label used in messages and results (a string; defaults to C(folder/filename)).
        type: raw
      url:
        description:
          - HTTP(S) URL of the file, for example
            V(https://huggingface.co/Lightricks/LTX-2.3/resolve/main/ltx-2.3-22b-dev.safetensors).
          - Required unless O(models[].state=absent). No credentials in the URL; use O(token).
        type: str
      folder:
        description:
          - Folder below O(models_dir) (a string), for example V(checkpoints) or V(loras/ltxv/ltx2).
          - No control characters, no C(..) components, not a list.
        type: raw
        required: true
      filename:
        description:
          - File name in O(models[].folder) (a string); may contain subdirectories
            (V(gemma-3-12b-it/model-00001-of-00005.safetensors)).
          - Defaults to the last path component of O(models[].url).
        type: raw
      sha256:
        description:
          - Expected SHA-256 (64 hex digits). Recommended. Without it the checksum the origin publishes is used
            (Hugging Face); without both, an existing file counts as present whatever its content, and a download
            is not verified (its hash is still computed and returned).
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
    description: Folder of the single file given with O(url) (a string).
    type: raw
  filename:
    description: File name of the single file given with O(url) (a string; defaults to the URL's last path component).
    type: raw
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
  connections:
    description:
      - How many ranged connections one file is downloaded over (files larger than two pieces of 32 MiB, from a
        server that supports ranges). V(1) downloads each file over one connection.
    type: int
    default: 4
  max_parallel:
    description: How many files are downloaded at the same time.
    type: int
    default: 2
  retries:
    description:
      - How many times each connection of a download resumes after a transient error (connection lost, timeout,
        HTTP 5xx, 408, 429) within this run. HTTP 4xx answers such as 401, 403 and 404 fail at once.
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
  lock_timeout:
    description:
      - Seconds to wait for a file that another run (on this host or another host sharing the data root) is
        downloading; then the entry fails, naming the process and host that hold it.
    type: float
    default: 3600
  validate_certs:
    description: Whether to validate TLS certificates.
    type: bool
    default: true
  ca_path:
    description: PEM file of CA certificates used to validate C(https) URLs (a private mirror).
    type: path
  use_proxy:
    description:
      - Whether to use the proxy from the target's environment (C(https_proxy), C(no_proxy)). Through a proxy,
        each piece of a segmented download is a request of its own (no keep-alive).
    type: bool
    default: true
  min_free_mb:
    description: MiB that must stay free on the file system of a model folder after a download.
    type: int
    default: 1024
  state_dir:
    description:
      - Host-only directory for the hash cache, locks, partial downloads and their records, and the progress
        files (created with mode 0700). It must not be inside O(models_dir), which containers can write.
      - Defaults to C(<parent of models_dir>/.comfyops/models) (the data root is not mounted into containers,
        only its subdirectories). Keep it on the file system of O(models_dir) so partial files are renamed into
        place; on a shared data root (NFS), keep it on the share so the hosts see each other's locks.
    type: path
  status_file:
    description:
      - JSON progress file (a C(.txt) with one line per file is written next to it). Defaults to
        C(<state_dir>/download_status.json). Not written in check mode. Not inside O(models_dir).
    type: path
  cache_file:
    description:
      - Hash cache (path, inode, size, mtime, ctime, SHA-256 of verified files). Defaults to
        C(<state_dir>/sha256_cache.json). Delete it to force a re-read of every file. Not inside O(models_dir).
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
  - Memory is at most (O(connections) + 2) x 32 MiB per file being downloaded (bytes waiting for the hash).
  - Each piece costs one round trip on its connection; over a link with a long round trip, more connections
    make up for it.
  - Proxies from the environment apply to every request, including the token-bearing first one.
  - Earlier versions kept their cache and progress file in C(<models_dir>/.comfyops), where containers can write;
    that directory is no longer read, so the first run after an upgrade reads each existing file once.
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
    verified: {description: Whether the SHA-256 was compared with the expected one (given or published by the origin) and matched., type: bool}
    sha256_source:
      description:
        - Where the expected SHA-256 came from, V(given) (the entry), V(origin) (C(X-Linked-Etag) of the server,
          now or when the file was downloaded), V(computed) (nothing to compare with; the hash was computed from
          the data), null when nothing is known.
      type: str
      sample: origin
    hash_source:
      description: Where RV(models[].sha256) came from, V(cache) (no read), V(computed) (file read once), V(download).
      type: str
      sample: cache
    size: {description: Size in bytes., type: int}
    bytes_downloaded: {description: Bytes received in this run., type: int}
    resumed_from: {description: Bytes that were already in the partial file when the download started., type: int}
    bytes_read_back:
      description:
        - Bytes read back from the partial file to compute the SHA-256 (the resumed bytes, plus bytes that
          arrived too far ahead of the hash); 0 for a fresh download.
      type: int
    connections: {description: Connections the file was downloaded over., type: int}
    seconds: {description: Duration of the download., type: float}
    mb_per_s: {description: Download rate in MiB/s., type: float}
    error: {description: Why this file failed (only on failure)., type: str}
summary:
  description: One line per file that was downloaded, resumed, replaced or removed, with size, MiB/s and checksum.
  returned: always
  type: list
  elements: str
  sample: ["checkpoints/ltx-2.3-22b-distilled-1.1.safetensors: downloaded 42.80 GiB in 512.3 s (85.5 MiB/s, 4 connections), sha256 verified (origin)"]
changed:
  description: Whether any file changed.
  returned: always
  type: bool
status_file:
  description: Path of the JSON progress file (null in check mode); the one-line-per-file text is next to it (C(.txt)).
  returned: always
  type: str
  sample: /srv/comfyui/.comfyops/models/download_status.json
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
    Downloader,
    DownloadError,
    HashCache,
    StatusFile,
    default_state_dir,
    normalize_specs,
    redact,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.model_files import lstat_at, open_models_dir, open_subdir

SINGLE = ("url", "folder", "filename", "sha256", "size")
CONTROL = set(chr(c) for c in range(32)) | {"\x7f"}


def _argument_spec():
    return dict(
        models_dir=dict(type="path", required=True),
        models=dict(type="list", elements="dict", options=dict(
            name=dict(type="raw"),
            url=dict(type="str"),
            folder=dict(type="raw", required=True),
            filename=dict(type="raw"),
            sha256=dict(type="str"),
            size=dict(type="int"),
            state=dict(type="str", choices=["present", "absent"]),
        )),
        url=dict(type="str"),
        folder=dict(type="raw"),
        filename=dict(type="raw"),
        sha256=dict(type="str"),
        size=dict(type="int"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        token=dict(type="str", no_log=True),
        connections=dict(type="int", default=4),
        max_parallel=dict(type="int", default=2),
        retries=dict(type="int", default=3),
        retry_delay=dict(type="float", default=2.0),
        timeout=dict(type="float", default=60.0),
        lock_timeout=dict(type="float", default=3600.0),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        use_proxy=dict(type="bool", default=True),
        min_free_mb=dict(type="int", default=1024),
        state_dir=dict(type="path"),
        status_file=dict(type="path"),
        cache_file=dict(type="path"),
        mode=dict(type="str", default="0644"),
    )


def _specs(p):
    if p["models"] is not None:
        if any(p[k] is not None for k in SINGLE):
            raise ValueError("give either models or url/folder/filename/sha256/size, not both")
        items = p["models"]
    else:
        if not p["folder"]:
            raise ValueError("one of models or folder (with url) is required")
        items = [{k: p[k] for k in SINGLE if p[k] is not None}]
    return normalize_specs(items, p["state"]) if items else []


def _inside(path, directory):
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _parse(p):
    """Everything the run needs, validated before anything changes; raises ValueError with the message."""
    models_dir = p["models_dir"]
    if not os.path.isabs(models_dir) or os.path.normpath(models_dir) == "/":
        raise ValueError("models_dir must be an absolute path below /, got %r" % models_dir)
    specs = _specs(p)
    try:
        mode = int(p["mode"], 8)
    except ValueError as e:
        raise ValueError("mode must be an octal string such as '0644': %s" % e) from None
    if not 0 <= mode <= 0o7777:
        raise ValueError("mode out of range")
    for name in ("max_parallel", "connections"):
        if p[name] < 1:
            raise ValueError("%s must be at least 1" % name)
    if p["connections"] > 32:
        raise ValueError("connections must be at most 32 (servers and CDNs throttle clients that open more)")
    for name in ("retries", "min_free_mb", "retry_delay", "lock_timeout"):
        if p[name] < 0:
            raise ValueError("%s must not be negative" % name)
    if p["timeout"] <= 0:
        raise ValueError("timeout must be greater than 0")
    if p["token"] and any(c in CONTROL or c.isspace() for c in p["token"]):
        raise ValueError("token must be a string without spaces or control characters")
    state_dir = p["state_dir"] or default_state_dir(models_dir)
    paths = dict(state_dir=state_dir,
                 status_file=p["status_file"] or os.path.join(state_dir, "download_status.json"),
                 cache_file=p["cache_file"] or os.path.join(state_dir, "sha256_cache.json"))
    for name, path in paths.items():
        if not os.path.isabs(path):
            raise ValueError("%s must be an absolute path, got %r" % (name, path))
        if _inside(path, models_dir):
            raise ValueError("%s %s is inside models_dir, which containers can write: a container could forge "
                             "or redirect it. Choose a host-only directory, for example the default %s"
                             % (name, path, default_state_dir(models_dir)))
    return dict(models_dir=models_dir, specs=specs, mode=mode, **paths)


def _space_problem(downloader, specs, min_free_bytes):
    """A message when the files with a known size cannot fit, grouped by file system; None otherwise."""
    need = {}
    root = open_models_dir(downloader.models_dir, create=False)
    try:
        for spec in specs:
            if spec["state"] != "present" or spec["size"] is None:
                continue
            parts = spec["rel"].split("/")
            dfd = None
            try:
                dfd = open_subdir(root, parts[:-1], False, downloader.models_dir) if root is not None else None
                st = lstat_at(dfd, parts[-1]) if dfd is not None else None
            except Exception:  # pylint: disable=broad-except
                continue  # the entry reports its own problem when it runs
            finally:
                if dfd is not None:
                    os.close(dfd)
            if st is not None and st.st_size == spec["size"]:
                continue
            probe = os.path.join(downloader.models_dir, *parts[:-1])
            while not os.path.isdir(probe):
                probe = os.path.dirname(probe)
            entry = need.setdefault(os.stat(probe).st_dev, dict(probe=probe, bytes=0, files=[]))
            entry["bytes"] += max(spec["size"] - downloader.partial_bytes(spec), 0)
            entry["files"].append(spec["rel"])
    finally:
        if root is not None:
            os.close(root)
    for entry in need.values():
        free = downloader.disk_usage(entry["probe"]).free
        if free - entry["bytes"] < min_free_bytes:
            return ("not enough free space in %s: %d MiB needed for %s (+ %d MiB kept free, min_free_mb), %d MiB free"
                    % (entry["probe"], entry["bytes"] // 2**20, ", ".join(entry["files"]), min_free_bytes // 2**20,
                       free // 2**20))
    return None


def _act(module, plan):
    """Ensure every file; returns (results, status_path). Fails the module when nothing could start."""
    p, check = module.params, module.check_mode
    secrets = [p["token"]] if p["token"] else []
    specs = plan["specs"]
    status_path = None if check else plan["status_file"]
    cache = HashCache(plan["cache_file"], enabled=not check)
    try:
        if not check:
            os.makedirs(plan["models_dir"], exist_ok=True)
            os.makedirs(plan["state_dir"], mode=0o700, exist_ok=True)  # an existing one keeps its mode
        status = StatusFile(status_path, specs)
    except OSError as e:
        module.fail_json(msg="comfyui_model: %s" % e)
    downloader = Downloader(
        plan["models_dir"], token=p["token"], timeout=p["timeout"], validate_certs=p["validate_certs"],
        ca_path=p["ca_path"], use_proxy=p["use_proxy"], retries=p["retries"], retry_delay=p["retry_delay"],
        min_free_bytes=p["min_free_mb"] * 2**20, mode=plan["mode"], cache=cache, status=status,
        connections=p["connections"], state_dir=plan["state_dir"], lock_timeout=p["lock_timeout"])

    # up-front free-space check where the entries give sizes (the per-file check at download time covers the rest)
    problem = _space_problem(downloader, specs, p["min_free_mb"] * 2**20) if not check else None
    if problem:
        status.finish()
        module.fail_json(msg="comfyui_model: " + problem, models=[], changed=False, status_file=status_path,
                         summary=[])

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
    return results, status_path


def _summary_line(r):
    if r["action"] == "removed":
        return "%s: removed" % r["name"]
    if r["action"] in ("downloaded", "resumed", "replaced"):
        check = ("sha256 verified (%s)" % r["sha256_source"]) if r["verified"] else "sha256 not verified (none given or published)"
        return "%s: %s %.2f GiB in %.1f s (%s MiB/s, %d connection%s)%s, %s" % (
            r["name"], r["action"], (r["size"] or 0) / 2**30, r["seconds"], r["mb_per_s"], r["connections"],
            "" if r["connections"] == 1 else "s",
            (", %.2f GiB resumed" % (r["resumed_from"] / 2**30)) if r["resumed_from"] else "", check)
    return None


def _report(module, results, status_path):
    for r in results:
        for warning in r.pop("warnings", []):
            module.warn(warning)
        before, after = r.pop("before", None), r.pop("after", None)
        r["_diff"] = dict(before_header=r["path"], after_header=r["path"], before="%s\n" % before,
                          after="%s\n" % after) if r.get("changed") else None
    diff = [r.pop("_diff") for r in results]
    out = dict(changed=any(r.get("changed") for r in results), models=results, status_file=status_path,
               summary=[line for line in map(_summary_line, results) if line])
    if module._diff and any(diff):
        out["diff"] = [d for d in diff if d]
    failed = [r for r in results if r.get("action") == "failed"]
    if failed:
        module.fail_json(msg="comfyui_model: %d of %d file(s) failed: %s" % (
            len(failed), len(results), "; ".join(r["error"] for r in failed)), **out)
    module.exit_json(**out)


def main():
    module = AnsibleModule(argument_spec=_argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("models", "url")])
    secrets = [module.params["token"]] if module.params["token"] else []
    try:
        plan = _parse(module.params)
    except ValueError as e:
        module.fail_json(msg="comfyui_model: %s" % redact(e, secrets))
    results, status_path = _act(module, plan)
    _report(module, results, status_path)


if __name__ == "__main__":
    main()
