"""RFC 9162 Merkle tree: the transparency-dev vectors, and proofs for random trees."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.audit import merkle
from protocol.errors import VerificationError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc9162"
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_vectors_are_present():
    assert len(INCLUSION) > 60 and len(CONSISTENCY) > 60
    assert (VECTORS / "LICENSE").read_text().startswith("\n                                 Apache")


@pytest.mark.parametrize("path", INCLUSION, ids=_case_id)
def test_inclusion_vector(path: Path):
    case = json.loads(path.read_text())

    def check() -> None:
        merkle.verify_inclusion(
            index=case["leafIdx"],
            size=case["treeSize"],
            leaf_hash=_b64(case["leafHash"]),
            proof=[_b64(p) for p in case["proof"] or []],
            root=_b64(case["root"]),
        )

    if case["wantErr"]:
        with pytest.raises(VerificationError):
            check()
    else:
        check()


@pytest.mark.parametrize("path", CONSISTENCY, ids=_case_id)
def test_consistency_vector(path: Path):
    case = json.loads(path.read_text())

    def check() -> None:
        merkle.verify_consistency(
            size1=case["size1"],
            size2=case["size2"],
            root1=_b64(case["root1"]),
            root2=_b64(case["root2"]),
            proof=[_b64(p) for p in case["proof"] or []],
        )

    if case["wantErr"]:
        with pytest.raises(VerificationError):
            check()
    else:
        check()


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"entry {i}".encode()) for i in range(n)]


def test_known_roots():
    # RFC 9162 section 2.1.1: the empty tree, one leaf, and the split at the largest power of two.
    assert merkle.root_hash([]) == hashlib.sha256(b"").digest()
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    a, b, c = _leaves(3)
    assert merkle.root_hash([a]) == a
    assert merkle.root_hash([a, b, c]) == merkle.node_hash(merkle.node_hash(a, b), c)
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def test_vector_root_is_reproduced():
    # The 8-leaf root of the vectors, rebuilt from the leaves the transparency-dev tests use.
    entries = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
               b"\x50\x51\x52\x53\x54\x55\x56\x57",
               b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"]  # fmt: skip
    happy = json.loads((VECTORS / "inclusion" / "1" / "happy-path.json").read_text())
    assert merkle.root_hash([merkle.leaf_hash(e) for e in entries]) == _b64(happy["root"])


@settings(max_examples=120, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.data())
def test_frontier_matches_recursive_root(n: int, data: st.DataObject):
    leaves = _leaves(n)
    frontier = merkle.TreeFrontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert frontier.size == n
    assert frontier.root() == merkle.root_hash(leaves)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_generated_inclusion_proofs_verify(n: int, data: st.DataObject):
    leaves = _leaves(n)
    size = data.draw(st.integers(min_value=1, max_value=n), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = merkle.inclusion_proof(leaves, index, size)
    root = merkle.root_hash(leaves[:size])
    merkle.verify_inclusion(index=index, size=size, leaf_hash=leaves[index], proof=proof, root=root)
    # ... and the same proof does not vouch for a neighbouring leaf.
    other = (index + 1) % size
    if other != index:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(
                index=index, size=size, leaf_hash=leaves[other], proof=proof, root=root
            )


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_generated_consistency_proofs_verify(n: int, data: st.DataObject):
    leaves = _leaves(n)
    size2 = data.draw(st.integers(min_value=1, max_value=n), label="size2")
    size1 = data.draw(st.integers(min_value=0, max_value=size2), label="size1")
    proof = merkle.consistency_proof(leaves, size1, size2)
    root1, root2 = merkle.root_hash(leaves[:size1]), merkle.root_hash(leaves[:size2])
    merkle.verify_consistency(size1=size1, size2=size2, root1=root1, root2=root2, proof=proof)
    if 0 < size1 < size2:
        forged = list(leaves)
        forged[size1 - 1] = merkle.leaf_hash(b"rewritten")
        with pytest.raises(VerificationError, match="root from consistency proof does not match"):
            merkle.verify_consistency(
                size1=size1,
                size2=size2,
                root1=merkle.root_hash(forged[:size1]),
                root2=root2,
                proof=proof,
            )


def test_failure_names_expected_and_calculated():
    leaves = _leaves(5)
    proof = merkle.inclusion_proof(leaves, 2)
    wrong_root = merkle.leaf_hash(b"not the root")
    with pytest.raises(VerificationError) as caught:
        merkle.verify_inclusion(index=2, size=5, leaf_hash=leaves[2], proof=proof, root=wrong_root)
    assert caught.value.rule == "merkle-inclusion"
    assert f"expected {wrong_root.hex()}" in caught.value.message
    assert f"calculated {merkle.root_hash(leaves).hex()}" in caught.value.message


def test_proof_requests_outside_the_tree_are_refused():
    leaves = _leaves(4)
    with pytest.raises(VerificationError, match="leaf index 4 is not below tree size 4"):
        merkle.inclusion_proof(leaves, 4)
    with pytest.raises(VerificationError, match="outside 0..4"):
        merkle.consistency_proof(leaves, 2, 5)
