"""Round receipts: build, sign, wire form, and one rejection per rule."""

from __future__ import annotations

import hashlib

import pytest

from protocol.audit.records import make_log_id
from protocol.errors import InputError, ProtocolError, VerificationError
from protocol.receipts import (
    build_receipt,
    parse_receipt,
    receipt_bytes,
    sign_receipt,
    verify_receipt,
)
from tests.audit_simulator import fixed_key

A, B = fixed_key("receipt-a"), fixed_key("receipt-b")
TRANSCRIPT = hashlib.sha256(b"transcript").digest()
ROUND = "0123456789abcdef0123456789abcdef"


def receipt(**changes) -> dict:
    args = dict(
        round_id=ROUND,
        initiator="lab-a",
        responder="lab-b",
        signer="lab-b",
        mode="reveal",
        kinds=["email", "phone"],
        transcript_hash=TRANSCRIPT,
        sizes={"initiator": {"email": 10, "phone": 3}, "responder": {"email": 8, "phone": 0}},
        intersection_sizes={"email": 2, "phone": 0},
        log_id=make_log_id("lab-b", B.public_key()),
        log_size=17,
        log_root=hashlib.sha256(b"root").digest(),
    )
    args.update(changes)
    return build_receipt(**args)


def verify(signed: dict, key=None, **changes) -> None:
    expected = dict(round_id=ROUND, transcript_hash=TRANSCRIPT, signer="lab-b")
    expected.update(changes)
    verify_receipt(signed, (key or B).public_key(), **expected)


def test_signed_receipt_verifies_and_survives_the_wire():
    signed = sign_receipt(receipt(), B)
    verify(signed)
    data = receipt_bytes(signed)
    assert parse_receipt(data) == signed
    assert data.startswith(b'{"initiator":"lab-a","intersection_sizes":')  # canonical: sorted
    verify(parse_receipt(data))


def test_receipt_names_the_signers_log_head():
    signed = sign_receipt(receipt(), B)
    assert signed["log"] == {
        "id": make_log_id("lab-b", B.public_key()),
        "size": 17,
        "root": hashlib.sha256(b"root").hexdigest(),
    }
    assert signed["v"] == "crossmatch-receipt/v1"


@pytest.mark.parametrize(
    ("expected", "rule"),
    [
        ({"round_id": "f" * 32}, "receipt-round"),
        ({"transcript_hash": hashlib.sha256(b"other").digest()}, "receipt-transcript"),
        ({"signer": "lab-a"}, "receipt-signer"),
    ],
)
def test_receipt_for_something_else_is_rejected(expected, rule):
    with pytest.raises(VerificationError) as caught:
        verify(sign_receipt(receipt(), B), **expected)
    assert caught.value.rule == rule


def test_receipt_signed_by_the_wrong_peer_key_is_rejected():
    # Lab A's key signs a receipt that claims to be lab B's, naming B's log.
    with pytest.raises(VerificationError, match="does not verify with 'lab-b'") as caught:
        verify(sign_receipt(receipt(), A))
    assert caught.value.rule == "receipt-signature"


def test_receipt_naming_a_log_of_another_key_is_rejected():
    signed = sign_receipt(receipt(log_id=make_log_id("lab-b", A.public_key())), A)
    with pytest.raises(VerificationError, match="whose key is not the one given") as caught:
        verify(signed)
    assert caught.value.rule == "receipt-log-id"


def test_receipt_naming_another_labs_log_is_rejected():
    signed = sign_receipt(receipt(log_id=make_log_id("lab-c", B.public_key())), B)
    with pytest.raises(VerificationError, match="which is not 'lab-b'") as caught:
        verify(signed)
    assert caught.value.rule == "receipt-log-id"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("intersection_sizes", {"email": 3, "phone": 0}),
        ("mode", "count"),
        ("sizes", {"initiator": {"email": 11, "phone": 3}, "responder": {"email": 8, "phone": 0}}),
        ("log", {"id": make_log_id("lab-b", B.public_key()), "size": 16, "root": "00" * 32}),
    ],
)
def test_any_changed_member_breaks_the_signature(field, value):
    signed = sign_receipt(receipt(), B)
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify({**signed, field: value})


def test_flipped_byte_in_signature_is_rejected():
    signed = sign_receipt(receipt(), B)
    sig = bytearray.fromhex(signed["sig"])
    sig[0] ^= 0x80
    with pytest.raises(VerificationError) as caught:
        verify({**signed, "sig": sig.hex()})
    assert caught.value.rule == "receipt-signature"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b'{"v":"crossmatch-receipt/v1"}',
        b"[1,2,3]",
        b'{"a": 1}',
        b"x" * 70_000,
    ],
)
def test_garbage_on_the_wire_is_a_protocol_error(data):
    with pytest.raises(ProtocolError) as caught:
        parse_receipt(data)
    assert caught.value.rule == "receipt-format"


def test_non_canonical_wire_bytes_are_refused():
    signed = sign_receipt(receipt(), B)
    pretty = receipt_bytes(signed).replace(b",", b", ", 1)
    with pytest.raises(ProtocolError, match="not canonical"):
        parse_receipt(pretty)


def test_unknown_version_is_refused():
    signed = sign_receipt(receipt(), B)
    data = receipt_bytes({**signed, "v": "crossmatch-receipt/v2"})
    with pytest.raises(ProtocolError, match="version is 'crossmatch-receipt/v2'"):
        parse_receipt(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "everything"},
        {"signer": "lab-c"},
        {"kinds": ["email", "email"]},
        {"sizes": {"lab-a": {"email": 1}, "lab-b": {"email": 1}}},
        {"intersection_sizes": {"email": -1}},
        {"log_root": b"short"},
        {"initiator": "Lab A"},
    ],
)
def test_build_refuses_what_verify_would_reject(changes):
    with pytest.raises(InputError, match="cannot build receipt"):
        receipt(**changes)
