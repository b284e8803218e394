"""RFC 9162 Merkle tree: tree head, inclusion and consistency proofs.

Hashes follow RFC 9162 section 2.1: leaf = SHA-256(0x00 || entry),
node = SHA-256(0x01 || left || right), and the empty tree hashes to SHA-256("").
The 0x00 / 0x01 prefixes are the domain separation between leaves and nodes.

Proof generation follows the PATH and SUBPROOF definitions (sections 2.1.3.1 and
2.1.4.1) over a list of leaf hashes; verification follows the algorithms of
sections 2.1.3.2 and 2.1.4.2 and raises VerificationError with the expected and
calculated values instead of returning a bool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from protocol.errors import VerificationError
from protocol.rules import Rule

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_subtree_root(leaves, lo, lo + k), _subtree_root(leaves, lo + k, hi))


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves."""
    return _subtree_root(leaf_hashes, 0, len(leaf_hashes))


class TreeFrontier:
    """Append-only tree head in O(log n) memory: the roots of the perfect subtrees.

    Folding the subtree roots from the right gives exactly MTH, because MTH
    splits off the largest perfect subtree on the left at every level.
    """

    def __init__(self) -> None:
        self._size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (subtree size, hash), sizes decreasing

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        self._size += 1
        size, digest = 1, leaf
        while self._peaks and self._peaks[-1][0] == size:
            left_size, left = self._peaks.pop()
            size, digest = left_size + size, node_hash(left, digest)
        self._peaks.append((size, digest))

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        digest = self._peaks[-1][1]
        for _, left in reversed(self._peaks[:-1]):
            digest = node_hash(left, digest)
        return digest


def _check_size(size: int, limit: int, what: str) -> None:
    if not 0 <= size <= limit:
        raise VerificationError(f"{what} {size} is outside 0..{limit}", rule=Rule.MERKLE_SIZE)


def _path(leaves: Sequence[bytes], index: int, lo: int, hi: int) -> list[bytes]:
    n = hi - lo
    if n <= 1:
        return []
    k = _split(n)
    if index < k:
        return _path(leaves, index, lo, lo + k) + [_subtree_root(leaves, lo + k, hi)]
    return _path(leaves, index - k, lo + k, hi) + [_subtree_root(leaves, lo, lo + k)]


def inclusion_proof(
    leaf_hashes: Sequence[bytes], index: int, size: int | None = None
) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    size = len(leaf_hashes) if size is None else size
    _check_size(size, len(leaf_hashes), "tree size")
    if not 0 <= index < size:
        raise VerificationError(
            f"leaf index {index} is not below tree size {size}", rule=Rule.MERKLE_INDEX
        )
    return _path(leaf_hashes, index, 0, size)


def _subproof(leaves: Sequence[bytes], m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if complete else [_subtree_root(leaves, lo, hi)]
    k = _split(n)
    if m <= k:
        return _subproof(leaves, m, lo, lo + k, complete) + [_subtree_root(leaves, lo + k, hi)]
    return _subproof(leaves, m - k, lo + k, hi, False) + [_subtree_root(leaves, lo, lo + k)]


def consistency_proof(
    leaf_hashes: Sequence[bytes], size1: int, size2: int | None = None
) -> list[bytes]:
    """Proof that the tree of ``size1`` leaves is a prefix of the tree of ``size2`` leaves."""
    size2 = len(leaf_hashes) if size2 is None else size2
    _check_size(size2, len(leaf_hashes), "tree size")
    _check_size(size1, size2, "old tree size")
    if size1 == 0 or size1 == size2:
        return []
    return _subproof(leaf_hashes, size1, 0, size2, True)


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(
            f"{what} has {len(value)} bytes, expected {HASH_SIZE}", rule=Rule.MERKLE_HASH_LENGTH
        )


def _expect_equal(expected: bytes, calculated: bytes, what: str, rule: Rule) -> None:
    if expected != calculated:
        raise VerificationError(
            f"{what} does not match: expected {expected.hex()}, calculated {calculated.hex()}",
            rule=rule,
        )


def _shift_to_odd(fn: int, sn: int) -> tuple[int, int]:
    while fn and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2, steps 1-4: the root the proof leads to."""
    if not 0 <= index < size:
        raise VerificationError(
            f"leaf index {index} is not below tree size {size}", rule=Rule.MERKLE_INDEX
        )
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
        if sn == 0:
            raise VerificationError(
                f"inclusion proof has {len(proof)} elements, more than the tree needs",
                rule=Rule.MERKLE_PROOF_LENGTH,
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_to_odd(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError(
            f"inclusion proof has {len(proof)} elements, fewer than the tree needs",
            rule=Rule.MERKLE_PROOF_LENGTH,
        )
    return r


def verify_inclusion(
    *, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise VerificationError unless ``proof`` puts leaf ``index`` in the tree with ``root``."""
    _check_hash(root, "root")
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    _expect_equal(root, calculated, "root from inclusion proof", Rule.MERKLE_INCLUSION)


def verify_consistency(
    *, size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise VerificationError unless (size1, root1) is a prefix of (size2, root2) by ``proof``."""
    _check_hash(root1, "old root")
    _check_hash(root2, "new root")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    if not 0 <= size1 <= size2:
        raise VerificationError(f"old size {size1} is not within 0..{size2}", rule=Rule.MERKLE_SIZE)
    if size1 == size2 or size1 == 0:
        if proof:
            raise VerificationError(
                f"sizes {size1} and {size2} need an empty proof, got {len(proof)} elements",
                rule=Rule.MERKLE_PROOF_LENGTH,
            )
        expected = root2 if size1 == size2 else EMPTY_ROOT
        _expect_equal(expected, root1, "old root", Rule.MERKLE_CONSISTENCY)
        return
    if not proof:
        raise VerificationError("consistency proof is empty", rule=Rule.MERKLE_PROOF_LENGTH)
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # old tree is a perfect subtree: its root starts the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(
                f"consistency proof has {len(proof)} elements, more than the trees need",
                rule=Rule.MERKLE_PROOF_LENGTH,
            )
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _shift_to_odd(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError(
            f"consistency proof has {len(proof)} elements, fewer than the trees need",
            rule=Rule.MERKLE_PROOF_LENGTH,
        )
    _expect_equal(root1, fr, "old root from consistency proof", Rule.MERKLE_CONSISTENCY)
    _expect_equal(root2, sr, "new root from consistency proof", Rule.MERKLE_CONSISTENCY)
