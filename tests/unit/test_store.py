"""The SQLite store, run against an in-memory database and a real file database."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from node.state.store import SCHEMA_VERSION, ImportResult, MatchRow, RoundRow, SignalInput, Store
from protocol.errors import ConfigError, InputError

NOW = "2025-03-01T10:00:00Z"
LATER = "2025-03-02T10:00:00Z"


def fp(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def signal(kind: str, value: str, normalized: str | None = None, source: str = "f.txt:1"):
    normalized = normalized if normalized is not None else value.lower()
    return SignalInput(kind, value, normalized, fp(f"{kind}|{normalized}"), source)


def a_round(round_id: str = "r1", **changes) -> RoundRow:
    row = RoundRow(
        round_id=round_id,
        peer="lab-b",
        role="initiator",
        mode="full",
        kinds=["email", "phone"],
        own_sizes={"email": 3, "phone": 1},
        peer_sizes={"email": 5, "phone": 2},
        intersection_sizes={"email": 1, "phone": 0},
        status="completed",
        reason="",
        started_at="2025-03-01T12:00:00Z",
        finished_at="2025-03-01T12:00:05Z",
        policy_hash="ab" * 32,
        transcript_hash="cd" * 32,
    )
    return replace(row, **changes)


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path) -> Iterator[Store]:
    path = ":memory:" if request.param == "memory" else tmp_path / "node.sqlite"
    with Store(path) as opened:
        yield opened


class TestSignals:
    def test_import_counts_new_and_held(self, store):
        first = store.add_signals(
            [signal("email", "A@x.com", "a@x.com"), signal("email", "b@x.com")], now=NOW
        )
        assert first == {
            "email": ImportResult("email", added=2, already_held=0, total=2, received=2)
        }
        second = store.add_signals(
            [signal("email", "b@x.com"), signal("email", "c@x.com"), signal("phone", "+1")],
            now=LATER,
        )
        assert second["email"] == ImportResult("email", 1, 1, 3, received=2)
        assert second["phone"] == ImportResult("phone", 1, 0, 1, received=1)
        assert store.signal_counts() == {"email": 3, "phone": 1}

    def test_reimport_is_idempotent(self, store):
        batch = [signal("email", f"u{i}@x.com") for i in range(50)]
        store.add_signals(batch, now=NOW)
        again = store.add_signals(batch, now=LATER)
        assert again["email"] == ImportResult("email", 0, 50, 50, received=50)
        assert store.signal_counts() == {"email": 50}
        fps = [s.fingerprint for s in batch]
        assert all(len(values) == 1 for values in store.values_for("email", fps).values())

    def test_duplicates_within_one_batch_are_held_once(self, store):
        result = store.add_signals(
            [signal("email", "a@x.com"), signal("email", "a@x.com"), signal("email", "a@x.com")],
            now=NOW,
        )
        assert result["email"] == ImportResult("email", 1, 0, 1, received=3)
        assert store.fingerprints("email") == [fp("email|a@x.com")]

    def test_new_spelling_of_a_held_fingerprint_is_kept(self, store):
        store.add_signals([signal("email", "Alice@X.com", "alice@x.com", "a.csv:2")], now=NOW)
        store.add_signals([signal("email", "ALICE@x.com", "alice@x.com", "b.csv:9")], now=LATER)
        store.add_signals([signal("email", "Alice@X.com", "alice@x.com", "c.csv:1")], now=LATER)
        held = fp("email|alice@x.com")
        assert store.values_for("email", [held]) == {held: ["Alice@X.com", "ALICE@x.com"]}
        assert store.signal_counts() == {"email": 1}

    def test_kinds_are_kept_apart(self, store):
        store.add_signals([signal("email", "x"), signal("device_id", "x")], now=NOW)
        assert store.fingerprints("email") == [fp("email|x")]
        assert store.fingerprints("device_id") == [fp("device_id|x")]
        assert store.values_for("email", [fp("device_id|x")]) == {}

    def test_fingerprints_are_distinct_and_sorted(self, store):
        batch = [signal("ip", f"10.0.0.{i}") for i in range(40)]
        store.add_signals(batch, now=NOW)
        store.add_signals(batch[:10], now=LATER)
        held = store.fingerprints("ip")
        assert held == sorted({s.fingerprint for s in batch})
        assert store.fingerprints("phone") == []

    def test_values_for_many_fingerprints_crosses_chunks(self, store):
        batch = [signal("account_id", f"acct-{i}", f"acct-{i}") for i in range(2500)]
        store.add_signals(batch, now=NOW)
        wanted = [s.fingerprint for s in batch[::2]] + [fp("not held")] * 3
        found = store.values_for("account_id", iter(wanted))
        assert len(found) == 1250
        assert found[batch[1000].fingerprint] == ["acct-1000"]
        assert fp("not held") not in found

    def test_a_bad_signal_leaves_nothing(self, store):
        batch = [signal("email", f"u{i}@x.com") for i in range(10)]
        batch.insert(5, SignalInput("email", "v", "v", b"short", "f.txt:6"))
        with pytest.raises(InputError) as raised:
            store.add_signals(batch, now=NOW)
        assert raised.value.where == "f.txt:6"
        assert store.signal_counts() == {}

    def test_a_failure_midway_through_the_transaction_rolls_everything_back(self, store):
        store.add_signals([signal("email", "kept@x.com")], now=NOW)
        batch = [signal("email", f"u{i}@x.com") for i in range(10)]
        # Rows go in fingerprint order: make the last one unstorable (a lone surrogate
        # cannot be encoded), so SQLite has already written the others when it fails.
        last = max(range(10), key=lambda i: batch[i].fingerprint)
        batch[last] = replace(batch[last], source="f.txt:\udc80")
        with pytest.raises(UnicodeEncodeError):
            store.add_signals(batch, now=LATER)
        assert store.signal_counts() == {"email": 1}
        assert store.values_for("email", [s.fingerprint for s in batch]) == {}
        # and the store still works afterwards
        assert store.add_signals([signal("email", "u1@x.com")], now=LATER)["email"].added == 1

    def test_timestamps_must_carry_a_timezone(self, store):
        with pytest.raises(InputError, match="timezone"):
            store.add_signals([signal("email", "a")], now="2025-03-01T10:00:00")
        assert store.signal_counts() == {}

    def test_empty_batch_changes_nothing(self, store):
        assert store.add_signals([], now=NOW) == {}
        assert store.signal_counts() == {}


class TestRounds:
    def test_round_trip(self, store):
        row = a_round()
        store.save_round(row, [("email", fp("m1"))])
        assert store.get_round("r1") == row
        assert store.get_round("missing") is None

    def test_rounds_newest_first_and_by_peer(self, store):
        store.save_round(a_round("old", started_at="2025-03-01T09:00:00Z"), [])
        # 12:30+02:00 is 10:30Z: newer than "old", older than "new" despite sorting later as text
        store.save_round(a_round("mid", started_at="2025-03-01T12:30:00+02:00", peer="c"), [])
        store.save_round(a_round("new", started_at="2025-03-01T11:00:00Z"), [])
        assert [r.round_id for r in store.rounds()] == ["new", "mid", "old"]
        assert [r.round_id for r in store.rounds(peer="lab-b")] == ["new", "old"]
        assert store.rounds(peer="nobody") == []

    @pytest.mark.parametrize("status", ["aborted", "refused"])
    def test_matches_refused_for_unfinished_rounds(self, store, status):
        row = a_round(status=status, reason="peer went away")
        with pytest.raises(InputError, match="only a completed round") as raised:
            store.save_round(row, [("email", fp("m1"))])
        assert raised.value.rule == "atomic-round"
        assert store.get_round("r1") is None
        store.save_round(row, [])
        assert store.get_round("r1").status == status
        assert store.matches() == []

    def test_duplicate_round_is_refused_and_keeps_the_first(self, store):
        store.save_round(a_round(), [("email", fp("m1"))])
        with pytest.raises(InputError, match="already stored"):
            store.save_round(a_round(peer="other"), [("email", fp("m2"))])
        assert store.get_round("r1").peer == "lab-b"
        assert [m.fingerprint for m in store.matches()] == [fp("m1")]

    def test_match_of_a_kind_outside_the_round_is_refused(self, store):
        with pytest.raises(InputError, match="not in the round"):
            store.save_round(a_round(), [("email", fp("m1")), ("ip", fp("m2"))])
        assert store.rounds() == []

    def test_unknown_status_is_refused(self, store):
        with pytest.raises(InputError, match="unknown status"):
            store.save_round(a_round(status="done"), [])

    def test_matches_carry_the_values_they_stand_for(self, store):
        held = signal("email", "Alice@X.com", "alice@x.com")
        store.add_signals([held], now=NOW)
        store.add_signals([replace(held, value="alice@X.COM")], now=NOW)
        store.save_round(a_round(), [("email", held.fingerprint), ("phone", fp("gone"))])
        store.save_round(
            a_round("r2", peer="lab-c", started_at=LATER, finished_at=LATER),
            [("email", held.fingerprint), ("email", held.fingerprint)],
        )
        everything = store.matches()
        assert [(m.round_id, m.kind) for m in everything] == [
            ("r2", "email"),
            ("r1", "email"),
            ("r1", "phone"),
        ]
        assert everything[0] == MatchRow(
            round_id="r2",
            peer="lab-c",
            kind="email",
            value="Alice@X.com",
            values=["Alice@X.com", "alice@X.COM"],
            fingerprint=held.fingerprint,
            matched_at=LATER,
            normalized="alice@x.com",
        )
        not_held = everything[2]
        assert (not_held.value, not_held.values, not_held.normalized) == ("", [], "")
        assert [m.round_id for m in store.matches(peer="lab-b")] == ["r1", "r1"]
        assert [m.kind for m in store.matches(round_id="r1", kind="phone")] == ["phone"]
        assert store.matches(peer="lab-c", kind="phone") == []

    def test_purge_matches_before_keeps_rounds(self, store):
        store.save_round(a_round("r1", finished_at="2025-01-01T00:00:00Z"), [("email", fp("a"))])
        store.save_round(
            a_round("r2", finished_at="2025-02-01T00:00:00Z"),
            [("email", fp("b")), ("phone", fp("c"))],
        )
        # 2025-02-01T01:00+02:00 is 2025-01-31T23:00Z: before r2's matches
        assert store.purge_matches_before("2025-02-01T01:00:00+02:00") == 1
        assert [m.round_id for m in store.matches()] == ["r2", "r2"]
        assert store.purge_matches_before("2025-02-01T00:00:00.000001Z") == 2
        assert store.matches() == []
        assert {r.round_id for r in store.rounds()} == {"r1", "r2"}
        with pytest.raises(InputError, match="timezone"):
            store.purge_matches_before("2025-02-01")

    def test_match_ids_are_not_reused_after_the_newest_are_purged(self, store):
        store.save_round(a_round("r1", finished_at="2025-01-01T00:00:00Z"), [("email", fp("a"))])
        store.save_round(a_round("r2", finished_at="2025-02-01T00:00:00Z"), [("email", fp("b"))])
        ids = lambda: [r[0] for r in store._db.execute("SELECT id FROM matches ORDER BY id")]  # noqa: E731
        assert ids() == [1, 2]
        store.purge_matches_before("2025-03-01T00:00:00Z")  # the newest match goes too
        store.save_round(a_round("r3", finished_at="2025-04-01T00:00:00Z"), [("email", fp("c"))])
        assert ids() == [3]


def test_a_schema_1_store_is_upgraded_in_place_keeping_match_ids(tmp_path):
    from node.state import store as store_module

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # a file of the schema before AUTOINCREMENT on matches
        for statement in store_module._SCHEMA:
            db.execute(statement.replace(" AUTOINCREMENT", ""))
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO rounds VALUES ('r1', 'lab-b', 'initiator', 'full', '[\"email\"]',"
            " '{}', '{}', '{}', 'completed', '', '2025-01-01T00:00:00Z', 0,"
            " '2025-01-01T00:00:05Z', '', '')"
        )
        db.executemany(
            "INSERT INTO matches (id, round_id, kind, fingerprint, matched_at, matched_us)"
            " VALUES (?, 'r1', 'email', ?, '2025-01-01T00:00:05Z', 0)",
            [(7, fp("a")), (9, fp("b"))],
        )
    with Store(path) as upgraded:
        assert upgraded.schema_version == SCHEMA_VERSION == 3
        db = upgraded._db
        sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'matches'").fetchone()[0]
        assert "AUTOINCREMENT" in sql
        rows = db.execute("SELECT id, fingerprint FROM matches ORDER BY id").fetchall()
        assert rows == [(7, fp("a")), (9, fp("b"))]
        assert [m.round_id for m in upgraded.matches()] == ["r1", "r1"]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        upgraded.purge_matches_before("2026-01-01T00:00:00Z")
        upgraded.save_round(a_round("r2"), [("email", fp("c"))])
        assert db.execute("SELECT id FROM matches").fetchall() == [(10,)]  # 9 is not reused
    with Store(path) as reopened:  # a second open changes nothing
        assert reopened.schema_version == SCHEMA_VERSION
        assert len(reopened.matches()) == 1


class TestConcurrency:
    def test_threads_importing_and_reading_do_not_corrupt(self, store):
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for batch in range(5):
                    store.add_signals(
                        [signal("email", f"w{worker}-b{batch}-{i}@x.com") for i in range(200)]
                        + [signal("email", "shared@x.com")],
                        now=NOW,
                    )
                    store.fingerprints("email")
                    store.signal_counts()
                store.save_round(a_round(f"round-{worker}"), [("email", fp("email|shared@x.com"))])
            except BaseException as e:  # noqa: BLE001 - reported to the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert store.signal_counts() == {"email": 6 * 5 * 200 + 1}
        assert len(store.rounds()) == 6
        assert len(store.matches(kind="email")) == 6
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class TestLifecycle:
    def test_schema_version_and_pragmas(self, store):
        assert store.schema_version == SCHEMA_VERSION == 3
        assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1

    def test_closed_store_refuses_work(self, store):
        store.close()
        store.close()  # closing twice is harmless
        with pytest.raises(ConfigError, match="closed"):
            store.signal_counts()


def test_file_store_uses_wal_and_persists(tmp_path):
    path = tmp_path / "node.sqlite"
    with Store(path) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.add_signals([signal("email", "a@x.com")], now=NOW)
        store.save_round(a_round(), [("email", fp("email|a@x.com"))])
    with Store(str(path)) as reopened:
        assert reopened.signal_counts() == {"email": 1}
        assert reopened.matches()[0].values == ["a@x.com"]


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "node.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="schema version 99"):
        Store(path)


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(ConfigError, match="not a crossmatch store"):
        Store(path)


def test_non_database_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(ConfigError, match="cannot open store"):
        Store(path)


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="directory does not exist"):
        Store(tmp_path / "absent" / "node.sqlite")


def test_two_stores_on_one_file_see_each_other(tmp_path: Path):
    path = tmp_path / "node.sqlite"
    with Store(path) as daemon, Store(path) as cli:
        cli.add_signals([signal("phone", "+12015550123")], now=NOW)
        assert daemon.signal_counts() == {"phone": 1}


def test_refused_round_keeps_odd_kinds_a_peer_asked_for():
    with Store(":memory:") as store:
        row = a_round(kinds=["Email", "no such kind"], status="refused", reason="policy")
        store.save_round(row, [])
        assert store.get_round("r1").kinds == ["Email", "no such kind"]
