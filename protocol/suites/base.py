"""What every PSI suite provides, and the worker pool both engines share.

A suite is a prime-order group with a hash onto it: ``blind`` maps own
fingerprints x to k*H(x), ``reblind`` multiplies the peer's points by k. Each
suite fixes its point size (the width of every packed run on the wire, in the
caches and in the transcript), how a key is made from given random bytes (the
protocol stays pure: randomness is a parameter), and whether it can prove its
re-blinding (a batched DLEQ proof, :mod:`protocol.suites.dleq`).

Thread safety: engines compute on a pool of worker threads, one native object
(or none) per thread; the group libraries release the GIL, so workers run in
parallel.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from protocol.errors import ProtocolError
from protocol.rules import Rule

T = TypeVar("T")


def split_points(packed: bytes, width: int) -> list[bytes]:
    """Split a packed run into points; ProtocolError when it is not whole points."""
    if len(packed) % width:
        raise ProtocolError(
            f"element run of {len(packed)} bytes is not a whole number of {width}-byte points",
            rule=Rule.MALFORMED_ELEMENT,
        )
    return [packed[i : i + width] for i in range(0, len(packed), width)]


def split_even(items: list[T], parts: int) -> list[list[T]]:
    """``items`` in at most ``parts`` consecutive runs of nearly equal length."""
    size = max(1, -(-len(items) // parts))
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


class WorkerEngine(ABC):
    """Blinds and re-blinds on a pool of worker threads.

    ``blinded`` and ``reblinded`` count the elements this engine has computed,
    so callers (and tests) can see how much work a cache saved.
    """

    suite_name: str = ""
    point_bytes: int = 0

    def __init__(self, key: bytes, *, workers: int = 2):
        self._key = key
        self._local = threading.local()
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="psi")
        self._count_lock = threading.Lock()
        self.blinded = 0
        self.reblinded = 0

    # -- what a suite implements (run on a worker thread) -----------------------

    @abstractmethod
    def _blind_points(self, items: Sequence[bytes]) -> bytes:
        """k*H(x) for each item, packed, in order."""

    @abstractmethod
    def _reblind_points(self, points: list[bytes]) -> bytes:
        """k*P for each received point, packed, in order; ProtocolError on a bad point."""

    # -- shared -------------------------------------------------------------------

    def _count(self, blinded: int = 0, reblinded: int = 0) -> None:
        with self._count_lock:
            self.blinded += blinded
            self.reblinded += reblinded

    def _blind_now(self, items: Sequence[bytes]) -> bytes:
        if not items:
            return b""
        out = self._blind_points(items)
        self._count(blinded=len(items))
        return out

    def _reblind_now(self, packed: bytes) -> bytes:
        points = split_points(packed, self.point_bytes)
        if not points:
            return b""
        out = self._reblind_points(points)
        self._count(reblinded=len(points))
        return out

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on a worker (used by proofs to share the pool)."""
        return self._pool.submit(fn, *args)

    def submit_blind(self, items: Sequence[bytes]) -> Future[bytes]:
        return self._pool.submit(self._blind_now, items)

    def submit_reblind(self, packed: bytes) -> Future[bytes]:
        return self._pool.submit(self._reblind_now, packed)

    def blind(self, items: Sequence[bytes]) -> bytes:
        """k*H(x) for every item, order kept, spread over the workers."""
        parts = split_even(list(items), self.workers)
        return b"".join(f.result() for f in [self.submit_blind(p) for p in parts])

    def reblind(self, packed: bytes) -> bytes:
        """k*P for every packed point, order kept, spread over the workers."""
        points = split_points(packed, self.point_bytes)
        parts = [b"".join(p) for p in split_even(points, self.workers)]
        return b"".join(f.result() for f in [self.submit_reblind(p) for p in parts])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Suite(ABC):
    """One PSI suite: its name (as the policy names it), sizes, keys and engine."""

    name: str = ""
    point_bytes: int = 0
    key_bytes: int = 32
    # Bytes of randomness ``key_from_random`` takes (64: the reduction bias is < 2^-128).
    random_bytes: int = 64
    # Whether the suite can prove its re-blinding (batched DLEQ).
    proofs: bool = False

    @abstractmethod
    def key_from_random(self, random: bytes) -> bytes:
        """A valid secret key from ``random_bytes`` uniformly random bytes."""

    @abstractmethod
    def check_key(self, key: bytes) -> None:
        """ConfigError unless ``key`` is a valid secret key of this suite."""

    @abstractmethod
    def engine(self, key: bytes, *, workers: int = 2) -> WorkerEngine:
        """A worker engine for ``key``."""

    def public_key(self, key: bytes) -> bytes:
        """k*G, the value a side commits to before a verified round."""
        raise NotImplementedError(f"suite {self.name} has no public keys")

    @abstractmethod
    def self_test(self) -> None:
        """A known-answer test; raises ConfigError if the engine is broken."""
