"""Imported signals: one row per (kind, fingerprint), with every original spelling and the
line it came from. Rounds only ever read fingerprints; values stay for acting on a match."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from node.state.sqlite import Database, stored_time
from protocol.errors import InputError

FINGERPRINT_SIZE = 32
_KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
# SQLite builds before 3.32 allow 999 parameters a statement; stay under it.
IN_CHUNK = 900

SCHEMA = (
    """CREATE TABLE signals (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        fingerprint BLOB NOT NULL CHECK (length(fingerprint) = 32),
        normalized TEXT NOT NULL,
        first_source TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        UNIQUE (kind, fingerprint)
    )""",
    """CREATE TABLE signal_values (
        id INTEGER PRIMARY KEY,
        signal_id INTEGER NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
        value TEXT NOT NULL,
        source TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        UNIQUE (signal_id, value)
    )""",
)


@dataclass(frozen=True, slots=True)
class SignalInput:
    """One value to import: ``source`` says where it came from, e.g. ``"flagged.csv:12"``."""

    kind: str
    value: str
    normalized: str
    fingerprint: bytes
    source: str


@dataclass(frozen=True)
class ImportResult:
    """Per kind: distinct fingerprints new to the store, already held, and held in total after.

    ``received`` counts the signals given, duplicates within the batch included.
    """

    kind: str
    added: int
    already_held: int
    total: int
    received: int = 0
    held_back: int = 0  # of the batch, kept out of rounds by a warninglist


class SignalTables(Database):
    def add_signals(
        self,
        signals: Sequence[SignalInput],
        *,
        now: str | None = None,
        then: Callable[[sqlite3.Connection, str], None] | None = None,
    ) -> dict[str, ImportResult]:
        """Import a batch in one transaction: all of it, or nothing if anything is wrong.

        A (kind, fingerprint) already held is not duplicated; a new original spelling
        of it is kept as an extra value. ``then(db, imported_at)`` runs inside the same
        transaction after the signals are in (entity import links them there).
        """
        imported_at = stored_time(now, "now")
        for signal in signals:
            _check_signal(signal)
        received: dict[str, int] = {}
        distinct: dict[str, set[bytes]] = {}
        for signal in signals:
            received[signal.kind] = received.get(signal.kind, 0) + 1
            distinct.setdefault(signal.kind, set()).add(signal.fingerprint)
        # Fingerprint order turns random B-tree inserts into nearly sequential ones (about
        # 2x faster at 1M); the sort is stable, so spellings of one value keep file order.
        ordered = sorted(signals, key=lambda s: (s.kind, s.fingerprint))
        with self.transaction() as db:
            before = {kind: count_signals(db, kind) for kind in distinct}
            db.executemany(
                "INSERT INTO signals (kind, fingerprint, normalized, first_source, imported_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, fingerprint) DO NOTHING",
                ((s.kind, s.fingerprint, s.normalized, s.source, imported_at) for s in ordered),
            )
            db.executemany(
                "INSERT INTO signal_values (signal_id, value, source, imported_at)"
                " SELECT id, ?, ?, ? FROM signals WHERE kind = ? AND fingerprint = ?"
                " ON CONFLICT (signal_id, value) DO NOTHING",
                ((s.value, s.source, imported_at, s.kind, s.fingerprint) for s in ordered),
            )
            if then is not None:
                then(db, imported_at)
            after = {kind: count_signals(db, kind) for kind in distinct}
        return {
            kind: ImportResult(
                kind=kind,
                added=after[kind] - before[kind],
                already_held=len(fingerprints) - (after[kind] - before[kind]),
                total=after[kind],
                received=received[kind],
            )
            for kind, fingerprints in distinct.items()
        }

    def fingerprints(self, kind: str) -> list[bytes]:
        """Distinct fingerprints of ``kind``, sorted by value.

        Sorted, not in import order: the order reaches the peer (blinded), and the
        order of pseudo-random fingerprints tells it nothing about when we learned them.
        """
        with self.reading() as db:
            rows = db.execute(
                "SELECT fingerprint FROM signals WHERE kind = ? ORDER BY fingerprint", (kind,)
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def signal_counts(self) -> dict[str, int]:
        with self.reading() as db:
            rows = db.execute(
                "SELECT kind, COUNT(*) FROM signals GROUP BY kind ORDER BY kind"
            ).fetchall()
        return {kind: count for kind, count in rows}

    def values_for(self, kind: str, fingerprints: Iterable[bytes]) -> dict[bytes, list[str]]:
        """Original values of the held fingerprints among ``fingerprints``, first-imported first.

        Fingerprints not held are absent from the result.
        """
        wanted = list(dict.fromkeys(bytes(fp) for fp in fingerprints))
        found: dict[bytes, list[str]] = {}
        with self.reading() as db:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    "SELECT s.fingerprint, v.value FROM signals s"
                    " JOIN signal_values v ON v.signal_id = s.id"
                    f" WHERE s.kind = ? AND s.fingerprint IN ({marks}) ORDER BY v.id",
                    (kind, *chunk),
                )
                for fp, value in rows:
                    found.setdefault(bytes(fp), []).append(value)
        return found


def count_signals(db: sqlite3.Connection, kind: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM signals WHERE kind = ?", (kind,)).fetchone()[0])


def _check_signal(signal: SignalInput) -> None:
    if not isinstance(signal.kind, str) or not _KIND_PATTERN.fullmatch(signal.kind):
        raise InputError(f"bad signal kind {signal.kind!r}", where=signal.source)
    if not isinstance(signal.fingerprint, bytes) or len(signal.fingerprint) != FINGERPRINT_SIZE:
        raise InputError(f"fingerprint must be {FINGERPRINT_SIZE} bytes", where=signal.source)
    for name in ("value", "normalized", "source"):
        if not isinstance(getattr(signal, name), str):
            raise InputError(f"signal {name} must be text", where=signal.source)
