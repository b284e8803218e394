"""protocol/hooks.py: payload, signature, idempotency key and retry delays."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import hooks as rules
from protocol.errors import InputError, VerificationError

SECRET = b"s" * 32


def payload(**kw: object) -> bytes:
    base: dict = dict(
        lab="lab-a",
        hook="soc",
        state="confirmed",
        case={"case_id": "c1"},
        idempotency_key="k",
        sent_at="2026-01-01T00:00:00Z",
    )
    base.update(kw)
    return rules.build_payload(**base)


def test_payload_is_canonical_and_versioned():
    body = payload(case={"b": 1, "a": "x"})
    assert body == payload(case={"a": "x", "b": 1})
    assert json.loads(body)["version"] == rules.PAYLOAD_VERSION
    with pytest.raises(InputError, match="unknown case state"):
        payload(state="shipped")


def test_idempotency_key_depends_on_the_event_only():
    k = rules.idempotency_key(hook="soc", case_id="c1", state="confirmed", revision=1)
    assert k == rules.idempotency_key(hook="soc", case_id="c1", state="confirmed", revision="1")
    others = {
        rules.idempotency_key(hook=h, case_id=c, state=s, revision=r)
        for h, c, s, r in (
            ("soc2", "c1", "confirmed", 1),
            ("soc", "c2", "confirmed", 1),
            ("soc", "c1", "new", 1),
            ("soc", "c1", "confirmed", 2),
        )
    }
    assert k not in others and len(others) == 4


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=10**12 - 1))
def test_signature_round_trips_and_any_changed_byte_fails(body, ts):
    header = rules.sign(SECRET, ts, body)
    assert rules.verify_signature(SECRET, header, body, now=ts) == ts
    with pytest.raises(VerificationError):
        rules.verify_signature(SECRET, header, body + b"x", now=ts)


def test_signature_binds_the_timestamp():
    header = rules.sign(SECRET, 1000, b"{}")
    moved = header.replace("t=1000", "t=1001")
    with pytest.raises(VerificationError, match="does not match"):
        rules.verify_signature(SECRET, moved, b"{}", now=1001)


@pytest.mark.parametrize(
    "header", ["", "v1=00", "t=1,v1=zz", "t=1,v1=" + "0" * 63, "t=-1,v1=" + "0" * 64]
)
def test_malformed_signature_headers_are_refused(header):
    with pytest.raises(VerificationError, match="signature header"):
        rules.verify_signature(SECRET, header, b"{}", now=1)


def test_short_secret_refused():
    with pytest.raises(InputError, match="at least"):
        rules.sign(b"short", 1, b"")


def test_retry_delays_grow_capped_and_jittered():
    fixed = [rules.retry_delay(n, base=1.0, cap=8.0, draw=lambda: 0.0) for n in range(1, 7)]
    assert fixed == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    top = [rules.retry_delay(n, base=1.0, cap=8.0, draw=lambda: 0.999999) for n in range(1, 5)]
    assert all(a < b <= 2 * a for a, b in zip(fixed, top, strict=False))
    assert rules.retry_delay(1000, base=1.0, cap=60.0, draw=lambda: 1.0) == 60.0
    with pytest.raises(InputError):
        rules.retry_delay(0, base=1, cap=1, draw=lambda: 0)
