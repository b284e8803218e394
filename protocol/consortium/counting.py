"""Threshold counting on packed points: how many sets hold each fully blinded value.

Every participant's set, blinded by every participant's key, arrives at the hub
as packed 33-byte points. Equal points mean equal elements (exponentiation by a
secret scalar is a bijection), so multiplicities across sets are exactly the
number of labs holding an element. Counting is exact (a full-width sort, no
hashing of points into buckets), vectorized, and O(total log total) whatever
points a hostile participant chooses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protocol.errors import ProtocolError
from protocol.psi import POINT_BYTES, rows
from protocol.rules import Rule

_WORDS = -(-POINT_BYTES // 8)  # a point padded to whole 64-bit words


def _group_ids(points: np.ndarray) -> np.ndarray:
    """For each row, the id of its distinct value (ids are dense, in sorted order)."""
    n = len(points)
    if n == 0:
        return np.zeros(0, np.intp)
    padded = np.zeros((n, _WORDS * 8), np.uint8)
    padded[:, :POINT_BYTES] = points
    words = padded.view(">u8")
    order = np.lexsort(tuple(words[:, w] for w in reversed(range(_WORDS))))
    ordered = words[order]
    new_value = np.ones(n, bool)
    new_value[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    ids = np.empty(n, np.intp)
    ids[order] = np.cumsum(new_value) - 1
    return ids


def multiplicities(sets: Sequence[bytes], names: Sequence[str]) -> list[np.ndarray]:
    """For each packed set, the number of sets holding each of its points, in its order.

    ProtocolError (rule ``consortium-duplicate``) names the first set that holds a
    point twice: a duplicate would let one lab count as two.
    """
    arrays = [rows(s, POINT_BYTES) for s in sets]
    ids = _group_ids(np.concatenate(arrays) if arrays else np.zeros((0, POINT_BYTES), np.uint8))
    out, start = [], 0
    for name, a in zip(names, arrays, strict=True):
        own = ids[start : start + len(a)]
        if len(np.unique(own)) != len(own):
            raise ProtocolError(
                f"{name}'s set holds the same element more than once",
                rule=Rule.CONSORTIUM_DUPLICATE,
            )
        out.append(own)
        start += len(a)
    counts = np.bincount(ids, minlength=int(ids.max()) + 1 if len(ids) else 0)
    return [counts[own] for own in out]


def result_values(counts: np.ndarray, k: int, reveal_count: bool) -> bytes:
    """One byte per position: 1 if count >= k, else 0; with ``reveal_count``, the count
    itself where it reaches k (still 0 below k: nothing is said about rarer elements)."""
    if reveal_count:
        return np.where(counts >= k, np.minimum(counts, 255), 0).astype(np.uint8).tobytes()
    return (counts >= k).astype(np.uint8).tobytes()


def kind_counts(values: bytes, sizes: Sequence[int], kinds: Sequence[str]) -> dict[str, int]:
    """Positive result positions per kind section."""
    a = np.frombuffer(values, np.uint8)
    out, start = {}, 0
    for kind, size in zip(kinds, sizes, strict=True):
        out[kind] = int(np.count_nonzero(a[start : start + size]))
        start += size
    return out
