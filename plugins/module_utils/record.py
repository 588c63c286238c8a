# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment record, /etc/ansible/facts.d/comfyops.fact: its schema, read, merge and atomic write.

One JSON object with a section per role (``comfyui``, ``nginx``); each role writes only its own section through
comfyops.comfyui.comfyops_record and reads the others' through it too. docs/deployment-record.md documents the
schema below; a test keeps the two in step. No secrets belong in it: it is 0644, for Ansible's local facts.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.comfyops.comfyui.plugins.module_utils.atomic_files import write_atomic
from ansible_collections.comfyops.comfyui.plugins.module_utils.instances import record_problem

FORMAT = 2
# field: (types, required); "list:<kind>" checks the items with the named item schema
_NULL = type(None)
SCHEMA = {
    "comfyui": {
        "instances": ("list:instance", True),
        "internal_url": (str, True),
        "network": (str, True),
        "device": (str, True),
        "image": ((str, _NULL), True),
        "image_id": ((str, _NULL), False),
        "comfyui_version": (str, True),
        "source": (dict, True),
        "manager": (str, True),
        "node_packs": ("list:pack", True),
        "required_models": (list, False),
        "data_root": (str, True),
        "project_dir": (str, True),
        "project_name": (str, False),
        "state_dir": (str, False),
        "exporter": ((dict, _NULL), False),
        "verified": ((bool, _NULL), False),
        "last_error": ((str, _NULL), False),
        "changed_at": (str, False),
    },
    "nginx": {
        "url": (str, True),
        "root_url": ((str, _NULL), True),
        "instances": ("list:proxied", True),
        "tls": (str, True),
        "basic_auth": (bool, True),
        "config_file": (str, True),
        "changed_at": (str, False),
    },
}
_ITEMS = {
    "pack": {"name": (str, True), "repo": ((str, _NULL), False), "version": ((str, _NULL), False),
             "commit": ((str, _NULL), True), "enabled": (bool, True), "expected_classes": (list, False)},
    "proxied": {"host": (str, True), "name": (str, True), "server": (str, True), "url": (str, True)},
}


class RecordFileError(Exception):
    """The record cannot be read or does not follow the schema; the message names the file and the field."""


def _type_names(types):
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is _NULL else t.__name__ for t in types)


def section_problems(section, data):
    """Problems (strings) of one section against the schema."""
    schema = SCHEMA.get(section)
    if schema is None:
        return ["unknown section %r (known: %s)" % (section, ", ".join(sorted(SCHEMA)))]
    if not isinstance(data, dict):
        return ["%s must be an object" % section]
    problems = []
    for field, (kind, required) in schema.items():
        if field not in data:
            if required:
                problems.append("%s.%s is missing" % (section, field))
            continue
        value = data[field]
        if isinstance(kind, str):
            item_kind = kind.split(":", 1)[1]
            if not isinstance(value, list):
                problems.append("%s.%s must be a list" % (section, field))
                continue
            for i, item in enumerate(value):
                where = "%s.%s[%d]" % (section, field, i)
                if item_kind == "instance":
                    problem = record_problem(item)
                    if problem:
                        problems.append("%s: %s" % (where, problem))
                    continue
                problems.extend(_item_problems(where, _ITEMS[item_kind], item))
        elif not isinstance(value, kind):
            problems.append("%s.%s must be %s, got %s" % (section, field, _type_names(kind), type(value).__name__))
    unknown = sorted(set(data) - set(schema))
    if unknown:
        problems.append("%s has unknown field(s) %s" % (section, ", ".join(unknown)))
    return problems


def _item_problems(where, schema, item):
    if not isinstance(item, dict):
        return ["%s must be an object" % where]
    out = []
    for field, (kind, required) in schema.items():
        if field not in item:
            if required:
                out.append("%s.%s is missing" % (where, field))
        elif not isinstance(item[field], kind):
            out.append("%s.%s must be %s" % (where, field, _type_names(kind)))
    return out


def read(path):
    """The whole record ({} when the file does not exist); RecordFileError names the file when it is broken."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise RecordFileError("deployment record %s cannot be read: %s" % (path, e))
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        text = f.read(16 * 1024 * 1024)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise RecordFileError(
            "deployment record %s is not valid JSON (%s; %d bytes, truncated?): run playbooks/site.yml on this host "
            "to write it again, or remove the file" % (path, e, len(text)))
    if not isinstance(data, dict):
        raise RecordFileError("deployment record %s must hold a JSON object, not %s" % (path, type(data).__name__))
    return data


def write(path, record):
    """Atomically replace the record (a temporary file in the same directory, then rename)."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def merge(record, section, content, now=None):
    """(new record, changed): the section replaced by content, changed_at moved only when the rest differs."""
    old = dict(record.get(section) or {})
    old_at = old.pop("changed_at", None)
    content = dict(content)
    content.pop("changed_at", None)
    changed = old != content
    stamp = (now or time.gmtime)()
    content["changed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp) if changed or not old_at else old_at
    new = dict(record)
    new[section] = content
    new["format"] = FORMAT
    return new, changed or record.get("format") != FORMAT
