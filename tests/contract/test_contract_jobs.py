"""The Jobs API (/api/jobs) of ComfyUI 0.28.0, which the exporter polls: filters, sorting, pagination, errors.

jobs_api_v0.28.0.json holds the answers of upstream v0.28.0's own code (comfy_execution/jobs.py, and the
parameter checks of server.py's get_jobs) for a state made of six jobs: two completed, one failed, one cancelled
(interrupted), one running and one pending (see its "source" key). The emulator is brought into the same state
with the same graphs; ids and times differ from run to run, so each answer is compared by status code, shape,
and the order of the jobs, named by their role in the scenario (A..F).
"""
import time

import pytest

from contract_support import assert_shape, covers, load_ref
from emulator_helpers import start_emulator

REF = load_ref("jobs_api_v0.28.0.json")


def image(color, prefix="jobs"):
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def slow(color):
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},
            "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 3, "sigma": 2.0}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "jobs_slow"}}}


def wait_running(emu, prompt_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if [item[1] for item in emu.get_json("/queue")["queue_running"]] == [prompt_id]:
            return
        time.sleep(0.02)
    raise TimeoutError(prompt_id)


def make_jobs(emu):
    """A, B completed; C failed (SaveImage outside the output dir); D cancelled; E running; F pending.

    Returns {prompt_id: role}. Each job is created a few ms after the previous one, so create_time orders them.
    """
    roles = {}

    def submit(role, graph, extra=None):
        answer = emu.post_json("/prompt", dict({"prompt": graph}, **(extra or {})))
        assert answer.status == 200, answer.body
        roles[answer.json()["prompt_id"]] = role
        time.sleep(0.01)
        return answer.json()["prompt_id"]

    for role, graph in (("A", image(1)), ("B", image(2)), ("C", image(3, "../escape_attempt"))):
        emu.wait_for_history(submit(role, graph, {"extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-" + role}}}}))
    cancelled = submit("D", slow(4))
    wait_running(emu, cancelled)
    assert emu.post_json("/interrupt", {"prompt_id": cancelled}).status == 200
    emu.wait_for_history(cancelled)
    wait_running(emu, submit("E", slow(5)))
    submit("F", image(6))
    return roles


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    # Each ImageBlur node takes 3 s: E keeps running (and F waiting) while the queries run.
    with start_emulator(tmp_path_factory.mktemp("jobs"), version="0.28.0",
                        env={"COMFYUI_EMULATOR_IMAGEBLUR_SECONDS": "3.0"}) as emu:
        roles = make_jobs(emu)
        yield emu, roles
        emu.post_json("/queue", {"clear": True})
        emu.post_json("/interrupt", {})


@covers("jobs_api_v0.28.0.json")
@pytest.mark.parametrize("case", [c for c in REF["answers"] if c["status"] == 200], ids=lambda c: c["path"][:90])
def test_answers_match_upstream(jobs, case):
    emu, roles = jobs
    path = case["path"]
    for ref_id, role in case["roles"].items():  # /api/jobs/<id>: the job of the same role here
        path = path.replace(ref_id, next(i for i, r in roles.items() if r == role))
    answer = emu.get(path)
    assert answer.status == case["status"], answer.body
    body, expected = answer.json(), case["body"]
    assert_shape(body, expected)
    if "jobs" in expected:
        # the same jobs in the same order, with the same statuses and pagination
        assert [roles[j["id"]] for j in body["jobs"]] == [case["roles"][j["id"]] for j in expected["jobs"]]
        assert [j["status"] for j in body["jobs"]] == [j["status"] for j in expected["jobs"]]
        assert body["pagination"] == expected["pagination"]
    else:
        assert roles[body["id"]] == case["roles"][expected["id"]] and body["status"] == expected["status"]


@pytest.mark.parametrize("case", [c for c in REF["answers"] if c["status"] != 200], ids=lambda c: c["path"])
def test_bad_parameters_are_refused_like_upstream(jobs, case):
    emu = jobs[0]
    answer = emu.get(case["path"])
    assert (answer.status, answer.json()) == (case["status"], case["body"])


def test_execution_times_and_error_of_finished_jobs(jobs):
    emu, roles = jobs
    by_role = {roles[j["id"]]: j for j in emu.get_json("/api/jobs")["jobs"]}
    for role in "ABCD":
        job = by_role[role]
        assert job["execution_start_time"] <= job["execution_end_time"], job
    assert by_role["C"]["execution_error"]["node_type"] == "SaveImage"
    assert "execution_error" not in by_role["A"] and "execution_start_time" not in by_role["E"]
    assert by_role["A"]["workflow_id"] == "wf-A" and "workflow_id" not in by_role["D"]
    assert [j["id"] for j in emu.get_json("/api/jobs?workflow_id=wf-B")["jobs"]] == \
        [i for i, r in roles.items() if r == "B"]
