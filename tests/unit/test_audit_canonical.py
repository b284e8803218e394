"""Canonical JSON (RFC 8785 style): one encoding per value, and only that encoding parses."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.audit.canonical import (
    MAX_SAFE_INTEGER,
    encode_canonical,
    encode_reference,
    parse_canonical,
)
from protocol.errors import InputError


def test_members_sort_by_utf16_code_units():
    # The sorting example of RFC 8785 section 3.2.3: the emoji (a surrogate pair,
    # 0xD83D...) sorts before U+FB33 although its code point is larger.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    names = list(json.loads(encode_canonical(value)))
    assert names == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert sorted(value) != names  # Python's own order differs here: the slow path is needed


def test_string_escaping_follows_rfc8785():
    # RFC 8785 section 3.2.2.2: only quote, backslash and C0 controls are escaped.
    value = "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/"
    assert encode_canonical(value) == '"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'.encode()
    assert encode_canonical("\b\f\t\r\x00\x1f\x7f") == b'"\\b\\f\\t\\r\\u0000\\u001f\x7f"'


def test_objects_and_literals_have_no_whitespace():
    value = {"b": [1, True, None, False, -7], "a": {"z": "", "y": {}}}
    assert encode_canonical(value) == b'{"a":{"y":{},"z":""},"b":[1,true,null,false,-7]}'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "float has no canonical JSON form"),
        (float("nan"), "float has no canonical JSON form"),
        (MAX_SAFE_INTEGER + 1, "outside"),
        (-MAX_SAFE_INTEGER - 1, "outside"),
        ("\ud800", "lone surrogate"),
        ({1: "x"}, "member names must be strings"),
        (b"raw", "bytes has no canonical JSON form"),
        ({"set": {1, 2}}, "set has no canonical JSON form"),
    ],
)
def test_values_without_a_canonical_form_are_refused(value, message):
    with pytest.raises(InputError, match=message):
        encode_canonical(value)
    with pytest.raises(InputError, match=message):
        encode_reference(value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1}', "not in canonical form"),
        (b'{"b":1,"a":2}', "not in canonical form"),
        (b'{"a":1,"a":1}', "appears twice"),
        (b'{"a":1.0}', "not an integer"),
        (b'{"a":1e3}', "not an integer"),
        (b'{"a":NaN}', "not an integer"),
        (b"-0", "not in canonical form"),
        (b'"\\u00e9"', "not in canonical form"),
        (b'"\\ud800"', "lone surrogate"),
        (b'{"a":"\xff"}', "not UTF-8"),
        (b'{"a":', "not JSON"),
        (b"", "not JSON"),
        (b'{"a":1}\n', "not in canonical form"),
    ],
)
def test_parse_accepts_only_canonical_bytes(data, message):
    with pytest.raises(InputError, match=message):
        parse_canonical(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_round_trip_is_exact(value):
    data = encode_canonical(value)
    assert parse_canonical(data) == value
    assert encode_canonical(json.loads(data)) == data


any_text = st.text(st.characters(blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(any_text, st.lists(any_text | st.integers(-(2**53) + 1, 2**53 - 1))))
def test_fast_path_equals_the_rule_by_rule_encoder(value):
    # encode_canonical uses Python's C encoder where it is provably identical; the
    # reference encoder writes each RFC 8785 rule out by hand. They must never differ.
    assert encode_canonical(value) == encode_reference(value)


bmp_text = st.text(st.characters(max_codepoint=0xD7FF))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(bmp_text, st.lists(bmp_text | st.integers(-1000, 1000), max_size=3)))
def test_matches_an_independent_encoder_where_orders_agree(value):
    # Below U+D800, UTF-16 and code point order agree, so Python's own encoder must match.
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert encode_canonical(value) == expected.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(any_text, st.lists(any_text | st.integers(-(2**53) + 1, 2**53 - 1))))
def test_matches_the_rfc8785_package_byte_for_byte(value):
    # rfc8785 (Trail of Bits) is an independent RFC 8785 implementation, UTF-16 member
    # order included. It is our oracle, not our encoder: ours is faster on audit records
    # and refuses floats outright (docs/adr/0005-libraries-and-duplicates.md).
    assert encode_canonical(value) == rfc8785.dumps(value)


def test_matches_the_rfc8785_package_on_real_audit_records():
    from tests.audit_simulator import memory_lab, populate

    a, b = memory_lab("lab-a"), memory_lab("lab-b")
    populate(a, b, rounds=4)
    for line in a.log.lines + b.log.lines:  # type: ignore[attr-defined]
        assert rfc8785.dumps(parse_canonical(line)) == line
