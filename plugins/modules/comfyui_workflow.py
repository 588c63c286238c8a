#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: comfyui_workflow
short_description: Run an API-format ComfyUI workflow, follow its progress and fetch its outputs
description:
  - Runs one workflow (graph) in ComfyUI's API format on one instance, directly (V(http://127.0.0.1:8188)) or
    through a reverse proxy (V(https://gpu01.example.com/comfyui/gpu0/)) with headers or basic authentication.
  - The graph comes from a file (O(workflow_path), on the target) or inline (O(workflow)). O(parameters) set node
    inputs by node id or by node title (C(_meta.title), the title shown in the editor), for example the prompt text,
    seed, width, height and frame count.
  - Files in O(uploads) are uploaded first (C(POST /upload/image), which takes images and videos); the name the
    server gives each file can be set as a node input.
  - The module opens the WebSocket C(/ws?clientId=<client_id>) before it submits, submits with the same client id
    (ComfyUI sends per-prompt events only to that socket), and follows the events until the prompt finished. When no
    WebSocket can be opened (a proxy without upgrade support, an HTTP proxy in the environment) it polls
    C(/history/<prompt_id>) instead; when the socket drops mid-run it goes on polling.
  - A prompt that ComfyUI answers with C(200) but with C(node_errors) was queued only partly (the outputs that
    validated); the module cancels it and fails, unless O(allow_partial=true).
  - When O(job_timeout) expires the prompt is removed from the queue and interrupted (C(POST /queue) delete,
    C(POST /interrupt) with the prompt id), and the task fails with RV(status=timeout).
  - Outputs (images, videos, ... of output nodes, as listed in C(/history)) are downloaded with C(GET /view) into
    O(dest). PNG, WebP, GIF and MP4 files are inspected (format, frame count, size) without extra packages.
  - Only transient errors are retried (no answer, for example connection refused while ComfyUI restarts, and
    HTTP 502/503/504 from a proxy); a C(400) validation error fails at once with the node, its class and the message.
  - Running a workflow is not idempotent by nature (every run queues a new job and writes new files). Use O(creates)
    to skip the run when its outputs are already there.
version_added: "0.1.0"
author:
  - comfyops contributors (@comfyops)
options:
  url:
    description:
      - Base URL of the instance or of its proxy path. A sub-path is kept for every request and the WebSocket.
    type: str
    required: true
  workflow:
    description:
      - The API-format graph, as a dictionary (node id to C({class_type, inputs, _meta})) or JSON text, for example
        C("{{ lookup('file', 'ltx2_t2v.json') }}"). A saved C(/prompt) request body (an object with a C(prompt)
        key) is accepted too.
      - Mutually exclusive with O(workflow_path); one of the two is required.
    type: raw
  workflow_path:
    description: Path of an API-format JSON file on the target (exported with "Export (API)" in the editor).
    type: path
  parameters:
    description:
      - Node inputs to set before submitting, applied in order.
    type: list
    elements: dict
    default: []
    suboptions:
      node:
        description: Node id (the key in the graph). Give O(parameters[].node) or O(parameters[].title).
        type: str
      title:
        description:
          - Node title (C(_meta.title)). Every node with that title gets the value. Fails when no node has it.
        type: str
      input:
        description: Name of the input, for example V(text), V(seed), V(width), V(value).
        type: str
        required: true
      value:
        description: The value (string, number, boolean). A linked input cannot be overwritten with a plain value.
        type: raw
        required: true
  uploads:
    description:
      - Files on the target to upload before submitting.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Local path of the file.
        type: path
        required: true
      filename:
        description: Name to upload it as (defaults to the file's name).
        type: str
      subfolder:
        description: Subfolder of ComfyUI's input directory.
        type: str
        default: ""
      overwrite:
        description:
          - Replace a file of the same name. Without it, ComfyUI keeps an identical file's name and renames a
            different one (C(name (1).png)); the injected value always is the name ComfyUI answered.
        type: bool
        default: false
      node:
        description: Node id whose O(uploads[].input) gets the uploaded name.
        type: str
      title:
        description: Node title whose O(uploads[].input) gets the uploaded name.
        type: str
      input:
        description: Input that receives the uploaded name (for example V(image) of C(LoadImage)).
        type: str
        default: image
  client_id:
    description: Client id for the submission and the WebSocket (a new UUID by default).
    type: str
  dest:
    description:
      - Directory on the target to download the outputs to (created if missing; ComfyUI's subfolders are kept).
        Without it the outputs are only listed.
    type: path
  output_types:
    description: Which outputs to fetch, by their ComfyUI type; V(temp) are previews.
    type: list
    elements: str
    default: [output]
  creates:
    description:
      - A path or glob pattern on the target; when it matches an existing file, the workflow does not run
        (RV(status=skipped)).
    type: path
  wait:
    description: Wait for the job and fetch its outputs. With V(false) the module returns once the job is queued.
    type: bool
    default: true
  job_timeout:
    description:
      - Seconds from the submission until the job must have finished (LTX-2 jobs may run 30 minutes and more).
        On expiry the job is interrupted (see O(interrupt_on_timeout)) and the task fails.
    type: float
    default: 3600
  interrupt_on_timeout:
    description: Remove the job from the queue and interrupt it when O(job_timeout) expires.
    type: bool
    default: true
  use_websocket:
    description: Follow progress over C(/ws); V(false) polls C(/history/<prompt_id>) every O(poll_interval) seconds.
    type: bool
    default: true
  poll_interval:
    description: Seconds between two C(/history) polls (and the unit of the WebSocket's silence check).
    type: float
    default: 1
  retries:
    description:
      - Retries of one request after a transient error (no answer, HTTP 502, 503, 504), waiting O(retry_delay)
        seconds between tries. A submission whose answer was lost is looked up in C(/history) and C(/queue)
        before it is retried, so it is not queued twice.
    type: int
    default: 5
  retry_delay:
    description: Seconds between retries.
    type: float
    default: 2
  allow_partial:
    description: Accept a submission that ComfyUI queued only partly (C(node_errors) on a C(200)).
    type: bool
    default: false
extends_documentation_fragment:
  - comfyops.comfyui.comfyui_http
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    description: Loads the graph, applies O(parameters) and checks O(creates); submits nothing and reports
      RV(status=would_run) with C(changed=true).
    support: full
  diff_mode:
    support: none
  idempotent:
    description: Not idempotent; every run queues a new job and writes new output files. O(creates) skips a run
      whose outputs exist.
    support: none
  platform:
    platforms: posix
notes:
  - O(timeout) is the socket timeout of each request; O(job_timeout) bounds the whole job.
  - The WebSocket connects directly (it does not use C(http_proxy)/C(https_proxy)); O(headers) and basic
    authentication are sent with its handshake too.
  - ComfyUI caches node results; an identical graph finishes at once with the earlier outputs. Change the seed to
    get a new result.
seealso:
  - module: comfyops.comfyui.comfyui_health
  - module: comfyops.comfyui.comfyui_model
"""

EXAMPLES = r"""
- name: Generate a short LTX-2 clip from the template shipped with the collection
  comfyops.comfyui.comfyui_workflow:
    url: http://127.0.0.1:8188
    workflow: "{{ lookup('ansible.builtin.file', 'files/workflows/ltx2_t2v.json') }}"
    parameters:
      - {title: Prompt, input: value, value: "A red fox runs through fresh snow, morning light"}
      - {title: Seed, input: value, value: 42}
      - {title: Width, input: value, value: 768}
      - {title: Height, input: value, value: 512}
      - {title: Frames, input: value, value: 97}
    dest: /srv/renders/fox
    job_timeout: 3600
  register: clip

- name: Show the file
  ansible.builtin.debug:
    msg: "{{ clip.output_paths }} ({{ clip.outputs[0].media.frames }} frames in {{ clip.timings.total_s }} s)"

- name: Image-to-video through the proxy, with the input image uploaded first
  comfyops.comfyui.comfyui_workflow:
    url: https://comfy.example.com/comfyui/gpu0/
    url_username: ops
    url_password: "{{ vault_proxy_password }}"
    workflow_path: /srv/workflows/ltx2_i2v_api.json
    uploads:
      - path: /srv/inputs/first_frame.png
        title: Start image
        input: image
    parameters:
      - {node: "6", input: text, value: "{{ prompt_text }}"}
    dest: /srv/renders/i2v
    creates: /srv/renders/i2v/*.mp4

- name: Queue only, do not wait
  comfyops.comfyui.comfyui_workflow:
    url: http://127.0.0.1:8188
    workflow_path: /srv/workflows/batch.json
    wait: false
  register: queued
"""

RETURN = r"""
status:
  description:
    - V(success), V(error) (a node failed), V(interrupted) (by someone else), V(timeout), V(rejected) (validation
      error), V(lost) (ComfyUI restarted), V(submitted) (O(wait=false)), V(skipped) (O(creates)), V(would_run)
      (check mode).
  returned: always
  type: str
  sample: success
prompt_id:
  description: ComfyUI's id of the job (null when it was not queued).
  returned: always
  type: str
  sample: c9a5bba5-f2ae-40b8-a715-efa33448b6c3
number:
  description: The queue number ComfyUI gave the job.
  returned: when submitted
  type: int
client_id:
  description: Client id of the submission and the WebSocket.
  returned: when submitted
  type: str
timings:
  description:
    - Seconds; C(submit_s) (connect and submit), C(queue_s) (waiting for a free worker, estimated), C(run_s) (from
      ComfyUI's execution start to end), C(total_s) (the whole task).
  returned: when submitted
  type: dict
  sample: {submit_s: 0.01, queue_s: 0.0, run_s: 0.12, total_s: 0.2}
outputs:
  description: Output files reported by the job (and fetched when O(dest) is set).
  returned: when the job finished
  type: list
  elements: dict
  contains:
    node_id: {description: Output node., type: str}
    kind: {description: "Key in the node's output (C(images), C(gifs), C(videos), ...).", type: str}
    filename: {description: File name on the server., type: str}
    subfolder: {description: Subfolder on the server., type: str}
    type: {description: "ComfyUI's type (C(output), C(temp)).", type: str}
    path: {description: Local path (only when fetched)., type: str}
    size: {description: Bytes (only when fetched)., type: int}
    media:
      description: C(format), C(frames), C(width), C(height), C(valid) of a fetched PNG/WebP/GIF/MP4 (null otherwise).
      type: dict
      sample: {format: mp4, frames: 97, width: 768, height: 512, valid: true}
output_paths:
  description: Local paths of the fetched outputs.
  returned: always
  type: list
  elements: str
texts:
  description: Text outputs (C(PreviewAny) and similar), by node id.
  returned: when the job finished
  type: dict
error:
  description: On failure, C(type), C(message), C(node_id), C(node_type) (and C(details) or C(traceback)).
  returned: on failure
  type: dict
  sample: {type: Exception, message: "Saving image outside the output folder is not allowed.", node_id: "2",
           node_type: SaveImage}
node_errors:
  description: Validation errors per node (C(node_id), C(class_type), C(type), C(message), C(details), C(input_name)).
  returned: when submitted or rejected
  type: list
  elements: dict
progress_via:
  description: How the job was followed, V(websocket), V(polling) or V(websocket+polling) (the socket dropped).
  returned: when submitted
  type: str
ws_error:
  description: Why the WebSocket was not used (null when it was).
  returned: when submitted
  type: str
interrupted:
  description: Whether the job was cancelled after O(job_timeout).
  returned: on timeout
  type: bool
uploads:
  description: Uploaded files with the name ComfyUI gave them (C(value) is what was injected).
  returned: always
  type: list
  elements: dict
parameters_applied:
  description: Inputs that were set (C(node), C(title), C(input), C(old), C(new)).
  returned: always
  type: list
  elements: dict
workflow:
  description: The graph as submitted (after O(parameters) and O(uploads)).
  returned: always
  type: dict
"""

import glob
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import (
    ComfyUIClient,
    basic_auth,
    comfyui_http_argument_spec,
    ssl_context,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.workflow_run import (
    WorkflowError,
    WorkflowRunner,
    inject,
    load_graph,
)


def websocket_headers(params):
    """The HTTP client's headers and credentials, for the WebSocket handshake (a proxy with basic auth wants both)."""
    headers = dict(params["headers"] or {})
    if params["url_username"]:
        headers["Authorization"] = basic_auth(params["url_username"], params["url_password"])
    return headers


def argument_spec():
    spec = comfyui_http_argument_spec()
    spec.update(
        url=dict(type="str", required=True),
        workflow=dict(type="raw"),
        workflow_path=dict(type="path"),
        parameters=dict(type="list", elements="dict", default=[], options=dict(
            node=dict(type="str"),
            title=dict(type="str"),
            input=dict(type="str", required=True),
            value=dict(type="raw", required=True),
        ), mutually_exclusive=[("node", "title")], required_one_of=[("node", "title")]),
        uploads=dict(type="list", elements="dict", default=[], options=dict(
            path=dict(type="path", required=True),
            filename=dict(type="str"),
            subfolder=dict(type="str", default=""),
            overwrite=dict(type="bool", default=False),
            node=dict(type="str"),
            title=dict(type="str"),
            input=dict(type="str", default="image"),
        ), mutually_exclusive=[("node", "title")]),
        client_id=dict(type="str"),
        dest=dict(type="path"),
        output_types=dict(type="list", elements="str", default=["output"]),
        creates=dict(type="path"),
        wait=dict(type="bool", default=True),
        job_timeout=dict(type="float", default=3600.0),
        interrupt_on_timeout=dict(type="bool", default=True),
        use_websocket=dict(type="bool", default=True),
        poll_interval=dict(type="float", default=1.0),
        retries=dict(type="int", default=5),
        retry_delay=dict(type="float", default=2.0),
        allow_partial=dict(type="bool", default=False),
    )
    return spec


def upload_parameter(up, value):
    """The parameter that puts an upload's server-side name into its node input, None without a node or title."""
    if up["node"] is not None:
        return dict(node=up["node"], input=up["input"], value=value)
    if up["title"] is not None:
        return dict(title=up["title"], input=up["input"], value=value)
    return None


def parse(module):
    """(graph with the parameters applied, the changes made, client); fails the module on bad input, before any
    request. Upload targets are checked with a placeholder; the real names are set once the files are uploaded."""
    p = module.params
    for name in ("job_timeout", "poll_interval"):
        if p[name] <= 0:
            module.fail_json(msg="comfyui_workflow: %s must be greater than 0" % name)
    if p["retries"] < 0 or p["retry_delay"] < 0:
        module.fail_json(msg="comfyui_workflow: retries and retry_delay must not be negative")
    try:
        graph = load_graph(p["workflow"], p["workflow_path"])
        applied = inject(graph, [{k: v for k, v in item.items() if v is not None or k == "value"}
                                 for item in p["parameters"]])
        for up in p["uploads"]:
            placeholder = upload_parameter(up, "<upload>")
            if placeholder is not None:
                inject(graph, [placeholder])
    except ValueError as e:
        module.fail_json(msg="comfyui_workflow: %s" % e)
    try:
        client = ComfyUIClient.from_params(p, p["url"])
    except ValueError as e:
        module.fail_json(msg="comfyui_workflow: url: %s" % e)
    return graph, applied, client


def act(module, graph, applied, client, started):
    """(failure message or None, result): skip for creates, stop in check mode, else upload, run and fetch."""
    p = module.params
    base = dict(changed=False, prompt_id=None, outputs=[], output_paths=[], uploads=[], parameters_applied=applied,
                workflow=graph)
    if p["creates"]:
        existing = sorted(glob.glob(p["creates"]))
        if existing:
            return None, dict(base, status="skipped", msg="%s exists" % existing[0], output_paths=existing)
    if module.check_mode:
        return None, dict(base, changed=True, status="would_run")

    runner = WorkflowRunner(
        client, ws_headers=websocket_headers(p),
        ws_context=ssl_context(p["validate_certs"], p["ca_path"]) if p["url"].startswith("https") else None,
        use_websocket=p["use_websocket"], job_timeout=p["job_timeout"], poll_interval=p["poll_interval"],
        retries=p["retries"], retry_delay=p["retry_delay"], interrupt_on_timeout=p["interrupt_on_timeout"],
        allow_partial=p["allow_partial"])
    try:
        uploads = []
        for up in p["uploads"]:
            done = runner.upload(up["path"], up["filename"], up["subfolder"], up["overwrite"])
            uploads.append(done)
            parameter = upload_parameter(up, done["value"])
            if parameter is not None:
                applied += inject(graph, [parameter])
        base["uploads"] = uploads
        result = runner.run(graph, client_id=p["client_id"], dest=p["dest"], output_types=p["output_types"],
                            fetch_outputs=bool(p["dest"]), wait=p["wait"])
    except WorkflowError as e:
        out = dict(base, status=e.result.pop("status", "failed"), **e.result)
        out["changed"] = bool(out.get("prompt_id"))  # a job ran (or was queued) on the server
        out.setdefault("timings", dict(total_s=round(time.monotonic() - started, 3)))
        return "comfyui_workflow: %s" % e.message, out
    except OSError as e:  # dest not writable and the like
        return "comfyui_workflow: %s" % e, dict(base, status="failed")
    return None, dict(base, changed=True, **result)


def report(module, failure, result):
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("workflow", "workflow_path")],
                           required_one_of=[("workflow", "workflow_path")])
    started = time.monotonic()
    graph, applied, client = parse(module)
    failure, result = act(module, graph, applied, client, started)
    report(module, failure, result)


if __name__ == "__main__":
    main()
