"""Fixed-width rows in numpy arrays: the packed points and fingerprints of a round, and
:class:`PackedTable`, the bulk-lookup table behind matching and the epoch caches.

A million 33-byte points take 33 MB as rows instead of about 100 MB as a set of
``bytes``, and are sorted, searched and gathered in bulk. ``protocol.psi``
re-exports the names its callers use.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

Packed = bytes | bytearray | memoryview | np.ndarray
BLOCK_ROWS = 1 << 16  # rows handled at a time where a whole-array temporary would be large


def rows(packed: Packed, width: int) -> np.ndarray:
    """View a packed run as an (n, width) array of bytes, without copying."""
    if isinstance(packed, np.ndarray):
        return packed.reshape(-1, width) if width else packed.reshape(-1, 0)
    if len(packed) % width:
        raise ValueError(f"{len(packed)} bytes are not whole rows of {width}")
    return np.frombuffer(packed, dtype=np.uint8).reshape(-1, width)


def row_prefixes(keys: np.ndarray) -> np.ndarray:
    # The last 8 bytes of a point or a fingerprint are uniformly distributed (the first
    # byte of a compressed P-256 point is only 02 or 03), which makes them a good sort key.
    tail = np.ascontiguousarray(keys[:, -8:])
    return tail.view(">u8").ravel().astype(np.uint64)


def stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of 1-d integer keys, computed faster.

    Distinct keys have one sorting order, whatever the algorithm, and numpy's default
    sort of 64-bit integers is vectorized (20x the stable sort here: 1.7 ms against
    33 ms for 100k keys). Only when two keys are equal, rare for random 64-bit keys,
    is the stable sort run, so the result is always exactly the stable one.
    """
    order = np.argsort(keys)
    ranked = keys[order]
    if len(ranked) > 1 and bool(np.any(ranked[1:] == ranked[:-1])):
        return np.argsort(keys, kind="stable")
    return order


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
        prefix = row_prefixes(keys)
        if presorted:
            if len(prefix) > 1 and not bool(np.all(prefix[1:] >= prefix[:-1])):
                raise ValueError("table is not sorted")
            self._keys, self._values, self._prefix = keys, values, prefix
        else:
            order = stable_order(prefix)
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
        q = row_prefixes(queries)
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

    @property
    def sorted_keys(self) -> np.ndarray:
        return self._keys

    @property
    def sorted_values(self) -> np.ndarray:
        return self._values

    @staticmethod
    def serialized_size_of(rows: int, row_bytes: int) -> int:
        """Bytes of a serialized table of ``rows`` rows of ``row_bytes`` (key and value)."""
        return len(_table_header(0, 0, 0)) + rows * row_bytes

    def serialized_size(self) -> int:
        return self.serialized_size_of(len(self), self.key_size + self.value_size)

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


class LayeredTable:
    """A :class:`PackedTable` and the rows added to it since, looked up as one table.

    An epoch cache is kept this way (node/state/epochs.py): a repeat round appends the
    few rows it computed instead of rewriting a million. A query is looked up in each
    layer in turn, only the keys not yet found going on, so the small layers cost about
    as much as the misses. Every layer holds correct rows under one key, so a key found
    in two layers has the same value in both.
    """

    def __init__(self, layers: Sequence[PackedTable]):
        if not layers:
            raise ValueError("a layered table needs at least one layer")
        sizes = {(t.key_size, t.value_size) for t in layers}
        if len(sizes) != 1:
            raise ValueError("the layers of a table must have the same key and value sizes")
        self.layers = list(layers)

    @property
    def key_size(self) -> int:
        return self.layers[0].key_size

    @property
    def value_size(self) -> int:
        return self.layers[0].value_size

    def __len__(self) -> int:
        return sum(len(t) for t in self.layers)

    def lookup(self, packed: Packed) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`PackedTable.lookup`."""
        values, found = self.layers[0].lookup(packed)
        queries = rows(packed, self.key_size)
        for layer in self.layers[1:]:
            missing = np.flatnonzero(~found)
            if not len(missing):
                break
            more, hit = layer.lookup(np.ascontiguousarray(queries[missing]))
            values[missing[hit]] = more[hit]
            found[missing[hit]] = True
        return values, found

    def contains(self, packed: Packed) -> np.ndarray:
        return self.lookup(packed)[1]


def joined_tables(tables: Sequence[PackedTable]) -> PackedTable:
    """One table of the rows of ``tables`` (all of one key and value size)."""
    if len(tables) == 1:
        return tables[0]
    keys = np.concatenate([t.sorted_keys for t in tables])
    values = np.concatenate([t.sorted_values for t in tables])
    return PackedTable(keys, values)


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
        order = stable_order(row_prefixes(k))
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
