"""Proof documents for third parties: built from a verified log, checked with only a public key."""

from __future__ import annotations

import json

import pytest

from protocol.audit.checkpoint import parse_checkpoint
from protocol.audit.proofs import (
    build_consistency_proof,
    build_inclusion_proof,
    check_proof,
)
from protocol.audit.verify import verify_log_bytes
from protocol.errors import VerificationError
from tests.audit_simulator import fixed_key, memory_lab, populate


@pytest.fixture(scope="module")
def lab_and_report():
    a, b = memory_lab("lab-a"), memory_lab("lab-b")
    populate(a, b, rounds=4)
    return a, verify_log_bytes(a.log.data(), public_key=a.key.public_key())


def wire(doc: dict) -> dict:
    """Proofs travel as JSON files."""
    return json.loads(json.dumps(doc))


def test_inclusion_proof_defaults_to_the_newest_signed_checkpoint(lab_and_report):
    a, report = lab_and_report
    doc = build_inclusion_proof(report, 2)
    newest = parse_checkpoint(a.log.notes[-1])
    assert doc["tree_size"] == newest.size and doc["checkpoint"] == a.log.notes[-1]
    lines = check_proof(wire(doc), key=a.key.public_key())
    assert (
        lines[0].startswith("record 2 (signals_imported, ") and "record signature verified" in lines
    )
    assert "signature verified" in lines[2]


def test_every_record_has_a_proof_at_every_size(lab_and_report):
    a, report = lab_and_report
    for size in range(1, report.size + 1):
        for index in range(size):
            check_proof(wire(build_inclusion_proof(report, index, size)), key=a.key.public_key())


def test_inclusion_proof_with_a_changed_record_fails(lab_and_report):
    a, report = lab_and_report
    doc = wire(build_inclusion_proof(report, 1))
    assert '"version":"0.1.0"' in doc["record"]
    doc["record"] = doc["record"].replace('"version":"0.1.0"', '"version":"0.1.1"')
    with pytest.raises(VerificationError, match="leaf hash does not match the record") as caught:
        check_proof(doc, key=a.key.public_key())
    assert caught.value.rule == "proof-leaf"


def test_inclusion_proof_for_another_position_fails(lab_and_report):
    a, report = lab_and_report
    doc = wire(build_inclusion_proof(report, 2))
    doc["leaf_index"] = 3
    with pytest.raises(VerificationError, match="not record 3"):
        check_proof(doc, key=a.key.public_key())


def test_inclusion_proof_with_a_changed_path_fails(lab_and_report):
    a, report = lab_and_report
    doc = wire(build_inclusion_proof(report, 5))
    doc["proof"][0] = ("0" if doc["proof"][0][0] != "0" else "1") + doc["proof"][0][1:]
    with pytest.raises(VerificationError, match="root from inclusion proof does not match"):
        check_proof(doc, key=a.key.public_key())


def test_proof_checked_with_another_key_fails(lab_and_report):
    _, report = lab_and_report
    with pytest.raises(VerificationError, match="is not signed by the given key"):
        check_proof(wire(build_inclusion_proof(report, 1)), key=fixed_key("x").public_key())


def test_without_a_key_the_result_says_signatures_were_not_checked(lab_and_report):
    _, report = lab_and_report
    lines = check_proof(wire(build_inclusion_proof(report, 1)))
    assert "record signature NOT checked (no key given)" in lines


def test_consistency_between_two_checkpoints(lab_and_report):
    a, report = lab_and_report
    old = parse_checkpoint(a.log.notes[0])
    doc = build_consistency_proof(report, old.size)
    assert doc["checkpoint1"] == a.log.notes[0] and doc["checkpoint2"] == a.log.notes[-1]
    lines = check_proof(wire(doc), key=a.key.public_key(), checkpoint=a.log.notes[0])
    assert lines[0].endswith(f"at size {old.size} is a prefix of the log at size {doc['size2']}")
    assert lines[-1].startswith("your checkpoint at size")


def test_consistency_against_a_checkpoint_of_a_rewritten_log_fails(lab_and_report):
    a, report = lab_and_report
    forger, other = memory_lab("lab-a"), memory_lab("lab-b")
    forger.log.append("node_started", {"lab": "lab-a", "version": "9"}, now=forger.now())
    populate(forger, other, rounds=4)
    kept = forger.log.notes[0]  # a checkpoint of the other history, at some size
    doc = wire(build_consistency_proof(report, parse_checkpoint(kept).size))
    with pytest.raises(VerificationError, match="the proof is for size") as caught:
        check_proof(doc, key=a.key.public_key(), checkpoint=kept)
    assert caught.value.rule == "proof-checkpoint"


def test_unknown_document_is_refused():
    with pytest.raises(VerificationError, match="unknown version"):
        check_proof({"v": "something/v1"})
    with pytest.raises(VerificationError, match="not a JSON object"):
        check_proof([1, 2])
