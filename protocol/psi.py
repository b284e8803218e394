"""Mutual ECDH PSI: packed points, matching, shuffling; the engines are in protocol.suites.

Each lab holds a secret scalar k of the round's suite (``protocol/suites/``).
``blind`` maps its own fingerprints x to k*H(x); ``reblind`` multiplies the
peer's points by k, giving k'k*H(y). Multiplication commutes, so an element held
by both sides ends up as the same doubly-blinded point on both sides, and each
side can match without seeing the other's raw values.

Points travel packed: concatenated fixed-width points (33 bytes for P-256, 32
for ristretto255), one ``bytes`` object per chunk, which is far cheaper to move
through protobuf than a list. Large collections of points (matching, the epoch
caches) live in numpy arrays of fixed-width rows (:class:`PackedTable`), never
as Python sets of ``bytes``: a million points take 33 MB instead of about 100 MB,
and are looked up in bulk. ``POINT_BYTES`` is the P-256 width, the default where
a width is not given.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, overload

import numpy as np

from protocol.suites.base import split_points
from protocol.suites.p256 import KEY_BYTES as KEY_BYTES
from protocol.suites.p256 import POINT_BYTES as POINT_BYTES
from protocol.suites.p256 import P256Engine
from protocol.suites.p256 import check_key as check_key

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


# -- packed rows ---------------------------------------------------------------------------


Packed = bytes | bytearray | memoryview | np.ndarray
BLOCK_ROWS = 1 << 16  # rows handled at a time where a whole-array temporary would be large


def rows(packed: Packed, width: int) -> np.ndarray:
    """View a packed run as an (n, width) array of bytes, without copying."""
    if isinstance(packed, np.ndarray):
        return packed.reshape(-1, width) if width else packed.reshape(-1, 0)
    if len(packed) % width:
        raise ValueError(f"{len(packed)} bytes are not whole rows of {width}")
    return np.frombuffer(packed, dtype=np.uint8).reshape(-1, width)


def _prefixes(keys: np.ndarray) -> np.ndarray:
    # The last 8 bytes of a point or a fingerprint are uniformly distributed (the first
    # byte of a compressed P-256 point is only 02 or 03), which makes them a good sort key.
    tail = np.ascontiguousarray(keys[:, -8:])
    return tail.view(">u8").ravel().astype(np.uint64)


def _as_rows(a: np.ndarray) -> np.ndarray:
    """An (n, w) byte array as n opaque w-byte items: compared and gathered whole, which
    numpy does several times faster than row by row on a 2-d array."""
    a = np.ascontiguousarray(a)
    return a.view(np.dtype((np.void, a.shape[1]))).ravel() if a.shape[1] else a[:, :0].ravel()


def _take(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of an (n, w) byte array (a gather of whole rows)."""
    if a.shape[1] == 0:
        return np.zeros((len(index), 0), np.uint8)
    return _as_rows(a)[index].view(np.uint8).reshape(len(index), a.shape[1])


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


TABLE_DOMAIN = b"crossmatch/v1/packed-table\n"
_TABLE_HEADER = struct.Struct(">III")


def _table_header(key_size: int, value_size: int, n: int) -> bytes:
    return TABLE_DOMAIN + _TABLE_HEADER.pack(key_size, value_size, n)


class PackedTable:
    """Fixed-width keys mapped to fixed-width values, looked up many keys at a time.

    Sorted by the last 8 bytes of each key, searched with ``np.searchsorted``; a
    lookup always compares whole keys, so keys that share those 8 bytes are still
    told apart. With ``value_size`` 0 it is a set. Duplicate keys are allowed
    (the first is found); they must then carry the same value.

    Serialized form (:meth:`chunks`, :meth:`from_bytes`): ``TABLE_DOMAIN``, key
    size, value size and count (big-endian u32 each), the sorted keys, then their
    values in the same order.
    """

    def __init__(self, keys: np.ndarray, values: np.ndarray, *, presorted: bool = False):
        if keys.ndim != 2 or values.ndim != 2 or len(keys) != len(values):
            raise ValueError("keys and values must be 2-d arrays of the same length")
        if keys.shape[1] < 8:
            raise ValueError("keys must be at least 8 bytes wide")
        prefix = _prefixes(keys)
        if presorted:
            if len(prefix) > 1 and not bool(np.all(prefix[1:] >= prefix[:-1])):
                raise ValueError("table is not sorted")
            self._keys, self._values, self._prefix = keys, values, prefix
        else:
            order = np.argsort(prefix, kind="stable")
            self._keys, self._values = _take(keys, order), _take(values, order)
            self._prefix = prefix[order]
        self._key_rows = _as_rows(self._keys)
        self._shared: dict[bytes, int] | None = None

    @classmethod
    def build(
        cls, keys: Packed, key_size: int, values: Packed | None = None, value_size: int = 0
    ) -> PackedTable:
        k = rows(keys, key_size)
        v = rows(values, value_size) if values is not None else np.zeros((len(k), 0), np.uint8)
        return cls(k, v)

    @property
    def key_size(self) -> int:
        return int(self._keys.shape[1])

    @property
    def value_size(self) -> int:
        return int(self._values.shape[1])

    def __len__(self) -> int:
        return len(self._keys)

    def _find(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of each query's key in the table, and whether it was found."""
        if len(self._keys) == 0 or len(queries) == 0:
            return np.zeros(len(queries), np.intp), np.zeros(len(queries), bool)
        if queries.shape[1] != self.key_size:
            raise ValueError(f"queries are {queries.shape[1]} bytes wide, keys {self.key_size}")
        index = np.empty(len(queries), np.intp)
        found = np.empty(len(queries), bool)
        # In blocks: comparing whole rows needs temporaries as large as the queries.
        for s in range(0, len(queries), BLOCK_ROWS):
            index[s : s + BLOCK_ROWS], found[s : s + BLOCK_ROWS] = self._find_block(
                queries[s : s + BLOCK_ROWS]
            )
        return index, found

    def _find_block(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = len(self._keys) - 1
        q = _prefixes(queries)
        # Searching in sorted order walks the table forwards (about 5x faster than
        # random probes on a million keys); the answers are put back in query order.
        order = np.argsort(q)
        index = np.empty(len(q), np.intp)
        index[order] = np.searchsorted(self._prefix, q[order], side="left")
        np.minimum(index, last, out=index)
        found = (self._prefix[index] == q) & (self._key_rows[index] == _as_rows(queries))
        # Rare: several keys share the 8-byte prefix and the first was not it. Found by
        # whole key in a dict, never by walking the run: a peer choosing its points can
        # make a run as long as its set, and a walk per query would then be quadratic.
        after = np.minimum(index + 1, last)
        unresolved = np.flatnonzero(~found & (self._prefix[after] == q) & (after > index))
        if len(unresolved):
            shared = self._shared_prefix_keys()
            for i in unresolved.tolist():
                j = shared.get(queries[i].tobytes())
                if j is not None:
                    index[i], found[i] = j, True
        return index, found

    def _shared_prefix_keys(self) -> dict[bytes, int]:
        """Index of every key whose 8-byte prefix another key shares (built once)."""
        if self._shared is None:
            same = self._prefix[1:] == self._prefix[:-1]
            runs = np.zeros(len(self._prefix), bool)
            runs[1:] |= same
            runs[:-1] |= same
            shared: dict[bytes, int] = {}
            for j in np.flatnonzero(runs).tolist():
                shared.setdefault(self._keys[j].tobytes(), j)
            self._shared = shared
        return self._shared

    def contains(self, packed: Packed) -> np.ndarray:
        """Whether each packed key is in the table (a boolean array)."""
        return self._find(rows(packed, self.key_size))[1]

    def lookup(self, packed: Packed) -> tuple[np.ndarray, np.ndarray]:
        """(values, found): the value rows of the packed keys; rows not found are garbage."""
        index, found = self._find(rows(packed, self.key_size))
        if len(self._keys) == 0:
            return np.zeros((len(found), self.value_size), np.uint8), found
        return _take(self._values, index), found

    def serialized_size(self) -> int:
        return len(_table_header(0, 0, 0)) + len(self) * (self.key_size + self.value_size)

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The serialized table, in pieces (no copy of the rows)."""
        yield _table_header(self.key_size, self.value_size, len(self))
        yield np.ascontiguousarray(self._keys).ravel().data
        yield np.ascontiguousarray(self._values).ravel().data

    @classmethod
    def from_bytes(cls, data: bytes) -> PackedTable:
        """The inverse of :meth:`chunks` (joined); ValueError if it is not one."""
        start = len(_table_header(0, 0, 0))
        if not data.startswith(TABLE_DOMAIN) or len(data) < start:
            raise ValueError("not a packed table")
        key_size, value_size, n = _TABLE_HEADER.unpack_from(data, len(TABLE_DOMAIN))
        if len(data) != start + n * (key_size + value_size):
            raise ValueError("packed table has the wrong length")
        body = np.frombuffer(data, np.uint8, offset=start)
        keys = body[: n * key_size].reshape(n, key_size)
        values = body[n * key_size :].reshape(n, value_size)
        return cls(keys, values, presorted=True)


@dataclass(frozen=True)
class TableSource:
    """Unsorted keys and values, serialized as a :class:`PackedTable` without building one.

    A round's cache for the next round is written this way: sorted block by block
    straight into storage, so no sorted copy of a million rows is ever held.
    """

    keys: Packed
    key_size: int
    values: Packed
    value_size: int

    def __len__(self) -> int:
        return len(rows(self.keys, self.key_size))

    def serialized_size(self) -> int:
        return len(_table_header(0, 0, 0)) + len(self) * (self.key_size + self.value_size)

    def chunks(self) -> Iterator[bytes | memoryview]:
        k, v = rows(self.keys, self.key_size), rows(self.values, self.value_size)
        if len(k) != len(v):
            raise ValueError("keys and values differ in number")
        order = np.argsort(_prefixes(k), kind="stable")
        yield _table_header(self.key_size, self.value_size, len(k))
        for source in (k, v):
            for s in range(0, len(order), BLOCK_ROWS):
                yield _take(source, order[s : s + BLOCK_ROWS]).tobytes()

    def build(self) -> PackedTable:
        return PackedTable.build(self.keys, self.key_size, self.values, self.value_size)


def fill_rows(known: np.ndarray, found: np.ndarray, computed: bytes) -> bytes:
    """Rows of ``known`` where ``found``, else the next rows of ``computed``, in order."""
    if not len(found) or found.all():
        return known.tobytes()
    out = known.copy()
    out[~found] = rows(computed, known.shape[1])
    return out.tobytes()


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
    return np.argsort(keys, kind="stable")


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
    prefix = _prefixes(k)
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
