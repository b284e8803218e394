"""Consortium rounds and their results, in the node's SQLite file (tables of their own).

A participant stores a round only once the hub has committed it: the round row
and every own element found held by >= k labs, in one transaction. Aborted
rounds store nothing here (their abort is in the audit log). Raw values stay in
the signals table; these rows name fingerprints only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.state.sqlite import Database, open_sqlite, where_equal

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


class ConsortiumStore(Database):
    """The consortium tables, opened like every other table module (node/state/sqlite.py)."""

    def __init__(self, path: Path):
        super().__init__(path, open_sqlite(path, what="store", timeout=10.0))
        with self.transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

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
        with self.transaction() as db:
            db.execute(f"INSERT INTO consortium_rounds VALUES ({','.join('?' * 12)})", values)
            db.executemany(
                "INSERT INTO consortium_matches VALUES (?, ?, ?, ?)",
                [(x.round_id, x.kind, x.fingerprint, x.labs) for x in matches],
            )

    def rounds(self) -> list[ConsortiumRound]:
        with self.reading() as db:
            rows = db.execute(
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
        conditions, args = where_equal(("round_id", round_id), ("kind", kind))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self.reading() as db:
            rows = db.execute(
                "SELECT round_id, kind, fingerprint, labs FROM consortium_matches"
                f"{where} ORDER BY round_id, kind, fingerprint",
                args,
            ).fetchall()
        return [ConsortiumMatch(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    def __enter__(self) -> ConsortiumStore:
        return self
