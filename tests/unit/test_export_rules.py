"""protocol/exports.py: keyed value hashes, STIX pattern quoting, TLP 2.0, safe CSV cells."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from protocol import exports
from protocol.errors import InputError

KEY = bytes(range(32))


def test_hashed_value_is_keyed_domain_separated_and_versioned():
    h = exports.hashed_value(KEY, "email", "a@example.com")
    assert h.startswith("hmac-sha256-v1:") and len(h) == len("hmac-sha256-v1:") + 64
    assert h != exports.hashed_value(KEY, "org_domain", "a@example.com")
    assert h != exports.hashed_value(bytes(32), "email", "a@example.com")
    # kind and value are separated: ("ab", "c") and ("a", "bc") differ
    assert exports.hashed_value(KEY, "ab", "c") != exports.hashed_value(KEY, "a", "bc")
    with pytest.raises(InputError, match="32 bytes"):
        exports.hashed_value(b"short", "email", "x")


@given(
    st.sampled_from(["email", "phone", "ip", "org_domain", "account_id", "device_id"]),
    st.text(min_size=1, max_size=40),
    st.booleans(),
)
def test_any_value_gives_one_valid_comparison(kind, value, hashed):
    pattern = exports.signal_pattern(kind, value, hashed=hashed)
    assert run_validator(pattern) == [], pattern
    # The value cannot close its literal: un-escaping the literal gives the value back.
    literal = pattern.rsplit(" = ", 1)[1][:-1]
    assert literal[0] == literal[-1] == "'"
    assert literal[1:-1].replace("\\'", "'").replace("\\\\", "\\") == value


def test_hostile_value_stays_inside_its_literal():
    pattern = exports.signal_pattern("device_id", "x'] OR [file:name = 'y", hashed=False)
    assert run_validator(pattern) == []
    assert pattern.count(" AND ") == 1 and " OR " not in pattern.replace("x\\'] OR [", "")


def test_tlp_levels_are_the_oasis_objects():
    m = exports.tlp_marking("TLP:AMBER+STRICT")
    assert m["id"] == "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
    assert m["extensions"][exports.TLP2_EXTENSION]["tlp_2_0"] == "amber+strict"
    with pytest.raises(InputError, match="unknown TLP"):
        exports.check_tlp("white")
    assert exports.check_pap("PAP:GREEN") == "green"


@given(st.text(max_size=20))
def test_safe_cell_never_starts_a_formula(text):
    cell = exports.safe_cell(text)
    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r", "\n")
    assert cell in (text, "'" + text)
