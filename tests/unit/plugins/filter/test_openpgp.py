"""The openpgp_fingerprints filter: fingerprints computed as gpg computes them, bad input refused."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.comfyops.comfyui.plugins.filter.openpgp import (
    FilterModule,
    dearmor,
    openpgp_fingerprints,
)

# An ed25519 key with a cv25519 subkey made for this test; the fingerprints are what
# `gpg --with-colons --fingerprint --fingerprint` printed for it.
KEY = """-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawMZGxYJKwYBBAHaRw8BAQdAfxuWvV+aZkyvb2riSTkH4fkkj+UGJ9WG29tF
nHlnCsu0KmNvbWZ5b3BzIHVuaXQgdGVzdCA8dW5pdEBjb21meW9wcy5pbnZhbGlk
PoiQBBMWCAA4FiEEEh1x1TlHF+eLmBHNcl/gtdToeEUFAmsDGRsCGwMFCwkIBwIG
FQoJCAsCBBYCAwECHgECF4AACgkQcl/gtdToeEW3UgEA7eO87yryHxBMiJ4XMb5r
H6cvzxrPd25PBb4IdjEZph0BAPWotIBluBPxIZTC6ZCkCYExzfgeGkIC5ig+lQHt
IIEKuDgEawMZGxIKKwYBBAGXVQEFAQEHQD46r3146kdg6YbDp3JwoFYZnPsBHXAO
Wuq5m90wVCl7AwEIB4h4BBgWCAAgFiEEEh1x1TlHF+eLmBHNcl/gtdToeEUFAmsD
GRsCGwwACgkQcl/gtdToeEU5AAD+I910aIB5F16KNNfs5TiUJRhEEvCWNzeJGeTu
fZH2JTEBAJJfgpG9OwYFoYrQgmQzAlfqmd+tEeKaqhrw/VBd4PQO
=8QWf
-----END PGP PUBLIC KEY BLOCK-----
"""
PRIMARY = "121D71D5394717E78B9811CD725FE0B5D4E87845"
SUBKEY = "D5EA21E650688D7DF4ED75FB20A2FC13B0D02E33"


def test_primary_fingerprint():
    assert openpgp_fingerprints(KEY) == [PRIMARY]


def test_subkeys_on_request():
    assert openpgp_fingerprints(KEY, subkeys=True) == [PRIMARY, SUBKEY]


def test_binary_key():
    assert openpgp_fingerprints(dearmor(KEY)) == [PRIMARY]


def test_crlf_and_armor_headers():
    text = KEY.replace("-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
                       "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: mirror copy\n\n", 1)
    text = text.replace("\n\n\n", "\n\n").replace("\n", "\r\n")
    assert openpgp_fingerprints(text) == [PRIMARY]


def test_two_blocks():
    assert openpgp_fingerprints(KEY + KEY) == [PRIMARY, PRIMARY]


@pytest.mark.parametrize("text", [
    "<html><body>404 Not Found</body></html>",
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!notbase64\n-----END PGP PUBLIC KEY BLOCK-----\n",
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
])
def test_not_a_key(text):
    with pytest.raises(AnsibleFilterError, match="not an OpenPGP public key"):
        openpgp_fingerprints(text)


def test_truncated_key():
    data = dearmor(KEY)[:40]
    with pytest.raises(AnsibleFilterError, match="truncated"):
        openpgp_fingerprints(data)


def test_registered():
    assert FilterModule().filters()["openpgp_fingerprints"] is openpgp_fingerprints
