"""A round that started ends exactly once, in the store and the audit log, even when the
process running it dies: start rows, leases, and recovery at open, on real files and
real processes (a killed child holding a lease)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from node.net.recorder import RoundRecorder
from node.state.auditlog import AuditLog, verify_log
from node.state.leases import ProcessLease, lease_held, sweep_leases
from node.state.recovery import recover_rounds
from node.state.store import SCHEMA_VERSION, StartedRound, Store
from protocol.audit.records import make_log_id
from protocol.errors import ProtocolError
from protocol.rules import Rule
from tests.audit_simulator import Lab, fixed_key, memory_lab, round_id, run_round
from tests.unit.test_recorder import FACTS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RID = round_id(1)


def started(rid: str = RID, owner: str = "", role: str = "initiator") -> StartedRound:
    return StartedRound(
        round_id=rid,
        peer="lab-b",
        role=role,
        mode="reveal",
        kinds=["email"],
        own_sizes={"email": 4},
        peer_sizes={},
        policy_hash="01" * 32,
        started_at="2026-03-01T11:59:00Z",
        owner=owner,
    )


class NodeFiles:
    """What recovery needs of a node: a store, an audit log, a leases directory."""

    def __init__(self, root: Path, name: str = "lab-a"):
        self.root, self.name = root, name
        self.key = fixed_key(name)
        self.log_id = make_log_id(name, self.key.public_key())
        self.leases = root / "run" / "leases"
        self.store = Store(root / "crossmatch.db")
        self.audit = AuditLog.open(root / "audit.log", self.key, log_id=self.log_id, now=NOW)

    def recover(self) -> list[str]:
        return recover_rounds(self.store, self.audit, self.leases, lambda: NOW)

    def outcomes(self, rid: str = RID) -> list[dict]:
        records = [json.loads(line) for line in (self.root / "audit.log").read_text().splitlines()]
        return [
            r
            for r in records
            if r["event"] in ("round_completed", "round_aborted") and r["body"]["round_id"] == rid
        ]

    def close(self) -> None:
        self.audit.close()
        self.store.close()


@pytest.fixture
def node(tmp_path):
    n = NodeFiles(tmp_path)
    yield n
    n.close()


def test_a_dead_round_is_closed_once_with_the_named_rule(node):
    node.store.start_round(started())
    assert node.recover() == [RID]
    [record] = node.outcomes()
    assert record["event"] == "round_aborted"
    assert record["body"]["rule"] == Rule.NODE_RESTARTED == "node-restarted"
    assert record["body"]["stage"] == "interrupted" and record["body"]["role"] == "initiator"
    row = node.store.get_round(RID)
    assert row is not None and row.status == "aborted" and "node-restarted" in row.reason
    assert node.store.started_rounds() == []
    assert node.recover() == []  # nothing left: a second open writes nothing
    assert len(node.outcomes()) == 1
    verify_log(node.root / "audit.log", public_key=node.key.public_key())


def test_recovery_interrupted_after_its_record_does_not_write_a_second(node):
    node.store.start_round(started())
    # The first recovery appended its record, then died before the store transaction.
    body = {"round_id": RID, "role": "initiator", "peer": "lab-b", "stage": "interrupted"}
    node.audit.append_outcome("round_aborted", {**body, "reason": "first try"}, now=NOW)
    assert node.recover() == [RID]
    assert [r["body"]["reason"] for r in node.outcomes()] == ["first try"]
    assert node.store.get_round(RID).status == "aborted"  # type: ignore[union-attr]
    verify_log(node.root / "audit.log", public_key=node.key.public_key())


def test_recovery_interrupted_after_its_row_only_forgets_the_start(node):
    node.store.start_round(started())
    node.recover()
    node.store.start_round(started())  # as if the row's delete had been lost
    assert node.recover() == [RID]
    assert len(node.outcomes()) == 1 and len(node.store.rounds()) == 1


def test_a_round_the_log_completed_keeps_that_outcome_in_the_store(tmp_path):
    """The process logged round_completed and died before storing the round."""
    a = NodeFiles(tmp_path)
    try:
        lab_a = Lab("lab-a", a.key, a.audit)
        run_round(lab_a, memory_lab("lab-b"), round_id=RID)
        a.store.start_round(started())
        assert a.recover() == [RID]
        assert [r["event"] for r in a.outcomes()] == ["round_completed"]
        row = a.store.get_round(RID)
        assert row is not None and row.status == "completed" and a.store.matches() == []
        assert "before storing its matches" in row.reason
    finally:
        a.close()


def test_a_round_of_a_live_process_is_left_alone(node):
    lease = ProcessLease(node.leases)
    try:
        node.store.start_round(started(owner=lease.token))
        assert node.recover() == []
        assert node.outcomes() == [] and len(node.store.started_rounds()) == 1
    finally:
        lease.release()
    assert node.recover() == [RID]


def test_a_killed_process_loses_its_lease(tmp_path):
    leases = tmp_path / "leases"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from node.state.leases import "
            "ProcessLease; print(ProcessLease(Path(sys.argv[1])).token, flush=True); "
            "time.sleep(60)",
            str(leases),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        token = child.stdout.readline().strip()
        assert lease_held(leases, token)
        assert sweep_leases(leases) == 0  # a live lease is never swept
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not lease_held(leases, token)
    assert sweep_leases(leases) == 1 and list(leases.iterdir()) == []
    assert not lease_held(leases, "../../etc") and not lease_held(leases, "")


def test_two_processes_recovering_at_once_write_one_record(tmp_path):
    """Two opens of one node (serve starting as a CLI round starts): one file lock decides."""
    first, second = NodeFiles(tmp_path), NodeFiles(tmp_path)
    try:
        for n in range(8):
            first.store.start_round(started(round_id(100 + n)))
        barrier = threading.Barrier(2)
        closed: list[list[str]] = []

        def recover(node: NodeFiles) -> None:
            barrier.wait()
            closed.append(node.recover())

        threads = [threading.Thread(target=recover, args=(n,)) for n in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in range(8):
            assert len(first.outcomes(round_id(100 + n))) == 1
        assert len(first.store.rounds()) == 8 and first.store.started_rounds() == []
        verify_log(tmp_path / "audit.log", public_key=first.key.public_key())
    finally:
        first.close()
        second.close()


def test_the_recorder_writes_the_start_and_the_outcome_deletes_it(node):
    facts = replace(FACTS, round_id=RID, peer="lab-b")

    def log(event: str, body: Mapping[str, object]) -> None:
        node.audit.append(event, dict(body), now=NOW)

    recorder = RoundRecorder(node.store, log, lambda: NOW, owner="abc")
    recorder.started(facts)
    assert node.store.is_started(RID) and not node.store.is_started(round_id(2))
    [row] = node.store.started_rounds()
    assert (row.owner, row.peer_sizes, row.policy_hash) == ("abc", {"email": 5}, "01" * 32)
    recorder.aborted(facts, ProtocolError("peer silent", rule=Rule.TIMEOUT), stage="exchange")
    assert node.store.started_rounds() == []
    assert node.recover() == [] and len(node.outcomes()) == 1


def test_a_version_2_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "crossmatch.db"
    with Store(path) as store:
        store.start_round(started())
    db = sqlite3.connect(path)  # make it a file of version 2, with a round in it
    db.execute("DROP TABLE round_starts")
    db.execute(
        "INSERT INTO rounds VALUES (?, 'lab-b', 'initiator', 'reveal', '[]', '{}', '{}', '{}',"
        " 'aborted', 'old', '2026-01-01T00:00:00Z', 0, '2026-01-01T00:00:01Z', '', '')",
        (round_id(7),),
    )
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 3
        assert store.get_round(round_id(7)).reason == "old"  # type: ignore[union-attr]
        assert store.started_rounds() == []
        store.start_round(started())
        assert [r.round_id for r in store.started_rounds()] == [RID]
