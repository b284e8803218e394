"""Whole-log verification: an honest log verifies; each tamper changes one thing and is named.

Tampering that a key holder could do is simulated by re-signing the one record
changed (so the signature rule does not hide the rule under test); tampering
by someone without the key leaves the signature as it was.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol.audit.canonical import encode_canonical, parse_canonical
from protocol.audit.checkpoint import make_checkpoint, sign_checkpoint
from protocol.audit.merkle import leaf_hash
from protocol.audit.records import build_record, encode_record, make_log_id, sign_record
from protocol.audit.verify import verify_log_bytes
from protocol.audit.verify_report import KEY_EMBEDDED, KEY_SUPPLIED
from protocol.errors import VerificationError
from protocol.receipts import sign_receipt
from tests.audit_simulator import T0, fixed_key, memory_lab, populate

INTRUDER = fixed_key("intruder")


@pytest.fixture(scope="module")
def labs():
    a, b = memory_lab("lab-a"), memory_lab("lab-b")
    populate(a, b, rounds=4)
    return a, b


@pytest.fixture
def lines(labs) -> list[bytes]:
    return list(labs[0].log.lines)


def data(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def verify(labs, lines: list[bytes], **kwargs: Any):
    a, b = labs
    kwargs.setdefault("public_key", a.key.public_key())
    kwargs.setdefault("peer_keys", {"lab-b": b.key.public_key()})
    return verify_log_bytes(data(lines), **kwargs)


def expect_failure(labs, lines, *, record: int | str, rule: str, match: str, **kwargs):
    with pytest.raises(VerificationError, match=match) as caught:
        verify(labs, lines, **kwargs)
    where = f"record {record}" if isinstance(record, int) else record
    assert (caught.value.where, caught.value.rule) == (where, rule), caught.value.diagnostics()
    return caught.value


def index_of(lines: list[bytes], event: str, nth: int = 0) -> int:
    found = [i for i, line in enumerate(lines) if json.loads(line)["event"] == event]
    return found[nth]


def resign(lines: list[bytes], i: int, change, key=None) -> None:
    """Change record i and sign it again with the log key (or ``key``): a key holder's edit."""
    record = parse_canonical(lines[i])
    change(record)
    key = key or fixed_key(record["log"].split("/")[1])
    lines[i] = encode_record(sign_record({k: v for k, v in record.items() if k != "sig"}, key))


def flip(line: bytes, needle: bytes, bit: int = 0x01) -> bytes:
    at = line.index(needle)
    return line[:at] + bytes([line[at] ^ bit]) + line[at + 1 :]


# -- an honest log ----------------------------------------------------------------------------


def test_honest_log_verifies_with_every_check(labs, lines):
    report = verify(labs, lines)
    assert report.size == len(lines) and report.lab == "lab-a"
    assert report.key_source == KEY_SUPPLIED
    assert report.events["round_completed"] == 4 and report.checkpoints_in_log == 4
    assert report.peer_receipts_verified == 4 and report.peer_receipts_unchecked == {}
    assert report.root == report.roots[-1] and len(report.roots) == len(lines) + 1
    assert report.log_id == make_log_id("lab-a", labs[0].key.public_key())


def test_without_keys_the_report_says_what_was_not_checked(labs, lines):
    report = verify_log_bytes(data(lines))
    assert report.key_source == KEY_EMBEDDED
    assert report.peer_receipts_unchecked == {"lab-b": 4}
    assert any("self-asserted" in line for line in report.summary_lines())


# -- someone without the key -----------------------------------------------------------------


def test_flipped_byte_in_a_record_body(labs, lines):
    i = index_of(lines, "node_started")
    lines[i] = flip(lines[i], b'0.1.0"', 0x01)  # "0.1.0" -> "1.1.0": one bit, still JSON
    expect_failure(
        labs, lines, record=i, rule="record-signature", match="signature does not verify"
    )


def test_flipped_byte_that_breaks_the_json(labs, lines):
    i = index_of(lines, "signals_imported")
    lines[i] = flip(lines[i], b'"kind"', 0x80)  # high bit: no longer UTF-8
    expect_failure(labs, lines, record=i, rule="record-json", match="not UTF-8")


def test_flipped_byte_in_a_signature(labs, lines):
    i = index_of(lines, "round_completed", 1)
    at = lines[i].index(b'"sig":"') + len(b'"sig":"')
    digit = b"1" if lines[i][at : at + 1] != b"1" else b"2"  # another hex digit: still hex
    lines[i] = lines[i][:at] + digit + lines[i][at + 1 :]
    expect_failure(labs, lines, record=i, rule="record-signature", match="signature does not")


def test_flipped_byte_in_a_checkpoint_record(labs, lines):
    i = index_of(lines, "checkpoint", 2)
    lines[i] = flip(lines[i], b"version crossmatch-checkpoint/v1", 0x02)
    expect_failure(labs, lines, record=i, rule="record-signature", match="signature does not")


def test_removed_record(labs, lines):
    i = index_of(lines, "round_completed", 2)
    del lines[i]
    expect_failure(
        labs, lines, record=i, rule="seq", match=f"seq is {i + 1}, expected {i} .*removed"
    )


def test_reordered_records(labs, lines):
    i = index_of(lines, "round_completed", 1)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    expect_failure(labs, lines, record=i, rule="seq", match=f"seq is {i + 1}, expected {i}")


def test_record_appended_with_another_key(labs, lines):
    a = labs[0]
    record = build_record(
        log_id=a.log_id,
        seq=len(lines),
        time=T0,
        event="matches_purged",
        body={"before": "2025-01-01", "count": 3},
        prev=leaf_hash(lines[-1]),
    )
    lines.append(encode_record(sign_record(record, INTRUDER)))
    expect_failure(
        labs, lines, record=len(lines) - 1, rule="record-signature", match="signature does not"
    )


def test_truncated_file_mid_record(labs, lines):
    blob = data(lines)
    cut = blob[: len(blob) - 100]
    with pytest.raises(VerificationError, match="torn last line") as caught:
        verify_log_bytes(cut, public_key=labs[0].key.public_key())
    assert (caught.value.where, caught.value.rule) == (f"record {len(lines) - 1}", "torn-line")


def test_truncated_file_at_a_record_boundary_is_caught_by_a_kept_checkpoint(labs, lines):
    note = labs[0].log.notes[-1]  # the node's latest audit.checkpoint, or a copy a peer holds
    kept = lines[: index_of(lines, "checkpoint", 2)]
    expect_failure(
        labs,
        kept,
        record="audit.checkpoint",
        rule="checkpoint-size",
        match=r"covers \d+ records but the log holds only \d+: records were removed",
        checkpoints=[("audit.checkpoint", note)],
    )


def test_torn_last_line(labs, lines):
    blob = data(lines) + b'{"body":{"lab":"lab-a"'
    with pytest.raises(VerificationError, match="torn last line: 22 bytes") as caught:
        verify_log_bytes(blob)
    assert (caught.value.where, caught.value.rule) == (f"record {len(lines)}", "torn-line")


def test_empty_line_in_the_middle(labs, lines):
    lines.insert(3, b"")
    expect_failure(labs, lines, record=3, rule="record-json", match="not JSON")


def test_empty_file():
    with pytest.raises(VerificationError, match="the log is empty") as caught:
        verify_log_bytes(b"")
    assert caught.value.rule == "genesis"


# -- the wrong key, the wrong log ---------------------------------------------------------


def test_log_verified_with_another_labs_key(labs, lines):
    expect_failure(
        labs,
        lines,
        record=0,
        rule="log-key",
        match="signed by key .* expected",
        public_key=labs[1].key.public_key(),
    )


def test_checkpoint_from_another_log(labs, lines):
    expect_failure(
        labs,
        lines,
        record="peer.checkpoint",
        rule="checkpoint-origin",
        match="checkpoint is for log 'crossmatch-audit/lab-b/",
        checkpoints=[("peer.checkpoint", labs[1].log.notes[-1])],
    )


def test_flipped_byte_in_a_kept_checkpoint(labs, lines):
    note = labs[0].log.notes[1]
    at = len(note) - 6  # inside the base64 signature, before any padding
    tampered = note[:at] + ("A" if note[at] != "A" else "B") + note[at + 1 :]
    expect_failure(
        labs,
        lines,
        record="kept.checkpoint",
        rule="checkpoint-signature",
        match="checkpoint signature does not verify",
        checkpoints=[("kept.checkpoint", tampered)],
    )


def test_kept_checkpoint_exposes_a_consistent_forgery(labs, lines):
    # The key holder rebuilds the whole log with a different history: on its own it verifies,
    # against a checkpoint someone kept from before, it does not.
    a = labs[0]
    kept = a.log.notes[1]
    forger, accomplice = memory_lab("lab-a"), memory_lab("lab-b")
    forger.log.append("node_started", {"lab": "lab-a", "version": "0.0.9"}, now=T0)
    populate(forger, accomplice, rounds=4)
    forged = forger.log.lines
    assert verify(labs, forged).size == len(forged)
    expect_failure(
        labs,
        forged,
        record="kept.checkpoint",
        rule="checkpoint-root",
        match="but the log's root there is .*: the log was rewritten",
        checkpoints=[("kept.checkpoint", kept)],
    )


# -- a key holder's edits, one rule each --------------------------------------------------


def test_record_zero_must_be_log_created(labs, lines):
    resign(lines, 0, lambda r: r.update(event="node_started"))
    expect_failure(labs, lines, record=0, rule="genesis", match="record 0 is 'node_started'")


def test_log_created_only_once(labs, lines):
    i = index_of(lines, "node_started")
    resign(
        lines, i, lambda r: r.update(event="log_created", body=parse_canonical(lines[0])["body"])
    )
    expect_failure(labs, lines, record=i, rule="genesis", match="may only be record 0")


def test_log_id_must_name_the_embedded_key(labs, lines):
    other = make_log_id("lab-a", INTRUDER.public_key())
    resign(lines, 0, lambda r: (r.update(log=other), r["body"].update(log_id=other)))
    expect_failure(
        labs,
        lines,
        record=0,
        rule="log-id-key",
        match="fingerprint .* is not that of the embedded key",
        public_key=None,
    )


def test_every_record_names_the_same_log(labs, lines):
    i = index_of(lines, "round_aborted")
    resign(lines, i, lambda r: r.update(log=make_log_id("lab-c", labs[0].key.public_key())))
    expect_failure(labs, lines, record=i, rule="log-id", match="record names log")


def test_chain_link(labs, lines):
    i = index_of(lines, "round_completed")
    resign(lines, i, lambda r: r.update(prev=leaf_hash(lines[i - 2]).hex()))
    expect_failure(labs, lines, record=i, rule="chain", match=f"leaf hash of record {i - 1}")


def test_envelope_members(labs, lines):
    resign(lines, 2, lambda r: r.update(note="extra"))
    expect_failure(labs, lines, record=2, rule="record-schema", match="record members are")


def test_envelope_version(labs, lines):
    resign(lines, 2, lambda r: r.update(v="crossmatch-audit-record/v9"))
    expect_failure(labs, lines, record=2, rule="record-version", match="record version is")


def test_record_time(labs, lines):
    resign(lines, 2, lambda r: r.update(time="2025-03-03 09:14:00"))
    expect_failure(labs, lines, record=2, rule="record-time", match="is not YYYY-MM-DD")


def test_body_schema(labs, lines):
    i = index_of(lines, "signals_imported")
    resign(lines, i, lambda r: r["body"].pop("source_sha256"))
    expect_failure(labs, lines, record=i, rule="body-schema", match="lacks source_sha256")


def _resign_checkpoint(lines, i, key, **changes):
    def change(record):
        size = record["seq"]
        fields = dict(origin=record["log"], size=size, root=leaf_hash(b"x"), now=T0)
        fields.update(changes)
        record["body"]["checkpoint"] = sign_checkpoint(make_checkpoint(**fields), key)

    resign(lines, i, change)


def test_checkpoint_record_with_wrong_root(labs, lines):
    i = index_of(lines, "checkpoint", 1)
    _resign_checkpoint(lines, i, labs[0].key)
    expect_failure(labs, lines, record=i, rule="checkpoint-root", match="is not the tree root")


def test_checkpoint_record_with_wrong_size(labs, lines):
    i = index_of(lines, "checkpoint", 1)
    report = verify(labs, lines[:i])
    _resign_checkpoint(lines, i, labs[0].key, size=i - 1, root=report.roots[i - 1])
    expect_failure(
        labs, lines, record=i, rule="checkpoint-size", match=f"covers {i - 1} records, expected"
    )


def test_checkpoint_record_from_another_log(labs, lines):
    i = index_of(lines, "checkpoint", 1)
    _resign_checkpoint(lines, i, labs[0].key, origin=labs[1].log_id)
    expect_failure(labs, lines, record=i, rule="checkpoint-origin", match="is for log")


def test_checkpoint_record_signed_by_another_key(labs, lines):
    i = index_of(lines, "checkpoint", 1)
    _resign_checkpoint(lines, i, INTRUDER)
    expect_failure(labs, lines, record=i, rule="checkpoint-signature", match="no signature by")


def _round(lines, nth=0):
    i = index_of(lines, "round_completed", nth)
    return i, parse_canonical(lines[i])["body"]


def test_peer_receipt_signed_by_the_wrong_peer_key(labs, lines):
    i, body = _round(lines, 1)
    forged = sign_receipt({k: v for k, v in body["peer_receipt"].items() if k != "sig"}, INTRUDER)
    resign(lines, i, lambda r: r["body"].update(peer_receipt=forged))
    expect_failure(
        labs,
        lines,
        record=i,
        rule="receipt-signature",
        match="peer receipt from 'lab-b': receipt signature does not verify",
    )


def test_peer_receipt_without_a_peer_key_is_reported_unchecked(labs, lines):
    i, body = _round(lines, 3)
    forged = sign_receipt({k: v for k, v in body["peer_receipt"].items() if k != "sig"}, INTRUDER)
    resign(lines, i, lambda r: r["body"].update(peer_receipt=forged))
    report = verify(labs, lines[: i + 1], peer_keys={})
    assert report.peer_receipts_unchecked == {"lab-b": 4} and report.peer_receipts_verified == 0
    assert "NOT signature-checked (no key for lab-b): 4" in "\n".join(report.summary_lines())


def test_own_receipt_signed_by_another_key(labs, lines):
    i, body = _round(lines)
    forged = sign_receipt({k: v for k, v in body["own_receipt"].items() if k != "sig"}, INTRUDER)
    resign(lines, i, lambda r: r["body"].update(own_receipt=forged))
    expect_failure(labs, lines, record=i, rule="receipt-signature", match=": own receipt")


def test_own_receipt_naming_a_root_this_log_never_had(labs, lines):
    i, body = _round(lines, 2)
    unsigned = {k: v for k, v in body["own_receipt"].items() if k != "sig"}
    unsigned["log"] = {**unsigned["log"], "root": leaf_hash(b"elsewhere").hex()}
    resign(lines, i, lambda r: r["body"].update(own_receipt=sign_receipt(unsigned, labs[0].key)))
    expect_failure(
        labs, lines, record=i, rule="own-receipt-head", match="but this log's root there is"
    )


def test_record_disagreeing_with_its_receipts(labs, lines):
    i, body = _round(lines, 3)
    changed = {kind: n + 1 for kind, n in body["intersection_sizes"].items()}
    resign(lines, i, lambda r: r["body"].update(intersection_sizes=changed))
    expect_failure(
        labs, lines, record=i, rule="receipt-body", match="intersection_sizes is .* in the record"
    )


def test_round_receipt_for_another_round(labs, lines):
    i, body = _round(lines, 0)
    _, other = _round(lines, 1)
    resign(lines, i, lambda r: r["body"].update(peer_receipt=other["peer_receipt"]))
    expect_failure(
        labs, lines, record=i, rule="receipt-round", match=": peer receipt .* is for round"
    )


def test_report_is_json_serialisable(labs, lines):
    report = verify(labs, lines)
    assert json.loads(encode_canonical(report.to_dict()))["records"] == len(lines)
