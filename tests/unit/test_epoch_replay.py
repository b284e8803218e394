"""A hostile peer replays, in a later round of one epoch, a value we released earlier.

With an epoch key our re-blinding of the peer's points is the same in every round of
the epoch, so what we released in one round the peer holds before the next one starts,
before any commitment. Here the hostile responder B puts our earlier release value of
one of its elements we do not hold at the position of one of our elements it does not
hold: released as points, we would find a match that does not exist (commit-before-release
cannot see it: B commits to a value it has had since the last round).

- Without verified matches a reveal round releases round-bound values
  (protocol/release.py): the replayed value matches nothing.
- With verified matches the points are released, the replay makes a false match, and
  the DLEQ proof refuses it (``proof-invalid``) before anything is stored.
- A key that released points never serves a round-bound round: the peer could compute
  the round-bound values from those points (the two regimes' epoch keys are apart).
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from node.net.epoch_round import RoundEpoch
from protocol import release
from protocol.errors import ProtocolError
from protocol.round import RoundSide
from protocol.suites import SUITES
from protocol.verified import ProofExchange
from tests.unit.test_verified_round import Round, a_position, header, matched, sets


def first_round(suite: str, verified: bool, keys: dict, own_a, own_b):
    """An honest round of the epoch; B records what A released (in B's order)."""
    r = Round(own_a, own_b, suite=suite, verified=verified, keep=True, keys=keys, round_id="r1")
    seen: list[bytes] = []
    on_release = r.sides["b"].on_peer_reblinded

    def record(packed: bytes) -> None:
        seen.append(packed)
        on_release(packed)

    r.sides["b"].on_peer_reblinded = record  # type: ignore[method-assign]
    try:
        r.run()
        if verified:
            r.prove()
        caches = {n: s.next_cache().tables() for n, s in r.sides.items()}
        return b"".join(seen), r.sides["a"].release_width, caches
    finally:
        r.close()


def replaying(earlier: bytes, j: int, k: int):
    """A responder that releases, at A's position ``k``, the value A released for B's
    position ``j`` in the earlier round (B commits to it: nothing else is bent)."""

    class Replaying(RoundSide):
        def _release_stream(self) -> bytes:
            stream = bytearray(super()._release_stream())
            w = self.release_width
            stream[k * w : (k + 1) * w] = earlier[j * w : (j + 1) * w]
            return bytes(stream)

    return Replaying


def setup(suite: str, verified: bool):
    own_a, own_b = sets(20, 4)
    keys = {n: SUITES[suite].key_from_random(os.urandom(64)) for n in "ab"}
    earlier, width, caches = first_round(suite, verified, keys, own_a, own_b)
    shared = set(own_a) & set(own_b)
    j = next(i for i, y in enumerate(own_b) if y not in shared)  # A released H(y)^ab here
    k = a_position(own_a, own_b, False)  # an element of A's that B does not hold
    again = Round(own_a, own_b, suite=suite, verified=verified, keys=keys, cache=caches,
                  side_b=replaying(earlier, j, k), round_id="r2")  # fmt: skip
    return again, own_a, own_b, k, width


@pytest.mark.parametrize("suite", ["openmined-p256-v1", "ristretto255-v1"])
def test_a_value_released_in_an_earlier_round_plants_no_match(suite):
    again, own_a, own_b, k, width = setup(suite, verified=False)
    try:
        assert width == release.RELEASE_BYTES  # what A released: round-bound values
        oa, _ = again.run()
        assert own_a[k] not in matched(oa, own_a)
        assert matched(oa, own_a) == set(own_a) & set(own_b)
        assert again.sides["a"].work.blinded == 0  # the epoch cache served this round
    finally:
        again.close()


def test_a_point_released_in_an_earlier_round_is_caught_by_the_proof():
    again, own_a, _, k, width = setup("ristretto255-v1", verified=True)
    try:
        assert width == 32  # verified rounds release the points themselves
        oa, ob = again.run()
        assert own_a[k] in matched(oa, own_a)  # the replay would be a false match...
        a, b = again.sides["a"], again.sides["b"]
        pa = ProofExchange(again.engines["a"], "initiator", "responder", random.Random(1))
        pb = ProofExchange(again.engines["b"], "responder", "initiator", random.Random(2))
        ma, mb = a.proof_material(), b.proof_material()
        request = pa.our_request(ma, a.peer_public_key, oa.transcript_hash)
        # B's honest prover refuses to prove more matches than it found; a hostile one
        # proves whatever A asks, over the values it computed.
        with pytest.raises(ProtocolError) as refused:
            pb.answer_peer(mb, request, ob.transcript_hash)
        assert refused.value.rule == "proof-request"
        hostile = ProofExchange(again.engines["b"], "responder", "initiator", random.Random(2))
        proof = hostile.answer_peer(replace(mb, found=len(own_a)), request, ob.transcript_hash)
        with pytest.raises(ProtocolError) as e:
            pa.check_peer(ma, a.peer_public_key, proof, oa.transcript_hash)
        assert e.value.rule == "proof-invalid"  # ...that the proof refuses
    finally:
        again.close()


def test_the_release_context_is_new_in_every_round():
    own_a, own_b = sets(4, 1)
    base = Round(own_a, own_b, verified=False).header
    ctx = release.context(base)
    for other in (
        Round(own_a, own_b, verified=False, round_id="r-other").header,
        type(base)(**{**base.__dict__, "initiator_commitment": b"c" * 32}),
        type(base)(**{**base.__dict__, "responder_commitment": b"c" * 32}),
    ):
        assert release.context(other) != ctx
    assert release.release_values(ctx, bytes(32), 32) != release.release_values(
        release.context(Round(own_a, own_b, verified=False, round_id="x").header), bytes(32), 32
    )


def test_a_key_never_serves_two_release_regimes(tmp_path):
    """A verified round releases points (and our public key): the peer then holds k*P,
    and could compute the round-bound value of P under the same key. So the two regimes
    draw their epoch keys apart (node/state/epochs.py key_name)."""
    own_a, own_b = sets(4, 1)
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)

    def key_for(verified: bool, round_id: str) -> bytes:
        h = header(own_a, own_b, suite="ristretto255-v1", verified=verified, round_id=round_id)
        epoch = RoundEpoch.open(h, "lab-b", node_dir=tmp_path, days=7, now=lambda: now)
        assert epoch.key is not None  # an epoch key, not a fresh one
        return epoch.psi_key

    proven, bound = key_for(True, "r1"), key_for(False, "r2")
    assert proven != bound
    assert key_for(True, "r3") == proven and key_for(False, "r4") == bound  # each kept


def test_points_released_under_a_key_would_plant_in_a_bound_round_under_the_same_key():
    """Why the regimes' keys are apart: were they one, B would hash a point A released in a
    verified round with the new round's context and plant a match."""
    suite = "ristretto255-v1"
    own_a, own_b = sets(20, 4)
    keys = {n: SUITES[suite].key_from_random(os.urandom(64)) for n in "ab"}
    earlier, width, caches = first_round(suite, True, keys, own_a, own_b)
    shared = set(own_a) & set(own_b)
    j = next(i for i, y in enumerate(own_b) if y not in shared)
    k = a_position(own_a, own_b, False)
    point = earlier[j * width : (j + 1) * width]  # a*P_j, released as a point

    class Planting(RoundSide):
        def _release_stream(self) -> bytes:
            stream = bytearray(super()._release_stream())
            w = self.release_width
            stream[k * w : (k + 1) * w] = release.release_values(self._release_ctx, point, 32)
            return bytes(stream)

    again = Round(own_a, own_b, suite=suite, verified=False, keys=keys, cache=caches,
                  side_b=Planting, round_id="r2")  # fmt: skip
    try:
        oa, _ = again.run()
        assert own_a[k] in matched(oa, own_a)  # the false match key separation prevents
    finally:
        again.close()
