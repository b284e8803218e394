"""A side's input for a round (node/net/prepare.py): read packed from a real store, the
warninglisted fingerprints left out, padded, and committed to exactly as the auditor's
list-based commitment (protocol/transcript.py) recomputes it."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.net.prepare import prepare_side
from node.state.cases_store import ensure_schema
from node.state.store import SignalInput, Store
from protocol.padding import dummy_elements
from protocol.policy import DEFAULT_POLICY
from protocol.psi import ELEMENT_BYTES
from protocol.transcript import input_commitment, sorted_input_commitment

NOW = "2025-03-01T10:00:00Z"


def fp(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


values = st.lists(st.binary(min_size=32, max_size=32), unique=True, max_size=40)


@given(
    st.dictionaries(st.sampled_from(["email", "ip", "phone"]), values),
    st.binary(min_size=32, max_size=32),
)
def test_the_packed_commitment_is_the_list_commitment(by_kind, salt):
    packed = {kind: b"".join(sorted(v)) for kind, v in by_kind.items()}
    assert sorted_input_commitment(salt, packed) == input_commitment(salt, by_kind)


@pytest.mark.parametrize(
    "packed", [fp("b") + fp("a") if fp("b") > fp("a") else fp("a") + fp("b"), fp("a") * 2, b"x"]
)
def test_the_packed_commitment_refuses_rows_out_of_order(packed):
    with pytest.raises(ValueError, match="not sorted distinct rows"):
        sorted_input_commitment(b"s" * 32, {"email": packed})


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "node.sqlite") as opened:
        signals = [
            SignalInput(kind, f"v{i}", f"v{i}", fp(f"{kind}|{i}"), "f.txt:1")
            for kind, n in (("email", 30), ("ip", 5))
            for i in range(n)
        ]
        opened.add_signals(signals, now=NOW)
        yield opened


def _hold_back(store: Store, fingerprint: bytes) -> None:
    ensure_schema(store)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO held_back (signal_id, list) SELECT id, 'wl' FROM signals"
            " WHERE fingerprint = ?",
            (fingerprint,),
        )


def test_the_stored_read_is_the_list_read_packed(store):
    assert store.packed_fingerprints("email") == b"".join(store.fingerprints("email"))
    assert store.packed_fingerprints("phone") == b""
    # SQLite joins the blobs as text: NUL bytes and invalid UTF-8 must come through.
    odd = [b"\x00" * 32, b"\xff" * 32, b"\x80\x00" * 16, b"\xc3" + b"\x00" * 31]
    store.add_signals([SignalInput("phone", "v", "v", f, "f.txt:1") for f in odd], now=NOW)
    assert store.packed_fingerprints("phone") == b"".join(sorted(odd))


@pytest.mark.parametrize("later", [False, True], ids=["shuffled-now", "shuffled-on-a-thread"])
def test_a_side_holds_its_stored_set_less_the_held_back_padded_and_committed(store, later):
    held = fp("email|3")
    _hold_back(store, held)
    side = prepare_side(store, DEFAULT_POLICY, "16", ["email", "ip"], ["wl@1"], shuffle_later=later)
    assert side.real_sizes == [29, 5] and side.sizes == [32, 16]
    assert (side.arranging is not None) == later  # sizes and commitment are ready already
    side.ready()
    assert side.arranging is None and len(side.own) == 48
    seed = secrets.token_bytes(32)
    side.fill_dummies(seed)
    own = [side.own[i] for i in range(len(side.own))]
    dummy = side.is_dummy()
    real = [e for e, d in zip(own, dummy.tolist(), strict=True) if not d]
    expected = {
        "email": [fp(f"email|{i}") for i in range(30) if i != 3],
        "ip": [fp(f"ip|{i}") for i in range(5)],
    }
    assert sorted(real[:29]) == sorted(expected["email"]) and held not in real
    assert sorted(real[29:]) == sorted(expected["ip"])
    assert side.commitment == input_commitment(side.salt, expected)
    dummies = [own[p] for p in side.dummy_slots["email"].tolist()]
    assert dummies == dummy_elements(seed, "email", 3)
    assert side.warninglists == ["wl@1"] and all(len(e) == ELEMENT_BYTES for e in own)


def _matched_one_by_one(side, positions):
    """The plain form of PreparedSide.matched: every position in turn, then sorted."""
    dummy = side.is_dummy()
    out, start = [], 0
    for kind, size in zip(side.kinds, side.sizes, strict=True):
        out += [
            (kind, side.own[start + p]) for p in positions.get(kind, []) if not dummy[start + p]
        ]
        start += size
    return sorted(out)


@given(
    st.lists(st.integers(0, 12), min_size=1, max_size=3),
    st.randoms(use_true_random=False),
)
def test_the_matched_fingerprints_are_those_of_the_positions_in_order(sizes, rnd):
    import numpy as np

    from node.net.prepare import PreparedSide
    from protocol.psi import PackedElements

    kinds = rnd.sample(["ip", "email", "phone"], len(sizes))  # not in sorted order
    total = sum(sizes)
    own = PackedElements(bytearray(rnd.randbytes(total * ELEMENT_BYTES)))
    dummies = {
        k: np.asarray(sorted(rnd.sample(range(total), min(total, 2))), np.intp) for k in kinds[:1]
    }
    side = PreparedSide(kinds, own, sizes, b"s" * 32, b"c" * 32, sizes, dummies)
    positions = {
        k: rnd.sample(range(n), rnd.randint(0, n)) for k, n in zip(kinds, sizes, strict=True)
    }
    assert side.matched(positions) == _matched_one_by_one(side, positions)
