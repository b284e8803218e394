"""Golden vectors (tests/vectors/audit/, made by tests/vectors/make_audit_vectors.py with fixed
keys): the formats are unchanged, and logs written before still verify."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.audit.checkpoint import verify_checkpoint
from protocol.audit.events import EVENT_TYPES
from protocol.audit.verify import verify_log_bytes
from protocol.receipts import parse_receipt, verify_receipt
from tests.vectors.make_audit_vectors import OUT, derive

FILES = sorted(p.name for p in OUT.iterdir())
INDEX = json.loads((OUT / "vectors.json").read_text())


def key(name: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(INDEX["public_keys"][name]))


def test_every_vector_file_is_derived() -> None:
    assert sorted(derive()) == FILES


@pytest.mark.parametrize("name", FILES)
def test_the_code_still_writes_each_vector_byte_for_byte(name: str) -> None:
    # A failure here means a format changed: bump its version, migrate, write an ADR,
    # then regenerate (the stored logs must still verify: the next test).
    assert derive()[name] == (OUT / name).read_bytes(), name


@pytest.mark.parametrize("lab", ["lab-a", "lab-b"])
def test_stored_logs_verify_with_peer_receipts(lab: str) -> None:
    other = "lab-b" if lab == "lab-a" else "lab-a"
    report = verify_log_bytes(
        (OUT / f"{lab}.log").read_bytes(), public_key=key(lab), peer_keys={other: key(other)}
    )
    assert report.lab == lab and report.events["round_completed"] == 3
    assert report.peer_receipts_verified == 3 and not report.peer_receipts_unchecked


def test_stored_receipt_verifies() -> None:
    signed = parse_receipt((OUT / "receipt.json").read_bytes())
    verify_receipt(
        signed,
        key("vector-receipt"),
        round_id="0123456789abcdef0123456789abcdef",
        transcript_hash=hashlib.sha256(b"transcript").digest(),
        signer="lab-b",
    )


def test_stored_checkpoint_verifies() -> None:
    checkpoint = verify_checkpoint((OUT / "checkpoint.txt").read_text(), key("vector-checkpoint"))
    assert checkpoint.size == 42 and checkpoint.root == hashlib.sha256(b"42").digest()


EVENTS = json.loads((OUT / "events.json").read_text())


def test_stored_typed_bodies_verify_and_read_back_through_their_types() -> None:
    data = (OUT / "events.log").read_bytes()
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(EVENTS["public_key"]))
    report = verify_log_bytes(data, public_key=public_key)
    assert report.lab == "lab-c"
    records = [json.loads(line) for line in data.splitlines()]
    written = [r for r in records if r["event"] in EVENTS["events"]]
    assert [r["event"] for r in written] == EVENTS["events"]
    for r in records:  # the log's own records too (log_created, checkpoint)
        typed = EVENT_TYPES[r["event"]].from_body(r["body"])
        assert not typed.extra and typed.to_body() == r["body"], r["event"]
