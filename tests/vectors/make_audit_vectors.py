"""Regenerate tests/vectors/audit/: audit logs, a receipt, a checkpoint and a transcript hash,
all from fixed keys and fixed times (Ed25519 signatures are deterministic).

Run only when a format changes on purpose (with a version bump, a migration and an ADR);
review the diff by hand. ``tests/unit/test_audit_vectors.py`` re-derives every vector with
``derive()`` and compares it with the files, and checks the stored logs still verify, so
logs written by an older crossmatch keep verifying.

    .venv/bin/python tests/vectors/make_audit_vectors.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol.audit import events as ev
from protocol.audit.checkpoint import make_checkpoint, sign_checkpoint
from protocol.audit.records import key_fingerprint, public_key_bytes
from protocol.receipts import build_receipt, receipt_bytes, sign_receipt
from protocol.transcript import STREAMS, RoundHeader, Transcript, reblind_commitment
from tests.audit_simulator import MemoryLog, fixed_key, memory_lab, populate

OUT = Path(__file__).with_name("audit")
NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def _logs() -> dict[str, bytes]:
    a, b = memory_lab("lab-a"), memory_lab("lab-b")
    populate(a, b, rounds=3)
    for lab in (a, b):
        lab.log.checkpoint(now=lab.now())
    return {f"{lab.name}.log": lab.log.data() for lab in (a, b) if isinstance(lab.log, MemoryLog)}


def typed_bodies() -> list[ev.EventBody]:
    """One body of each type written outside a pairwise round, with fixed values."""
    h = hashlib.sha256(b"vector").hexdigest()
    receipt = {"round_id": "ab" * 16, "signer": "lab-c", "sig": "00" * 64}
    return [
        ev.NodeInitialized(lab="lab-c"),
        ev.PeerAdded(lab="lab-a", address="127.0.0.1:7443"),
        ev.PolicyInstalled(
            policy_id="vector-policy", version=3, policy_hash=h, not_after="2026-01-01T00:00:00Z"
        ),
        ev.CrlInstalled(crl_number=2, revoked=1),
        ev.EntitiesImported(added=5, updated=1, held_back=2, source_sha256=h),
        ev.CaseReopened(case_id="case-1", state_from="dismissed", new_pairs=2),
        ev.NodeStarted(lab="lab-c", version="0.1.0", address="127.0.0.1:7444", role="hub"),
        ev.OpinionsSent(peer="lab-a", count=3, case_id="case-1", confirmed=2, false_positive=1),
        ev.OpinionsReceived(peer="lab-a", count=1, confirmed=1, false_positive=0),
        ev.OpinionsRefused(peer="lab-a", count=9, reason="too many", rule="feedback-rate"),
        ev.ConsortiumCompleted(
            round_id="ab" * 16,
            role="participant",
            hub="lab-h",
            participants=["lab-a", "lab-b", "lab-c"],
            policy_hash=h,
            k=2,
            reveal_count=True,
            kinds=["email"],
            sizes={"lab-a": {"email": 4}, "lab-b": {"email": 3}, "lab-c": {"email": 5}},
            result_counts={"email": 1},
            transcript_hash=h,
            own_receipt=receipt,
            hub_receipt={**receipt, "signer": "lab-h"},
        ),
        ev.ConsortiumAborted(
            round_id="",
            role="hub",
            hub="lab-h",
            stage="joining",
            reason="no participant moved the joining stage on for 30 s",
            rule="timeout",
            participants=["lab-a"],
        ),
        ev.LogResumed(error="torn line at offset 812"),
        ev.Recovery(quarantine_file="audit.log.quarantine", offset=812, bytes=40, sha256=h),
    ]


def _events_log() -> bytes:
    lab = memory_lab("lab-c")
    for body in typed_bodies():
        lab.log.append(body.EVENT, body.to_body(), now=lab.now())
    lab.log.checkpoint(now=lab.now())
    assert isinstance(lab.log, MemoryLog)
    return lab.log.data()


def _receipt() -> bytes:
    key = fixed_key("vector-receipt")
    receipt = build_receipt(
        round_id="0123456789abcdef0123456789abcdef",
        initiator="lab-a",
        responder="lab-b",
        signer="lab-b",
        mode="reveal",
        kinds=["email", "phone"],
        transcript_hash=hashlib.sha256(b"transcript").digest(),
        sizes={"initiator": {"email": 120, "phone": 40}, "responder": {"email": 90, "phone": 0}},
        intersection_sizes={"email": 7, "phone": 0},
        log_id=f"crossmatch-audit/lab-b/{key_fingerprint(key.public_key())}",
        log_size=12,
        log_root=hashlib.sha256(b"root").digest(),
    )
    return receipt_bytes(sign_receipt(receipt, key))


def _checkpoint() -> bytes:
    key = fixed_key("vector-checkpoint")
    origin = f"crossmatch-audit/lab-a/{key_fingerprint(key.public_key())}"
    note = make_checkpoint(origin=origin, size=42, root=hashlib.sha256(b"42").digest(), now=NOW)
    return sign_checkpoint(note, key).encode("utf-8")


def _transcript() -> dict[str, str]:
    header = RoundHeader(
        round_id="0123456789abcdef0123456789abcdef",
        initiator="lab-a",
        responder="lab-b",
        mode="count",
        kinds=("email", "prompt"),
        initiator_sizes=(3, 2),
        responder_sizes=(4, 1),
        policy_hash=hashlib.sha256(b"policy").digest(),
        initiator_commitment=hashlib.sha256(b"a").digest(),
        responder_commitment=hashlib.sha256(b"b").digest(),
        prompt_params="pm1-test",
    )
    transcript = Transcript(header)
    for i, stream in enumerate(STREAMS):
        transcript.absorb(stream, bytes([i]) * 33 * (i + 1))
    for role in ("initiator", "responder"):
        transcript.commit(role, reblind_commitment(header.round_id, role, bytes(33) * 2))
    return {
        "header_sha256": hashlib.sha256(header.canonical_bytes()).hexdigest(),
        "transcript_hash": transcript.digest().hex(),
    }


def derive() -> dict[str, bytes]:
    """Every vector file's exact bytes, by name."""
    files = dict(_logs())
    files["receipt.json"] = _receipt()
    files["checkpoint.txt"] = _checkpoint()
    files["events.log"] = _events_log()
    files["events.json"] = _index_bytes(
        {
            "source": "tests/vectors/make_audit_vectors.py typed_bodies(): one typed body per "
            "event written outside a pairwise round, in a log signed by fixed_key('lab-c')",
            "public_key": public_key_bytes(fixed_key("lab-c").public_key()).hex(),
            "events": [body.EVENT for body in typed_bodies()],
        }
    )
    keys = {
        name: public_key_bytes(fixed_key(name).public_key()).hex()
        for name in ("lab-a", "lab-b", "vector-receipt", "vector-checkpoint")
    }
    index = {
        "source": "tests/vectors/make_audit_vectors.py; keys are fixed_key(seed) in "
        "tests/audit_simulator.py: Ed25519 from SHA-256(seed)",
        "public_keys": keys,
        "transcript": _transcript(),
    }
    files["vectors.json"] = _index_bytes(index)
    return files


def _index_bytes(index: dict[str, object]) -> bytes:
    return (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, data in derive().items():
        (OUT / name).write_bytes(data)
        print(f"wrote {OUT / name} ({len(data)} bytes)")
