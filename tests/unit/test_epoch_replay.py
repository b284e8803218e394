"""Why only verified rounds keep a key across rounds (ADR 0016).

Under a key kept for an epoch, our re-blinding ``a*P`` of a peer point is the same in
every round, and a peer learns ``a*H(y)`` for every element y it shares with us (it
finds our point among the matches). A hostile responder B can then plant, in a later
round, a match at the position of an element of ours it does not hold, committing to
the value before we release anything:

- **replay**: the value we released for one of its points in the earlier round;
- **crafted point**: it sends ``r*P_y`` (``P_y`` its own point of a shared y) and
  returns ``r*(b*X_y)``, which is our ``a*(r*P_y)``, for any r it likes.

Commit-before-release cannot see either. The DLEQ proof of every stored match refuses
both; a round without verified matches therefore draws a fresh key every round, and
neither attack has anything to work with.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from node.net.epoch_round import RoundEpoch
from protocol.errors import ProtocolError
from protocol.psi import rows
from protocol.round import RoundSide
from protocol.suites import SUITES
from protocol.suites import ristretto255 as r255
from protocol.verified import ProofExchange, decode_positions, proven_pairs
from tests.unit.test_verified_round import Round, a_position, header, matched, sets

SUITE = "ristretto255-v1"


def first_round(verified: bool, keys: dict, own_a, own_b):
    """An honest round under ``keys``; what B saw: A's release (in B's order) and B's own
    re-blinding of A's points (in A's order), with the caches for the next round and
    (verified) the pairs A proved, which A's next round does not ask again."""
    r = Round(own_a, own_b, suite=SUITE, verified=verified, keep=True, keys=keys, round_id="r1")
    seen: list[bytes] = []
    on_release = r.sides["b"].on_peer_reblinded

    def record(packed: bytes) -> None:
        seen.append(packed)
        on_release(packed)

    r.sides["b"].on_peer_reblinded = record  # type: ignore[method-assign]
    try:
        r.run()
        known = None
        if verified:
            r.prove()
            a = r.sides["a"]
            known = (a.peer_public_key, proven_pairs(a.proof_material()).build())
        b_double = r.sides["b"]._peer_double.tobytes()
        caches = {n: s.next_cache().tables() for n, s in r.sides.items()}
        return b"".join(seen), b_double, caches, known
    finally:
        r.close()


def bending(k: int, value: bytes):
    """A responder that commits to, and releases, ``value`` at A's position ``k``."""

    class Bent(RoundSide):
        def _release_stream(self) -> bytes:
            stream = bytearray(super()._release_stream())
            stream[k * 32 : (k + 1) * 32] = value
            return bytes(stream)

    return Bent


def replay(verified: bool):
    """Round 2 under round 1's keys: B releases, at A's position k (an element B does not
    hold), what A released in round 1 for B's point j (an element A does not hold)."""
    own_a, own_b = sets(20, 4)
    keys = {n: SUITES[SUITE].key_from_random(os.urandom(64)) for n in "ab"}
    a_release, _, caches, known = first_round(verified, keys, own_a, own_b)
    shared = set(own_a) & set(own_b)
    j = next(i for i, y in enumerate(own_b) if y not in shared)
    k = a_position(own_a, own_b, False)
    again = Round(own_a, own_b, suite=SUITE, verified=verified, keys=keys, cache=caches,
                  side_b=bending(k, a_release[j * 32 : (j + 1) * 32]), round_id="r2")  # fmt: skip
    return again, own_a, k, known


def crafted(verified: bool):
    """Round 2 under round 1's keys: B puts r*P_y in place of its point of a non-shared
    element and releases r*(b*X_y) at A's position k."""
    own_a, own_b = sets(20, 4)
    keys = {n: SUITES[SUITE].key_from_random(os.urandom(64)) for n in "ab"}
    _, b_double, caches, known = first_round(verified, keys, own_a, own_b)
    shared = set(own_a) & set(own_b)
    y = next(iter(sorted(shared)))
    m, z = own_a.index(y), next(i for i, v in enumerate(own_b) if v not in shared)
    k = a_position(own_a, own_b, False)
    r = r255.scalar_bytes(random.Random(3).randrange(1, r255.ORDER))
    with SUITES[SUITE].engine(keys["b"], workers=1) as engine:
        p_y = engine.blind([y])
    sent = {"points": 0}

    def substitute(kind: str, payload: bytes) -> bytes:
        if kind != "own_blinded":
            return payload
        start, sent["points"] = sent["points"], sent["points"] + len(payload) // 32
        if start <= z < sent["points"]:
            at = (z - start) * 32
            payload = payload[:at] + r255.multiply(r, p_y) + payload[at + 32 :]
        return payload

    value = r255.multiply(r, rows(b_double, 32)[m].tobytes())  # = a*(r*P_y)
    again = Round(own_a, own_b, suite=SUITE, verified=verified, keys=keys, cache=caches,
                  side_b=bending(k, value), tamper_b=substitute, round_id="r2")  # fmt: skip
    return again, own_a, k, known


@pytest.mark.parametrize("attack", [replay, crafted], ids=["replay", "crafted-point"])
def test_under_a_kept_key_a_peer_plants_a_match_the_round_cannot_refuse(attack):
    again, own_a, k, _ = attack(verified=False)
    try:
        oa, _ = again.run()
        assert own_a[k] in matched(oa, own_a)  # a match for an element B does not hold
    finally:
        again.close()


@pytest.mark.parametrize("with_known", [False, True], ids=["all-asked", "known-pairs-skipped"])
@pytest.mark.parametrize("attack", [replay, crafted], ids=["replay", "crafted-point"])
def test_under_a_kept_key_the_proof_refuses_the_planted_match(attack, with_known):
    """Also as the node runs it: pairs proven in round 1 are not asked again, and the
    planted position is still asked (it is no pair proven before)."""
    again, own_a, k, known = attack(verified=True)
    try:
        oa, ob = again.run()
        assert own_a[k] in matched(oa, own_a)  # a false match until the proof...
        a, b = again.sides["a"], again.sides["b"]
        pa = ProofExchange(again.engines["a"], "initiator", "responder", random.Random(1),
                           known if with_known else None)  # fmt: skip
        pb = ProofExchange(again.engines["b"], "responder", "initiator", random.Random(2))
        ma, mb = a.proof_material(), b.proof_material()
        request = pa.our_request(ma, a.peer_public_key, oa.transcript_hash)
        asked = decode_positions(request, len(own_a), len(own_a)).tolist()
        assert k in asked and (len(asked) == 1 if with_known else len(asked) == 5)
        # B's honest prover would refuse to prove more than it found; a hostile one
        # proves whatever it is asked, over the values it computed.
        hostile = replace(mb, found=len(own_a))
        proof = pb.answer_peer(hostile, request, ob.transcript_hash)
        with pytest.raises(ProtocolError) as e:
            pa.check_peer(ma, a.peer_public_key, proof, oa.transcript_hash)
        assert e.value.rule == "proof-invalid"  # ...refuses it
    finally:
        again.close()


@pytest.mark.parametrize("suite", ["openmined-p256-v1", SUITE])
def test_only_a_verified_reveal_round_keeps_a_key(tmp_path, suite):
    own_a, own_b = sets(4, 1)
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)

    def opened(mode: str, verified: bool, round_id: str) -> RoundEpoch:
        h = header(own_a, own_b, suite=suite, verified=verified, mode=mode, round_id=round_id)
        return RoundEpoch.open(h, "lab-b", node_dir=tmp_path, days=7, now=lambda: now)

    for mode, verified in (("reveal", False), ("count", False)):
        first, second = opened(mode, verified, "r1"), opened(mode, verified, "r2")
        assert first.key is None and first.cache is None and first.psi_key != second.psi_key
    if suite == SUITE:
        first, second = opened("reveal", True, "r3"), opened("reveal", True, "r4")
        assert first.key is not None and first.psi_key == second.psi_key
