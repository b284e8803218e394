"""Rounds that started and have not ended yet: one row each, written before any element
leaves the node, deleted in the transaction that stores the round's outcome.

A row outlives its round only if the process running it died (SIGKILL, power loss):
``node.state.recovery`` then closes the round as aborted, so every round that started
ends in the store and the audit log exactly once. Each row names the lease
(``node.state.leases``) of the process running the round, so recovery can tell a dead
round from one another live process (a CLI round next to ``serve``) is running.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from node.state.sqlite import Database
from protocol.timestamps import epoch_us, parse_utc

# Added in store schema version 3 (older files get it in place, see node.state.store).
SCHEMA = (
    """CREATE TABLE round_starts (
        round_id TEXT PRIMARY KEY,
        peer TEXT NOT NULL,
        role TEXT NOT NULL,
        mode TEXT NOT NULL,
        kinds TEXT NOT NULL,
        own_sizes TEXT NOT NULL,
        peer_sizes TEXT NOT NULL,
        policy_hash TEXT NOT NULL,
        started_at TEXT NOT NULL,
        started_us INTEGER NOT NULL,
        owner TEXT NOT NULL
    )""",
)


def add_round_starts(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3 in the caller's transaction: the new table, empty; nothing else changes."""
    for statement in SCHEMA:
        db.execute(statement)


@dataclass(frozen=True)
class StartedRound:
    round_id: str
    peer: str
    role: str
    mode: str
    kinds: list[str]
    own_sizes: dict[str, int]
    peer_sizes: dict[str, int]
    policy_hash: str
    started_at: str
    owner: str  # the lease token of the process running the round

    @classmethod
    def of(cls, row: Any, owner: str) -> StartedRound:
        """The start of a round described by ``row`` (a RoundRow: the fields they share)."""
        return cls(**start_fields(row), owner=owner)


def start_fields(row: Any) -> dict[str, Any]:
    """The fields a start row shares with a stored round (RoundRow), from either."""
    return {f.name: getattr(row, f.name) for f in fields(StartedRound) if f.name != "owner"}


_COLUMNS = (
    "round_id, peer, role, mode, kinds, own_sizes, peer_sizes, policy_hash, started_at, owner"
)


class RoundStartTables(Database):
    def start_round(self, row: StartedRound) -> None:
        """Record that a round began (one transaction, durable before it returns)."""
        started_us = epoch_us(parse_utc(row.started_at, "started_at"))
        with self.transaction() as db:
            db.execute(
                "INSERT INTO round_starts (round_id, peer, role, mode, kinds, own_sizes,"
                " peer_sizes, policy_hash, started_at, started_us, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.round_id,
                    row.peer,
                    row.role,
                    row.mode,
                    _json(row.kinds),
                    _json(row.own_sizes),
                    _json(row.peer_sizes),
                    row.policy_hash,
                    row.started_at,
                    started_us,
                    row.owner,
                ),
            )

    def is_started(self, round_id: str) -> bool:
        """Whether a round with this id began (in any process) and has not ended."""
        with self.reading() as db:
            query = "SELECT 1 FROM round_starts WHERE round_id = ?"
            return db.execute(query, (round_id,)).fetchone() is not None

    def started_rounds(self) -> list[StartedRound]:
        """Rounds begun and not ended (by any process), oldest first."""
        query = f"SELECT {_COLUMNS} FROM round_starts ORDER BY started_us, rowid"
        with self.reading() as db:
            return [
                StartedRound(*r[:4], *map(json.loads, r[4:7]), *r[7:]) for r in db.execute(query)
            ]


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
