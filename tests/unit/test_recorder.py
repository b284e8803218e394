"""RoundRecorder writes each outcome as one audit body and one row, from the same facts,
on a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from node.net.recorder import Completion, RoundFacts, RoundRecorder
from node.state.store import Store
from protocol.errors import PolicyError, ProtocolError
from protocol.rules import Rule

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FACTS = RoundFacts(
    round_id="a" * 32,
    role="responder",
    peer="lab-a",
    mode="reveal",
    kinds=("email",),
    own_sizes={"email": 4},
    peer_sizes={"email": 5},
    policy_hash=b"\x01" * 32,
    started_at="2026-03-01T11:59:00Z",
)


@pytest.fixture
def written(tmp_path):
    log: list[tuple[str, dict]] = []
    with Store(tmp_path / "store.db") as store:
        yield RoundRecorder(store, lambda e, b: log.append((e, dict(b))), lambda: NOW), store, log


def test_completed(written):
    recorder, store, log = written
    recorder.completed(
        FACTS,
        Completion(
            intersection_sizes={"email": 1},
            transcript_hash=b"\x02" * 32,
            own_commitment=b"\x03" * 32,
            peer_commitment=b"\x04" * 32,
            own_receipt={"r": 1},
            peer_receipt={"r": 2},
            extra={"suite": "openmined-p256-v1"},
        ),
        [("email", b"\x05" * 32)],
    )
    [(event, body)] = log
    assert event == "round_completed" and body["suite"] == "openmined-p256-v1"
    assert (body["peer"], body["own_sizes"], body["peer_sizes"]) == (
        "lab-a",
        {"email": 4},
        {"email": 5},
    )
    assert body["transcript_hash"] == "02" * 32 and body["peer_commitment"] == "04" * 32
    row = store.get_round("a" * 32)
    assert row is not None and row.status == "completed"
    assert row.intersection_sizes == {"email": 1} and row.transcript_hash == "02" * 32


def test_aborted_names_the_rule_in_body_and_row(written):
    recorder, store, log = written
    recorder.aborted(FACTS, ProtocolError("peer idle", rule=Rule.TIMEOUT), stage="open")
    assert log == [
        (
            "round_aborted",
            {
                "round_id": "a" * 32,
                "role": "responder",
                "peer": "lab-a",
                "stage": "open",
                "reason": "peer idle",
                "rule": "timeout",
            },
        )
    ]
    row = store.get_round("a" * 32)
    assert row is not None and row.status == "aborted" and row.intersection_sizes == {}
    assert row.reason == "peer idle [rule: timeout]" and row.transcript_hash == ""


def test_refused_is_stored_only_with_facts(written):
    recorder, store, log = written
    error = PolicyError("no", rule=Rule.MIN_INTERVAL)
    recorder.refused(error, peer="", claimed_lab="lab-x", facts=None)
    recorder.refused(error, peer="lab-a", claimed_lab="lab-a", facts=FACTS)
    assert [b["rule"] for _, b in log] == ["min-interval", "min-interval"]
    assert log[0][1] == {"peer": "", "claimed_lab": "lab-x", "reason": "no", "rule": "min-interval"}
    row = store.get_round("a" * 32)
    assert row is not None and row.status == "refused"
