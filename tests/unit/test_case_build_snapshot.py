"""A case build reads from a snapshot (node/data/case_build.py): a round stored or a
decision taken while it reads neither waits for the reads nor is lost or overwritten.

Each test holds the build inside its read phase (a pause around ``_plan``, the one
function that reads) while the store is used from another thread, on a real SQLite file."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from node.data import case_build
from node.data.cases import list_cases
from node.state.cases_store import ensure_schema
from tests.unit.test_cases import NOW, build, fp, save_round, store  # noqa: F401

WAIT = 10.0  # generous: these are orderings, not timings


class PausedReads:
    """Holds each of the first ``times`` snapshot reads of a build until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, times: int = 1):
        self.reading, self.go = threading.Event(), threading.Event()
        self.left = times
        real = case_build._plan

        def paused(*args):  # type: ignore[no-untyped-def]
            plan = real(*args)
            if self.left > 0:
                self.left -= 1
                self.reading.set()
                assert self.go.wait(WAIT)
            return plan

        monkeypatch.setattr(case_build, "_plan", paused)


def in_thread(fn) -> tuple[threading.Thread, dict]:  # type: ignore[no-untyped-def]
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_round_stored_during_the_reads_neither_waits_nor_is_lost(store, monkeypatch):  # noqa: F811
    save_round(store, "r1", "lab-b", [("email", fp("email", "u3@example.com"))])
    pause = PausedReads(monkeypatch)
    builder, built = in_thread(lambda: build(store))
    assert pause.reading.wait(WAIT)
    # The build is between its reads and its writes: a round stores at once.
    writer, _ = in_thread(
        lambda: save_round(store, "r2", "lab-c", [("email", fp("email", "u4@example.com"))])
    )
    writer.join(WAIT)
    assert not writer.is_alive(), "a round waited for a case build's reads"
    pause.go.set()
    builder.join(WAIT)
    assert "error" not in built, built
    # Its snapshot missed r2, so the build read again: r2's peer is in the case.
    (case,) = list_cases(store).cases
    assert case.peers == ["lab-b", "lab-c"] and case.pairs == 2
    ensure_schema(store)
    with store.reading() as db:
        top = db.execute("SELECT MAX(id) FROM matches").fetchone()[0]
        assert case_build.meta(db, "last_match_id") == top


def test_a_decision_taken_during_the_reads_is_not_overwritten(store, monkeypatch):  # noqa: F811
    save_round(store, "r1", "lab-b", [("email", fp("email", "u3@example.com"))])
    build(store)
    save_round(
        store, "r2", "lab-b", [("email", fp("email", "u3@example.com"))], NOW + timedelta(days=1)
    )
    pause = PausedReads(monkeypatch)
    builder, built = in_thread(lambda: build(store, NOW + timedelta(days=1)))
    assert pause.reading.wait(WAIT)
    with store.transaction() as db:  # an analyst's decision, between the reads and the writes
        db.execute("UPDATE cases SET state = 'confirmed', decided_pairs = pairs")
    pause.go.set()
    builder.join(WAIT)
    assert "error" not in built, built
    assert built["value"].reopened == []  # the same pair again: the decision stands
    (case,) = list_cases(store).cases
    assert case.state == "confirmed"


def test_a_store_that_keeps_changing_is_built_inside_the_transaction(store, monkeypatch):  # noqa: F811
    """Every snapshot goes stale (a round lands during each read): after the attempts the
    build reads inside its write transaction, and ends with every round in."""
    save_round(store, "r0", "lab-b", [("email", fp("email", "u3@example.com"))])
    real = case_build._plan
    landed = []

    def racing(*args):  # type: ignore[no-untyped-def]
        plan = real(*args)
        if len(landed) < case_build._ATTEMPTS:  # only while on a snapshot, not in the txn
            rid = f"r{len(landed) + 1}"
            save_round(
                store, rid, "lab-c", [("email", fp("email", f"u{len(landed) + 4}@example.com"))]
            )
            landed.append(rid)
        return plan

    monkeypatch.setattr(case_build, "_plan", racing)
    build(store)
    assert len(landed) == case_build._ATTEMPTS
    (case,) = list_cases(store).cases
    assert case.pairs == 1 + case_build._ATTEMPTS  # u3 with lab-b, one new pair per race
