"""The consortium policy: strict TOML, a hash of exactly what is enforced, a CA signature,
validity in time, and one test per rule that refuses."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from node.cli.policy import template
from protocol.errors import InputError, PolicyError, VerificationError
from protocol.policy import ALL_KINDS, DEFAULT_POLICY
from protocol.policy_document import (
    parse_policy_toml,
    read_signed_policy,
    sign_policy,
    verify_signed_policy,
)

BASE = """\
policy_id = "test-consortium"
version = 2
purpose = "Find shared abuse."
not_before = 2026-01-01T00:00:00Z
not_after = 2027-01-01T00:00:00Z
min_interval_seconds = 600
retention_days = 30

[kinds.email]
max_set_size = 1000

[kinds.prompt]
max_set_size = 50
mode = "count"
"""

CA_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_parse_states_exactly_the_rules():
    p = parse_policy_toml(BASE)
    assert (p.policy_id, p.version, p.retention_days, p.min_interval_seconds) == (
        "test-consortium",
        2,
        30,
        600,
    )
    assert p.allowed_kinds == ("email", "prompt")
    assert p.size_cap("email") == 1000 and p.size_cap("phone") == 0
    assert p.kind_modes == {"prompt": "count"}
    assert (p.not_before, p.not_after) == ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")


def test_the_shipped_template_parses_is_safe_and_valid_from_today():
    now = datetime(2031, 6, 15, 13, 30, tzinfo=UTC)
    p = parse_policy_toml(template(now))
    assert "prompt" in p.allowed_kinds
    assert (p.not_before, p.not_after) == ("2031-06-15T00:00:00Z", "2032-06-14T00:00:00Z")
    p.check_time(now)
    assert p.min_interval_seconds > 0 and p.padding.mode != "off"
    assert p.max_churn_per_epoch is not None
    assert all(p.min_set_size.get(k, 0) > 0 for k in p.allowed_kinds)


def test_hash_covers_content_not_layout():
    respaced = "# a comment\n" + BASE.replace(" = ", "=").replace(
        "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00"
    )
    assert parse_policy_toml(respaced).hash() == parse_policy_toml(BASE).hash()
    changed = BASE.replace("max_set_size = 1000", "max_set_size = 1001")
    assert parse_policy_toml(changed).hash() != parse_policy_toml(BASE).hash()
    assert parse_policy_toml(BASE).hash() != DEFAULT_POLICY.hash()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("version = 2", "version = 2\ncolour = 'blue'"), "unknown policy setting"),
        (("[kinds.email]", "[kinds.shoe_size]"), "unknown kind"),
        (('purpose = "Find shared abuse."\n', ""), "'purpose' is required"),
        (('purpose = "Find shared abuse."', 'purpose = "  "'), "purpose"),
        (("not_after = 2027-01-01T00:00:00Z", "not_after = 2025-01-01T00:00:00Z"), "later"),
        (("not_before = 2026-01-01T00:00:00Z", "not_before = 2026-01-01T00:00:00"), "timezone"),
        (('mode = "count"', 'mode = "everything"'), "mode must be"),
        (("max_set_size = 1000", "max_set_size = -1"), "max_set_size"),
        (("max_set_size = 1000", "max_set_size = true"), "max_set_size"),
        (("retention_days = 30", "retention_days = 0"), "retention_days"),
        (("version = 2", "version = 0"), "version"),
        (('policy_id = "test-consortium"', 'policy_id = "has space"'), "policy_id"),
        (("[kinds.email]\nmax_set_size = 1000", "[kinds.email]\nmax = 1000"), "max_set_size"),
        (("version = 2", "version = [2"), "not valid TOML"),
    ],
)
def test_each_syntax_rule(change, message):
    old, new = change
    assert old in BASE
    with pytest.raises(InputError) as err:
        parse_policy_toml(BASE.replace(old, new, 1))
    assert err.value.rule == "policy-syntax"
    assert message in err.value.message


def test_no_kinds_at_all_is_refused():
    with pytest.raises(InputError, match="at least one kind"):
        parse_policy_toml(BASE.split("[kinds.email]")[0] + "[kinds]\n")


# --- round checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "mode", "sizes", "rule"),
    [
        (["phone"], "reveal", [1], "kind-allowed"),
        (["email"], "reveal", [1001], "max-set-size"),
        (["prompt"], "reveal", [10], "kind-mode"),
        ([], "reveal", [], "kinds-empty"),
    ],
)
def test_each_round_rule(kinds, mode, sizes, rule):
    with pytest.raises(PolicyError) as err:
        parse_policy_toml(BASE).check_round(kinds, mode, sizes)
    assert err.value.rule == rule


def test_a_round_within_the_rules_passes():
    parse_policy_toml(BASE).check_round(["email", "prompt"], "count", [1000, 50])


def test_validity_window():
    p = parse_policy_toml(BASE)
    p.check_time(at("2026-06-01T00:00:00"))
    p.check_time(at("2027-01-01T00:00:00"))  # the last instant is still valid
    with pytest.raises(PolicyError) as err:
        p.check_time(at("2027-01-01T00:00:01"))
    assert err.value.rule == "policy-expired"
    with pytest.raises(PolicyError) as err:
        p.check_time(at("2025-12-31T23:59:59"))
    assert err.value.rule == "policy-not-yet-valid"


def test_minimum_interval_between_rounds_of_a_pair():
    p = parse_policy_toml(BASE)  # 600 s
    last = at("2026-06-01T00:00:00")
    p.check_interval(None, last)
    p.check_interval(last, last + timedelta(seconds=600))
    p.check_interval(last, last + timedelta(seconds=590), slack=timedelta(seconds=10))
    with pytest.raises(PolicyError) as err:
        p.check_interval(last, last + timedelta(seconds=599))
    assert err.value.rule == "min-interval" and "retry in 1 s" in err.value.message


# --- signatures --------------------------------------------------------------------------------


def signed(text: str = BASE, key: ec.EllipticCurvePrivateKey = CA_KEY) -> bytes:
    return sign_policy(text.encode(), key)


def test_sign_and_verify():
    result = verify_signed_policy(signed(), CA_KEY.public_key())
    assert result.policy == parse_policy_toml(BASE)
    assert result.toml_text == BASE


def edit(document: bytes, **fields: str) -> bytes:
    doc = json.loads(document)
    doc.update(fields)
    return json.dumps(doc).encode()


def test_tampered_policy_text_is_caught_by_the_stated_hash():
    doc = edit(signed(), policy_toml=BASE.replace("1000", "1000000"))
    with pytest.raises(VerificationError) as err:
        verify_signed_policy(doc, CA_KEY.public_key())
    assert err.value.rule == "policy-signature" and "hash" in err.value.message


def test_tampered_policy_with_a_matching_hash_fails_the_signature():
    changed = BASE.replace("1000", "1000000")
    doc = edit(signed(), policy_toml=changed, policy_hash=parse_policy_toml(changed).hash().hex())
    with pytest.raises(VerificationError) as err:
        verify_signed_policy(doc, CA_KEY.public_key())
    assert err.value.rule == "policy-signature" and "does not verify" in err.value.message


def test_signed_by_another_key():
    with pytest.raises(VerificationError) as err:
        verify_signed_policy(signed(key=OTHER_KEY), CA_KEY.public_key())
    assert err.value.rule == "policy-signature"
    assert "not signed by the consortium CA" in err.value.message


def test_another_keys_signature_under_the_cas_name():
    forged = json.loads(signed(key=OTHER_KEY))
    forged["signer_key"] = json.loads(signed())["signer_key"]
    with pytest.raises(VerificationError, match="does not verify"):
        verify_signed_policy(json.dumps(forged).encode(), CA_KEY.public_key())


def test_a_signature_over_the_text_does_not_carry_to_another_domain():
    # The signature covers the domain-tagged canonical encoding, not the bare policy bytes.
    from cryptography.hazmat.primitives import hashes

    p = parse_policy_toml(BASE)
    bare = CA_KEY.sign(p.canonical_bytes(), ec.ECDSA(hashes.SHA256()))
    doc = edit(signed(), signature=base64.b64encode(bare).decode())
    with pytest.raises(VerificationError):
        verify_signed_policy(doc, CA_KEY.public_key())


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        b'{"format": "crossmatch-signed-policy/v0"}',
        b'{"format": "crossmatch-signed-policy/v1", "policy_toml": 1}',
    ],
)
def test_malformed_documents(document):
    with pytest.raises(InputError) as err:
        read_signed_policy(document)
    assert err.value.rule == "policy-syntax"


def test_unsigned_toml_is_not_a_signed_policy():
    with pytest.raises(InputError):
        verify_signed_policy(BASE.encode(), CA_KEY.public_key())


@settings(max_examples=40, deadline=None)
@given(
    caps=st.dictionaries(
        st.sampled_from(ALL_KINDS), st.tuples(st.integers(0, 10**9), st.booleans()), min_size=1
    ),
    interval=st.integers(1, 10**6),
    retention=st.integers(1, 3650),
)
def test_any_valid_policy_round_trips_through_signing(caps, interval, retention):
    lines = [
        BASE.split("min_interval_seconds")[0],
        f"min_interval_seconds = {interval}",
        f"retention_days = {retention}",
    ]
    for kind, (cap, count) in caps.items():
        lines += [
            f"[kinds.{kind}]",
            f"max_set_size = {cap}",
            f'mode = "{"count" if count else "reveal"}"',
        ]
    text = "\n".join(lines) + "\n"
    p = verify_signed_policy(signed(text), CA_KEY.public_key()).policy
    assert set(p.allowed_kinds) == set(caps)
    assert all(p.size_cap(k) == cap for k, (cap, _) in caps.items())
    assert all(p.mode_allowed(k, "reveal") != count for k, (_, count) in caps.items())
    assert (p.min_interval_seconds, p.retention_days) == (interval, retention)
