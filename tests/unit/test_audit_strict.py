"""The strict verifier (issue 11, finding 9): time never goes back, a round id has one
outcome, and the bodies a peer can cause (aborted, refused, summarised) have their shape.

Each tamper test signs a log with the real key through a raw writer that checks
nothing, changing one thing, and expects the rule by name. A log written by
this code version (MemoryLog, which feeds the same verifier) still verifies.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from protocol.audit.merkle import leaf_hash
from protocol.audit.records import (
    GENESIS_EVENT,
    GENESIS_PREV,
    build_record,
    encode_record,
    genesis_body,
    make_log_id,
    sign_record,
)
from protocol.audit.verify import verify_log_bytes
from protocol.errors import VerificationError
from tests.audit_simulator import T0, MemoryLog, fixed_key, memory_lab, populate

KEY = fixed_key("strict")
LOG_ID = make_log_id("lab-s", KEY.public_key())
RID = "ab" * 16


def aborted(**changes: Any) -> dict[str, Any]:
    body = {
        "round_id": RID,
        "role": "responder",
        "peer": "lab-t",
        "stage": "exchange",
        "reason": "stream ended early",
        "rule": "stream-ended",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def raw_log(records: list[tuple[str, dict[str, Any], int]]) -> bytes:
    """Sign (event, body, minutes after T0) records as given: no check, no clamping."""
    lines, prev = [], bytes.fromhex(GENESIS_PREV)
    entries = [(GENESIS_EVENT, genesis_body(LOG_ID, KEY.public_key()), 0), *records]
    for seq, (event, body, minutes) in enumerate(entries):
        record = build_record(
            log_id=LOG_ID,
            seq=seq,
            time=T0 + timedelta(minutes=minutes),
            event=event,
            body=body,
            prev=prev,
        )
        line = encode_record(sign_record(record, KEY))
        lines.append(line)
        prev = leaf_hash(line)
    return b"".join(line + b"\n" for line in lines)


def rule_of(data: bytes) -> str | None:
    with pytest.raises(VerificationError) as err:
        verify_log_bytes(data, public_key=KEY.public_key())
    return err.value.rule


def test_a_well_formed_log_verifies():
    data = raw_log(
        [
            ("round_aborted", aborted(), 1),
            (
                "round_refused",
                {"peer": "", "claimed_lab": "'lab-x'", "reason": "no", "rule": "unknown-peer"},
                2,
            ),
            (
                "refusals_summarised",
                {"counts": {"'lab-x':unknown-peer": 9}, "total": 9, "window_seconds": 60},
                3,
            ),
        ]
    )
    assert verify_log_bytes(data, public_key=KEY.public_key()).size == 4


def test_time_going_back_is_refused():
    data = raw_log(
        [("round_aborted", aborted(), 10), ("round_aborted", aborted(round_id="cd" * 16), 9)]
    )
    assert rule_of(data) == "record-time-order"


def test_a_round_id_with_two_outcomes_is_refused():
    data = raw_log([("round_aborted", aborted(), 1), ("round_aborted", aborted(), 2)])
    assert rule_of(data) == "round-outcome"


@pytest.mark.parametrize(
    "changes",
    [
        {"round_id": "not-a-round-id"},
        {"role": "bystander"},
        {"stage": "Exchange stage!"},
        {"reason": "r" * 5000},
        {"rule": 7},
        {"peer": ["lab-t"]},
    ],
)
def test_aborted_body_shape(changes):
    assert rule_of(raw_log([("round_aborted", aborted(**changes), 1)])) == "body-schema"


@pytest.mark.parametrize(
    "body",
    [
        {"peer": "", "claimed_lab": "x" * 500, "reason": "no", "rule": "unknown-peer"},
        {"peer": "", "claimed_lab": "", "reason": None, "rule": "unknown-peer"},
        {"peer": "", "claimed_lab": "", "reason": "no", "rule": ["unknown-peer"]},
    ],
)
def test_refused_body_shape(body):
    assert rule_of(raw_log([("round_refused", body, 1)])) == "body-schema"


def test_summary_body_shape():
    body = {"counts": {"a": -1}, "total": 1, "window_seconds": 60}
    assert rule_of(raw_log([("refusals_summarised", body, 1)])) == "body-schema"


def test_the_writer_never_goes_back_in_time():
    """A clock stepping back does not make the writer produce a log the verifier refuses."""
    log = MemoryLog(KEY, LOG_ID, T0)
    log.append("round_aborted", aborted(), now=T0 + timedelta(minutes=10))
    log.append("round_aborted", aborted(round_id="cd" * 16), now=T0 + timedelta(minutes=5))
    assert verify_log_bytes(log.data(), public_key=KEY.public_key()).size == 3


def test_logs_of_this_version_still_verify():
    a, b = memory_lab("lab-a"), memory_lab("lab-b")
    populate(a, b, rounds=4)
    for lab in (a, b):
        verify_log_bytes(lab.log.data(), public_key=lab.key.public_key())
