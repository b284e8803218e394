"""Finished rounds (completed, aborted or refused) and the matches of completed ones.

Storing a round's outcome also deletes its start row (``node.state.round_starts``).

A round and its matches are stored in one transaction, so a round is stored whole or not
at all. Times are kept exactly as the caller gave them; ordering and retention use an
integer copy in microseconds since the epoch, so mixed spellings still compare correctly.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from node.state.signals import FINGERPRINT_SIZE
from node.state.sqlite import MEMORY, Database, open_sqlite, where_equal
from protocol.errors import ConfigError, InputError
from protocol.rules import Rule
from protocol.timestamps import epoch_us, parse_utc

ROUND_STATUSES = frozenset({"completed", "aborted", "refused"})

# AUTOINCREMENT (schema 2): a match id is never handed out twice, even after retention
# purged the newest matches, so "matches above id N" stays a sound incremental cursor.
MATCHES_SCHEMA = (
    """CREATE TABLE matches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        round_id TEXT NOT NULL REFERENCES rounds (round_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        fingerprint BLOB NOT NULL CHECK (length(fingerprint) = 32),
        matched_at TEXT NOT NULL,
        matched_us INTEGER NOT NULL,
        UNIQUE (round_id, kind, fingerprint)
    )""",
    "CREATE INDEX matches_by_time ON matches (matched_us)",
    "CREATE INDEX matches_by_signal ON matches (kind, fingerprint)",
)

SCHEMA = (
    """CREATE TABLE rounds (
        round_id TEXT PRIMARY KEY,
        peer TEXT NOT NULL,
        role TEXT NOT NULL,
        mode TEXT NOT NULL,
        kinds TEXT NOT NULL,
        own_sizes TEXT NOT NULL,
        peer_sizes TEXT NOT NULL,
        intersection_sizes TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('completed', 'aborted', 'refused')),
        reason TEXT NOT NULL,
        started_at TEXT NOT NULL,
        started_us INTEGER NOT NULL,
        finished_at TEXT NOT NULL,
        policy_hash TEXT NOT NULL,
        transcript_hash TEXT NOT NULL
    )""",
    "CREATE INDEX rounds_by_peer ON rounds (peer, started_us)",
    "CREATE INDEX rounds_by_start ON rounds (started_us)",
    *MATCHES_SCHEMA,
)

_MATCH_COLUMNS = "id, round_id, kind, fingerprint, matched_at, matched_us"


def migrate_matches_to_autoincrement(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2 in the caller's transaction: rebuild ``matches`` with AUTOINCREMENT,
    keeping every id (SQLite cannot add AUTOINCREMENT to an existing table)."""
    db.execute("ALTER TABLE matches RENAME TO matches_v1")
    db.execute("DROP INDEX matches_by_time")
    db.execute("DROP INDEX matches_by_signal")
    for statement in MATCHES_SCHEMA:
        db.execute(statement)
    # Copying explicit ids sets sqlite_sequence to the highest one kept.
    db.execute(f"INSERT INTO matches ({_MATCH_COLUMNS}) SELECT {_MATCH_COLUMNS} FROM matches_v1")
    db.execute("DROP TABLE matches_v1")


@dataclass
class RoundRow:
    round_id: str
    peer: str
    role: str
    mode: str
    kinds: list[str]
    own_sizes: dict[str, int]
    peer_sizes: dict[str, int]
    intersection_sizes: dict[str, int]
    status: str  # "completed" | "aborted" | "refused"
    reason: str
    started_at: str
    finished_at: str
    policy_hash: str
    transcript_hash: str


@dataclass(frozen=True)
class MatchRow:
    """A fingerprint both sides held in a completed round, with this lab's own values.

    ``values`` are the original spellings imported, first-imported first; ``value``
    is the first of them and ``normalized`` the canonical form (both empty if the
    signal is no longer held).
    """

    round_id: str
    peer: str
    kind: str
    value: str
    values: list[str] = field(hash=False)
    fingerprint: bytes
    matched_at: str
    normalized: str = ""


class RoundTables(Database):
    def save_round(self, row: RoundRow, matches: Sequence[tuple[str, bytes]]) -> None:
        """Store a finished round and, for a completed one, its matches, in one transaction.

        Each match is ``(kind, fingerprint)`` and is dated by the round's ``finished_at``.
        """
        started_us, match_rows = _checked_rows(row, matches)
        with self.transaction() as db:
            _write_round(db, row, started_us, match_rows)

    def stage_round(
        self, row: RoundRow, matches: Sequence[tuple[str, bytes]], *, wait: float = 10.0
    ) -> StagedRound:
        """:meth:`save_round`'s writes, done now and committed later: on a connection of
        their own, whose write transaction stays open until :meth:`StagedRound.commit`
        or :meth:`StagedRound.rollback`. Nothing is visible to any reader before the
        commit, and a process that dies before it leaves nothing (SQLite rolls back).
        While staged, every other writer of the store waits; ``wait`` bounds how long
        staging itself waits for another writer (then it raises)."""
        if self.path == MEMORY:
            raise ConfigError("an in-memory store has no second connection to stage on")
        started_us, match_rows = _checked_rows(row, matches)
        db = open_sqlite(self.path, what="store", timeout=wait, pragmas=["synchronous = FULL"])
        try:
            db.execute("BEGIN IMMEDIATE")
            _write_round(db, row, started_us, match_rows)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()
            raise
        return StagedRound(row.round_id, db)

    def close_interrupted(self, row: RoundRow) -> None:
        """Recovery: store an interrupted round's outcome (no matches) unless another
        process already did, and forget its start row, in one transaction."""
        started_us = _epoch_us_of(row.started_at, "started_at")
        _check_round(row)
        with self.transaction() as db:
            stored = db.execute("SELECT 1 FROM rounds WHERE round_id = ?", (row.round_id,))
            if stored.fetchone() is None:
                _insert_round(db, row, started_us)
            db.execute("DELETE FROM round_starts WHERE round_id = ?", (row.round_id,))

    def rounds(self, peer: str | None = None) -> list[RoundRow]:
        """Stored rounds, newest first, optionally of one peer."""
        query = f"SELECT {_ROUND_COLUMNS} FROM rounds"
        params: tuple[str, ...] = ()
        if peer is not None:
            query += " WHERE peer = ?"
            params = (peer,)
        query += " ORDER BY started_us DESC, rowid DESC"
        with self.reading() as db:
            return [_round_from_row(r) for r in db.execute(query, params)]

    def get_round(self, round_id: str) -> RoundRow | None:
        with self.reading() as db:
            found = db.execute(
                f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE round_id = ?", (round_id,)
            ).fetchone()
        return _round_from_row(found) if found else None

    def matches(
        self,
        *,
        peer: str | None = None,
        round_id: str | None = None,
        kind: str | None = None,
    ) -> list[MatchRow]:
        """Matches of completed rounds, newest round first, with the values they stand for."""
        conditions, params = where_equal(
            ("r.peer", peer), ("m.round_id", round_id), ("m.kind", kind)
        )
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        query = (
            "SELECT m.id, m.round_id, r.peer, m.kind, m.fingerprint, m.matched_at,"
            " s.normalized, v.value"
            " FROM matches m JOIN rounds r ON r.round_id = m.round_id"
            " LEFT JOIN signals s ON s.kind = m.kind AND s.fingerprint = m.fingerprint"
            " LEFT JOIN signal_values v ON v.signal_id = s.id"
            f" {where}"
            " ORDER BY r.started_us DESC, r.rowid DESC, m.kind, m.fingerprint, v.id"
        )
        with self.reading() as db:
            rows = db.execute(query, params).fetchall()
        grouped: dict[int, tuple[tuple, list[str]]] = {}
        for match_id, rid, rpeer, mkind, fp, matched_at, normalized, value in rows:
            head, values = grouped.setdefault(
                match_id, ((rid, rpeer, mkind, normalized or "", bytes(fp), matched_at), [])
            )
            if value is not None:
                values.append(value)
        return [
            MatchRow(
                round_id=rid,
                peer=rpeer,
                kind=mkind,
                value=values[0] if values else "",
                values=values,
                fingerprint=fp,
                matched_at=matched_at,
                normalized=normalized,
            )
            for (rid, rpeer, mkind, normalized, fp, matched_at), values in grouped.values()
        ]

    def purge_matches_before(self, cutoff_iso: str) -> int:
        """Retention: delete matches dated strictly before ``cutoff_iso``; rounds stay."""
        cutoff_us = _epoch_us_of(cutoff_iso, "cutoff")
        with self.transaction() as db:
            return db.execute("DELETE FROM matches WHERE matched_us < ?", (cutoff_us,)).rowcount


_ROUND_COLUMNS = (
    "round_id, peer, role, mode, kinds, own_sizes, peer_sizes, intersection_sizes,"
    " status, reason, started_at, finished_at, policy_hash, transcript_hash"
)


def _check_round(row: RoundRow) -> None:
    if row.status not in ROUND_STATUSES:
        raise InputError(f"round {row.round_id}: unknown status {row.status!r}")
    if not row.round_id or not row.peer:
        raise InputError("a round needs a round id and a peer")
    # Kinds are recorded as given: a refused round keeps what the peer asked for, odd or not.
    if not all(isinstance(kind, str) for kind in row.kinds):
        raise InputError(f"round {row.round_id}: kinds must be text")


def _insert_round(db: sqlite3.Connection, row: RoundRow, started_us: int) -> None:
    db.execute(
        "INSERT INTO rounds (round_id, peer, role, mode, kinds, own_sizes, peer_sizes,"
        " intersection_sizes, status, reason, started_at, started_us, finished_at,"
        " policy_hash, transcript_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.round_id,
            row.peer,
            row.role,
            row.mode,
            _to_json(row.kinds),
            _to_json(row.own_sizes),
            _to_json(row.peer_sizes),
            _to_json(row.intersection_sizes),
            row.status,
            row.reason,
            row.started_at,
            started_us,
            row.finished_at,
            row.policy_hash,
            row.transcript_hash,
        ),
    )


def _round_from_row(r: tuple) -> RoundRow:
    return RoundRow(
        round_id=r[0],
        peer=r[1],
        role=r[2],
        mode=r[3],
        kinds=json.loads(r[4]),
        own_sizes=json.loads(r[5]),
        peer_sizes=json.loads(r[6]),
        intersection_sizes=json.loads(r[7]),
        status=r[8],
        reason=r[9],
        started_at=r[10],
        finished_at=r[11],
        policy_hash=r[12],
        transcript_hash=r[13],
    )


class StagedRound:
    """A round written in an open transaction (:meth:`RoundTables.stage_round`): committed
    once, or rolled back once; either closes its connection. Thread-safe: the session
    commits from one thread while a timer may roll back from another."""

    def __init__(self, round_id: str, db: sqlite3.Connection):
        self.round_id = round_id
        self._db: sqlite3.Connection | None = db
        self._lock = threading.Lock()

    def commit(self) -> bool:
        """Make the staged round durable; False if it was rolled back meanwhile."""
        with self._lock:
            db, self._db = self._db, None
            if db is None:
                return False
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.close()
            return True

    def rollback(self) -> None:
        """Drop the staged round (and the write lock); nothing if it is settled already."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                finally:
                    db.close()

    @property
    def pending(self) -> bool:
        return self._db is not None


_MatchRows = list[tuple[str, str, bytes, str, int]]


def _checked_rows(row: RoundRow, matches: Sequence[tuple[str, bytes]]) -> tuple[int, _MatchRows]:
    """A finished round's start time and match rows, checked: built before the write
    transaction, so the store's lock is not held while a bad row is found or the rows of
    100k matches are made."""
    started_us = _epoch_us_of(row.started_at, "started_at")
    finished_us = _epoch_us_of(row.finished_at, "finished_at")
    _check_round(row)
    if matches and row.status != "completed":
        raise InputError(
            f"round {row.round_id} is {row.status}: only a completed round may store matches",
            rule=Rule.ATOMIC_ROUND,
        )
    return started_us, _match_rows(row, matches, finished_us)


def _write_round(
    db: sqlite3.Connection, row: RoundRow, started_us: int, match_rows: _MatchRows
) -> None:
    """A finished round, its matches and the end of its start row, in the caller's
    transaction."""
    try:
        _insert_round(db, row, started_us)
    except sqlite3.IntegrityError as e:
        raise InputError(f"round {row.round_id} is already stored") from e
    db.executemany(
        "INSERT INTO matches (round_id, kind, fingerprint, matched_at, matched_us)"
        " VALUES (?, ?, ?, ?, ?)",
        match_rows,
    )
    db.execute("DELETE FROM round_starts WHERE round_id = ?", (row.round_id,))


def _match_rows(
    row: RoundRow, matches: Sequence[tuple[str, bytes]], finished_us: int
) -> _MatchRows:
    rows = []
    for kind, fp in dict.fromkeys((k, bytes(f)) for k, f in matches):
        if kind not in row.kinds:
            raise InputError(f"round {row.round_id}: match of kind {kind!r} not in the round")
        if len(fp) != FINGERPRINT_SIZE:
            raise InputError(f"round {row.round_id}: match fingerprint is {len(fp)} bytes")
        rows.append((row.round_id, kind, fp, row.finished_at, finished_us))
    return rows


def _to_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _epoch_us_of(text: str, what: str) -> int:
    return epoch_us(parse_utc(text, what))
