"""module_utils/instances (filter comfyops.comfyui.comfyui_instances): the instance record, its input conversion and
the one loopback rule."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.comfyops.comfyui.plugins.filter.comfyui import comfyui_instances
from ansible_collections.comfyops.comfyui.plugins.module_utils.instances import (
    RECORD_FIELDS,
    RecordError,
    instances,
    is_loopback,
    record_problem,
    to_int,
    to_list,
)


def test_cpu_instances_from_strings_as_dash_e_passes_them():
    out = instances("cpu", "8288", "127.0.0.1", cpu_instances="2")
    assert [(i["name"], i["port"], i["url"]) for i in out] == [
        ("comfyui-cpu0", 8288, "http://127.0.0.1:8288"), ("comfyui-cpu1", 8289, "http://127.0.0.1:8289")]
    assert out[1]["internal_url"] == "http://comfyui-cpu1:8188" and out[1]["gpu"] is None
    assert out[1]["suffix"] == "cpu1" and set(out[0]) == set(RECORD_FIELDS)


def test_gpu_instances_follow_the_gpus_found_or_the_ones_asked_for():
    assert [i["name"] for i in instances("gpu", 8188, "127.0.0.1", found_gpus=[0, 1, 2])] == [
        "comfyui-gpu0", "comfyui-gpu1", "comfyui-gpu2"]
    picked = instances("gpu", 8188, "127.0.0.1", gpus="1, 3", found_gpus=[0, 1, 2, 3])
    assert [(i["name"], i["gpu"], i["port"]) for i in picked] == [("comfyui-gpu1", 1, 8189), ("comfyui-gpu3", 3, 8191)]


@pytest.mark.parametrize("bind, url_host", [
    ("127.0.0.1", "127.0.0.1"),
    ("0.0.0.0", "127.0.0.1"),       # a wildcard bind is probed on loopback
    ("::", "127.0.0.1"),
    ("::1", "[::1]"),               # IPv6 in brackets (comfyui_health refused http://::1:8188)
    ("[::1]", "[::1]"),
    ("10.0.0.5", "10.0.0.5"),
    ("gpu01.lan", "gpu01.lan"),
])
def test_urls_are_right_for_every_kind_of_bind_address(bind, url_host):
    assert instances("cpu", 8188, bind)[0]["url"] == "http://%s:8188" % url_host


@pytest.mark.parametrize("kwargs, message", [
    (dict(cpu_instances="-1"), "comfyui_cpu_instances must be 1-64, got -1"),
    (dict(cpu_instances="two"), "comfyui_cpu_instances must be a whole number, got 'two'"),
    (dict(cpu_instances=True), "comfyui_cpu_instances must be a whole number"),
    (dict(port=70000), "comfyui_port must be 1-65535, got 70000"),
    (dict(port=65535, cpu_instances=2), "comfyui_port=65535 leaves no room for instance cpu1"),
    (dict(bind_address=""), "comfyui_bind_address must be an address or host name, got an empty value"),
    (dict(bind_address="127.0.0.1;}"), "comfyui_bind_address='127.0.0.1;}' is not an IPv4/IPv6 address"),
    (dict(device="tpu"), "comfyui_device must be gpu or cpu"),
])
def test_bad_values_fail_naming_the_variable(kwargs, message):
    args = dict(device="cpu", port=8188, bind_address="127.0.0.1")
    args.update(kwargs)
    with pytest.raises(RecordError) as e:
        instances(**args)
    assert message in str(e.value)


def test_the_filter_wraps_the_record_and_its_errors():
    assert comfyui_instances({"device": "cpu", "port": 8188, "bind_address": "::1"})[0]["url"] == "http://[::1]:8188"
    with pytest.raises(AnsibleFilterError, match="comfyui role: comfyui_port must be 1-65535"):
        comfyui_instances({"device": "cpu", "port": "0", "bind_address": "127.0.0.1"})


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.com", False), ("", False)])
def test_one_loopback_rule(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("record, problem", [
    ({"name": "comfyui-cpu0", "port": 8188}, None),
    ({"name": "comfyui-cpu0; }", "port": 8188}, "is not a plain instance name"),
    ({"name": "comfyui-cpu0", "port": "8188; server evil"}, "must be a whole number"),
    ({"name": "comfyui-cpu0", "port": 8188, "bind_address": "1.2.3.4\n}"}, "is not an IPv4/IPv6 address"),
    ({"name": "comfyui-cpu0", "port": 8188, "suffix": "a/../b"}, "is not a plain path segment"),
    ("comfyui-cpu0", "not a mapping"),
])
def test_records_read_back_from_a_host_are_checked_field_by_field(record, problem):
    found = record_problem(record)
    assert (found is None) if problem is None else (problem in found)


def test_conversions():
    assert to_int(" 12 ", "x") == 12 and to_int(3.0, "x") == 3
    assert to_list("a, b,,c", "x") == ["a", "b", "c"] and to_list(None, "x") == [] and to_list(["a"], "x") == ["a"]
    with pytest.raises(RecordError, match="x must be a list"):
        to_list({"a": 1}, "x")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8188; } server { listen 9999; #", "http://[::1]:8188\n",
                                 "http://a b:8188", "ftp://127.0.0.1:8188", "http://127.0.0.1:99999"])
def test_a_record_url_carrying_anything_but_a_host_and_port_is_refused(url):
    assert "is not an http URL with a plain host and port" in record_problem(
        {"name": "comfyui-cpu0", "port": 8188, "url": url})


def test_the_urls_the_record_makes_pass_its_own_check():
    for bind in ("127.0.0.1", "::1", "0.0.0.0", "gpu01.lan"):
        for rec in instances("cpu", 8188, bind, cpu_instances=2):
            assert record_problem(rec) is None, rec
