"""Per (peer, epoch) PSI keys, and the caches that make a repeated round incremental.

A node uses one secret scalar per peer (and suite) for an epoch (``[round] epoch_days``,
7 by default) instead of a fresh one per round, in reveal rounds with verified matches
only (every other round draws a fresh key: ADR 0016, node/net/epoch_round.py). Within
the epoch the blinding of an own element and the re-blinding of a peer's point never
change, so a round can reuse what the previous round under the same key computed and
only work on what changed (``protocol/round.py``, RoundCache). The price is that the
peer can link our blinded elements across the rounds of one epoch; exactly what
that reveals is in docs/threat-model.md, "Epoch keys and caching".

Everything lives in ``NODE_DIR/cache.db``, a SQLite file of this module alone,
mode 0600 from its first byte (SQLite gives its -wal and -shm files the same
mode), with ``secure_delete`` on so that a deleted key or cache is overwritten,
not merely unlinked from the b-tree:

- ``epoch_keys``: one current key per peer: a random id, the scalar, the seed of
  the padding dummies, creation and expiry (microseconds since 1970, UTC);
- ``epoch_caches``: per key, the ``own`` and ``peer`` tables, each one blob
  (``PackedTable`` serialized), deleted with their key (``ON DELETE CASCADE``);
- ``epoch_cache_parts``: per key and table, the rows later rounds added, one blob a
  round (``protocol/epoch_cache.py`` decides between adding a part and rewriting the
  table with the round's rows, which drops the parts; ADR 0015);
- ``epoch_churn``: per key, how many points the peer brought that the cache did not
  know, summed over the epoch's rounds (the policy's ``max_churn_per_epoch`` caps it:
  adaptive probing against our cached blindings);
- ``epoch_verified``: per key, the pairs (our point, the peer's re-blinding of it)
  whose DLEQ proof held, with the peer's public key they were proven under
  (verified matches: a repeat round asks proofs only for new matches).

The cache never outlives its key: a key past its expiry is deleted, with its
caches, by the next use of this file (any round with any peer); a cache is only
written while its key is still current; and keys have random ids, so a round
that started under an old key can never write into a new key's cache. Rows of
elements that left a set stay until the table is next rewritten: at most a tenth
of the rows in use (``protocol/epoch_cache.py``), and never past the key's expiry.

Rounds of two processes of one node (``serve`` answering a peer, and the CLI or
the scheduler initiating) may use the same peer's key at once: creation runs in
an IMMEDIATE transaction, so both get the same key, and every row either writes
(a rewrite or a part) is correct under that key, so whatever mix of them the
file holds is a correct cache.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from node.state.sqlite import Database, open_sqlite
from protocol.epoch_cache import append_as_part
from protocol.errors import ConfigError
from protocol.padding import SEED_BYTES
from protocol.psi import KEY_BYTES, PackedTable, TableSource
from protocol.round import CacheUpdate, RoundCache
from protocol.suites import DEFAULT_SUITE, get_suite
from protocol.tables import LayeredTable, joined_tables

log = logging.getLogger("crossmatch.epochs")

CACHE_FILE = "cache.db"
# 2: epoch_verified, 3: epoch_churn, 4: epoch_cache_parts (older files are upgraded in place)
SCHEMA_VERSION = 4
DEFAULT_EPOCH_DAYS = 7.0
# A key created this far in the node clock's future means the clock went back: rotate.
CLOCK_SLACK = timedelta(hours=1)
CACHE_NAMES = ("own", "peer")

_SCHEMA = (
    """CREATE TABLE epoch_keys (
        key_id TEXT PRIMARY KEY,
        peer TEXT NOT NULL UNIQUE,
        psi_key BLOB NOT NULL CHECK (length(psi_key) = 32),
        dummy_seed BLOB NOT NULL CHECK (length(dummy_seed) = 32),
        created_us INTEGER NOT NULL,
        expires_us INTEGER NOT NULL
    )""",
    """CREATE TABLE epoch_caches (
        key_id TEXT NOT NULL REFERENCES epoch_keys (key_id) ON DELETE CASCADE,
        name TEXT NOT NULL CHECK (name IN ('own', 'peer')),
        data BLOB NOT NULL,
        UNIQUE (key_id, name)
    )""",
)
# The peer's new points per key (anti-probing); IF NOT EXISTS: any older file gains it.
_CHURN_TABLE = """CREATE TABLE IF NOT EXISTS epoch_churn (
        key_id TEXT PRIMARY KEY REFERENCES epoch_keys (key_id) ON DELETE CASCADE,
        peer_new INTEGER NOT NULL CHECK (peer_new >= 0)
    )"""
# Rows rounds added to a cache table since it was last written whole (ADR 0015).
_PARTS_TABLE = """CREATE TABLE IF NOT EXISTS epoch_cache_parts (
        key_id TEXT NOT NULL REFERENCES epoch_keys (key_id) ON DELETE CASCADE,
        name TEXT NOT NULL CHECK (name IN ('own', 'peer')),
        data BLOB NOT NULL
    )"""
_PARTS_INDEX = (
    "CREATE INDEX IF NOT EXISTS epoch_cache_parts_by_key ON epoch_cache_parts (key_id, name)"
)
# Verified matches: pairs (our point X, the peer's returned Y) proven Y = k_peer*X under the
# peer's public key, so a repeat round in the epoch asks proofs only for new matches.
_VERIFIED = """CREATE TABLE epoch_verified (
        key_id TEXT PRIMARY KEY REFERENCES epoch_keys (key_id) ON DELETE CASCADE,
        peer_key BLOB NOT NULL,
        data BLOB NOT NULL
    )"""


def new_psi_key(suite: str = DEFAULT_SUITE) -> bytes:
    """A fresh secret key of ``suite``, from the OS CSPRNG."""
    s = get_suite(suite)
    return s.key_from_random(secrets.token_bytes(s.random_bytes))


def key_name(peer: str, suite: str) -> str:
    """The ``peer`` column of a key: the lab for the original suite (so keys made before
    suites existed stay valid), ``lab/suite`` for any other (a lab id has no '/')."""
    return peer if suite == DEFAULT_SUITE else f"{peer}/{suite}"


def _us(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("epoch times must be timezone-aware")
    return int(t.timestamp() * 1_000_000)


def _time(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


@dataclass(frozen=True)
class EpochKey:
    """The PSI scalar and dummy seed used with one peer for one epoch."""

    key_id: str
    peer: str
    psi_key: bytes = field(repr=False)
    dummy_seed: bytes = field(repr=False)
    created: datetime
    expires: datetime


class EpochStore(Database):
    """``NODE_DIR/cache.db``: epoch keys per peer and their round caches.

    One connection shared by the threads of a process behind ``Database``'s lock: a
    transaction or a read (a blob read included) never interleaves with another thread's.
    """

    def __init__(self, path: Path, *, epoch: timedelta):
        if epoch <= timedelta(0):
            raise ConfigError("an epoch must be longer than zero")
        super().__init__(path, _connect(Path(path)))
        self.epoch = epoch

    @classmethod
    def for_node(cls, node_dir: Path, epoch_days: float) -> EpochStore:
        return cls(Path(node_dir) / CACHE_FILE, epoch=timedelta(days=epoch_days))

    def __enter__(self) -> EpochStore:
        return self

    # -- keys --------------------------------------------------------------------------

    def current(self, peer: str, now: datetime, suite: str = DEFAULT_SUITE) -> EpochKey:
        """This epoch's key of ``suite`` for ``peer``: the stored one while it is valid,
        else a new one. Keys of different suites never mix (nor do their caches, whose
        points differ in size).

        Every expired key (of any peer) is deleted first, with its caches.
        """
        name = key_name(peer, suite)
        with self.transaction() as db:
            purged = self._purge(db, now)
            row = db.execute(
                "SELECT key_id, psi_key, dummy_seed, created_us, expires_us FROM epoch_keys"
                " WHERE peer = ?",
                (name,),
            ).fetchone()
            if row is None:
                created, expires = _us(now), _us(now + self.epoch)
                row = (
                    secrets.token_hex(16),
                    new_psi_key(suite),
                    secrets.token_bytes(SEED_BYTES),
                    created,
                    expires,
                )
                db.execute(
                    "INSERT INTO epoch_keys (key_id, peer, psi_key, dummy_seed,"
                    " created_us, expires_us) VALUES (?, ?, ?, ?, ?, ?)",
                    (row[0], name, *row[1:]),
                )
                log.info("new epoch key for peer %s, valid until %s", name, _time(expires))
        if purged:
            self._checkpoint()
        key_id, psi_key, seed, created_us, expires_us = row
        if len(psi_key) != KEY_BYTES or len(seed) != SEED_BYTES:
            raise ConfigError(f"{self.path}: epoch key of peer {name} is damaged")
        try:
            get_suite(suite).check_key(bytes(psi_key))
        except ConfigError as e:
            raise ConfigError(f"{self.path}: epoch key of peer {name} is damaged: {e}") from e
        return EpochKey(
            key_id, peer, bytes(psi_key), bytes(seed), _time(created_us), _time(expires_us)
        )

    @classmethod
    def purge_expired(cls, node_dir: Path, now: datetime) -> int:
        """:meth:`purge` for a node whose rounds may never open ``cache.db`` again (rounds
        without verified matches use fresh keys, ADR 0016); creates no file."""
        if not (Path(node_dir) / CACHE_FILE).exists():
            return 0
        with cls(Path(node_dir) / CACHE_FILE, epoch=timedelta(days=1)) as epochs:
            return epochs.purge(now)  # the epoch length only matters to new keys

    def purge(self, now: datetime) -> int:
        """Delete every key past its expiry, with its caches; returns how many keys."""
        with self.transaction() as db:
            purged = self._purge(db, now)
        if purged:
            self._checkpoint()
        return purged

    def forget(self, peer: str) -> bool:
        """Delete ``peer``'s keys (of every suite) and caches now (a peer removed, or an
        early rotation)."""
        with self.transaction() as db:
            prefix = f"{peer}/"  # the keys of other suites (key_name)
            gone = (
                db.execute(
                    "DELETE FROM epoch_keys WHERE peer = ? OR substr(peer, 1, ?) = ?",
                    (peer, len(prefix), prefix),
                ).rowcount
                > 0
            )
        if gone:
            self._checkpoint()
        return gone

    def _purge(self, db: sqlite3.Connection, now: datetime) -> int:
        cur = db.execute(
            "DELETE FROM epoch_keys WHERE expires_us <= ? OR created_us > ?",
            (_us(now), _us(now + CLOCK_SLACK)),
        )
        if cur.rowcount:
            log.info("deleted %d expired epoch key(s) and their caches", cur.rowcount)
        return cur.rowcount

    def _checkpoint(self) -> None:
        # Copy the WAL into the database and truncate it, so that deleted keys do not
        # linger in old WAL frames either.
        with self.reading() as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- caches ------------------------------------------------------------------------

    def load(self, key: EpochKey) -> RoundCache:
        """The caches of the last round under ``key`` (empty tables are None)."""
        tables: dict[str, PackedTable | LayeredTable | None] = dict.fromkeys(CACHE_NAMES)
        with self.reading() as db:
            for name in CACHE_NAMES:
                tables[name] = self._read_table(db, key, name)
        return RoundCache(own=tables["own"], peer=tables["peer"])

    def _read_table(
        self, db: sqlite3.Connection, key: EpochKey, name: str
    ) -> PackedTable | LayeredTable | None:
        row = db.execute(
            "SELECT c.rowid FROM epoch_caches c JOIN epoch_keys k USING (key_id)"
            " WHERE c.key_id = ? AND c.name = ?",
            (key.key_id, name),
        ).fetchone()
        if row is None:
            return None
        try:
            with db.blobopen("epoch_caches", "data", row[0], readonly=True) as blob:
                base = PackedTable.from_bytes(blob.read())
            parts = [
                PackedTable.from_bytes(bytes(data))
                for (data,) in db.execute(
                    "SELECT data FROM epoch_cache_parts WHERE key_id = ? AND name = ?"
                    " ORDER BY rowid",
                    (key.key_id, name),
                )
            ]
            return LayeredTable([base, joined_tables(parts)]) if parts else base
        except sqlite3.Error:  # replaced by another process's round just now: compute afresh
            log.info("the %s cache for peer %s changed while reading it", name, key.peer)
        except ValueError:
            log.warning("ignoring a damaged %s cache for peer %s", name, key.peer)
        return None

    def save(self, key: EpochKey, cache: CacheUpdate | RoundCache, now: datetime) -> bool:
        """Keep ``cache`` as ``key``'s caches: a round's new rows appended as a part where
        ``protocol/epoch_cache.py`` allows it, else every table rewritten; False (nothing
        written) unless ``key`` is still the current, unexpired key."""
        with self.transaction() as db:
            purged = self._purge(db, now)
            current = (
                db.execute("SELECT 1 FROM epoch_keys WHERE key_id = ?", (key.key_id,)).fetchone()
                is not None
            )
            if current:
                self._write(db, key, cache)
        if purged:
            self._checkpoint()
        return current

    def load_verified(self, key: EpochKey) -> tuple[bytes, PackedTable] | None:
        """(peer public key, X -> Y table) of the pairs proven in earlier rounds under ``key``."""
        with self.reading() as db:
            row = db.execute(
                "SELECT peer_key, data FROM epoch_verified WHERE key_id = ?", (key.key_id,)
            ).fetchone()
        if row is None:
            return None
        try:
            return bytes(row[0]), PackedTable.from_bytes(bytes(row[1]))
        except ValueError:
            log.warning("ignoring a damaged verified-pairs cache for peer %s", key.peer)
            return None

    def save_verified(
        self, key: EpochKey, peer_key: bytes, table: TableSource, now: datetime
    ) -> bool:
        """Replace ``key``'s verified pairs; False unless ``key`` is still current."""
        data = b"".join(bytes(part) for part in table.chunks())
        with self.transaction() as db:
            self._purge(db, now)
            current = (
                db.execute("SELECT 1 FROM epoch_keys WHERE key_id = ?", (key.key_id,)).fetchone()
                is not None
            )
            if current:
                db.execute(
                    "INSERT OR REPLACE INTO epoch_verified (key_id, peer_key, data)"
                    " VALUES (?, ?, ?)",
                    (key.key_id, peer_key, data),
                )
        return current

    def churn(self, key: EpochKey) -> int:
        """Points the peer brought under ``key`` that the cache did not know, so far."""
        with self.reading() as db:
            row = db.execute(
                "SELECT peer_new FROM epoch_churn WHERE key_id = ?", (key.key_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def add_churn(self, key: EpochKey, new: int) -> None:
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM epoch_keys WHERE key_id = ?", (key.key_id,)).fetchone():
                db.execute(
                    "INSERT INTO epoch_churn (key_id, peer_new) VALUES (?, ?) ON CONFLICT"
                    " (key_id) DO UPDATE SET peer_new = peer_new + excluded.peer_new",
                    (key.key_id, new),
                )

    def _write(
        self, db: sqlite3.Connection, key: EpochKey, cache: CacheUpdate | RoundCache
    ) -> None:
        if isinstance(cache, RoundCache):
            for name, cached in (("own", cache.own), ("peer", cache.peer)):
                self._rewrite(db, key, name, cached)
            return
        for name, table, new, known, loaded in (
            ("own", cache.own, cache.own_new, cache.own_known, cache.own_loaded),
            ("peer", cache.peer, cache.peer_new, cache.peer_known, cache.peer_loaded),
        ):
            stored, parts = self._stored_rows(db, key, name, table.key_size + table.value_size)
            if new is not None and append_as_part(stored, parts, known, len(new), loaded):
                if len(new):
                    db.execute(
                        "INSERT INTO epoch_cache_parts (key_id, name, data) VALUES (?, ?, ?)",
                        (key.key_id, name, b"".join(bytes(c) for c in new.chunks())),
                    )
            else:
                self._rewrite(db, key, name, table)

    def _stored_rows(
        self, db: sqlite3.Connection, key: EpochKey, name: str, row_bytes: int
    ) -> tuple[int, int]:
        """(rows, parts) of a stored table, from blob lengths alone (nothing is read)."""
        header = PackedTable.serialized_size_of(0, 0)
        base = db.execute(
            "SELECT length(data) FROM epoch_caches WHERE key_id = ? AND name = ?",
            (key.key_id, name),
        ).fetchone()
        if base is None or row_bytes <= 0:
            return 0, 0
        count, total = db.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM epoch_cache_parts"
            " WHERE key_id = ? AND name = ?",
            (key.key_id, name),
        ).fetchone()
        return (int(base[0]) + int(total) - header * (1 + int(count))) // row_bytes, int(count)

    def _rewrite(
        self,
        db: sqlite3.Connection,
        key: EpochKey,
        name: str,
        table: PackedTable | LayeredTable | TableSource | None,
    ) -> None:
        """Replace a table and its parts with ``table`` (none: deleted)."""
        for t in ("epoch_caches", "epoch_cache_parts"):
            db.execute(f"DELETE FROM {t} WHERE key_id = ? AND name = ?", (key.key_id, name))
        if table is None:
            return
        if isinstance(table, LayeredTable):
            table = joined_tables(table.layers)
        # Written through the blob API, piece by piece: no second copy of a large table.
        cur = db.execute(
            "INSERT INTO epoch_caches (key_id, name, data) VALUES (?, ?, zeroblob(?))",
            (key.key_id, name, table.serialized_size()),
        )
        assert cur.lastrowid is not None
        with db.blobopen("epoch_caches", "data", cur.lastrowid) as blob:
            for part in table.chunks():
                blob.write(part)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Large pages: a cache is a few big blobs (64 KiB pages write them twice as fast).
    return open_sqlite(
        path,
        what="cache",
        timeout=60,
        page_size=65536,
        pragmas=["secure_delete = ON", "journal_size_limit = 0"],
        prepare=lambda db: _prepare_schema(db, path),
    )


def _prepare_schema(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version in (0, 1, 2, 3):
        db.execute("BEGIN IMMEDIATE")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        parts = (_PARTS_TABLE, _PARTS_INDEX)
        upgrade = {
            0: (*_SCHEMA, _VERIFIED, _CHURN_TABLE, *parts),
            1: (_VERIFIED, _CHURN_TABLE, *parts),
            2: (_CHURN_TABLE, *parts),
            3: parts,
        }.get(version, ())
        for statement in upgrade:  # another process may have upgraded meanwhile: ()
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    elif version != SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: cache schema {version} is not {SCHEMA_VERSION}; "
            "delete the file (it only holds epoch keys and caches)"
        )
