"""The initiator writes its round ahead of Commit (node/net/early_store.py, ADR 0015), on a
real SQLite file: nothing is visible before the commit, an abort or a crash leaves nothing,
and a peer that withholds Commit holds the store's writers for the hold at most."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from node.net.early_store import HOLD_SECONDS, EarlyStore
from node.net.recorder import Completion, RoundFacts, RoundRecorder
from node.state.store import Store
from protocol.errors import ProtocolError
from protocol.rules import Rule
from tests.store_rows import save_reveal_round
from tests.unit.test_recorder import FACTS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MATCHES = [("email", bytes([i]) * 32) for i in range(1, 40)]


def facts(rid: str = "a" * 32) -> RoundFacts:
    """test_recorder's round, on the initiator's side."""
    return replace(FACTS, round_id=rid, role="initiator", peer="lab-b")


COMPLETION = Completion(
    intersection_sizes={"email": len(MATCHES)},
    transcript_hash=b"\x02" * 32,
    own_commitment=b"\x03" * 32,
    peer_commitment=b"\x04" * 32,
    own_receipt={"r": 1},
    peer_receipt={"r": 2},
)


@pytest.fixture
def node(tmp_path):
    log: list[tuple[str, dict]] = []
    with Store(tmp_path / "store.db") as store:
        yield RoundRecorder(store, lambda e, b: log.append((e, dict(b))), lambda: NOW), store, log


def other_round(store: Store, rid: str, matches=None) -> None:
    save_reveal_round(
        store, rid, "lab-c", [("email", b"\x09" * 32)] if matches is None else matches,
        stamp="2026-03-01T12:00:00Z",
    )  # fmt: skip


def other_reader(path) -> int:
    """Matches another connection sees (a reader of the store, e.g. the UI)."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM matches").fetchone()[0]
    finally:
        db.close()


def test_staged_rows_appear_only_with_the_commit(node, tmp_path):
    recorder, store, log = node
    early = EarlyStore(recorder)
    early.stage(facts(), COMPLETION, MATCHES)
    assert other_reader(tmp_path / "store.db") == 0 and store.get_round("a" * 32) is None
    recorder.completed(facts(), COMPLETION, MATCHES, early.take())
    assert [e for e, _ in log] == ["round_completed"]
    assert other_reader(tmp_path / "store.db") == len(MATCHES)
    assert {m.fingerprint for m in store.matches(round_id="a" * 32)} == {f for _, f in MATCHES}


def test_an_abort_after_staging_stores_the_abort_alone(node, tmp_path):
    recorder, store, log = node
    early = EarlyStore(recorder)
    early.stage(facts(), COMPLETION, MATCHES)
    early.drop()  # what the session does first on an abort: the staged rows hold the lock
    recorder.aborted(facts(), ProtocolError("peer aborted", rule=Rule.PEER_ABORT), stage="receipt")
    row = store.get_round("a" * 32)
    assert row is not None and row.status == "aborted"
    assert other_reader(tmp_path / "store.db") == 0
    early.stage(facts(), COMPLETION, MATCHES)  # settled: nothing is staged again
    assert early.take() is None


def test_other_writers_wait_for_the_staged_round_then_go_on(node, tmp_path):
    recorder, store, _ = node
    early = EarlyStore(recorder)
    early.stage(facts(), COMPLETION, MATCHES)
    done = threading.Event()

    def write_another_round() -> None:
        with Store(tmp_path / "store.db") as other:  # another process's connection
            other_round(other, "b" * 32)
        done.set()

    writer = threading.Thread(target=write_another_round)
    writer.start()
    assert not done.wait(0.5)  # the staged transaction holds the write lock
    recorder.completed(facts(), COMPLETION, MATCHES, early.take())
    writer.join(10)
    assert done.is_set() and other_reader(tmp_path / "store.db") == len(MATCHES) + 1


def test_a_withheld_commit_holds_the_writers_for_the_hold_at_most(node, tmp_path):
    recorder, store, log = node
    early = EarlyStore(recorder, hold=0.3)
    early.stage(facts(), COMPLETION, MATCHES)
    with Store(tmp_path / "store.db") as other:  # waits for the hold, not for Commit
        other_round(other, "b" * 32)
    # Commit comes at last: the rolled-back rows are written as they would have been.
    staged = early.take()
    assert staged is not None and not staged.pending
    recorder.completed(facts(), COMPLETION, MATCHES, staged)
    assert other_reader(tmp_path / "store.db") == len(MATCHES) + 1
    assert store.get_round("a" * 32).status == "completed"  # type: ignore[union-attr]
    assert HOLD_SECONDS <= 10.0 / 2  # under the store's busy timeout, with room


def test_a_staging_that_fails_leaves_the_round_to_commit(node):
    recorder, store, log = node
    other_round(store, "a" * 32, [])  # the id is taken: staging raises, and is skipped
    early = EarlyStore(recorder)
    early.stage(facts(), COMPLETION, MATCHES)
    assert early.take() is None


def test_a_process_that_dies_while_staged_leaves_nothing(tmp_path):
    path = tmp_path / "store.db"
    Store(path).close()
    code = f"""
import os, sys
sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parents[2])!r})
from node.state.store import Store
from tests.unit.test_early_store import facts, COMPLETION, MATCHES, NOW
from node.net.recorder import RoundRecorder
store = Store({str(path)!r})
recorder = RoundRecorder(store, lambda e, b: None, lambda: NOW)
recorder.stage_completed(facts(), COMPLETION, MATCHES, wait=1.0)
print("staged", flush=True)
os._exit(9)  # no commit, no rollback, no close: as a kill would
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 9 and "staged" in out.stdout, out.stderr
    with Store(path) as store:
        assert store.get_round("a" * 32) is None and other_reader(path) == 0
        t0 = time.monotonic()
        other_round(store, "c" * 32)  # the lock went with it
        assert time.monotonic() - t0 < 5


def test_a_log_that_cannot_be_written_rolls_the_staged_rows_back(tmp_path):
    def full_disk(event, body):
        raise OSError(28, "No space left on device")

    with Store(tmp_path / "store.db") as store:
        recorder = RoundRecorder(store, full_disk, lambda: NOW)
        early = EarlyStore(recorder)
        early.stage(facts(), COMPLETION, MATCHES)
        with pytest.raises(OSError):
            recorder.completed(facts(), COMPLETION, MATCHES, early.take())
        t0 = time.monotonic()
        with Store(tmp_path / "store.db") as other:  # the write lock went with the rollback
            other_round(other, "b" * 32)
        assert time.monotonic() - t0 < 2 and store.get_round("a" * 32) is None


def test_staging_waits_for_no_other_writer(node, tmp_path):
    recorder, store, _ = node
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer (another round's staged rows, say)
    try:
        early = EarlyStore(recorder)
        t0 = time.monotonic()
        early.stage(facts(), COMPLETION, MATCHES)
        assert early.take() is None and time.monotonic() - t0 < 2  # gave up, left to Commit
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    recorder.completed(facts(), COMPLETION, MATCHES, None)
    assert other_reader(tmp_path / "store.db") == len(MATCHES)
