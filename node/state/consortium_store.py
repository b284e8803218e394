"""Consortium rounds and their results, in the node's SQLite file (tables of their own).

A participant stores a round only once the hub has committed it: the round row
and every own element found held by >= k labs, in one transaction. Aborted
rounds store nothing here (their abort is in the audit log). Raw values stay in
the signals table; these rows name fingerprints only.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ConfigError

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS consortium_rounds (
        round_id TEXT PRIMARY KEY,
        hub TEXT NOT NULL,
        participants TEXT NOT NULL,
        k INTEGER NOT NULL,
        reveal_count INTEGER NOT NULL,
        kinds TEXT NOT NULL,
        sizes TEXT NOT NULL,
        result_counts TEXT NOT NULL,
        policy_hash TEXT NOT NULL,
        transcript_hash TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS consortium_matches (
        round_id TEXT NOT NULL REFERENCES consortium_rounds (round_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        fingerprint BLOB NOT NULL CHECK (length(fingerprint) = 32),
        labs INTEGER,
        PRIMARY KEY (round_id, kind, fingerprint)
    ) WITHOUT ROWID""",
)


@dataclass(frozen=True)
class ConsortiumRound:
    round_id: str
    hub: str
    participants: list[str]
    k: int
    reveal_count: bool
    kinds: list[str]
    sizes: dict[str, dict[str, int]]
    result_counts: dict[str, int]
    policy_hash: str
    transcript_hash: str
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class ConsortiumMatch:
    round_id: str
    kind: str
    fingerprint: bytes
    labs: int | None  # how many labs hold it, when the policy reveals counts; else ">= k"


class ConsortiumStore:
    def __init__(self, path: Path):
        try:
            self._db = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=10.0
            )
            self._db.execute("PRAGMA foreign_keys = ON")
            for statement in _SCHEMA:
                self._db.execute(statement)
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open consortium tables in {path}: {e}") from e
        self._lock = threading.Lock()

    def save_round(self, row: ConsortiumRound, matches: Sequence[ConsortiumMatch]) -> None:
        """The round and its matches, whole or not at all."""
        values = (
            row.round_id,
            row.hub,
            json.dumps(row.participants),
            row.k,
            int(row.reveal_count),
            json.dumps(row.kinds),
            json.dumps(row.sizes),
            json.dumps(row.result_counts),
            row.policy_hash,
            row.transcript_hash,
            row.started_at,
            row.finished_at,
        )
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"INSERT INTO consortium_rounds VALUES ({','.join('?' * 12)})", values)
                db.executemany(
                    "INSERT INTO consortium_matches VALUES (?, ?, ?, ?)",
                    [(x.round_id, x.kind, x.fingerprint, x.labs) for x in matches],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def rounds(self) -> list[ConsortiumRound]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM consortium_rounds ORDER BY finished_at DESC"
            ).fetchall()
        return [
            ConsortiumRound(
                r[0],
                r[1],
                json.loads(r[2]),
                r[3],
                bool(r[4]),
                json.loads(r[5]),
                json.loads(r[6]),
                json.loads(r[7]),
                *r[8:],
            )
            for r in rows
        ]

    def matches(
        self, round_id: str | None = None, kind: str | None = None
    ) -> list[ConsortiumMatch]:
        query = "SELECT round_id, kind, fingerprint, labs FROM consortium_matches WHERE 1=1"
        args: list[str] = []
        for column, value in (("round_id", round_id), ("kind", kind)):
            if value is not None:
                query += f" AND {column} = ?"
                args.append(value)
        with self._lock:
            rows = self._db.execute(
                query + " ORDER BY round_id, kind, fingerprint", args
            ).fetchall()
        return [ConsortiumMatch(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ConsortiumStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
