"""The PSI engine and one round's state machine, run in memory against a plain set intersection."""

from __future__ import annotations

import hashlib
import os
import random

import private_set_intersection.python as psi_lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ConfigError, ProtocolError
from protocol.psi import (
    POINT_BYTES,
    Engine,
    dedupe,
    pack,
    shuffle_packed_within_sections,
    unpack,
)
from tests.round_harness import PEER, Wire, round_header


def new_key() -> bytes:
    return psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes()


def fp(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture(scope="module")
def engines():
    a, b = Engine(new_key(), workers=2), Engine(new_key(), workers=2)
    yield a, b
    a.close()
    b.close()


def run_round(
    engines,
    a_sets: dict[str, list[bytes]],
    b_sets: dict[str, list[bytes]],
    mode: str = "reveal",
    chunk: int = 7,
    tamper=None,
):
    """Run both sides of one round in memory; returns (outcome_a, outcome_b, own_a, own_b)."""
    kinds = tuple(sorted(set(a_sets) | set(b_sets)))
    own_a = [x for k in kinds for x in dedupe(a_sets.get(k, []))]
    own_b = [x for k in kinds for x in dedupe(b_sets.get(k, []))]
    header = round_header(
        [len(dedupe(a_sets.get(k, []))) for k in kinds],
        [len(dedupe(b_sets.get(k, []))) for k in kinds],
        kinds=kinds,
        mode=mode,
        round_id="r1",
    )
    # ``tamper`` here takes the receiving side first: (to, kind, seq, packed).
    hook = (lambda frm, kind, seq, packed: tamper(PEER[frm], kind, seq, packed)) if tamper else None
    wire = Wire(header, engines, own_a, own_b, chunk=chunk, seed=7, tamper=hook)
    wire.start()
    try:
        return wire.result("a", 30), wire.result("b", 30), own_a, own_b, header
    finally:
        wire.close()


def matched_values(outcome, own, header, role):
    out, start = set(), 0
    for kind, size in zip(header.kinds, header.sizes(role), strict=True):
        out |= {own[start + i] for i in outcome.matched_positions[kind]}
        start += size
    return out


CASES = {
    "both-empty": ([], []),
    "one-empty": ([fp("x")], []),
    "one-element-shared": ([fp("x")], [fp("x")]),
    "no-overlap": ([fp(f"a{i}") for i in range(40)], [fp(f"b{i}") for i in range(30)]),
    "full-overlap": ([fp(f"s{i}") for i in range(25)], [fp(f"s{i}") for i in range(25)]),
    "duplicates": ([fp("d1"), fp("d1"), fp("d2")], [fp("d2"), fp("d2"), fp("d1"), fp("z")]),
    "partial": ([fp(f"p{i}") for i in range(0, 60)], [fp(f"p{i}") for i in range(45, 100)]),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["reveal", "count"])
def test_round_equals_plain_intersection(engines, case, mode):
    a, b = CASES[case]
    truth = set(a) & set(b)
    oa, ob, own_a, own_b, header = run_round(engines, {"email": a}, {"email": b}, mode=mode)
    assert oa.intersection_sizes == {"email": len(truth)}
    assert ob.intersection_sizes == {"email": len(truth)}
    assert oa.transcript_hash == ob.transcript_hash
    if mode == "reveal":
        assert matched_values(oa, own_a, header, "initiator") == truth
        assert matched_values(ob, own_b, header, "responder") == truth
    else:
        assert oa.matched_positions == {} and ob.matched_positions == {}


@settings(max_examples=15, deadline=None)
@given(
    a=st.lists(st.integers(0, 60), max_size=40),
    b=st.lists(st.integers(0, 60), max_size=40),
    chunk=st.integers(1, 16),
)
def test_random_sets_match_plain_intersection(engines, a, b, chunk):
    sa, sb = [fp(str(i)) for i in a], [fp(str(i)) for i in b]
    oa, ob, own_a, own_b, header = run_round(engines, {"ip": sa}, {"ip": sb}, chunk=chunk)
    truth = set(sa) & set(sb)
    assert matched_values(oa, own_a, header, "initiator") == truth
    assert matched_values(ob, own_b, header, "responder") == truth


def test_kinds_are_matched_per_section(engines):
    shared = fp("same-bytes")
    # The same fingerprint under two kinds, plus kind-specific overlaps.
    a = {"email": [shared, fp("e1")], "phone": [fp("p1"), fp("p2")], "ip": [fp("i1")]}
    b = {"email": [fp("e1")], "phone": [shared, fp("p2"), fp("p3")], "ip": []}
    oa, ob, *_ = run_round(engines, a, b, mode="count")
    # `shared` sits in different kind sections on the two sides, so it must not count.
    assert oa.intersection_sizes == {"email": 1, "ip": 0, "phone": 1}
    assert ob.intersection_sizes == oa.intersection_sizes


def test_blind_reblind_commutes():
    ka, kb = new_key(), new_key()
    with Engine(ka) as ea, Engine(kb) as eb:
        items = [fp(str(i)) for i in range(50)]
        ab = eb.reblind(ea.blind(items))
        ba = ea.reblind(eb.blind(items))
        assert ab == ba
        assert len(ab) == 50 * POINT_BYTES
        # A different key gives unrelated points.
        with Engine(new_key()) as ec:
            assert ec.reblind(ea.blind(items)) != ab


def test_garbage_point_is_a_protocol_error_not_a_crash():
    with Engine(new_key()) as e:
        with pytest.raises(ProtocolError, match="not a valid P-256 point"):
            e.reblind(b"\x02" + b"\xff" * 32)
        with pytest.raises(ProtocolError, match="not a whole number"):
            e.reblind(b"\x02" * 40)
        # Still usable afterwards.
        assert len(e.blind([fp("ok")])) == POINT_BYTES


def test_garbage_from_peer_fails_the_round_cleanly(engines):
    def tamper(to, kind, seq, packed):
        if to == "b" and kind == "own_blinded" and seq == 1:
            return os.urandom(len(packed))
        return packed

    a = [fp(f"x{i}") for i in range(30)]
    with pytest.raises(ProtocolError) as err:
        run_round(engines, {"email": a}, {"email": a}, tamper=tamper)
    assert err.value.rule == "malformed-element"


def test_peer_sending_more_than_announced_is_refused(engines):
    def tamper(to, kind, seq, packed):
        if to == "b" and kind == "own_blinded" and seq == 0:
            return packed + packed  # duplicate the chunk: more than announced
        return packed

    a = [fp(f"x{i}") for i in range(10)]
    with pytest.raises(ProtocolError) as err:
        run_round(engines, {"email": a}, {"email": a[:3]}, tamper=tamper)
    assert err.value.rule == "size-announced"


def test_tampered_reblinding_does_not_open_the_commitment(engines):
    # A peer that returns other points than it committed to is caught when the stream is
    # complete, before any matching (it used to be caught only at the receipts, whose
    # transcripts differed).
    def tamper(to, kind, seq, packed):
        if to == "a" and kind == "peer_reblinded" and seq == 0:
            pts = unpack(packed)
            return pack(reversed(pts))
        return packed

    items = [fp(f"x{i}") for i in range(20)]
    with pytest.raises(ProtocolError) as err:
        run_round(engines, {"email": items}, {"email": items}, chunk=5, tamper=tamper)
    assert err.value.rule == "reblind-commitment"


def test_shuffle_keeps_sections():
    # The shuffle rounds use (the list version this replaced was dead code).
    pts = [bytes([i]) * 33 for i in range(10)]
    packed = shuffle_packed_within_sections(pack(pts), [3, 0, 7], random.Random(1))
    out = unpack(packed)
    assert set(out[:3]) == set(pts[:3]) and set(out[3:]) == set(pts[3:])
    assert out != pts


def test_bad_keys_rejected():
    with pytest.raises(ConfigError):
        Engine(b"\x00" * 32)
    with pytest.raises(ConfigError):
        Engine(b"short")


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=300),
    st.integers(min_value=1, max_value=2**64 - 1),
)
def test_the_fast_stable_order_is_the_stable_sort(keys, spread):
    import numpy as np

    from protocol.tables import stable_order

    # Both with (keys reduced modulo a small spread) and without equal keys.
    for values in (keys, [k % (spread % 7 + 1) for k in keys]):
        a = np.array(values, dtype=np.uint64)
        assert stable_order(a).tolist() == np.argsort(a, kind="stable").tolist()
