"""The node's SQLite store: imported signals, finished rounds and their matches.

One file per node (``:memory:`` for tests), WAL journal, foreign keys on, schema
versioned by ``PRAGMA user_version``. One connection behind a lock serves every
thread (the gRPC server's pool, the scheduler, the CLI); each write is one
transaction, so an import or a round is stored whole or not at all.

Timestamps are passed in by the caller as timezone-aware ISO 8601 text and come
back exactly as given; ordering and retention use an integer copy in
microseconds since the epoch, so mixed spellings (``Z``, ``+00:00``, offsets,
fractions) still compare correctly.

The store holds raw identifiers (the lab's own data, needed to act on a
match); nothing here logs them.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from protocol.errors import ConfigError, InputError

SCHEMA_VERSION = 1
ROUND_STATUSES = frozenset({"completed", "aborted", "refused"})
FINGERPRINT_SIZE = 32
_KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
# SQLite builds before 3.32 allow 999 parameters a statement; stay under it.
_IN_CHUNK = 900

_SCHEMA = (
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
    """CREATE TABLE matches (
        id INTEGER PRIMARY KEY,
        round_id TEXT NOT NULL REFERENCES rounds (round_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        fingerprint BLOB NOT NULL CHECK (length(fingerprint) = 32),
        matched_at TEXT NOT NULL,
        matched_us INTEGER NOT NULL,
        UNIQUE (round_id, kind, fingerprint)
    )""",
    "CREATE INDEX matches_by_time ON matches (matched_us)",
    "CREATE INDEX matches_by_signal ON matches (kind, fingerprint)",
    # Prompts stay here; only their LSH band tokens (signals of kind 'prompt') enter rounds.
    """CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        campaign TEXT NOT NULL,
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        UNIQUE (text, campaign, account)
    )""",
    """CREATE TABLE prompt_tokens (
        token BLOB NOT NULL CHECK (length(token) = 32),
        prompt_id INTEGER NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
        PRIMARY KEY (token, prompt_id)
    ) WITHOUT ROWID""",
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


@dataclass(frozen=True)
class PromptInput:
    """One prompt to import with its tokens; ``campaign`` and ``account`` may be empty."""

    text: str
    campaign: str
    account: str
    source: str
    tokens: tuple[bytes, ...]


@dataclass(frozen=True)
class PromptHit:
    """One of our prompts holding a token matched in a round."""

    round_id: str
    peer: str
    prompt_id: int
    text: str
    campaign: str
    account: str
    token: bytes


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


class Store:
    """SQLite store of one node. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = _connect(self.path)
        try:
            self._prepare_schema()
        except sqlite3.DatabaseError as e:
            self.close()
            raise ConfigError(f"cannot open store {self.path}: {e}") from e
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- signals -------------------------------------------------------------------------

    def add_signals(
        self, signals: Sequence[SignalInput], *, now: str | None = None
    ) -> dict[str, ImportResult]:
        """Import a batch in one transaction: all of it, or nothing if anything is wrong.

        A (kind, fingerprint) already held is not duplicated; a new original spelling
        of it is kept as an extra value.
        """
        imported_at = _checked_time(now, "now") if now is not None else _utc_now()
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
        with self._transaction() as db:
            before = {kind: _count(db, kind) for kind in distinct}
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
            after = {kind: _count(db, kind) for kind in distinct}
        results = {}
        for kind, fingerprints in distinct.items():
            added = after[kind] - before[kind]
            results[kind] = ImportResult(
                kind=kind,
                added=added,
                already_held=len(fingerprints) - added,
                total=after[kind],
                received=received[kind],
            )
        return results

    def add_prompts(
        self, prompts: Sequence[PromptInput], *, param_set_id: str, now: str | None = None
    ) -> ImportResult:
        """Import prompts and their tokens in one transaction; tokens become 'prompt' signals.

        A prompt already held (same text, campaign and account) is not duplicated; tokens
        shared by many prompts of a campaign are held once as signals.
        """
        imported_at = _checked_time(now, "now") if now is not None else _utc_now()
        distinct = {t for p in prompts for t in p.tokens}
        if any(len(t) != FINGERPRINT_SIZE for t in distinct):
            raise InputError("prompt tokens must be 32 bytes")
        with self._transaction() as db:
            before = _count(db, "prompt")
            for p in prompts:
                db.execute(
                    "INSERT INTO prompts (text, campaign, account, source, imported_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (text, campaign, account) DO NOTHING",
                    (p.text, p.campaign, p.account, p.source, imported_at),
                )
                (prompt_id,) = db.execute(
                    "SELECT id FROM prompts WHERE text = ? AND campaign = ? AND account = ?",
                    (p.text, p.campaign, p.account),
                ).fetchone()
                db.executemany(
                    "INSERT INTO prompt_tokens (token, prompt_id) VALUES (?, ?)"
                    " ON CONFLICT DO NOTHING",
                    ((t, prompt_id) for t in p.tokens),
                )
            db.executemany(
                "INSERT INTO signals (kind, fingerprint, normalized, first_source, imported_at)"
                " VALUES ('prompt', ?, ?, ?, ?) ON CONFLICT (kind, fingerprint) DO NOTHING",
                ((t, param_set_id, "prompt import", imported_at) for t in sorted(distinct)),
            )
            after = _count(db, "prompt")
        added = after - before
        return ImportResult("prompt", added, len(distinct) - added, after, received=len(prompts))

    def prompt_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM prompts").fetchone()[0])

    def prompt_hits(
        self, *, peer: str | None = None, round_id: str | None = None
    ) -> list[PromptHit]:
        """Our prompts holding a token matched by a completed round, one row per token."""
        conditions, params = ["m.kind = 'prompt'"], []
        for column, wanted in (("r.peer", peer), ("m.round_id", round_id)):
            if wanted is not None:
                conditions.append(f"{column} = ?")
                params.append(wanted)
        query = (
            "SELECT m.round_id, r.peer, p.id, p.text, p.campaign, p.account, m.fingerprint"
            " FROM matches m JOIN rounds r ON r.round_id = m.round_id"
            " JOIN prompt_tokens t ON t.token = m.fingerprint"
            " JOIN prompts p ON p.id = t.prompt_id"
            f" WHERE {' AND '.join(conditions)}"
            " ORDER BY r.started_us DESC, p.id"
        )
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [PromptHit(rid, rpeer, pid, text, campaign, account, bytes(token))
                for rid, rpeer, pid, text, campaign, account, token in rows]

    def fingerprints(self, kind: str) -> list[bytes]:
        """Distinct fingerprints of ``kind``, sorted by value.

        Sorted, not in import order: the order reaches the peer (blinded), and the
        order of pseudo-random fingerprints tells it nothing about when we learned them.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT fingerprint FROM signals WHERE kind = ? ORDER BY fingerprint", (kind,)
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def signal_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, COUNT(*) FROM signals GROUP BY kind ORDER BY kind"
            ).fetchall()
        return {kind: count for kind, count in rows}

    def values_for(self, kind: str, fingerprints: Iterable[bytes]) -> dict[bytes, list[str]]:
        """Original values of the held fingerprints among ``fingerprints``, first-imported first.

        Fingerprints not held are absent from the result.
        """
        wanted = list(dict.fromkeys(bytes(fp) for fp in fingerprints))
        found: dict[bytes, list[str]] = {}
        with self._lock:
            db = self._db
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
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

    # -- rounds and matches --------------------------------------------------------------

    def save_round(self, row: RoundRow, matches: Sequence[tuple[str, bytes]]) -> None:
        """Store a finished round and, for a completed one, its matches, in one transaction.

        Each match is ``(kind, fingerprint)`` and is dated by the round's ``finished_at``.
        """
        started_us = _epoch_us(row.started_at, "started_at")
        finished_us = _epoch_us(row.finished_at, "finished_at")
        _check_round(row)
        if matches and row.status != "completed":
            raise InputError(
                f"round {row.round_id} is {row.status}: only a completed round may store matches",
                rule="atomic-round",
            )
        match_rows = []
        for kind, fp in dict.fromkeys((k, bytes(f)) for k, f in matches):
            if kind not in row.kinds:
                raise InputError(f"round {row.round_id}: match of kind {kind!r} not in the round")
            if len(fp) != FINGERPRINT_SIZE:
                raise InputError(f"round {row.round_id}: match fingerprint is {len(fp)} bytes")
            match_rows.append((row.round_id, kind, fp, row.finished_at, finished_us))
        with self._transaction() as db:
            try:
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
            except sqlite3.IntegrityError as e:
                raise InputError(f"round {row.round_id} is already stored") from e
            db.executemany(
                "INSERT INTO matches (round_id, kind, fingerprint, matched_at, matched_us)"
                " VALUES (?, ?, ?, ?, ?)",
                match_rows,
            )

    def rounds(self, peer: str | None = None) -> list[RoundRow]:
        """Stored rounds, newest first, optionally of one peer."""
        query = f"SELECT {_ROUND_COLUMNS} FROM rounds"
        params: tuple[str, ...] = ()
        if peer is not None:
            query += " WHERE peer = ?"
            params = (peer,)
        query += " ORDER BY started_us DESC, rowid DESC"
        with self._lock:
            return [_round_from_row(r) for r in self._db.execute(query, params)]

    def get_round(self, round_id: str) -> RoundRow | None:
        with self._lock:
            found = self._db.execute(
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
        conditions, params = [], []
        for column, wanted in (("r.peer", peer), ("m.round_id", round_id), ("m.kind", kind)):
            if wanted is not None:
                conditions.append(f"{column} = ?")
                params.append(wanted)
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
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
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
        cutoff_us = _epoch_us(cutoff_iso, "cutoff")
        with self._transaction() as db:
            return db.execute("DELETE FROM matches WHERE matched_us < ?", (cutoff_us,)).rowcount

    # -- internals -----------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError(f"store {self.path} is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _prepare_schema(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"store {self.path} has schema version {version}; this crossmatch "
                    f"understands up to {SCHEMA_VERSION}: upgrade crossmatch"
                )
            tables = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if version != 0 or tables:
                raise ConfigError(f"{self.path} is not a crossmatch store (schema {version})")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


_ROUND_COLUMNS = (
    "round_id, peer, role, mode, kinds, own_sizes, peer_sizes, intersection_sizes,"
    " status, reason, started_at, finished_at, policy_hash, transcript_hash"
)


def _connect(path: str) -> sqlite3.Connection:
    if path != ":memory:" and not Path(path).parent.is_dir():
        raise ConfigError(f"cannot open store {path}: its directory does not exist")
    try:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    except sqlite3.Error as e:
        raise ConfigError(f"cannot open store {path}: {e}") from e
    try:
        db.execute("PRAGMA foreign_keys = ON")
        if path != ":memory:":
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise ConfigError(f"store {path}: could not switch to WAL journal (got {mode})")
            # FULL: a committed round survives power loss, like the audit line that names it.
            db.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as e:
        db.close()
        raise ConfigError(f"cannot open store {path}: {e}") from e
    except BaseException:
        db.close()
        raise
    return db


def _count(db: sqlite3.Connection, kind: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM signals WHERE kind = ?", (kind,)).fetchone()[0])


def _check_signal(signal: SignalInput) -> None:
    if not isinstance(signal.kind, str) or not _KIND_PATTERN.fullmatch(signal.kind):
        raise InputError(f"bad signal kind {signal.kind!r}", where=signal.source)
    if not isinstance(signal.fingerprint, bytes) or len(signal.fingerprint) != FINGERPRINT_SIZE:
        raise InputError(f"fingerprint must be {FINGERPRINT_SIZE} bytes", where=signal.source)
    for name in ("value", "normalized", "source"):
        if not isinstance(getattr(signal, name), str):
            raise InputError(f"signal {name} must be text", where=signal.source)


def _check_round(row: RoundRow) -> None:
    if row.status not in ROUND_STATUSES:
        raise InputError(f"round {row.round_id}: unknown status {row.status!r}")
    if not row.round_id or not row.peer:
        raise InputError("a round needs a round id and a peer")
    # Kinds are recorded as given: a refused round keeps what the peer asked for, odd or not.
    if not all(isinstance(kind, str) for kind in row.kinds):
        raise InputError(f"round {row.round_id}: kinds must be text")


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


def _to_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _parse_time(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} is not an ISO 8601 timestamp: {text!r}") from e
    if moment.tzinfo is None:
        raise InputError(f"{what} has no timezone (use UTC, e.g. 2025-01-31T12:00:00Z): {text!r}")
    return moment


def _checked_time(text: str, what: str) -> str:
    _parse_time(text, what)
    return text


def _epoch_us(text: str, what: str) -> int:
    delta = _parse_time(text, what) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
