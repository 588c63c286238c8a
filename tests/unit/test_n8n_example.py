"""docs/examples/n8n-comfyui-workflow.json is an importable n8n workflow whose requests really work.

Structure: n8n's export format (nodes with id/name/type/typeVersion/position/parameters, connections keyed by
node name), every connection between existing nodes, every URL built from the one "Settings" node, and the
POST /prompt body a valid API-format graph of classes ComfyUI has (reference captures + the emulator's catalog).

Behaviour: a small interpreter runs the workflow's nodes (Set, HTTP Request, Wait, If, Stop and Error) against
the ComfyUI emulator, evaluating the n8n expressions the workflow uses, so the URLs, bodies, the polling loop and
the /view download are exercised exactly as written in the JSON: POST /prompt, poll /history/<prompt_id>,
GET /view, and a PNG comes back. A prompt that fails at run time must end in the "Prompt failed" node.
"""
import copy
import json
import re
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from emulator_helpers import REFERENCE_DIR, EMULATOR_DIR, http_request, start_emulator

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_PATH = ROOT / "docs" / "examples" / "n8n-comfyui-workflow.json"
NODE_TYPES = {  # the n8n node types the example may use, with the typeVersions it was written for
    "n8n-nodes-base.manualTrigger": {1},
    "n8n-nodes-base.set": {3.4},
    "n8n-nodes-base.httpRequest": {4.2},
    "n8n-nodes-base.wait": {1.1},
    "n8n-nodes-base.if": {2},
    "n8n-nodes-base.stopAndError": {1},
}
SETTINGS_URL = "={{ $('Settings').first().json.comfyui_url }}/"


def load_workflow():
    return json.loads(WORKFLOW_PATH.read_text(encoding="utf-8"))


def nodes_by_name(workflow):
    return {node["name"]: node for node in workflow["nodes"]}


def prompt_body(workflow):
    return json.loads(nodes_by_name(workflow)["Queue prompt"]["parameters"]["jsonBody"])


def reference_classes():
    names = set((REFERENCE_DIR / "object_info_classes.txt").read_text(encoding="utf-8").splitlines())
    return {n for n in names if n}


def emulator_classes(version="0.28.0"):
    catalog = EMULATOR_DIR / "comfy" / "node_catalog" / f"core_classes_{version}.tsv"
    return {line.split("\t")[0] for line in catalog.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")}


# --- structure ---------------------------------------------------------------------------------------------------

def test_workflow_format():
    workflow = load_workflow()
    assert {"name", "nodes", "connections", "settings"} <= set(workflow)
    names = [node["name"] for node in workflow["nodes"]]
    ids = [node["id"] for node in workflow["nodes"]]
    assert len(set(names)) == len(names), "node names must be unique (connections refer to them)"
    assert len(set(ids)) == len(ids)
    for node in workflow["nodes"]:
        assert {"id", "name", "type", "typeVersion", "position", "parameters"} <= set(node), node["name"]
        uuid.UUID(node["id"])
        assert node["type"] in NODE_TYPES, node["type"]
        assert node["typeVersion"] in NODE_TYPES[node["type"]], (node["name"], node["typeVersion"])
        assert len(node["position"]) == 2 and all(isinstance(v, int) for v in node["position"])
        assert isinstance(node["parameters"], dict)
    assert [n["type"] for n in workflow["nodes"]].count("n8n-nodes-base.manualTrigger") == 1
    # Long jobs: the execution may wait far longer than a web request would.
    assert workflow["settings"]["executionTimeout"] >= 1800


def test_connections_refer_to_existing_nodes_and_reach_every_node():
    workflow = load_workflow()
    by_name = nodes_by_name(workflow)
    targets = set()
    for source, outputs in workflow["connections"].items():
        assert source in by_name, f"connection from unknown node {source!r}"
        assert set(outputs) == {"main"}
        for branch in outputs["main"]:
            for link in branch:
                assert link["node"] in by_name, f"{source} -> unknown node {link['node']!r}"
                assert link["type"] == "main" and link["index"] == 0
                targets.add(link["node"])
    trigger = next(n["name"] for n in workflow["nodes"] if n["type"].endswith("manualTrigger"))
    reached, todo = {trigger}, [trigger]
    while todo:
        for branch in workflow["connections"].get(todo.pop(), {}).get("main", []):
            for link in branch:
                if link["node"] not in reached:
                    reached.add(link["node"])
                    todo.append(link["node"])
    assert reached == set(by_name), f"unreachable nodes: {set(by_name) - reached}"
    # If nodes have a true and a false branch; the polling loop goes back to Wait.
    assert [b[0]["node"] for b in workflow["connections"]["Finished?"]["main"]] == ["Succeeded?", "Wait"]


def test_requests_use_the_settings_url_and_sensible_retries():
    workflow = load_workflow()
    by_name = nodes_by_name(workflow)
    settings = {a["name"]: a["value"] for a in by_name["Settings"]["parameters"]["assignments"]["assignments"]}
    assert settings["comfyui_url"] == "http://comfyui:8188"
    paths = {}
    for node in workflow["nodes"]:
        if node["type"] != "n8n-nodes-base.httpRequest":
            continue
        url = node["parameters"]["url"]
        assert url.startswith(SETTINGS_URL), f"{node['name']}: build URLs from the Settings node ({url})"
        paths[node["name"]] = (node["parameters"].get("method", "GET"), url[len(SETTINGS_URL):].split("{{")[0])
        assert node["parameters"]["options"]["timeout"] >= 30000, node["name"]
        # n8n's Retry On Fail ignores the status code: only idempotent GETs may use it (a retried POST could
        # queue the job twice; a 400 validation error never gets better by retrying).
        assert node.get("retryOnFail", False) == (paths[node["name"]][0] == "GET"), node["name"]
    assert paths == {"Queue prompt": ("POST", "prompt"), "Get history": ("GET", "history/"),
                     "Fetch output": ("GET", "view")}
    fetch = by_name["Fetch output"]["parameters"]
    assert fetch["options"]["response"]["response"]["responseFormat"] == "file"
    assert [p["name"] for p in fetch["queryParameters"]["parameters"]] == ["filename", "subfolder", "type"]


def test_prompt_is_a_valid_api_format_graph():
    workflow = load_workflow()
    body = prompt_body(workflow)
    assert set(body) == {"prompt", "client_id"} and isinstance(body["client_id"], str) and body["client_id"]
    graph = body["prompt"]
    excerpt = json.loads((REFERENCE_DIR / "object_info_excerpt.json").read_text(encoding="utf-8"))
    known = reference_classes() & emulator_classes()
    outputs = []
    for node_id, node in graph.items():
        assert set(node) >= {"class_type", "inputs"}, node_id
        assert node["class_type"] in known, f"{node_id}: {node['class_type']} is not a ComfyUI 0.28/0.33 core class"
        info = excerpt.get(node["class_type"])
        if info:
            missing = set(info["input"]["required"]) - set(node["inputs"])
            assert not missing, f"{node_id} ({node['class_type']}): required inputs missing: {missing}"
            if info.get("output_node"):
                outputs.append(node_id)
        for name, value in node["inputs"].items():
            if isinstance(value, list):  # a link: [source node id, output index]
                assert len(value) == 2 and value[0] in graph and isinstance(value[1], int), (node_id, name)
    assert outputs, "the graph needs an output node, or ComfyUI answers 400 prompt_no_outputs"
    settings = {a["name"]: a["value"] for a in nodes_by_name(workflow)["Settings"]["parameters"]["assignments"]["assignments"]}
    assert settings["output_node"] in outputs, "Settings.output_node must name the graph's output node"


# --- a tiny n8n interpreter ------------------------------------------------------------------------------------

class WorkflowFailed(Exception):
    pass


_TOKEN = re.compile(r"""\s*(?:(?P<node>\$\(\s*'(?P<name>[^']+)'\s*\)\.(?:first\(\)|item)\.json)|(?P<json>\$json)"""
                    r"""|(?P<str>'[^']*')|(?P<int>\d+)|(?P<dot>\.(?P<attr>[A-Za-z_][A-Za-z0-9_]*))|(?P<open>\[)|(?P<close>\]))""")


def evaluate(expr, ctx):
    """Evaluates the subset of n8n expressions the example uses: $json / $('Node').first().json / .item.json,
    followed by .attr, [number], ['string'] and [expression] accessors."""
    pos, value = _parse(expr.strip(), 0, ctx)
    if pos != len(expr.strip()):
        raise ValueError(f"expression outside the supported subset: {expr!r}")
    return value


def _parse(text, pos, ctx):
    match = _TOKEN.match(text, pos)
    if not match:
        raise ValueError(f"cannot parse {text[pos:]!r}")
    if match.group("node"):
        value = ctx["outputs"][match.group("name")][0]["json"]
    elif match.group("json"):
        value = ctx["item"]["json"]
    elif match.group("str"):
        return match.end(), match.group("str")[1:-1]
    elif match.group("int"):
        return match.end(), int(match.group("int"))
    else:
        raise ValueError(f"unexpected {match.group(0)!r} in {text!r}")
    pos = match.end()
    while True:
        match = _TOKEN.match(text, pos)
        if not match or not (match.group("dot") or match.group("open")):
            return pos, value
        if match.group("dot"):
            value, pos = _index(value, match.group("attr")), match.end()
        else:
            pos, key = _parse(text, match.end(), ctx)
            close = _TOKEN.match(text, pos)
            assert close and close.group("close"), f"missing ] in {text!r}"
            value, pos = _index(value, key), close.end()


def _index(value, key):
    if isinstance(value, list):
        return value[key]
    if isinstance(value, dict):
        if key not in value:
            raise WorkflowFailed(f"no {key!r} in {list(value)[:10]}")  # JS would give undefined, then fail later
        return value[key]
    raise WorkflowFailed(f"cannot index {type(value).__name__} with {key!r}")


def render(value, ctx):
    """n8n parameter: a string starting with '=' is a template; a single {{ }} keeps the value's type."""
    if not isinstance(value, str) or not value.startswith("="):
        return value
    template = value[1:]
    whole = re.fullmatch(r"\{\{(.*?)\}\}", template.strip(), re.DOTALL)
    if whole and "{{" not in whole.group(1):
        return evaluate(whole.group(1), ctx)

    def replace(match):
        result = evaluate(match.group(1), ctx)
        return result if isinstance(result, str) else json.dumps(result)
    return re.sub(r"\{\{(.*?)\}\}", replace, template, flags=re.DOTALL)


def _condition(cond, ctx):
    left, right = render(cond["leftValue"], ctx), render(cond["rightValue"], ctx)
    op = (cond["operator"]["type"], cond["operator"]["operation"])
    if op == ("object", "notEmpty"):
        assert isinstance(left, dict), "strict type validation: object expected"
        return bool(left)
    if op == ("string", "equals"):
        assert isinstance(left, str), "strict type validation: string expected"
        return left == right
    if op == ("boolean", "true"):
        return left is True
    raise AssertionError(f"operator {op} not supported by the test interpreter")


def _http(node, ctx, log):
    params = node["parameters"]
    url = render(params["url"], ctx)
    if params.get("sendQuery"):
        query = [(p["name"], render(p["value"], ctx)) for p in params["queryParameters"]["parameters"]]
        url += "?" + urllib.parse.urlencode(query)
    body = None
    if params.get("sendBody"):
        assert params.get("specifyBody") == "json"
        body = render(params["jsonBody"], ctx)
        body = json.loads(body) if isinstance(body, str) else body
    method = params.get("method", "GET")
    tries = node.get("maxTries", 3) if node.get("retryOnFail") else 1
    for attempt in range(tries):
        try:
            parsed = urllib.parse.urlsplit(url)
            result = http_request(f"{parsed.scheme}://{parsed.netloc}", method,
                                  parsed.path + ("?" + parsed.query if parsed.query else ""), body=body,
                                  timeout=params["options"]["timeout"] / 1000)
            log.append((method, parsed.path, parsed.query, result.status))
            if result.status >= 400:
                raise WorkflowFailed(f"{node['name']}: {method} {url} -> {result.status}: {result.body[:300]!r}")
            break
        except (OSError, WorkflowFailed):
            if attempt + 1 == tries:
                raise
            time.sleep(0.05)
    response = params["options"].get("response", {}).get("response", {})
    if response.get("responseFormat") == "file":
        return [{"json": {}, "binary": {response.get("outputPropertyName", "data"): {
            "data": result.body, "mimeType": result.content_type}}}]
    return [{"json": result.json()}]


def run_workflow(workflow, max_steps=500):
    """Runs the workflow from its trigger; returns (outputs per node name, node names in order, request log)."""
    by_name = nodes_by_name(workflow)
    outputs, order, log = {}, [], []
    queue = [(next(n for n in workflow["nodes"] if n["type"].endswith("manualTrigger"))["name"], [{"json": {}}])]
    while queue:
        name, items = queue.pop(0)
        order.append(name)
        assert len(order) <= max_steps, "the workflow does not finish"
        node = by_name[name]
        ctx = {"outputs": outputs, "item": items[0]}
        kind = node["type"].split(".")[-1]
        branch = 0
        if kind == "manualTrigger":
            result = items
        elif kind == "set":
            result = [{"json": {a["name"]: (str(render(a["value"], ctx)) if a["type"] == "string" else render(a["value"], ctx))
                                for a in node["parameters"]["assignments"]["assignments"]}}]
        elif kind == "httpRequest":
            result = _http(node, ctx, log)
        elif kind == "wait":
            time.sleep(0.05)  # the workflow waits node["parameters"]["amount"] seconds; the emulator is fast
            result = items
        elif kind == "if":
            conds = node["parameters"]["conditions"]
            values = [_condition(c, ctx) for c in conds["conditions"]]
            branch = 0 if (all(values) if conds["combinator"] == "and" else any(values)) else 1
            result = items
        elif kind == "stopAndError":
            raise WorkflowFailed(render(node["parameters"]["errorMessage"], ctx))
        else:
            raise AssertionError(kind)
        outputs[name] = result
        branches = workflow["connections"].get(name, {}).get("main", [])
        if branch < len(branches):
            queue.extend((link["node"], result) for link in branches[branch])
    return outputs, order, log


def with_url(workflow, url):
    workflow = copy.deepcopy(workflow)
    for a in nodes_by_name(workflow)["Settings"]["parameters"]["assignments"]["assignments"]:
        if a["name"] == "comfyui_url":
            a["value"] = url  # what a user changes when ComfyUI is not at http://comfyui:8188
    return workflow


def test_expression_subset():
    ctx = {"outputs": {"Queue prompt": [{"json": {"prompt_id": "abc"}}]},
           "item": {"json": {"abc": {"outputs": {"2": {"images": [{"filename": "x.png"}]}}}}}}
    assert render("={{ $json[$('Queue prompt').first().json.prompt_id].outputs['2'].images[0].filename }}", ctx) == "x.png"
    assert render("=id {{ $('Queue prompt').item.json.prompt_id }}!", ctx) == "id abc!"
    assert render("={{ $json }}", ctx) is ctx["item"]["json"]
    assert render("plain", ctx) == "plain"
    with pytest.raises(ValueError):
        render("={{ Object.keys($json) }}", ctx)


# --- against the emulator ----------------------------------------------------------------------------------------

def test_workflow_runs_against_the_emulator(tmp_path):
    workflow = load_workflow()
    with start_emulator(tmp_path) as emu:
        outputs, order, log = run_workflow(with_url(workflow, emu.url))

        assert order[:4] == ["Manual Trigger", "Settings", "Queue prompt", "Wait"]
        assert order[-3:] == ["Succeeded?", "Pick output", "Fetch output"]
        queued = outputs["Queue prompt"][0]["json"]
        assert queued["node_errors"] == {} and re.fullmatch(r"[0-9a-f-]{36}", queued["prompt_id"])
        assert log[0][:2] == ("POST", "/prompt")
        assert ("GET", f"/history/{queued['prompt_id']}", "", 200) in log
        picked = outputs["Pick output"][0]["json"]
        assert picked["subfolder"] == "n8n" and picked["type"] == "output"
        assert re.fullmatch(r"comfyops_\d{5}_\.png", picked["filename"])
        method, path, query, status = log[-1]
        assert (method, path, status) == ("GET", "/view", 200)
        assert urllib.parse.parse_qs(query, keep_blank_values=True) == {
            "filename": [picked["filename"]], "subfolder": ["n8n"], "type": ["output"]}
        binary = outputs["Fetch output"][0]["binary"]["data"]
        assert binary["mimeType"] == "image/png"
        assert binary["data"].startswith(b"\x89PNG\r\n\x1a\n")
        # the body n8n sent is exactly the JSON in the file, and ComfyUI recorded it under the client_id
        history = emu.get_json(f"/history/{queued['prompt_id']}")[queued["prompt_id"]]
        assert history["prompt"][2] == prompt_body(workflow)["prompt"]
        assert history["prompt"][3]["client_id"] == prompt_body(workflow)["client_id"]


def test_a_failing_prompt_ends_in_prompt_failed(tmp_path):
    workflow = load_workflow()
    node = nodes_by_name(workflow)["Queue prompt"]
    body = prompt_body(workflow)
    body["prompt"]["2"]["inputs"]["filename_prefix"] = "../outside"  # validates, then fails at run time
    node["parameters"]["jsonBody"] = json.dumps(body)
    with start_emulator(tmp_path) as emu:
        with pytest.raises(WorkflowFailed, match=r"ended with status error; its error is in GET /history/"):
            run_workflow(with_url(workflow, emu.url))


def test_an_invalid_prompt_fails_at_once_without_retry(tmp_path):
    workflow = load_workflow()
    node = nodes_by_name(workflow)["Queue prompt"]
    body = prompt_body(workflow)
    del body["prompt"]["1"]["inputs"]["width"]  # 400 prompt_outputs_failed_validation
    node["parameters"]["jsonBody"] = json.dumps(body)
    with start_emulator(tmp_path) as emu:
        with pytest.raises(WorkflowFailed, match=r"Queue prompt: POST .*/prompt -> 400"):
            run_workflow(with_url(workflow, emu.url))
        queue = emu.get_json("/queue")
        assert queue == {"queue_running": [], "queue_pending": []}


def test_the_loop_polls_until_the_job_is_done(tmp_path):
    workflow = load_workflow()
    node = nodes_by_name(workflow)["Queue prompt"]
    body = prompt_body(workflow)
    body["prompt"]["3"] = {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}}
    body["prompt"]["2"]["inputs"]["images"] = ["3", 0]  # a job that takes a while
    node["parameters"]["jsonBody"] = json.dumps(body)
    with start_emulator(tmp_path, env={"COMFYUI_EMULATOR_IMAGEBLUR_SECONDS": "0.6"}) as emu:
        outputs, order, log = run_workflow(with_url(workflow, emu.url))
    assert order.count("Get history") >= 3, order  # Finished? sent it back to Wait while the job ran
    assert order[-1] == "Fetch output"
    assert outputs["Fetch output"][0]["binary"]["data"]["data"].startswith(b"\x89PNG")
