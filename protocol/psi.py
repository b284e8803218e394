"""Mutual ECDH PSI: packed points, matching, shuffling; the engines are in protocol.suites.

Each lab holds a secret scalar k of the round's suite (``protocol/suites/``).
``blind`` maps its own fingerprints x to k*H(x); ``reblind`` multiplies the
peer's points by k, giving k'k*H(y). Multiplication commutes, so an element held
by both sides ends up as the same doubly-blinded point on both sides, and each
side can match without seeing the other's raw values.

Points travel packed: concatenated fixed-width points (33 bytes for P-256, 32
for ristretto255), one ``bytes`` object per chunk, which is far cheaper to move
through protobuf than a list. Large collections of points (matching, the epoch
caches) live in numpy arrays of fixed-width rows (``protocol/tables.py``, re-exported
here), never as Python sets of ``bytes``. ``POINT_BYTES`` is the P-256 width, the default where
a width is not given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, overload

import numpy as np

from protocol.suites.base import split_points
from protocol.suites.p256 import KEY_BYTES as KEY_BYTES
from protocol.suites.p256 import POINT_BYTES as POINT_BYTES
from protocol.suites.p256 import P256Engine
from protocol.suites.p256 import check_key as check_key
from protocol.tables import BLOCK_ROWS as BLOCK_ROWS
from protocol.tables import TABLE_DOMAIN as TABLE_DOMAIN
from protocol.tables import Packed as Packed
from protocol.tables import PackedTable as PackedTable
from protocol.tables import TableSource as TableSource
from protocol.tables import fill_rows as fill_rows
from protocol.tables import row_prefixes, stable_order
from protocol.tables import rows as rows

ELEMENT_BYTES = 32  # a fingerprint


class RandomSource(Protocol):
    """Where a round's randomness comes from (``random.SystemRandom()`` in a node)."""

    def randbytes(self, n: int) -> bytes: ...


def pack(points: Iterable[bytes]) -> bytes:
    return b"".join(points)


def unpack(packed: bytes, width: int = POINT_BYTES) -> list[bytes]:
    """Split packed points; raises ProtocolError when the length is not whole points."""
    return split_points(packed, width)


def count_points(packed: bytes, width: int = POINT_BYTES) -> int:
    if len(packed) % width:
        split_points(packed, width)  # raises with the standard message
    return len(packed) // width


Engine = P256Engine  # the original engine's name; other suites: protocol.suites


class PackedElements(Sequence[bytes]):
    """Fixed-width elements back to back in one buffer: a list of ``bytes`` at a third of
    the memory (a million fingerprints: 32 MB instead of about 80 MB)."""

    def __init__(self, data: bytes | bytearray, width: int = ELEMENT_BYTES):
        if len(data) % width:
            raise ValueError(f"{len(data)} bytes are not whole elements of {width}")
        # A bytearray is taken over as is (the caller hands it on); anything else is copied.
        self._data = data if isinstance(data, bytearray) else bytearray(data)
        self.width = width

    def __len__(self) -> int:
        return len(self._data) // self.width

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        w = self.width
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("PackedElements slices have step 1")
            d = self._data
            return [bytes(d[i * w : (i + 1) * w]) for i in range(start, stop)]
        if not -len(self) <= index < len(self):
            raise IndexError("element index out of range")
        i = index % len(self)
        return bytes(self._data[i * w : (i + 1) * w])

    def __setitem__(self, index: int, value: bytes) -> None:
        if len(value) != self.width or not 0 <= index < len(self):
            raise ValueError("element of the wrong width or index out of range")
        self._data[index * self.width : (index + 1) * self.width] = value

    @property
    def packed(self) -> memoryview:
        return memoryview(self._data)


def packed_elements(items: Sequence[bytes]) -> memoryview | bytes:
    """The packed form of own elements, without a copy when they already are packed."""
    return items.packed if isinstance(items, PackedElements) else pack(items)


# -- sections, shuffling, matching ----------------------------------------------------------


def sections(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) ranges of consecutive kind sections of the given sizes."""
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return out


def random_permutation(n: int, rng: RandomSource) -> np.ndarray:
    """A uniformly random permutation of range(n): the order of 64-bit random keys.

    Two equal keys (probability about n^2 / 2^65) only make two positions keep
    their relative order.
    """
    keys = np.frombuffer(rng.randbytes(8 * n), dtype="<u8") if n else np.zeros(0, np.uint64)
    return stable_order(keys)  # exactly the stable sort's order: replayable (disclosures)


def shuffle_packed_within_sections(
    packed: Packed, sizes: Sequence[int], rng: RandomSource, width: int = POINT_BYTES
) -> bytes:
    """Count mode, on packed points: shuffle each kind's section independently."""
    points = rows(packed, width)
    out = np.empty_like(points)
    for start, end in sections(sizes):
        out[start:end] = points[start:end][random_permutation(end - start, rng)]
    return out.tobytes()


def match_packed(own_double: Packed, peer_double: Packed, width: int = POINT_BYTES) -> list[int]:
    """Positions of the packed ``own_double`` points that are among the packed ``peer_double``."""
    table = PackedTable.build(peer_double, width)
    return np.flatnonzero(table.contains(own_double)).tolist()


def strictly_increasing(packed: Packed, width: int) -> bool:
    """Whether packed rows are in strictly increasing byte order (so all distinct).

    Vectorized: a store returns its fingerprints sorted and distinct, and checking
    that costs a fraction of deduplicating a million of them through a dict.
    """
    k = rows(packed, width)
    if len(k) < 2:
        return True
    if width % 8:
        raise ValueError("rows must be a whole number of 8-byte words")
    words = np.ascontiguousarray(k).view(">u8")
    a, b = words[:-1], words[1:]
    differ = a != b
    first = differ.argmax(axis=1)  # the first word in which neighbours differ
    at = np.arange(len(a))
    return bool(differ[at, first].all() and (b[at, first] > a[at, first]).all())


def has_duplicates(packed: Packed, width: int = POINT_BYTES) -> bool:
    """Whether any row occurs twice: one sort of the 8-byte prefixes, then whole rows
    compared only where prefixes tie (pairs of neighbours, and a set for longer runs, so
    rows a peer crafted to share a prefix cost linear time, never quadratic)."""
    k = rows(packed, width)
    if len(k) < 2:
        return False
    prefix = row_prefixes(k)
    order = np.argsort(prefix)
    tied = np.flatnonzero(prefix[order][1:] == prefix[order][:-1])
    if not len(tied):
        return False
    seen: set[bytes] = set()
    for i in np.unique(np.concatenate([order[tied], order[tied + 1]])).tolist():
        row = k[i].tobytes()
        if row in seen:
            return True
        seen.add(row)
    return False


def dedupe(items: Iterable[bytes]) -> list[bytes]:
    """Distinct items, first occurrence order (a set with duplicates would double-count)."""
    return list(dict.fromkeys(items))
