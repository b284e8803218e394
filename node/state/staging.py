"""Streamed imports: rows are staged in TEMP tables, then moved into the store in one go.

An import reads its file once, validating every line and staging the good ones in
chunks (``executemany`` of a few thousand rows) into TEMP tables, which live in
SQLite's temporary database, outside the store file: memory stays bounded by
SQLite's page cache whatever the file's size, and a file with a bad line leaves
the store untouched (the staged rows are dropped). A clean file is then moved
into the real tables by a few set-based statements in ONE transaction, in
(kind, fingerprint) order: new signals are appended to the B-tree nearly in
order, which is about twice as fast at a million rows as random inserts.

Two SQLite behaviours decide the speed at a million rows (docs/adr/0014-import-staging.md):

- Staged chunks go in ONE explicit transaction on the temporary database. In
  autocommit, every chunk's commit walks every dirty page of the temporary cache
  (``sqlite3PcacheClearWritable``/``sqlite3PcacheTruncate``: a temporary file keeps
  its dirty pages cached), which is quadratic once that cache is large.
- Both caches are raised for the import only (``IMPORT_CACHE_KIB``), then put
  back: the temporary cache holds the staged rows without spilling them, and the
  main cache also sizes the sorter's in-memory runs (SQLite's sorter reads the
  main database's ``cache_size``), so the big sorts merge in one pass instead of
  writing the staged rows out again at every level of a merge of 2 MiB runs.

Plain signal imports and entity imports share this; entities add their own
staged rows (``stage_entities``, ``stage_links``), moved by
``node.state.cases_store.store_staged_entities``.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from node.state.signals import ImportResult, SignalInput, check_signal, count_signals
from node.state.sqlite import Database, stored_time

CHUNK_ROWS = 5000
# Page caches (KiB, each) while an import runs; allocated as used, freed after.
IMPORT_CACHE_KIB = 256 * 1024

_TABLES = (
    """CREATE TEMP TABLE stage_signals (
        seq INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        normalized TEXT NOT NULL,
        value TEXT NOT NULL,
        source TEXT NOT NULL,
        entity INTEGER,
        held TEXT
    )""",
    """CREATE TEMP TABLE stage_entities (
        seq INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        reason TEXT NOT NULL,
        campaign TEXT NOT NULL,
        severity TEXT NOT NULL,
        source TEXT NOT NULL
    )""",
    "CREATE TEMP TABLE stage_links (entity INTEGER NOT NULL, link TEXT NOT NULL)",
    # Filled by the move: the stored entity id of each staged entity row.
    "CREATE TEMP TABLE stage_entity_ids (seq INTEGER PRIMARY KEY, id INTEGER NOT NULL)",
)
_DROP = ("stage_signals", "stage_entities", "stage_links", "stage_entity_ids")
_CACHES = ("main", "temp")

# Each staged signal beside the stored one it stands for (both sides by (kind, fingerprint)).
# INDEXED BY: walk the staged rows in (kind, fingerprint) order (the planner would rather
# scan the table), so the probes of the signals index go in order too.
STAGED_SIGNAL = (
    "FROM stage_signals st INDEXED BY stage_by_signal"
    " JOIN signals s ON s.kind = st.kind AND s.fingerprint = st.fingerprint"
)


# One row per staged entity row: (seq, key, first_seen, last_seen, reason, campaign,
# severity, source). ``seq`` is what a staged signal's ``entity`` and a link refer to.
EntityRow = tuple[int, str, str, str, str, str, str, str]


class Stage:
    """The staged rows of one import, on the store's connection (under its lock)."""

    def __init__(self, store: Database, db: sqlite3.Connection):
        self.store = store
        self.db = db
        self.held = 0  # staged signals a warninglist holds back
        self.results: dict[str, ImportResult] = {}  # by kind, once stored
        for name in _DROP:
            db.execute(f"DROP TABLE IF EXISTS temp.{name}")
        for statement in _TABLES:
            db.execute(statement)

    def signals(self, rows: Iterable[tuple[SignalInput, int | None, str | None]]) -> None:
        """Stage ``(signal, entity seq or None, warninglist holding it back or None)``."""
        batch = []
        for signal, entity, held in rows:
            check_signal(signal)
            batch.append((*_signal_columns(signal), entity, held))
            self.held += held is not None
        self.db.executemany(
            "INSERT INTO stage_signals (kind, fingerprint, normalized, value, source, entity,"
            " held) VALUES (?, ?, ?, ?, ?, ?, ?)",
            batch,
        )

    def entities(self, rows: Iterable[EntityRow], links: Iterable[tuple[int, str]]) -> None:
        self.db.executemany("INSERT INTO stage_entities VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT INTO stage_links (entity, link) VALUES (?, ?)", links)

    def staged(self) -> None:
        """End the staging transaction (only the temporary database was written)."""
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    @contextmanager
    def moving(self) -> Iterator[sqlite3.Connection]:
        """The store's one transaction for the move, once staging has ended."""
        self.staged()
        with self.store.transaction() as db:
            yield db

    def store_signals(self, at: str) -> dict[str, ImportResult]:
        """Move the staged signals into ``signals``/``signal_values`` (caller's transaction)."""
        db = self.db
        # One sort: the index orders every statement below by (kind, fingerprint), and it
        # covers them all, so none reads the staged rows in random order.
        db.execute(
            "CREATE INDEX temp.stage_by_signal ON stage_signals"
            " (kind, fingerprint, seq, normalized, value, source, entity, held)"
        )
        staged = {
            kind: (int(n), int(d), int(h))
            for kind, n, d, h in db.execute(
                "SELECT kind, COUNT(*), COUNT(DISTINCT fingerprint), COUNT(held)"
                " FROM stage_signals GROUP BY kind"
            )
        }
        before = {kind: count_signals(db, kind) for kind in staged}
        # The first staged spelling of a fingerprint is its first source (seq = file order).
        db.execute(
            "INSERT INTO signals (kind, fingerprint, normalized, first_source, imported_at)"
            " SELECT kind, fingerprint, normalized, source, ? FROM stage_signals"
            " WHERE true ORDER BY kind, fingerprint, seq"
            " ON CONFLICT (kind, fingerprint) DO NOTHING",
            (at,),
        )
        db.execute(
            "INSERT INTO signal_values (signal_id, value, source, imported_at)"
            f" SELECT s.id, st.value, st.source, ? {STAGED_SIGNAL}"
            " WHERE true ORDER BY st.kind, st.fingerprint, st.seq"
            " ON CONFLICT (signal_id, value) DO NOTHING",
            (at,),
        )
        results = {}
        for kind, (received, distinct, held) in staged.items():
            after = count_signals(db, kind)
            added = after - before[kind]
            results[kind] = ImportResult(kind, added, distinct - added, after, received, held)
        self.results = results
        return results


def _signal_columns(signal: SignalInput) -> tuple[str, bytes, str, str, str]:
    return (signal.kind, signal.fingerprint, signal.normalized, signal.value, signal.source)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while an import runs (back on after, if it
    was on). An import makes millions of short-lived objects and holds many live ones, so
    the collector ran about a hundred full passes over the live ones for nothing (the
    import makes no cycles): at 200k entities that was 16 % of an entity import's time,
    and the share grows with the file (docs/performance.md)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def staging(store: Database) -> Iterator[Stage]:
    """A fresh stage on ``store``'s connection, held under its lock, always dropped after."""
    with store.reading() as db, collector_paused():
        caches = [db.execute(f"PRAGMA {name}.cache_size").fetchone()[0] for name in _CACHES]
        stage = Stage(store, db)
        try:
            for name in _CACHES:
                db.execute(f"PRAGMA {name}.cache_size = -{IMPORT_CACHE_KIB}")
            db.execute("BEGIN")  # ended by Stage.moving, or rolled back below
            yield stage
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for name in _DROP:
                db.execute(f"DROP TABLE IF EXISTS temp.{name}")
            for name, size in zip(_CACHES, caches, strict=True):
                db.execute(f"PRAGMA {name}.cache_size = {int(size)}")


class ImportTables(Database):
    def add_signals(
        self, signals: Sequence[SignalInput], *, now: str | None = None
    ) -> dict[str, ImportResult]:
        """Import a batch in one transaction: all of it, or nothing if anything is wrong.

        A (kind, fingerprint) already held is not duplicated; a new original spelling
        of it is kept as an extra value.
        """
        imported_at = stored_time(now, "now")
        with staging(self) as stage:
            for start in range(0, len(signals), CHUNK_ROWS):
                stage.signals((s, None, None) for s in signals[start : start + CHUNK_ROWS])
            with stage.moving():
                return stage.store_signals(imported_at)
