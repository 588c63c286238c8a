# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run an API-format ComfyUI workflow: parameters, uploads, submit, follow (WebSocket or polling), outputs.

Used by comfyops.comfyui.comfyui_workflow. Response shapes follow the recordings in
tests/fixtures/reference/comfyui-api (prompt_error_*.json, history_*.json, ws_transcript*.jsonl).
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from urllib.parse import urlencode

from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import ComfyUIError, excerpt
from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_ws import (
    OP_TEXT,
    WebSocket,
    WebSocketClosed,
    WebSocketError,
    WebSocketTimeout,
    ws_url,
)
from ansible_collections.comfyops.comfyui.plugins.module_utils.media_probe import media_info

_TRANSIENT_STATUSES = (502, 503, 504)


class WorkflowError(Exception):
    """A failed run; result holds what is known (prompt_id, error, ...)."""

    def __init__(self, message, **result):
        super().__init__(message)
        self.message = message
        self.result = result

    def __str__(self):
        return self.message


# --- the graph ----------------------------------------------------------------------------------------------------

def load_graph(workflow=None, workflow_path=None):
    """The API-format graph as a dict, from an inline value (dict or JSON text) or a file."""
    source = "workflow"
    if workflow_path:
        source = workflow_path
        try:
            with open(workflow_path, "rb") as f:
                workflow = f.read().decode("utf-8")
        except (OSError, UnicodeError) as e:
            raise ValueError("cannot read workflow_path %s: %s" % (workflow_path, e))
    if isinstance(workflow, (str, bytes)):
        try:
            workflow = json.loads(workflow)
        except ValueError as e:
            raise ValueError("%s is not valid JSON: %s" % (source, e))
    if not isinstance(workflow, dict):
        raise ValueError("%s must be a JSON object of node id -> node, got %s" % (source, type(workflow).__name__))
    if "prompt" in workflow and isinstance(workflow["prompt"], dict) and "nodes" not in workflow:
        workflow = workflow["prompt"]  # a saved /prompt request body
    if isinstance(workflow.get("nodes"), list) and "links" in workflow:
        raise ValueError("%s is in the UI (editor) format; export it with 'Export (API)' (or 'Save (API Format)') "
                         "and use that file" % source)
    if not workflow:
        raise ValueError("%s has no nodes" % source)
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) \
                or not isinstance(node.get("inputs", {}), dict):
            raise ValueError("%s: node %r is not an API-format node (a dict with class_type and inputs)"
                             % (source, node_id))
    return copy.deepcopy(workflow)


def _node_title(node):
    meta = node.get("_meta")
    return meta.get("title") if isinstance(meta, dict) else None


def _find_nodes(graph, node=None, title=None):
    """Node ids for a parameter's selector: an id, or every node whose _meta.title equals the title."""
    if node is not None:
        node = str(node)
        if node not in graph:
            raise ValueError("no node with id %r in the workflow (ids: %s)" % (node, ", ".join(sorted(graph, key=_id_key))))
        return [node]
    matches = [nid for nid, n in graph.items() if _node_title(n) == title]
    if not matches:
        titles = sorted({t for t in (_node_title(n) for n in graph.values()) if t})
        raise ValueError("no node titled %r in the workflow (titles: %s)" % (title, ", ".join(titles) or "none"))
    return sorted(matches, key=_id_key)


def _id_key(node_id):
    return (0, int(node_id), "") if str(node_id).isdigit() else (1, 0, str(node_id))


def inject(graph, parameters):
    """Apply parameters [{node|title, input, value}] in place; returns [{node, title, input, old, new}]."""
    applied = []
    for i, p in enumerate(parameters or []):
        where = "parameters[%d]" % i
        if not isinstance(p, dict):
            raise ValueError("%s must be a dictionary with node or title, input and value" % where)
        unknown = sorted(set(p) - {"node", "title", "input", "value"})
        if unknown:
            raise ValueError("%s: unknown key(s) %s" % (where, ", ".join(unknown)))
        if (p.get("node") is None) == (p.get("title") is None):
            raise ValueError("%s: give exactly one of node (an id) or title (a node's _meta.title)" % where)
        if not p.get("input") or not isinstance(p.get("input"), str):
            raise ValueError("%s: input (the name of the node input to set) is required" % where)
        if "value" not in p:
            raise ValueError("%s: value is required" % where)
        try:
            ids = _find_nodes(graph, p.get("node"), p.get("title"))
        except ValueError as e:
            raise ValueError("%s: %s" % (where, e))
        for nid in ids:
            inputs = graph[nid].setdefault("inputs", {})
            existed = p["input"] in inputs
            old = inputs.get(p["input"])
            if isinstance(old, list) and len(old) == 2 and isinstance(old[0], str) and not isinstance(p["value"], list):
                raise ValueError("%s: input %r of node %s (%s) is a link to node %s, not a value; set the value on "
                                 "that node instead" % (where, p["input"], nid, graph[nid]["class_type"], old[0]))
            inputs[p["input"]] = p["value"]
            applied.append(dict(node=nid, title=_node_title(graph[nid]), input=p["input"], new=p["value"],
                                old=old, added=not existed))
    return applied


# --- errors --------------------------------------------------------------------------------------------------------

def _node_error_list(node_errors):
    """Flatten ComfyUI's node_errors into [{node_id, class_type, type, message, details, input_name}]."""
    out = []
    for node_id, entry in sorted((node_errors or {}).items(), key=lambda kv: _id_key(kv[0])):
        entry = entry if isinstance(entry, dict) else {}
        for err in entry.get("errors") or [{}]:
            extra = err.get("extra_info") or {}
            out.append(dict(node_id=str(node_id), class_type=entry.get("class_type"), type=err.get("type"),
                            message=err.get("message"), details=err.get("details"),
                            input_name=extra.get("input_name"), received_value=extra.get("received_value")))
    return out


def _describe_node_errors(errors, graph=None):
    parts = []
    for e in errors:
        title = _node_title((graph or {}).get(e["node_id"], {}))
        label = "node %s (%s%s)" % (e["node_id"], e["class_type"], ", '%s'" % title if title and title != e["class_type"] else "")
        text = e["message"] or e["type"] or "error"
        if e.get("input_name"):
            label += " input %s" % e["input_name"]
        if e.get("details") and e.get("details") != e.get("input_name"):
            text += ": %s" % e["details"]
        parts.append("%s: %s" % (label, text))
    return "; ".join(parts)


def _prompt_error(body, status, graph=None):
    """(message, error dict, node error list) for a rejected POST /prompt (a 400 with ComfyUI's error shape)."""
    data = None
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        pass
    if not isinstance(data, dict) or "error" not in data:
        msg = "ComfyUI rejected the workflow: HTTP %s: %s" % (status, excerpt(body))
        return msg, dict(type="http_%s" % status, message=excerpt(body), node_id=None, node_type=None), []
    err = data.get("error") if isinstance(data.get("error"), dict) else {"message": str(data.get("error"))}
    extra = err.get("extra_info") or {}
    nodes = _node_error_list(data.get("node_errors"))
    error = dict(type=err.get("type"), message=err.get("message"), details=err.get("details") or None,
                 node_id=extra.get("node_id") or (nodes[0]["node_id"] if nodes else None),
                 node_type=extra.get("class_type") or (nodes[0]["class_type"] if nodes else None))
    msg = "ComfyUI rejected the workflow (%s): %s" % (err.get("type"), err.get("message"))
    if nodes:
        msg += ": " + _describe_node_errors(nodes, graph)
    elif extra.get("node_id"):
        msg += " (node %s, %s)" % (extra.get("node_id"), extra.get("class_type"))
    return msg, error, nodes


def _execution_error(data):
    """The error dict of an execution_error message (WebSocket or history)."""
    return dict(type=data.get("exception_type") or "execution_error", message=data.get("exception_message"),
                node_id=data.get("node_id"), node_type=data.get("node_type"), details=None,
                traceback=data.get("traceback") or [])


def _history_outcome(entry):
    """(status, error, timestamps) from a /history/<id> entry: success | error | interrupted | running."""
    status = entry.get("status") or {}
    messages = status.get("messages") or []
    stamps, error, outcome = {}, None, None
    for item in messages:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict)):
            continue
        event, data = item
        if "timestamp" in data:
            stamps[event] = data["timestamp"]
        if event == "execution_error":
            error, outcome = _execution_error(data), "error"
        elif event == "execution_interrupted":
            error = dict(type="interrupted", message="interrupted at node %s (%s)" % (data.get("node_id"), data.get("node_type")),
                         node_id=data.get("node_id"), node_type=data.get("node_type"), details=None)
            outcome = "interrupted"
        elif event == "execution_success":
            outcome = "success"
    if outcome is None:
        if status.get("status_str") == "success" or (status.get("completed") and not messages):
            outcome = "success"
        elif status.get("status_str") == "error":
            outcome = "error"
        else:
            outcome = "running"
    return outcome, error, stamps


def _output_files(outputs, types=("output",)):
    """[{node_id, kind, filename, subfolder, type}] of every file an output node reported."""
    files = []
    for node_id, out in sorted((outputs or {}).items(), key=lambda kv: _id_key(kv[0])):
        if not isinstance(out, dict):
            continue
        for kind, items in out.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and item.get("filename") and item.get("type", "output") in types:
                    files.append(dict(node_id=str(node_id), kind=kind, filename=item["filename"],
                                      subfolder=item.get("subfolder") or "", type=item.get("type", "output")))
    return files


def _output_texts(outputs):
    texts = {}
    for node_id, out in (outputs or {}).items():
        if isinstance(out, dict) and isinstance(out.get("text"), list):
            texts[str(node_id)] = out["text"]
    return texts


# --- the run ---------------------------------------------------------------------------------------------------------

def _is_transient(err):
    """Worth retrying: no HTTP answer (refused while restarting, reset) or a proxy's 502/503/504. Never a 4xx."""
    return isinstance(err, ComfyUIError) and (err.status is None or err.status in _TRANSIENT_STATUSES)


def _multipart(fields, file_field, filename, data, content_type="application/octet-stream"):
    boundary = "comfyops-" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                      % (boundary, name, value)).encode("utf-8"))
    safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
    parts.append(('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n'
                  % (boundary, file_field, safe_name, content_type)).encode("utf-8") + data + b"\r\n")
    parts.append(("--%s--\r\n" % boundary).encode("ascii"))
    return b"".join(parts), "multipart/form-data; boundary=" + boundary


class WorkflowRunner:
    """One run of one graph on one instance."""

    def __init__(self, client, ws_headers=None, ws_context=None, use_websocket=True, job_timeout=3600.0,
                 poll_interval=1.0, retries=3, retry_delay=2.0, interrupt_on_timeout=True, allow_partial=False,
                 clock=time.monotonic, sleep=time.sleep, ws_connect=WebSocket.connect, log=None):
        self.client = client
        self.ws_headers = ws_headers or {}
        self.ws_context = ws_context
        self.use_websocket = use_websocket
        self.job_timeout = job_timeout
        self.poll_interval = poll_interval
        self.retries = retries
        self.retry_delay = retry_delay
        self.interrupt_on_timeout = interrupt_on_timeout
        self.allow_partial = allow_partial
        self.clock = clock
        self.sleep = sleep
        self.ws_connect = ws_connect
        self.log = log or (lambda msg: None)
        self.attempts = {}

    # -- transient retries
    def _call(self, what, fn):
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except ComfyUIError as e:
                if not _is_transient(e) or attempt > self.retries:
                    raise
                self.attempts[what] = attempt
                self.log("%s: transient error (%s), retry %d of %d" % (what, e, attempt, self.retries))
                self.sleep(self.retry_delay)

    # -- uploads
    def upload(self, path, filename=None, subfolder="", overwrite=False, upload_type="input"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise WorkflowError("cannot read upload %s: %s" % (path, e))
        fields = {"type": upload_type, "overwrite": "true" if overwrite else "false"}
        if subfolder:
            fields["subfolder"] = subfolder
        body, ctype = _multipart(fields, "image", filename or os.path.basename(path), data)
        try:
            resp = self._call("upload", lambda: self.client.request("POST", "/upload/image", data=body,
                                                                    headers={"Content-Type": ctype}))
            answer = resp.json()
        except ComfyUIError as e:
            raise WorkflowError("upload of %s failed: %s" % (path, e), error=dict(type="upload", message=str(e)))
        name = answer.get("name")
        value = "%s/%s" % (answer.get("subfolder"), name) if answer.get("subfolder") else name
        return dict(path=path, name=name, subfolder=answer.get("subfolder") or "", type=answer.get("type"),
                    value=value, size=len(data))

    # -- submit
    def _submit(self, graph, client_id, prompt_id):
        payload = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}

        def post():
            try:
                return self.client.post_json("/prompt", payload)
            except ComfyUIError as e:
                if e.status is None and self._already_queued(prompt_id):
                    # the request reached the server but its answer was lost: do not queue it twice
                    return {"prompt_id": prompt_id, "number": None, "node_errors": {}}
                raise

        try:
            answer = self._call("submit", post)
        except ComfyUIError as e:
            if e.status == 400 or (e.status and 400 <= e.status < 500):
                msg, error, nodes = _prompt_error(e.raw_body if e.raw_body is not None else e.body, e.status, graph)
                raise WorkflowError(msg, status="rejected", error=error, node_errors=nodes)
            raise WorkflowError("submitting the workflow failed: %s" % e, status="failed",
                                error=dict(type="http", message=str(e), node_id=None, node_type=None))
        return answer

    def _already_queued(self, prompt_id):
        try:
            if self.client.get_json("/history/" + prompt_id).get(prompt_id):
                return True
        except (ComfyUIError, AttributeError):
            pass
        try:
            queue = self.client.get_json("/queue")
        except ComfyUIError:
            return False
        items = (queue.get("queue_running") or []) + (queue.get("queue_pending") or [])
        return any(isinstance(item, list) and len(item) > 1 and item[1] == prompt_id for item in items)

    def _cancel(self, prompt_id):
        """Remove the prompt from the queue and interrupt it if it runs; True when both requests answered."""
        ok = True
        for path, payload in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._call("cancel", lambda p=path, d=payload: self.client.post_json(p, d))
            except ComfyUIError as e:
                self.log("cancel %s: %s" % (path, e))
                ok = False
        return ok

    # -- follow
    def _open_ws(self, client_id):
        if not self.use_websocket:
            return None, "disabled"
        url = ws_url(self.client.base_url, "/ws?clientId=" + client_id)
        try:
            ws = self.ws_connect(url, headers=self.ws_headers, timeout=max(self.client.timeout, 1.0),
                                 context=self.ws_context)
            # the server greets with a status message; reading it proves the channel works
            ws.recv(timeout=max(self.client.timeout, 1.0))
            return ws, None
        except (WebSocketError, OSError, ValueError) as e:
            return None, str(e)

    def _history(self, prompt_id):
        entry = self._call("history", lambda: self.client.get_json("/history/" + prompt_id))
        return entry.get(prompt_id) if isinstance(entry, dict) else None

    def _follow(self, ws, prompt_id, deadline, state):
        """Wait for the prompt to finish; returns its history entry. Raises TimeoutError at the deadline."""
        if ws is not None:
            try:
                entry = self._follow_ws(ws, prompt_id, deadline, state)
                if entry is not None:
                    return entry
            except WebSocketClosed as e:
                state["ws_error"] = str(e)
                state["progress_via"] = "websocket+polling"
        return self._poll(prompt_id, deadline, state)

    def _follow_ws(self, ws, prompt_id, deadline, state):
        grace_until = None
        silence = max(5.0, self.poll_interval * 5)
        while True:
            now = self.clock()
            limit = deadline if grace_until is None else min(deadline, grace_until)
            if now >= limit:
                if grace_until is not None and now >= grace_until:
                    return None  # the terminal event came, the "executing null" did not: ask history
                raise TimeoutError()
            try:
                opcode, payload = ws.recv(timeout=min(limit - now, silence))
            except WebSocketTimeout:
                # quiet for a while: make sure we did not miss the end (another socket with our client id?)
                entry = self._history(prompt_id)
                if entry is not None and _history_outcome(entry)[0] != "running":
                    return entry
                continue
            if opcode != OP_TEXT:
                state["binary_frames"] = state.get("binary_frames", 0) + 1
                continue
            try:
                msg = json.loads(payload)
            except ValueError:
                continue
            mtype, data = msg.get("type"), msg.get("data") or {}
            if not isinstance(data, dict) or data.get("prompt_id") not in (None, prompt_id):
                continue
            if "prompt_id" not in data and mtype != "progress":
                continue  # status broadcasts
            state["events"] = state.get("events", 0) + 1
            if mtype == "execution_start":
                state["started"] = self.clock()
            elif mtype == "execution_cached":
                state["cached_nodes"] = list(data.get("nodes") or [])
            elif mtype == "executing":
                if data.get("node") is None:
                    entry = self._history(prompt_id)
                    if entry is not None:
                        return entry
                    return None
                state["last_node"] = data.get("node")
            elif mtype == "progress":
                state["progress"] = dict(node=data.get("node"), value=data.get("value"), max=data.get("max"))
            elif mtype in ("execution_success", "execution_error", "execution_interrupted"):
                state["finished"] = self.clock()
                if mtype == "execution_error":
                    state["ws_error_event"] = _execution_error(data)
                grace_until = self.clock() + 10.0

    def _poll(self, prompt_id, deadline, state):
        if state.get("progress_via") == "websocket":
            state["progress_via"] = "polling"
        last_queue_check = self.clock()
        while True:
            entry = self._history(prompt_id)
            if entry is not None and _history_outcome(entry)[0] != "running":
                return entry
            now = self.clock()
            if now >= deadline:
                raise TimeoutError()
            if now - last_queue_check >= max(10.0, self.poll_interval * 10):
                last_queue_check = now
                if not self._already_queued(prompt_id):
                    entry = self._history(prompt_id)
                    if entry is not None:
                        return entry
                    raise WorkflowError("prompt %s is neither queued nor in the history any more (ComfyUI restarted?)"
                                        % prompt_id, status="lost", error=dict(type="lost", message="prompt lost",
                                                                               node_id=None, node_type=None))
            self.sleep(min(self.poll_interval, max(deadline - now, 0.0)))

    # -- outputs
    def _fetch(self, files, dest):
        fetched = []
        for item in files:
            sub = item["subfolder"]
            parts = [p for p in sub.replace("\\", "/").split("/") if p]
            name = os.path.basename(item["filename"])
            if any(p in (".", "..") for p in parts) or name in ("", ".", ".."):
                raise WorkflowError("refusing output path %r/%r" % (sub, item["filename"]))
            target_dir = os.path.join(dest, *parts)
            os.makedirs(target_dir, exist_ok=True)
            target = os.path.join(target_dir, name)
            query = urlencode(dict(filename=item["filename"], subfolder=sub, type=item["type"]))
            try:
                resp = self._call("view", lambda q=query: self.client.request("GET", "/view?" + q, timeout=max(self.client.timeout, 60)))
            except ComfyUIError as e:
                raise WorkflowError("fetching output %s failed: %s" % (item["filename"], e),
                                    error=dict(type="fetch", message=str(e), node_id=item["node_id"], node_type=None))
            tmp = target + ".part"
            with open(tmp, "wb") as f:
                f.write(resp.body)
            os.replace(tmp, target)
            entry = dict(item, path=target, size=len(resp.body))
            entry["media"] = media_info(target)
            fetched.append(entry)
        return fetched

    # -- the whole run
    def run(self, graph, client_id=None, dest=None, output_types=("output",), fetch_outputs=True, wait=True):
        client_id = client_id or str(uuid.uuid4())
        prompt_id = str(uuid.uuid4())
        state = dict(progress_via="websocket", events=0)
        t0 = self.clock()
        ws, ws_error = self._open_ws(client_id) if wait else (None, "not waiting")
        if ws is None:
            state["progress_via"] = "polling" if wait else "none"
            state["ws_error"] = ws_error
        base = dict(client_id=client_id, prompt_id=None, number=None)
        try:
            try:
                answer = self._submit(graph, client_id, prompt_id)
            except WorkflowError as e:
                e.result.update(base, timings=dict(total_s=round(self.clock() - t0, 3)))
                raise
            prompt_id = answer.get("prompt_id") or prompt_id
            base.update(prompt_id=prompt_id, number=answer.get("number"))
            t_submit = self.clock()
            nodes = _node_error_list(answer.get("node_errors"))
            if nodes and not self.allow_partial:
                self._cancel(prompt_id)
                raise WorkflowError("ComfyUI queued only the valid part of the workflow; these nodes failed validation "
                                    "(the prompt was cancelled): " + _describe_node_errors(nodes, graph),
                                    status="rejected", node_errors=nodes,
                                    error=dict(type="prompt_outputs_failed_validation", node_id=nodes[0]["node_id"],
                                               node_type=nodes[0]["class_type"], message=nodes[0]["message"],
                                               details=nodes[0]["details"]), **base)
            if not wait:
                return dict(base, status="submitted", node_errors=nodes, outputs=[], output_paths=[],
                            progress_via="none", timings=dict(submit_s=round(t_submit - t0, 3)))
            deadline = t0 + self.job_timeout
            try:
                entry = self._follow(ws, prompt_id, deadline, state)
            except TimeoutError:
                interrupted = self._cancel(prompt_id) if self.interrupt_on_timeout else False
                outcome = None
                if interrupted:
                    confirm = self.clock() + 10.0
                    while self.clock() < confirm:
                        try:
                            entry = self._history(prompt_id)
                        except ComfyUIError:
                            entry = None
                        if entry is not None:
                            outcome = _history_outcome(entry)[0]
                            break
                        if not self._already_queued(prompt_id):
                            outcome = "removed"
                            break
                        self.sleep(min(self.poll_interval, 0.5))
                raise WorkflowError(
                    "the job did not finish within job_timeout=%s s; %s" % (
                        self.job_timeout, "it was interrupted (%s)" % (outcome or "interrupt sent")
                        if interrupted else "it was left running"),
                    status="timeout", interrupted=interrupted, final_state=outcome, node_errors=nodes,
                    progress=state.get("progress"), last_node=state.get("last_node"),
                    error=dict(type="timeout", message="job_timeout expired", node_id=state.get("last_node"),
                               node_type=graph.get(str(state.get("last_node")), {}).get("class_type")),
                    timings=dict(total_s=round(self.clock() - t0, 3)), progress_via=state["progress_via"], **base)
            t_end = self.clock()
            outcome, error, stamps = _history_outcome(entry)
            timings = dict(submit_s=round(t_submit - t0, 3), total_s=round(t_end - t0, 3))
            if "execution_start" in stamps:
                end_stamp = max(stamps.values())
                timings["run_s"] = round((end_stamp - stamps["execution_start"]) / 1000.0, 3)
                timings["queue_s"] = round(max(timings["total_s"] - timings["run_s"] - timings["submit_s"], 0.0), 3)
            files = _output_files(entry.get("outputs"), output_types)
            texts = _output_texts(entry.get("outputs"))
            result = dict(base, status=outcome, node_errors=nodes, progress_via=state["progress_via"],
                          events=state.get("events", 0), cached_nodes=state.get("cached_nodes", []), timings=timings,
                          texts=texts, error=error, ws_error=state.get("ws_error"))
            if outcome != "success":
                label = "node %s (%s)" % (error.get("node_id"), error.get("node_type")) if error else "unknown node"
                raise WorkflowError("the job failed at %s: %s%s" % (
                    label, (error or {}).get("type") + ": " if error and error.get("type") not in (None, "interrupted")
                    else "", (error or {}).get("message") or outcome),
                    outputs=files, output_paths=[], **result)
            if fetch_outputs and dest:
                files = self._fetch(files, dest)
            result.update(outputs=files, output_paths=[f["path"] for f in files if "path" in f])
            return result
        finally:
            if ws is not None:
                ws.close()
