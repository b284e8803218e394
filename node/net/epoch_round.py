"""A round's key and caches under the peer's epoch (node/state/epochs.py), as I/O that
never fails a round: a missing or broken epoch store costs time, never correctness."""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from node.state.epochs import EpochKey, EpochStore, new_psi_key
from protocol.errors import CrossmatchError
from protocol.padding import SEED_BYTES
from protocol.psi import PackedTable, TableSource
from protocol.round import CacheUpdate, RoundCache
from protocol.suites import get_suite
from protocol.transcript import RoundHeader

log = logging.getLogger("crossmatch.exchange")


@dataclass
class RoundEpoch:
    """This round's PSI key and dummy seed; with an epoch key, what the epoch knows."""

    round_id: str
    node_dir: Path
    days: float
    now: Callable[[], datetime]
    psi_key: bytes
    dummy_seed: bytes
    key: EpochKey | None = None
    cache: RoundCache | None = None
    known: tuple[bytes, PackedTable] | None = None  # pairs proven this epoch
    churn: int = 0  # the peer's new points so far this epoch

    @classmethod
    def open(
        cls,
        header: RoundHeader,
        peer_lab: str,
        *,
        node_dir: Path,
        days: float,
        now: Callable[[], datetime],
    ) -> RoundEpoch:
        """Reveal rounds with verified matches use this peer's epoch key and its cache.
        Every other round uses a fresh key and no cache (so does ``epoch_days = 0``):

        - count rounds: a peer that could link our elements across rounds could find
          out, round after round, which of them match, which is exactly what count
          mode hides (docs/threat-model.md);
        - reveal rounds without verified matches: under a key kept across rounds a
          peer can compute our re-blinding of points it crafts (from a match of an
          earlier round, ``a*H(y)``, it knows ``a*(r*H(y))`` for any r) or reuse what
          we released before, and plant matches nothing in the round can refuse; only
          a DLEQ proof of every stored match does (ADR 0016)."""
        fresh = cls(
            header.round_id,
            node_dir,
            days,
            now,
            new_psi_key(header.suite),
            secrets.token_bytes(SEED_BYTES),
        )
        proven = header.verified_matches and get_suite(header.suite).proofs
        if header.mode != "reveal" or not proven or days <= 0:
            return fresh
        try:
            with EpochStore.for_node(node_dir, days) as epochs:
                key = epochs.current(peer_lab, now(), header.suite)
                return cls(
                    header.round_id,
                    node_dir,
                    days,
                    now,
                    key.psi_key,
                    key.dummy_seed,
                    key,
                    epochs.load(key),
                    epochs.load_verified(key),
                    epochs.churn(key),
                )
        except (CrossmatchError, sqlite3.Error, OSError) as e:
            # Never fail a round for its cache: a fresh key is always correct.
            log.warning(
                "round %s: epoch keys unavailable (%s); using a fresh key", header.round_id, e
            )
        return fresh

    def _store(self) -> EpochStore:
        return EpochStore.for_node(self.node_dir, self.days)

    def record_churn(self, peer_new: int) -> None:
        """Add the peer's new points of this round to the epoch's churn, whatever the
        round's outcome (a peer that aborts after our release has still probed)."""
        if self.key is None or peer_new == 0:
            return
        try:
            with self._store() as ep:
                ep.add_churn(self.key, peer_new)
        except (CrossmatchError, sqlite3.Error, OSError) as e:
            log.warning("round %s: could not record the peer's churn: %s", self.round_id, e)

    def save_cache(self, update: Callable[[], CacheUpdate | None]) -> None:
        """Keep what this round computed for the next round of the epoch (never fails it)."""
        if self.key is None:
            return
        try:
            cache = update()
            if cache is None:
                return
            with self._store() as ep:
                if not ep.save(self.key, cache, self.now()):
                    log.info("round %s: epoch key rotated meanwhile; cache not kept", self.round_id)
        except Exception as e:  # a cache is an optimisation: losing it costs time, not a round
            log.warning("round %s: could not keep the epoch cache: %s", self.round_id, e)

    def save_verified(self, peer_key: bytes, pairs: Callable[[], TableSource]) -> None:
        """Remember this round's proven pairs for the epoch (never fails the round)."""
        if self.key is None:
            return
        try:
            with self._store() as ep:
                ep.save_verified(self.key, peer_key, pairs(), self.now())
        except Exception as e:  # an optimisation, like the cache
            log.warning("round %s: could not keep the proven pairs: %s", self.round_id, e)
