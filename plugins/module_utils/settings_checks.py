# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of role variables before a role touches a host, shared by the roles' *_settings_problems filters.

A check takes a value and returns what is wrong with it (a phrase: "must be between 1 and 65535") or None.
Numbers may be strings of digits, as `-e key=value` passes them. problems() applies a table of checks to a dict
of settings and names each variable that fails.
"""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# credentials of a URL in a message go: all of an http(s) userinfo (a token may be the user name), the password of
# any other scheme
_HTTP_USERINFO = re.compile(r"(\bhttps?://)[^/\s@'\"]+@")
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@'\"]*):[^/\s@'\"]*@")


def int_range(low, high=None):
    def check(value):
        # -e nginx_http_port=8080 passes a string: digits are fine, the roles convert them where they use them
        if isinstance(value, str) and re.match(r"^\s*-?\d+\s*\Z", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if value < low or (high is not None and value > high):
            return "must be %s" % ("between %d and %d" % (low, high) if high is not None else "at least %d" % low)
        return None
    return check


def matches(pattern, what):
    def check(value):
        return None if isinstance(value, str) and pattern.match(value) else "must be %s" % what
    return check


def plain(value, forbid='"\\'):
    """A single-line string without the forbidden characters."""
    if not isinstance(value, str):
        return "must be a string"
    if CONTROL.search(value):
        return "must not contain control characters (a newline, a tab)"
    bad = sorted(set(c for c in value if c in forbid))
    return "must not contain %s" % " ".join(bad) if bad else None


def each(check, allow_empty=True):
    def check_all(values):
        if not isinstance(values, list):
            return "must be a list"
        if not values and not allow_empty:
            return "must not be empty"
        for value in values:
            problem = check(value)
            if problem:
                return "entry %r %s" % (value, problem)
        return None
    return check_all


def problems(settings, checks):
    """One line per setting that fails its check, naming the variable (and its value when it is a scalar)."""
    out = []
    for name, value in settings.items():
        check = checks.get(name)
        problem = check(value) if check else None
        if problem:
            shown = "" if problem.startswith("entry ") or isinstance(value, (dict, list)) else "=%r" % (value,)
            line = _HTTP_USERINFO.sub(r"\1***@", "%s%s %s" % (name, shown, problem))
            out.append(_URL_PASSWORD.sub(r"\1:***@", line))
    return out
