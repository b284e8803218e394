"""What a round side computes and keeps: the engine work it queued, its results, its cache.

:class:`Submissions` is the side's handle on the engine's worker pool. It remembers
every chunk the side queued, so that a failed round cancels whatever has not started
(an aborted round stops blinding within one chunk per worker, not seconds later) and
queues nothing new. The other types are the values a round hands back: its
:class:`RoundOutcome`, the :class:`RoundCache` of an earlier round under the same
key, the :class:`CacheUpdate` it leaves for the next one and the :class:`RoundWork`
counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocol.psi import (
    ELEMENT_BYTES,
    PackedElements,
    PackedTable,
    TableSource,
    fill_rows,
    match_packed,
    packed_elements,
    rows,
    sections,
)
from protocol.suites.base import WorkerEngine
from protocol.tables import LayeredTable, Packed
from protocol.transcript import RoundHeader


@dataclass
class RoundOutcome:
    transcript_hash: bytes
    intersection_sizes: dict[str, int]
    # Reveal mode: positions within each kind's section of our own element list.
    matched_positions: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class RoundCache:
    """What an earlier round under the same key computed.

    ``own``: own element (32 bytes) -> its blinding H(x)^k;
    ``peer``: the peer's blinded point -> our re-blinding of it.
    Either may be layered: a stored table and the rows later rounds added to it.
    """

    own: PackedTable | LayeredTable | None = None
    peer: PackedTable | LayeredTable | None = None


@dataclass(frozen=True)
class CacheUpdate:
    """What a round leaves for the next round under the same key (see RoundCache).

    ``own`` and ``peer``: every row of this round. ``own_new`` and ``peer_new``: the rows
    the cache did not know (None: the round had no cache, every row is new), and
    ``own_known``/``peer_known`` how many it did know: a store may append the new rows
    to what it holds instead of rewriting it all (node/state/epochs.py, ADR 0015).
    """

    own: TableSource
    peer: TableSource
    own_new: TableSource | None = None
    peer_new: TableSource | None = None
    own_known: int = 0
    peer_known: int = 0
    own_loaded: int | None = None  # rows of the cache the round loaded (None: not known)
    peer_loaded: int | None = None

    def tables(self) -> RoundCache:
        return RoundCache(self.own.build(), self.peer.build())


@dataclass
class RoundWork:
    """How many elements the engine computed and how many came from the cache."""

    blinded: int = 0
    blinded_cached: int = 0
    reblinded: int = 0
    reblinded_cached: int = 0


class Chunk:
    """A chunk of results: rows known from the cache plus rows the engine is computing.

    ``result`` raises ``concurrent.futures.CancelledError`` when the round failed and
    its work was cancelled before it ran.
    """

    def __init__(
        self, known: np.ndarray | None, found: np.ndarray | None, future: Future[bytes] | None
    ):
        self.known, self.found, self.future = known, found, future

    def result(self) -> bytes:
        computed = self.future.result() if self.future is not None else b""
        if self.known is None or self.found is None:
            return computed
        return fill_rows(self.known, self.found, computed)


def _cancelled() -> Future[bytes]:
    future: Future[bytes] = Future()
    future.cancel()
    return future


class Submissions:
    """The engine work one side has queued and not yet seen finish."""

    def __init__(self, engine: WorkerEngine):
        self._engine = engine
        self._lock = threading.Lock()
        self._open: set[Future[Any]] = set()
        self._stopped = False

    def blind(self, items: Sequence[bytes]) -> Future[bytes]:
        return self._track(self._engine.submit_blind, items)

    def reblind(self, packed: bytes) -> Future[bytes]:
        return self._track(self._engine.submit_reblind, packed)

    def _track(self, submit: Callable[[Any], Future[bytes]], arg: Any) -> Future[bytes]:
        with self._lock:
            if self._stopped:  # the round failed: queue nothing more for it
                return _cancelled()
            future = submit(arg)
            self._open.add(future)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: Future[Any]) -> None:
        with self._lock:
            self._open.discard(future)

    def stop(self) -> int:
        """Cancel every queued chunk not yet started and refuse new ones; how many were
        cancelled (a chunk already on a worker runs to its end: the engine cannot be
        interrupted mid-call)."""
        with self._lock:
            self._stopped = True
            queued = list(self._open)
        return sum(1 for f in queued if f.cancel())

    @property
    def stopped(self) -> bool:
        return self._stopped


class CachedWork:
    """The engine behind an epoch cache: only what the cache does not know is computed.

    ``work`` counts both; ``peer_new`` counts the peer's points the cache did not know,
    checked by ``churn_check`` (which raises to refuse them before they are re-blinded).
    """

    def __init__(
        self,
        engine: WorkerEngine,
        cache: RoundCache | None,
        width: int,
        churn_check: Callable[[int], None] | None = None,
    ):
        self.submissions = Submissions(engine)
        # Our own reference: parts are dropped as soon as they are no longer needed.
        self.cache = RoundCache(cache.own, cache.peer) if cache else RoundCache()
        self.work = RoundWork()
        self.peer_new = 0
        self._w = width
        self._churn_check = churn_check
        # Which rows the cache knew, for the next cache: own (None: no own cache) and the
        # peer's chunks in stream order (None: no peer cache).
        self.own_found: np.ndarray | None = None
        self._peer_found: list[np.ndarray] | None = [] if self.cache.peer else None
        self.loaded = tuple(
            len(t) if t is not None else 0 for t in (self.cache.own, self.cache.peer)
        )

    def peer_found(self, total: int) -> np.ndarray | None:
        """Which of the peer's ``total`` points the cache knew (None: no cache, or not
        every chunk was seen)."""
        if self._peer_found is None:
            return None
        found = np.concatenate(self._peer_found) if self._peer_found else np.zeros(0, bool)
        return found if len(found) == total else None

    def stop(self) -> int:
        return self.submissions.stop()

    def reblind(self, packed: bytes) -> Chunk:
        """Re-blind one chunk of the peer's points; only points not in the cache are computed."""
        table = self.cache.peer
        n = len(packed) // self._w
        if table is None or len(table) == 0:
            self.work.reblinded += n
            if self._peer_found is not None:
                self._peer_found.append(np.zeros(n, bool))
            return Chunk(None, None, self.submissions.reblind(packed))
        known, found = table.lookup(packed)
        if self._peer_found is not None:
            self._peer_found.append(found)
        misses = n - int(found.sum())
        self.peer_new += misses
        if self._churn_check is not None:
            self._churn_check(self.peer_new)
        self.work.reblinded += misses
        self.work.reblinded_cached += n - misses
        future = None
        if misses:
            future = self.submissions.reblind(rows(packed, self._w)[~found].tobytes())
        return Chunk(known, found, future)

    def blind(self, own: Sequence[bytes], start: int, end: int, blinded: np.ndarray) -> Chunk:
        """Blind ``own[start:end]``: the rows the cache knows go straight into ``blinded``,
        only the others to the engine. Chunk by chunk, so the engine starts on the first
        chunk's misses at once instead of after a lookup of the whole set."""
        table = self.cache.own
        if table is None or len(table) == 0 or start >= end:
            self.work.blinded += end - start
            return Chunk(None, None, self.submissions.blind(own[start:end]))
        if self.own_found is None:
            self.own_found = np.zeros(len(own), bool)
        packed = (
            own.packed[start * ELEMENT_BYTES : end * ELEMENT_BYTES]
            if isinstance(own, PackedElements)
            else packed_elements(own[start:end])
        )
        values, f = table.lookup(packed)
        known = rows(blinded, self._w)[start:end]
        known[f] = values[f]
        self.own_found[start:end] = f
        if end >= len(own):
            self.cache.own = None  # every own element was looked up: let it go
        misses = [own[start + i] for i in np.flatnonzero(~f).tolist()]
        self.work.blinded += len(misses)
        self.work.blinded_cached += end - start - len(misses)
        future = self.submissions.blind(misses) if misses else None
        return Chunk(known, f, future)


def check_side_inputs(
    header: RoundHeader,
    role: str,
    own: Sequence[bytes],
    engine: WorkerEngine,
    cache: RoundCache | None,
    keep_cache: bool,
) -> bool:
    """ValueError on inputs that cannot make this side of the round; whether it uses a
    cache (which needs own elements of ELEMENT_BYTES)."""
    if len(own) != sum(header.sizes(role)):
        raise ValueError("own elements do not match the announced sizes")
    if engine.suite_name != header.suite:
        raise ValueError(f"a {engine.suite_name} engine for a {header.suite} round")
    for table in (cache.own, cache.peer) if cache else ():
        if table is not None and table.value_size not in (0, engine.point_bytes):
            raise ValueError(
                f"a cache of {table.value_size}-byte points for a {header.suite} round"
            )
    caching = cache is not None and cache.own is not None or keep_cache
    if caching and not (
        isinstance(own, PackedElements)
        and own.width == ELEMENT_BYTES
        or all(len(x) == ELEMENT_BYTES for x in own)
    ):
        raise ValueError(f"a cache needs own elements of {ELEMENT_BYTES} bytes")
    return caching


# -- what a complete round yields -------------------------------------------------------------


def match_sections(
    header: RoundHeader, role: str, own_double: np.ndarray, peer_double: np.ndarray, width: int
) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Intersection size per kind, and (reveal mode) the matching positions within each of
    our kind sections. Sections line up by kind: the peer's section i holds the same kind
    as ours."""
    sizes: dict[str, int] = {}
    positions: dict[str, list[int]] = {}
    other = "responder" if role == "initiator" else "initiator"
    ours, theirs = header.sizes(role), header.sizes(other)
    for kind, (start, end), (pstart, pend) in zip(
        header.kinds, sections(ours), sections(theirs), strict=True
    ):
        found = match_packed(
            own_double[start * width : end * width],
            peer_double[pstart * width : pend * width],
            width,
        )
        sizes[kind] = len(found)
        if header.mode == "reveal":
            positions[kind] = found
    return sizes, positions


def matched_rows(
    kinds: Sequence[str], own_sizes: Sequence[int], outcome: RoundOutcome
) -> np.ndarray:
    """The matching positions of every kind as rows of our whole element list."""
    return np.concatenate(
        [
            start + np.asarray(outcome.matched_positions.get(kind, []), np.int64)
            for kind, (start, _) in zip(kinds, sections(own_sizes), strict=True)
        ]
    )


def cache_update(
    own: Sequence[bytes],
    own_blinded: np.ndarray,
    peer_blinded: np.ndarray,
    peer_double: np.ndarray,
    width: int,
    own_found: np.ndarray | None = None,
    peer_found: np.ndarray | None = None,
    loaded: tuple[int, ...] = (0, 0),
) -> CacheUpdate:
    """This round's values as the next round's cache: own element -> its blinding, the
    peer's point -> our re-blinding of it; with the masks of the rows the cache knew,
    the new rows apart too."""
    own_keys = packed_elements(own)
    own_new, own_known = _new_rows(own_keys, ELEMENT_BYTES, own_blinded, width, own_found)
    peer_new, peer_known = _new_rows(peer_blinded, width, peer_double, width, peer_found)
    return CacheUpdate(
        own=TableSource(own_keys, ELEMENT_BYTES, own_blinded, width),
        peer=TableSource(peer_blinded, width, peer_double, width),
        own_new=own_new,
        peer_new=peer_new,
        own_known=own_known,
        peer_known=peer_known,
        own_loaded=loaded[0],
        peer_loaded=loaded[1],
    )


def _new_rows(
    keys: Packed, key_size: int, values: np.ndarray, value_size: int, found: np.ndarray | None
) -> tuple[TableSource | None, int]:
    """The rows ``found`` does not mark, and how many it marks (None, 0 without a mask)."""
    k, v = rows(keys, key_size), rows(values, value_size)
    if found is None or len(found) != len(k) or len(k) != len(v):
        return None, 0
    new = ~found
    return TableSource(k[new], key_size, v[new], value_size), int(found.sum())
