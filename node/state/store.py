"""The node's SQLite store (``crossmatch.db``): imported signals, prompts, rounds begun,
finished rounds and their matches, one table module each (``signals``, ``prompts``,
``round_starts``, ``rounds``).

One file per node (``:memory:`` for tests), opened by ``node.state.sqlite.open_sqlite``:
created 0600, WAL journal, synchronous FULL, foreign keys on, schema versioned by
``PRAGMA user_version`` (an older file is upgraded in place, in one transaction, when
opened: schema 2 gave ``matches`` AUTOINCREMENT ids, schema 3 added ``round_starts``).
One connection behind a lock serves every thread (the gRPC server's pool, the scheduler,
the CLI); each write is one transaction, so an import or a round is stored whole or not
at all.

Timestamps are passed in by the caller as timezone-aware ISO 8601 text and come back
exactly as given. The store holds raw identifiers (the lab's own data, needed to act on a
match); nothing here logs them. The epoch keys and caches are another file
(``cache.db``, ``node.state.epochs``) so they can be deleted on their own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from node.state import prompts, round_starts, rounds, signals
from node.state.prompts import PromptHit, PromptInput, PromptTables
from node.state.round_starts import RoundStartTables, StartedRound
from node.state.rounds import ROUND_STATUSES, MatchRow, RoundRow, RoundTables
from node.state.signals import FINGERPRINT_SIZE, ImportResult, SignalInput, SignalTables
from node.state.sqlite import open_sqlite
from node.state.staging import ImportTables
from protocol.errors import ConfigError

__all__ = [
    "FINGERPRINT_SIZE",
    "ROUND_STATUSES",
    "SCHEMA_VERSION",
    "ImportResult",
    "MatchRow",
    "PromptHit",
    "PromptInput",
    "RoundRow",
    "SignalInput",
    "StartedRound",
    "Store",
]

SCHEMA_VERSION = 3
_SCHEMA = (*signals.SCHEMA, *rounds.SCHEMA, *prompts.SCHEMA)  # the tables of schema 2
_FRESH = (*_SCHEMA, *round_starts.SCHEMA)  # a new file: schema 3
# In-place upgrades, each in the transaction that opens the file: version -> step to version + 1.
_MIGRATIONS = {
    1: rounds.migrate_matches_to_autoincrement,
    2: round_starts.add_round_starts,  # a durable record of every round begun (ADR 0007)
}


class Store(ImportTables, SignalTables, RoundTables, RoundStartTables, PromptTables):
    """SQLite store of one node. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path):
        connection = open_sqlite(path, what="store", timeout=10.0, pragmas=["synchronous = FULL"])
        super().__init__(path, connection)
        try:
            self._prepare_schema()
        except sqlite3.DatabaseError as e:
            self.close()
            raise ConfigError(f"cannot open store {self.path}: {e}") from e
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Store:
        return self

    @property
    def schema_version(self) -> int:
        with self.reading() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def _prepare_schema(self) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"store {self.path} has schema version {version}; this crossmatch "
                    f"understands up to {SCHEMA_VERSION}: upgrade crossmatch"
                )
            if version in _MIGRATIONS:
                while version < SCHEMA_VERSION:
                    _MIGRATIONS[version](db)
                    version += 1
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
            tables = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            if version != 0 or tables:
                raise ConfigError(f"{self.path} is not a crossmatch store (schema {version})")
            for statement in _FRESH:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
