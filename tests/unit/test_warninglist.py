"""Warninglists: parsing, screening ranges/domains/exact values, signatures and tampering."""

from __future__ import annotations

import ipaddress
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import InputError, VerificationError
from protocol.warninglist import (
    Screen,
    parse_warninglist_toml,
    read_signed_warninglist,
    sign_warninglist,
    verify_signed_warninglist,
)

TOML = b"""
list_id = "benign"
version = 2
description = "test"
[kinds.ip]
values = ["100.64.0.0/10", "203.0.113.0/24", "2001:db8::/32"]
[kinds.email]
values = ["GMail.com"]
[kinds.device_id]
values = ["00000000-0000-0000-0000-000000000000"]
"""

CA = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def test_screen_covers_ranges_prefixes_domains_and_exact_values():
    screen = Screen([parse_warninglist_toml(TOML)])
    assert screen("ip", "100.100.1.1") == "benign@2"
    assert screen("ip", "100.128.0.1") is None
    assert screen("ip_prefix", "203.0.113.0/24") == "benign@2"
    assert screen("ip_prefix", "100.64.5.0/24") == "benign@2"
    assert screen("ip", "2001:db8:5::1") == "benign@2"
    assert screen("email", "alice@gmail.com") == "benign@2"
    assert screen("org_domain", "mail.gmail.com") == "benign@2"
    assert screen("email", "alice@notgmail.com") is None
    assert screen("device_id", "00000000-0000-0000-0000-000000000000") == "benign@2"
    assert screen("device_id", "1") is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_ip_screen_equals_plain_membership(value):
    nets = [ipaddress.ip_network(n) for n in ("100.64.0.0/10", "203.0.113.0/24")]
    address = ipaddress.ip_address(value)
    expected = any(address in n for n in nets)
    got = Screen([parse_warninglist_toml(TOML)])("ip", str(address)) is not None
    assert got == expected


@pytest.mark.parametrize(
    "text, message",
    [
        (b'list_id = "x"\nversion = 0\n', "version"),
        (b'list_id = "x y"\nversion = 1\n', "list_id"),
        (b'list_id = "x"\nversion = 1\n[kinds.fax]\nvalues = []\n', "unknown kind"),
        (b'list_id = "x"\nversion = 1\n[kinds.ip]\nvalues = ["nope"]\n', "CIDR"),
        (b'list_id = "x"\nversion = 1\n[kinds.email]\nvalues = ["a b"]\n', "bad value"),
        (b'list_id = "x"\nversion = 1\nextra = 1\n', "unknown keys"),
        (b"not toml ===", "TOML"),
    ],
)
def test_bad_lists_name_the_problem(text, message):
    with pytest.raises(InputError, match=message) as caught:
        parse_warninglist_toml(text)
    assert caught.value.rule == "warninglist-syntax"


def test_signed_list_verifies_and_tampering_is_refused():
    signed = sign_warninglist(TOML, CA)
    assert verify_signed_warninglist(signed, CA.public_key()).name == "benign@2"
    with pytest.raises(VerificationError, match="not signed by the consortium CA"):
        verify_signed_warninglist(signed, OTHER.public_key())
    doc = json.loads(signed)
    doc["warninglist_toml"] = doc["warninglist_toml"].replace("203.0.113.0/24", "0.0.0.0/0")
    with pytest.raises(VerificationError, match="hash"):
        verify_signed_warninglist(json.dumps(doc).encode(), CA.public_key())
    forged = sign_warninglist(TOML.replace(b"203.0.113.0/24", b"0.0.0.0/0"), OTHER)
    doc2 = json.loads(forged)
    doc2["signer_key"] = json.loads(signed)["signer_key"]
    with pytest.raises(VerificationError, match="does not verify"):
        verify_signed_warninglist(json.dumps(doc2).encode(), CA.public_key())
    assert read_signed_warninglist(signed)[0].version == 2
