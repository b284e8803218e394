"""Imported signals: one row per (kind, fingerprint), with every original spelling and the
line it came from. Rounds only ever read fingerprints; values stay for acting on a match."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from node.state.sqlite import Database
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

    def packed_fingerprints(self, kind: str) -> bytes:
        """:meth:`fingerprints`, joined into one buffer of ``FINGERPRINT_SIZE``-byte rows.

        A round reads its whole set this way: SQLite joins the rows (2-3x faster than a
        Python object per row). Joining blobs as text keeps their bytes in a UTF-8
        database; a result of the wrong length, which would mean it did not, is read
        again row by row. The caller checks the order.
        """
        query = "SELECT fingerprint FROM signals WHERE kind = ? ORDER BY fingerprint"
        with self.reading() as db:
            count, joined = db.execute(
                f"SELECT COUNT(*), CAST(group_concat(fingerprint, '') AS BLOB) FROM ({query})",
                (kind,),
            ).fetchone()
            if joined is not None and len(joined) == count * FINGERPRINT_SIZE:
                return bytes(joined)
            return b"".join(bytes(row[0]) for row in db.execute(query, (kind,)))

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


def check_signal(signal: SignalInput) -> None:
    if not isinstance(signal.kind, str) or not _KIND_PATTERN.fullmatch(signal.kind):
        raise InputError(f"bad signal kind {signal.kind!r}", where=signal.source)
    if not isinstance(signal.fingerprint, bytes) or len(signal.fingerprint) != FINGERPRINT_SIZE:
        raise InputError(f"fingerprint must be {FINGERPRINT_SIZE} bytes", where=signal.source)
    for name in ("value", "normalized", "source"):
        if not isinstance(getattr(signal, name), str):
            raise InputError(f"signal {name} must be text", where=signal.source)
