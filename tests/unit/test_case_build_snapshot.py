"""A case build reads from a snapshot (node/data/case_build.py): a round stored or a
decision taken while it reads neither waits for the reads nor is lost or overwritten.

Each test holds the build inside its read phase (a pause around ``_plan``, the one
function that reads) while the store is used from another thread, on a real SQLite file."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from node.data import case_build
from node.data.cases import cases_stale, list_cases
from node.data.entities import import_entities
from tests.unit.test_cases import KEY, NOW, build, fp, save_round, store  # noqa: F401

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
    assert not builder.is_alive(), "the build did not finish"
    assert "error" not in built, built
    # The snapshot did not hold r2: the build wrote what it read and left r2 pending.
    (case,) = list_cases(store).cases
    assert case.peers == ["lab-b"] and case.pairs == 1
    assert cases_stale(store)
    build(store)  # the next refresh (r2's round_completed wakes the daemon's)
    (case,) = list_cases(store).cases
    assert case.peers == ["lab-b", "lab-c"] and case.pairs == 2
    assert not cases_stale(store)


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
    assert not builder.is_alive(), "the build did not finish"
    assert "error" not in built, built
    assert built["value"].reopened == []  # the same pair again: the decision stands
    (case,) = list_cases(store).cases
    assert case.state == "confirmed"


def test_entities_that_keep_changing_are_built_inside_the_transaction(store, monkeypatch, tmp_path):  # noqa: F811
    """Every snapshot goes stale (an entity import lands during each read, which changes
    the clusters): after the attempts the build reads inside its write transaction, and
    ends with every import in."""
    save_round(store, "r1", "lab-b", [("email", fp("email", "u3@example.com"))])
    real = case_build._plan
    landed: list[str] = []

    def racing(*args):  # type: ignore[no-untyped-def]
        plan = real(*args)
        if len(landed) < case_build._ATTEMPTS:  # only on a snapshot, not in the transaction
            account = f"late-{len(landed)}"
            path = tmp_path / f"{account}.csv"
            path.write_text(f"account,email\n{account},u3@example.com\n")  # joins the actor
            import_entities(store, path, KEY, now="2026-11-29T00:00:00Z")
            landed.append(account)
        return plan

    monkeypatch.setattr(case_build, "_plan", racing)
    report = build(store)
    assert len(landed) == case_build._ATTEMPTS and report.reclustered
    (case,) = list_cases(store).cases
    assert case.entities == 12 + case_build._ATTEMPTS  # the actor's 12 and every late one
    assert not cases_stale(store)


def test_a_snapshot_is_of_the_file_the_store_opened(tmp_path):
    """Never a new empty file where the store was moved away, never another file put in
    its place: either would have a build read one database and write another."""
    from node.state.store import Store  # noqa: PLC0415
    from protocol.errors import ConfigError  # noqa: PLC0415

    path = tmp_path / "node.sqlite"
    with Store(path) as opened:
        with opened.snapshot() as view:
            assert view.execute("SELECT COUNT(*) FROM signals").fetchone() == (0,)
        path.rename(tmp_path / "moved.sqlite")
        with pytest.raises(ConfigError, match="moved or replaced"), opened.snapshot():
            pass
        assert not path.exists()  # nothing created in its place
        path.write_bytes(b"another file")  # another file now has the path
        with pytest.raises(ConfigError, match="moved or replaced"), opened.snapshot():
            pass


def test_prompts_with_a_campaign_imported_after_a_build_join_their_accounts(store, tmp_path):  # noqa: F811
    """A campaign label on prompts links the entities of their accounts (docs/cases.md):
    prompts imported after a build must make the next build cluster again, or the two
    accounts stay two actors until some entity import happens to come."""
    from node.data.prompt_import import import_prompts  # noqa: PLC0415

    save_round(
        store,
        "r1",
        "lab-b",
        [("email", fp("email", "u3@example.com")), ("email", fp("email", "loner@example.com"))],
    )
    build(store)
    assert list_cases(store).total == 2  # the actor and the loner
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "".join(
            f'{{"text": "write me a poem number {n}", "campaign": "camp-1", "account": "{a}"}}\n'
            for n, a in enumerate(["acct-03", "loner"])
        )
    )
    import_prompts(store, path, KEY)
    assert cases_stale(store)
    report = build(store)
    assert report.reclustered
    (case,) = [c for c in list_cases(store).cases if c.state == "new"]
    assert case.entities == 13  # the actor's 12 and the loner, one campaign
    import_prompts(store, path, KEY)  # the same prompts again: no new link, no re-cluster
    assert not cases_stale(store)


def test_a_refresh_failure_of_the_store_is_told_from_a_bug(tmp_path):
    """The refresher's one warning line is for conditions of the store; an error that
    means wrong code (a query naming no such column) keeps its traceback."""
    import sqlite3  # noqa: PLC0415

    from node.state.sqlite import store_condition  # noqa: PLC0415
    from protocol.errors import ConfigError  # noqa: PLC0415

    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as busy:
        other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as wrong:
        other.execute("SELECT nope FROM t")
    holder.close()
    other.close()
    assert store_condition(busy.value) and store_condition(ConfigError("moved"))
    assert not store_condition(wrong.value) and not store_condition(KeyError("x"))
