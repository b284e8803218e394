"""Rounds on both suites, and verified matches against hostile peers, in memory.

The real RoundSide runs both sides; a hostile side is a RoundSide (or engine) that
changes one thing, the way a member lab that modified its node would, after the
commit-before-release step (so it commits to what it bends). The honest side must
refuse with the named rule before it stores anything: here, before the proof check
passes, which is what gates storing in the node (node/net/exchange.py).
"""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import pytest

from protocol import verified
from protocol.errors import CrossmatchError, ProtocolError
from protocol.psi import rows
from protocol.round import RoundCache, RoundSide
from protocol.suites import SUITES
from protocol.suites import ristretto255 as r255
from protocol.suites.ristretto255 import RISTRETTO255, RistrettoEngine
from protocol.transcript import RoundHeader
from protocol.verified import ProofExchange, decode_positions, encode_positions, proven_pairs

CHUNK = 5


def fp(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def sets(n: int = 40, shared: int = 8) -> tuple[list[bytes], list[bytes]]:
    a = [fp(f"a{i}") for i in range(n - shared)] + [fp(f"s{i}") for i in range(shared)]
    b = [fp(f"s{i}") for i in range(shared)] + [fp(f"b{i}") for i in range(n - shared)]
    random.Random(1).shuffle(a)
    random.Random(2).shuffle(b)
    return a, b


def header(
    own_a, own_b, *, suite: str, verified: bool, mode: str = "reveal", round_id: str = "r-verified"
) -> RoundHeader:
    return RoundHeader(
        round_id=round_id, initiator="lab-a", responder="lab-b", mode=mode,
        kinds=("email",), initiator_sizes=(len(own_a),), responder_sizes=(len(own_b),),
        policy_hash=b"p" * 32, initiator_commitment=b"a" * 32, responder_commitment=b"b" * 32,
        suite=suite, verified_matches=verified,
    )  # fmt: skip


class Round:
    """Both sides of one round in memory; ``side_b`` may be a hostile RoundSide class."""

    def __init__(
        self,
        own_a,
        own_b,
        *,
        suite=r255.NAME,
        verified=True,
        mode="reveal",
        side_b=RoundSide,
        engine_b=None,
        tamper_b=None,
        cache=None,
        keep=False,
        keys=None,
        round_id="r-verified",
    ):
        s = SUITES[suite]
        keys = keys or {n: s.key_from_random(os.urandom(64)) for n in "ab"}
        self.engines = {"a": s.engine(keys["a"]), "b": engine_b or s.engine(keys["b"])}
        self.header = header(
            own_a, own_b, suite=suite, verified=verified, mode=mode, round_id=round_id
        )
        self.tamper_b = tamper_b
        self.sides: dict[str, RoundSide] = {}
        rng = random.Random(9)
        for name, role, own, cls, to in (
            ("a", "initiator", own_a, RoundSide, "b"),
            ("b", "responder", own_b, side_b, "a"),
        ):
            self.sides[name] = cls(
                self.header, role, own, self.engines[name], self._deliver(name, to),
                chunk_size=CHUNK, rng=rng, on_error=lambda e, to=to: self.sides[to].fail(e),
                cache=(cache or {}).get(name), keep_cache=keep,
            )  # fmt: skip

    def _deliver(self, frm: str, to: str):
        def send(kind: str, seq: int, payload: bytes) -> None:
            if frm == "b" and self.tamper_b is not None:
                payload = self.tamper_b(kind, payload)
            try:
                getattr(self.sides[to], "on_" + kind)(payload)
            except CrossmatchError as e:
                self.sides[to].fail(e)

        return send

    def run(self):
        for side in self.sides.values():
            side.start()
        try:
            return self.sides["a"].result(30), self.sides["b"].result(30)
        finally:
            for side in self.sides.values():
                side.join(5)

    def prove(self, *, answer_b=None, early=True):
        """The proof exchange, both ways; returns each side's ProofExchange. ``answer_b``
        replaces B's proof (a hostile prover). ``early``: each verifier starts its sums
        with its request, as node/net/exchange.py does; else it sums when the proof comes."""
        a, b = self.sides["a"], self.sides["b"]
        pa = ProofExchange(self.engines["a"], "initiator", "responder", random.Random(1))
        pb = ProofExchange(self.engines["b"], "responder", "initiator", random.Random(2))
        ma, mb = a.proof_material(), b.proof_material()
        ta, tb = a.result(0).transcript_hash, b.result(0).transcript_hash
        ask_a = (a.peer_public_key, ta) if early else ()
        ask_b = (b.peer_public_key, tb) if early else ()
        proof_for_a = pb.answer_peer(mb, pa.our_request(ma, *ask_a), tb)
        if answer_b is not None:
            proof_for_a = answer_b(proof_for_a)
        proof_for_b = pa.answer_peer(ma, pb.our_request(mb, *ask_b), ta)
        pb.check_peer(mb, b.peer_public_key, proof_for_b, tb)
        pa.check_peer(ma, a.peer_public_key, proof_for_a, ta)
        return pa, pb

    def close(self):
        for e in self.engines.values():
            e.close()


def matched(outcome, own) -> set[bytes]:
    return {own[i] for i in outcome.matched_positions["email"]}


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("mode", ["reveal", "count"])
def test_both_suites_intersect_like_a_plain_set_intersection(suite, mode):
    own_a, own_b = sets()
    r = Round(own_a, own_b, suite=suite, verified=False, mode=mode)
    try:
        oa, ob = r.run()
        assert oa.transcript_hash == ob.transcript_hash
        assert oa.intersection_sizes == ob.intersection_sizes == {"email": 8}
        if mode == "reveal":
            assert matched(oa, own_a) == matched(ob, own_b) == set(own_a) & set(own_b)
    finally:
        r.close()


def test_the_suite_is_in_the_transcript():
    own_a, own_b = sets(10, 2)
    a = header(own_a, own_b, suite=r255.NAME, verified=False)
    b = header(own_a, own_b, suite="openmined-p256-v1", verified=False)
    c = header(own_a, own_b, suite=r255.NAME, verified=True)
    assert len({a.canonical_bytes(), b.canonical_bytes(), c.canonical_bytes()}) == 3


def test_an_engine_of_another_suite_is_refused():
    own_a, own_b = sets(10, 2)
    with SUITES["openmined-p256-v1"].engine(SUITES["openmined-p256-v1"].key_from_random(
            bytes(64))) as e, pytest.raises(ValueError, match="engine for a"):  # fmt: skip
        RoundSide(header(own_a, own_b, suite=r255.NAME, verified=False), "initiator", own_a, e,
                  lambda *a: None, chunk_size=4, rng=random.Random())  # fmt: skip


def test_ristretto_repeat_round_reuses_the_cache():
    own_a, own_b = sets(30, 6)
    keys = {n: RISTRETTO255.key_from_random(os.urandom(64)) for n in "ab"}
    first = Round(own_a, own_b, keep=True, keys=keys)
    try:
        first.run()
        first.prove()
        caches = {n: s.next_cache().tables() for n, s in first.sides.items()}
    finally:
        first.close()
    again = Round(own_a, own_b, keys=keys, cache=caches)
    try:
        oa, _ = again.run()
        assert matched(oa, own_a) == set(own_a) & set(own_b)
        assert again.sides["a"].work.blinded == 0 and again.sides["a"].work.reblinded == 0
        pa, pb = again.prove()
        assert pa.verified_positions == pb.verified_positions == 6
    finally:
        again.close()


# -- verified matches ----------------------------------------------------------------------


def honest() -> tuple[Round, list[bytes], list[bytes]]:
    own_a, own_b = sets()
    return Round(own_a, own_b), own_a, own_b


def test_honest_verified_round_proves_every_match_both_ways():
    r, own_a, own_b = honest()
    try:
        oa, ob = r.run()
        pa, pb = r.prove()
        assert pa.settled and pb.settled
        assert pa.verified_positions == pb.verified_positions == 8
        assert matched(oa, own_a) == set(own_a) & set(own_b)
    finally:
        r.close()


def a_position(own_a, own_b, shared: bool) -> int:
    common = set(own_a) & set(own_b)
    return next(i for i, x in enumerate(own_a) if (x in common) == shared)


def bending(bend):
    """A responder that bends its re-blinding of A's points before committing to it."""

    class Bent(RoundSide):
        def _release_stream(self) -> bytes:
            stream = bytearray(super()._release_stream())
            bend(stream, self._w, self)
            return bytes(stream)

    return Bent


def expect_abort(r: Round, rule: str, *, at_proof: bool) -> None:
    try:
        if at_proof:
            r.run()
            with pytest.raises(ProtocolError) as e:
                r.prove()
        else:
            with pytest.raises(ProtocolError) as e:
                r.run()
        assert e.value.rule == rule
    finally:
        r.close()


@pytest.mark.parametrize("early", [True, False], ids=["sums-early", "sums-late"])
def test_a_swap_that_relabels_a_match_is_caught_by_the_proof(early):
    own_a, own_b = sets()
    i, k = a_position(own_a, own_b, True), a_position(own_a, own_b, False)

    def swap(stream, w, side):
        si, sk = bytes(stream[i * w : (i + 1) * w]), bytes(stream[k * w : (k + 1) * w])
        stream[i * w : (i + 1) * w], stream[k * w : (k + 1) * w] = sk, si

    r = Round(own_a, own_b, side_b=bending(swap))
    oa, _ = r.run()
    assert own_a[k] in matched(oa, own_a)  # without the proof A would store a false match
    with pytest.raises(ProtocolError) as e:
        r.prove(early=early)
    assert e.value.rule == "proof-invalid"
    r.close()


def test_a_copied_value_is_caught_before_any_match():
    own_a, own_b = sets()
    i, k = a_position(own_a, own_b, True), a_position(own_a, own_b, False)

    def copy(stream, w, side):
        stream[k * w : (k + 1) * w] = stream[i * w : (i + 1) * w]

    expect_abort(Round(own_a, own_b, side_b=bending(copy)), "duplicate-point", at_proof=False)


def test_one_rekeyed_value_only_hides_its_match():
    own_a, own_b = sets()
    i = a_position(own_a, own_b, True)
    other = RISTRETTO255.key_from_random(os.urandom(64))

    def rekey(stream, w, side):
        x = rows(side._from_peer.buffer, w)[i].tobytes()
        stream[i * w : (i + 1) * w] = r255.multiply(other, x)

    r = Round(own_a, own_b, side_b=bending(rekey))
    try:
        oa, ob = r.run()
        assert own_a[i] not in matched(oa, own_a)  # hidden, as leaving it out would
        a, b = r.sides["a"], r.sides["b"]
        pa = ProofExchange(r.engines["a"], "initiator", "responder", random.Random(1))
        pb = ProofExchange(r.engines["b"], "responder", "initiator", random.Random(2))
        ma, mb = a.proof_material(), b.proof_material()
        proof = pb.answer_peer(mb, pa.our_request(ma), ob.transcript_hash)
        pa.check_peer(ma, a.peer_public_key, proof, oa.transcript_hash)
        assert pa.verified_positions == 7  # every match A would store is proven
        # B still sees 8 and asks A to prove 8: A found 7, refuses, the round aborts.
        with pytest.raises(ProtocolError) as e:
            pa.answer_peer(ma, pb.our_request(mb), oa.transcript_hash)
        assert e.value.rule == "proof-request"
    finally:
        r.close()


class RekeyedEngine(RistrettoEngine):
    """Computes with one key, commits to another: every match is real, none is proven."""

    def __init__(self) -> None:
        super().__init__(RISTRETTO255.key_from_random(os.urandom(64)))

    @property
    def public_key(self) -> bytes:
        return RISTRETTO255.public_key(RISTRETTO255.key_from_random(bytes(64)))


def test_a_peer_that_rekeys_against_its_commitment_is_caught_by_the_proof():
    own_a, own_b = sets()
    expect_abort(Round(own_a, own_b, engine_b=RekeyedEngine()), "proof-invalid", at_proof=True)


@pytest.mark.parametrize(
    "forge",
    [
        lambda proof: b"",  # no proof at all
        lambda proof: os.urandom(64),
        lambda proof: proof[:32] + bytes(32),
        lambda proof: (
            proof[:32] + (r255.scalar_int(proof[32:]) + r255.ORDER).to_bytes(32, "little")
        ),
    ],
    ids=["empty", "random", "zero-s", "s-plus-order"],
)
@pytest.mark.parametrize("early", [True, False], ids=["sums-early", "sums-late"])
def test_a_forged_proof_is_refused(forge, early):
    r, _, _ = honest()
    r.run()
    try:
        with pytest.raises(ProtocolError) as e:
            r.prove(answer_b=forge, early=early)
        assert e.value.rule == "proof-invalid"
    finally:
        r.close()


def test_a_proof_from_another_round_does_not_carry_over():
    r, _, _ = honest()
    r.run()
    ma = r.sides["a"].proof_material()
    pa = ProofExchange(r.engines["a"], "initiator", "responder", random.Random(1))
    pb = ProofExchange(r.engines["b"], "responder", "initiator", random.Random(2))
    mb = r.sides["b"].proof_material()
    th = r.sides["a"].result(0).transcript_hash
    request = pa.our_request(ma, r.sides["a"].peer_public_key, th)  # sums start early
    proof = pb.answer_peer(mb, request, b"\x00" * 32)  # another transcript
    with pytest.raises(ProtocolError) as e:
        pa.check_peer(
            ma, r.sides["a"].peer_public_key, proof, r.sides["a"].result(0).transcript_hash
        )
    assert e.value.rule == "proof-invalid"
    r.close()


def test_a_prover_refuses_requests_beyond_what_it_found():
    r, _, _ = honest()
    try:
        r.run()
        mb = r.sides["b"].proof_material()
        pb = ProofExchange(r.engines["b"], "responder", "initiator", random.Random(2))
        too_many = encode_positions(np.arange(9))  # B found 8 matches
        for bad in (too_many, encode_positions([3, 2]), encode_positions([1, 1]),
                    encode_positions([40]), b"\x00\x01"):  # fmt: skip
            with pytest.raises(ProtocolError) as e:
                pb.answer_peer(mb, bad, r.sides["b"].result(0).transcript_hash)
            assert e.value.rule == "proof-request"
    finally:
        r.close()
    assert list(decode_positions(encode_positions([0, 5]), 6, 2)) == [0, 5]


@pytest.mark.parametrize(
    "bad, rule",
    [
        (r255.IDENTITY, "element-identity"),
        (
            bytes.fromhex("3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0ac6"),
            "element-noncanonical",
        ),  # a valid element with bit 255 set
        (bytes.fromhex("f3" + "ff" * 30 + "7f"), "element-noncanonical"),  # RFC 9496 A.2
    ],
    ids=["identity", "bit-255", "rfc-a2"],
)
@pytest.mark.parametrize("where", ["own_blinded", "public_key"])
def test_a_bad_encoding_from_the_peer_is_refused_by_the_decoder(bad, rule, where):
    own_a, own_b = sets()

    def tamper(kind, payload):
        if kind != where:
            return payload
        return bad + payload[32:]  # the first point of the first chunk, or the key

    r = Round(own_a, own_b, tamper_b=tamper)
    try:
        with pytest.raises(ProtocolError) as e:
            r.run()
        assert e.value.rule == rule
    finally:
        r.close()


def test_points_before_the_public_key_are_out_of_order():
    own_a, own_b = sets(10, 2)
    r = Round(own_a, own_b, tamper_b=lambda kind, p: p)
    try:
        with pytest.raises(ProtocolError) as e:
            r.sides["a"].on_own_blinded(b"\x01" * 32)
        assert e.value.rule == "message-order"
    finally:
        r.close()


def test_no_cache_entry_leaks_between_suites():
    # A cache of one suite's points cannot be handed to a round of the other.
    own_a, own_b = sets(10, 2)
    r = Round(own_a, own_b, suite="openmined-p256-v1", verified=False, keep=True)
    r.run()
    cache = r.sides["a"].next_cache().tables()
    r.close()
    assert cache.peer is not None and cache.peer.key_size == 33
    with pytest.raises((ValueError, CrossmatchError)):
        Round(own_a, own_b, verified=False, cache={"a": RoundCache(cache.own, cache.peer)}).run()


def test_pairs_proven_earlier_in_the_epoch_are_not_proven_again():
    r, _, _ = honest()
    try:
        oa, ob = r.run()
        r.prove()
        a, b = r.sides["a"], r.sides["b"]
        ma, mb = a.proof_material(), b.proof_material()
        known = proven_pairs(ma).build()
        pb = ProofExchange(r.engines["b"], "responder", "initiator", random.Random(2))
        # Everything known under this peer key: nothing to ask, an empty proof settles it.
        pa = ProofExchange(r.engines["a"], "initiator", "responder", random.Random(1),
                           (a.peer_public_key, known))  # fmt: skip
        assert decode_positions(pa.our_request(ma, a.peer_public_key), 40, 8).size == 0
        pa.check_peer(ma, a.peer_public_key, pb.answer_peer(mb, b"", ob.transcript_hash),
                      oa.transcript_hash)  # fmt: skip
        assert (pa.verified_positions, pa.proven_now) == (8, 0)
        # Under another peer key the table says nothing: every match is asked again.
        other = ProofExchange(r.engines["a"], "initiator", "responder", random.Random(1),
                              (r255.IDENTITY, known))  # fmt: skip
        assert len(decode_positions(other.our_request(ma, a.peer_public_key), 40, 8)) == 8
        # A known X whose returned Y differs now is asked again (and would have to be proven).
        bent = ProofExchange(r.engines["a"], "initiator", "responder", random.Random(1),
                             (a.peer_public_key, proven_pairs(ma).build()))  # fmt: skip
        y = rows(ma.returned, 32)
        first = int(ma.matched[0])
        saved = y[first].copy()
        y[first] = y[int(ma.matched[1])]
        try:
            asked = decode_positions(bent.our_request(ma, a.peer_public_key), 40, 8)
        finally:
            y[first] = saved
        assert list(asked) == [first]
        with pytest.raises(ProtocolError) as e:
            pa.check_peer(ma, a.peer_public_key, b"", oa.transcript_hash)
        assert e.value.rule == "message-order"  # a second proof
    finally:
        r.close()


def test_a_side_proves_over_its_shared_sum_exactly_as_afresh():
    """The sum a side starts with its own request (SP) is the M of its proof when the peer
    asks for the same matches; a request for others is summed afresh and still verifies."""
    r, _, _ = honest()
    try:
        r.run()
        a, b = r.sides["a"], r.sides["b"]
        ma, mb = a.proof_material(), b.proof_material()
        ta, tb = a.result(0).transcript_hash, b.result(0).transcript_hash
        request_b = ProofExchange(r.engines["b"], "responder", "initiator", random.Random(2))
        asked_by_b = request_b.our_request(mb)
        shared = ProofExchange(r.engines["a"], "initiator", "responder", random.Random(1))
        shared.our_request(ma, a.peer_public_key, ta)  # SX and SP start here
        fresh = ProofExchange(r.engines["a"], "initiator", "responder", random.Random(1))
        proof = shared.answer_peer(ma, asked_by_b, ta)
        assert proof == fresh.answer_peer(ma, asked_by_b, ta)
        request_b.check_peer(mb, b.peer_public_key, proof, tb)
        fewer = decode_positions(asked_by_b, 40, 8)[:3]
        again = ProofExchange(r.engines["a"], "initiator", "responder", random.Random(1))
        again.our_request(ma, a.peer_public_key, ta)
        partial = again.answer_peer(ma, encode_positions(fewer), ta)
        verified.check(r.engines["b"], mb, b.peer_public_key, tb, "initiator", partial, fewer)
        with pytest.raises(ProtocolError) as e:  # the partial proof is not one over all 8
            verified.check(r.engines["b"], mb, b.peer_public_key, tb, "initiator", partial)
        assert e.value.rule == "proof-invalid"
    finally:
        r.close()
