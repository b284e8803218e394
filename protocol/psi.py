"""Mutual ECDH PSI on the openmined-psi library: blind, re-blind, match.

Each lab holds a P-256 scalar k. ``blind`` maps its own fingerprints x to H(x)^k
(``client.CreateRequest``); ``reblind`` raises the peer's points to k
(``server.ProcessRequest``), giving H(y)^(k'k). Exponentiation commutes, so an
element held by both sides ends up as the same doubly-blinded point on both
sides, and each side can match without seeing the other's raw values.

Points travel packed: concatenated 33-byte compressed points, one ``bytes``
object per chunk, which is far cheaper to move through protobuf than a list.

Thread safety: one library object used from two threads at once aborts the
whole process (a C++ abort, not an exception). Each worker thread therefore
builds its own client and server objects from the same key bytes; the library
releases the GIL, so workers run in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import private_set_intersection.python as _psi

from protocol.errors import ConfigError, ProtocolError

POINT_BYTES = 33
KEY_BYTES = 32


class Shuffler(Protocol):
    def shuffle(self, x: list[Any]) -> None: ...


def pack(points: Iterable[bytes]) -> bytes:
    return b"".join(points)


def unpack(packed: bytes) -> list[bytes]:
    """Split packed points; raises ProtocolError when the length is not a multiple of 33."""
    if len(packed) % POINT_BYTES:
        raise ProtocolError(
            f"element run of {len(packed)} bytes is not a whole number of "
            f"{POINT_BYTES}-byte points",
            rule="malformed-element",
        )
    return [packed[i : i + POINT_BYTES] for i in range(0, len(packed), POINT_BYTES)]


def count_points(packed: bytes) -> int:
    if len(packed) % POINT_BYTES:
        unpack(packed)  # raises with the standard message
    return len(packed) // POINT_BYTES


def check_key(key: bytes) -> None:
    """Raise ConfigError unless ``key`` is a valid P-256 scalar in [1, order)."""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"PSI key must be {KEY_BYTES} bytes, got {len(key)}")
    try:
        _psi.server.CreateFromKey(key, True)
    except RuntimeError as e:
        raise ConfigError(f"invalid PSI key: {e}") from e


class Engine:
    """Blinds and re-blinds on a pool of worker threads, one library object per thread."""

    def __init__(self, key: bytes, *, workers: int = 2):
        check_key(key)
        self._key = key
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="psi")
        self.workers = max(1, workers)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = _psi.client.CreateFromKey(self._key, True)
        return client

    def _server(self) -> Any:
        server = getattr(self._local, "server", None)
        if server is None:
            server = self._local.server = _psi.server.CreateFromKey(self._key, True)
        return server

    def _blind_now(self, items: Sequence[bytes]) -> bytes:
        if not items:
            return b""
        request = self._client().CreateRequest(list(items))
        return b"".join(request.encrypted_elements)

    def _reblind_now(self, packed: bytes) -> bytes:
        points = unpack(packed)
        if not points:
            return b""
        request = _psi.Request(reveal_intersection=True)
        request.encrypted_elements.extend(points)
        try:
            response = self._server().ProcessRequest(request)
        except RuntimeError as e:
            # The library raises when a point does not decode (not on the curve, bad prefix).
            raise ProtocolError(
                "peer sent an element that is not a valid P-256 point", rule="malformed-element"
            ) from e
        return b"".join(response.encrypted_elements)

    def submit_blind(self, items: Sequence[bytes]) -> Future[bytes]:
        return self._pool.submit(self._blind_now, items)

    def submit_reblind(self, packed: bytes) -> Future[bytes]:
        return self._pool.submit(self._reblind_now, packed)

    def blind(self, items: Sequence[bytes]) -> bytes:
        """H(x)^k for every item, order kept, spread over the workers."""
        parts = _split(list(items), self.workers)
        return b"".join(f.result() for f in [self.submit_blind(p) for p in parts])

    def reblind(self, packed: bytes) -> bytes:
        """P^k for every packed point, order kept, spread over the workers."""
        points = unpack(packed)
        parts = [pack(p) for p in _split(points, self.workers)]
        return b"".join(f.result() for f in [self.submit_reblind(p) for p in parts])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    size = max(1, -(-len(items) // parts))
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def sections(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) ranges of consecutive kind sections of the given sizes."""
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return out


def shuffle_within_sections(
    points: list[bytes], sizes: Sequence[int], rng: Shuffler
) -> list[bytes]:
    """Count mode: hide which position matched, keep which kind it belongs to."""
    out: list[bytes] = []
    for start, end in sections(sizes):
        part = points[start:end]
        rng.shuffle(part)
        out.extend(part)
    return out


def match_positions(own_double: Sequence[bytes], peer_double: set[bytes]) -> list[int]:
    """Positions in ``own_double`` whose doubly-blinded point the peer also holds."""
    return [i for i, p in enumerate(own_double) if p in peer_double]


def dedupe(items: Iterable[bytes]) -> list[bytes]:
    """Distinct items, first occurrence order (a set with duplicates would double-count)."""
    return list(dict.fromkeys(items))
