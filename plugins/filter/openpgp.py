# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fingerprints of the keys in an OpenPGP public key file, without gpg (a fresh Debian host has only gpgv)."""

from __future__ import annotations

import base64
import hashlib
import re

DOCUMENTATION = r"""
---
name: openpgp_fingerprints
short_description: Fingerprints of the primary keys in an OpenPGP public key block
version_added: "0.1.0"
author:
  - comfyops contributors
description:
  - Parses an ASCII-armoured (or binary, as bytes) OpenPGP public key file and returns the fingerprints of its
    primary keys as upper-case hex, in file order. With O(subkeys=true) subkey fingerprints follow.
  - Supports v4 keys (SHA-1 fingerprints, 40 hex digits) and v5/v6 keys (SHA-256, 64 hex digits).
  - Fails on input that is not an OpenPGP public key block, so a key URL that returned an HTML page is caught.
options:
  _input:
    description: The key file's content.
    type: raw
    required: true
  subkeys:
    description: Also return subkey fingerprints.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Check a downloaded key
  ansible.builtin.assert:
    that: expected_fingerprint in (key_text | comfyops.comfyui.openpgp_fingerprints)
"""

RETURN = r"""
_value:
  description: Fingerprints, upper-case hex without spaces.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

_ARMOR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(?P<body>.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S)

PUBLIC_KEY = 6
PUBLIC_SUBKEY = 14


def dearmor(text):
    """The binary packets of every public key block in text."""
    blocks = _ARMOR.findall(text)
    if not blocks:
        raise ValueError("no '-----BEGIN PGP PUBLIC KEY BLOCK-----' in the input")
    data = b""
    for body in blocks:
        lines = body.replace("\r", "").split("\n")
        # armor headers (e.g. "Comment: ...") end at the first empty line
        if "" in lines and any(":" in line for line in lines[:lines.index("")]):
            lines = lines[lines.index("") + 1:]
        b64 = "".join(line.strip() for line in lines if line.strip() and not line.startswith("="))
        try:
            data += base64.b64decode(b64, validate=True)
        except ValueError as e:
            raise ValueError("bad base64 in the armoured key: %s" % e)
    return data


def packets(data):
    """(tag, body) of each OpenPGP packet (RFC 9580 section 4.2: old and new formats)."""
    pos = 0
    while pos < len(data):
        ctb = data[pos]
        pos += 1
        if not ctb & 0x80:
            raise ValueError("not an OpenPGP packet at offset %d" % (pos - 1))
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            first = data[pos]
            if first < 192:
                length, pos = first, pos + 1
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif first == 255:
                length, pos = int.from_bytes(data[pos + 1:pos + 5], "big"), pos + 5
            else:
                raise ValueError("partial body lengths are not allowed in key packets")
        else:  # old format
            tag = (ctb >> 2) & 0x0F
            ltype = ctb & 0x03
            if ltype == 3:
                raise ValueError("indeterminate packet length")
            size = (1, 2, 4)[ltype]
            length, pos = int.from_bytes(data[pos:pos + size], "big"), pos + size
        if pos + length > len(data):
            raise ValueError("truncated packet (tag %d)" % tag)
        yield tag, data[pos:pos + length]
        pos += length


def fingerprint(body):
    version = body[0]
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version == 5:
        return hashlib.sha256(b"\x9a" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    if version == 6:
        return hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise ValueError("unsupported key version %d" % version)


def fingerprints(content, subkeys=False):
    data = content if isinstance(content, (bytes, bytearray)) else dearmor(content)
    wanted = (PUBLIC_KEY, PUBLIC_SUBKEY) if subkeys else (PUBLIC_KEY,)
    result = [fingerprint(body) for tag, body in packets(bytes(data)) if tag in wanted]
    if not any(tag == PUBLIC_KEY for tag, _body in packets(bytes(data))):
        raise ValueError("no public key packet found")
    return result


def openpgp_fingerprints(content, subkeys=False):
    try:
        return fingerprints(content, subkeys=subkeys)
    except (ValueError, IndexError) as e:
        raise AnsibleFilterError("openpgp_fingerprints: not an OpenPGP public key: %s" % e)


class FilterModule(object):
    def filters(self):
        return {"openpgp_fingerprints": openpgp_fingerprints}
