"""Batched DLEQ proofs: golden vectors re-derived two ways, and every way a hostile peer
could bend one returned value (copy, swap, duplicate, re-key, encode badly) is caught."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from protocol.suites import dleq
from protocol.suites import ristretto255 as r255
from protocol.suites.p256 import P256
from protocol.suites.ristretto255 import RISTRETTO255
from tests import ristretto_ref as ref

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "ristretto255" / "suite.json").read_text()
)
CTX = b"round r1|responder proves to initiator"


def h(x: str) -> bytes:
    return bytes.fromhex(x)


def test_suite_vectors_rederive_with_libsodium_and_the_reference():
    v = VECTORS
    a = RISTRETTO255.key_from_random(h(v["random_a"]))
    b = RISTRETTO255.key_from_random(h(v["random_b"]))
    assert (a.hex(), b.hex()) == (v["key_a"], v["key_b"])
    assert RISTRETTO255.public_key(b).hex() == v["public_b"]
    assert ref.encode(ref.mul(r255.scalar_int(a), ref.GENERATOR)).hex() == v["public_a"]
    for e in v["elements"]:
        x = h(e["fingerprint"])
        assert r255.hash_input(x).hex() == e["hash_input"]
        assert (
            r255.hash_to_group(x).hex() == e["element"] == ref.one_way_map(h(e["hash_input"])).hex()
        )
        blinded = r255.multiply(a, h(e["element"]))
        assert blinded.hex() == e["blinded_a"]
        assert r255.multiply(b, blinded).hex() == e["reblinded_b"]
        point = ref.mul(
            r255.scalar_int(b), ref.mul(r255.scalar_int(a), ref.decode(h(e["element"])))
        )
        assert ref.encode(point).hex() == e["reblinded_b"]
    with P256.engine(h(v["openmined-p256-v1"]["key"]), workers=1) as eng:
        got = [eng.blind([h(e["fingerprint"])]).hex() for e in v["elements"]]
    assert got == v["openmined-p256-v1"]["blinded"]
    assert (
        P256.key_from_random(h(v["openmined-p256-v1"]["random"])).hex()
        == v["openmined-p256-v1"]["key"]
    )


def test_proof_vector_rederives_and_both_verifiers_accept_it():
    v, p = VECTORS, VECTORS["proof"]
    cs = [h(e["blinded_a"]) for e in v["elements"]]
    ds = [h(e["reblinded_b"]) for e in v["elements"]]
    kb, ctx, wctx = h(v["public_b"]), h(p["context"]), h(p["weights_context"])
    seed = dleq.seed(wctx)
    assert seed.hex() == p["seed"]
    assert [dleq.weight(seed, d).hex() for d in ds] == p["weights"]
    sums = dleq.start_composites(cs, ds, wctx, with_z=True)()
    assert [x.hex() for x in sums] == [p["M"], p["Z"]]
    proof = dleq.prove(h(v["key_b"]), cs, ds, ctx, h(p["nonce_random"]), weights_context=wctx)
    assert proof.hex() == p["proof"]
    assert dleq.verify(kb, cs, ds, ctx, proof, weights_context=wctx)
    assert ref.verify_dleq(kb, cs, ds, ctx, proof, weights_context=wctx)
    # The weights context is part of the statement: another one verifies nothing.
    assert not dleq.verify(kb, cs, ds, ctx, proof)
    assert not ref.verify_dleq(kb, cs, ds, ctx, proof)


@pytest.fixture(scope="module")
def batch():
    k = RISTRETTO255.key_from_random(os.urandom(64))
    with RISTRETTO255.engine(k) as e:
        cs = [e.blind([os.urandom(32)]) for _ in range(12)]
        ds = [r255.multiply(k, c) for c in cs]
        proof = dleq.prove(k, cs, ds, CTX, os.urandom(64), submit=e.submit)
    return k, RISTRETTO255.public_key(k), cs, ds, proof


def both_verify(public, cs, ds, proof, ctx=CTX):
    """The production verifier and the plain reference must always agree."""
    fast = dleq.verify(public, cs, ds, ctx, proof)
    assert fast == ref.verify_dleq(public, cs, ds, ctx, proof)
    return fast


def test_an_honest_batch_verifies(batch):
    _, public, cs, ds, proof = batch
    assert both_verify(public, cs, ds, proof)


def test_a_copied_value_is_caught(batch):
    k, public, cs, ds, proof = batch
    bent = list(ds)
    bent[3] = ds[7]
    assert not both_verify(public, cs, bent, proof)
    # Even the peer, which knows k, cannot prove a list with a copied value: a copy repeats
    # a D, and weights are by D (a prover refuses, as both verifiers do).
    with pytest.raises(ValueError):
        dleq.prove(k, cs, bent, CTX, os.urandom(64))


def test_a_swap_is_caught(batch):
    k, public, cs, ds, proof = batch
    bent = list(ds)
    bent[2], bent[5] = bent[5], bent[2]
    assert not both_verify(public, cs, bent, proof)
    assert not dleq.verify(public, cs, bent, CTX, dleq.prove(k, cs, bent, CTX, os.urandom(64)))


def test_a_duplicated_value_is_caught(batch):
    k, public, cs, ds, proof = batch
    bent = list(ds)
    bent[1] = bent[0]
    assert not both_verify(public, cs, bent, proof)


def test_a_rekeyed_value_is_caught(batch):
    k, public, cs, ds, proof = batch
    other = RISTRETTO255.key_from_random(os.urandom(64))
    bent = list(ds)
    bent[4] = r255.multiply(other, cs[4])
    assert not both_verify(public, cs, bent, proof)
    # A whole batch under another key, proved under that key, fails against the commitment.
    rekeyed = [r255.multiply(other, c) for c in cs]
    assert not both_verify(public, cs, rekeyed, dleq.prove(other, cs, rekeyed, CTX, os.urandom(64)))


def test_wrong_context_or_key_or_bits_are_caught(batch):
    k, public, cs, ds, proof = batch
    assert not both_verify(public, cs, ds, proof, ctx=CTX + b"!")
    assert not both_verify(
        RISTRETTO255.public_key(RISTRETTO255.key_from_random(bytes(64))), cs, ds, proof
    )
    for i in (0, 31, 32, 63):
        flipped = bytearray(proof)
        flipped[i] ^= 1
        assert not dleq.verify(public, cs, ds, CTX, bytes(flipped))


def test_non_canonical_proof_scalars_and_elements_are_refused(batch):
    k, public, cs, ds, proof = batch
    c, s = r255.scalar_int(proof[:32]), r255.scalar_int(proof[32:])
    # s + L is the same scalar mod L: accepting it would make proofs malleable.
    malleated = proof[:32] + (s + r255.ORDER).to_bytes(32, "little")
    assert not both_verify(public, cs, ds, malleated)
    assert not dleq.verify(
        public, cs, ds, CTX, (c + r255.ORDER).to_bytes(32, "little") + proof[32:]
    )
    bad = bytes.fromhex("00ff" + "ff" * 30)  # RFC 9496 A.2, non-canonical field encoding
    assert not both_verify(public, cs, ds[:-1] + [bad], proof)
    assert not both_verify(public, cs, ds[:-1] + [r255.IDENTITY], proof)
    assert not dleq.verify(r255.IDENTITY, cs, ds, CTX, proof)
    assert not dleq.verify(public, cs, ds, CTX, proof[:-1])
    assert not dleq.verify(public, [], [], CTX, proof)


def test_the_weights_depend_on_each_pair_not_its_position(batch):
    k, public, cs, ds, proof = batch
    # Weights are by D, so a consistent reorder is the same statement (the same M and Z):
    # what both sides of a verified round rely on to share one sum (protocol/verified.py).
    assert both_verify(public, cs[::-1], ds[::-1], proof)
    sums = dleq.start_composites(cs, ds, CTX, with_z=True)()
    assert dleq.start_composites(cs[::-1], ds[::-1], CTX, with_z=True)() == sums
    # Pairing a C with another pair's D is not: the swap test above, and here a rotation.
    assert not both_verify(public, cs, ds[1:] + ds[:1], proof)
    # A repeated D would give two pairs one weight: refused by prover and both verifiers.
    twice = ds[:-1] + [ds[0]]
    with pytest.raises(ValueError):
        dleq.prove(k, cs, twice, CTX, os.urandom(64))
    assert not both_verify(public, cs, twice, proof)


def test_a_proof_over_sums_is_the_proof_over_the_pairs(batch):
    k, public, cs, ds, _ = batch
    m, z = dleq.start_composites(cs, ds, CTX, with_z=True)()
    nonce = os.urandom(64)
    assert dleq.prove_sum(k, m, CTX, nonce) == dleq.prove(k, cs, ds, CTX, nonce)
    assert dleq.check_sums(public, m, z, CTX, dleq.prove_sum(k, m, CTX, nonce))
    assert not dleq.check_sums(public, m, m, CTX, dleq.prove_sum(k, m, CTX, nonce))


def test_sums_started_before_the_proof_arrives_check_the_same(batch):
    """The verifier's early sums (start_composites, as a verified round does) accept
    exactly what the plain verifier accepts, and still decode every prover point."""
    k, public, cs, ds, proof = batch

    def early(ds_, proof_, ctx=CTX):
        summed = dleq.start_composites(cs, ds_, ctx, with_z=True)
        return dleq.verify(public, cs, ds_, ctx, proof_, summed=summed, own_cs=True)

    assert early(ds, proof)
    swapped = list(ds)
    swapped[2], swapped[5] = swapped[5], swapped[2]
    assert not early(swapped, proof)
    assert not early(ds, proof, ctx=CTX + b"!")
    high = ds[:-1] + [ds[-1][:31] + bytes([ds[-1][31] | 0x80])]  # libsodium alone accepts it
    assert not early(high, proof)
    assert not early(ds[:-1] + [r255.IDENTITY], proof)
