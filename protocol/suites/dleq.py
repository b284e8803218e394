"""Batched discrete-log-equality proofs on ristretto255 (RFC 9497 section 2.2 construction).

A prover with secret k and public key K = k*G shows, in one 64-byte proof, that
D_i = k*C_i for every pair of a list, without revealing k. Byte for byte
(docs/protocol.md, "Batched DLEQ proofs"), with ``||`` concatenation,
``frame(x)`` = 2-byte big-endian length || x, and HashToScalar(x) = SHA-512(x)
read little-endian, mod L:

- seed = SHA-512(PROOF_DOMAIN || "seed|" || frame(weights context));
- d_i = HashToScalar(PROOF_DOMAIN || "composite|" || seed || D_i): a pair's weight
  is set by its D alone, so the D_i of a list must be distinct (a list with a
  repeated D is refused);
- M = sum d_i*C_i, Z = sum d_i*D_i (the prover computes Z = k*M);
- prover: r from 64 random bytes (reduced mod L), t2 = r*G, t3 = r*M;
- c = HashToScalar(PROOF_DOMAIN || "challenge|" || frame(K) || frame(M) ||
  frame(Z) || frame(t2) || frame(t3) || frame(context)); s = r - c*k mod L;
- proof = c || s (32 bytes each, little-endian, canonical: < L);
- verifier: t2 = s*G + c*K, t3 = s*M + c*Z, accept iff the recomputed c equals
  the proof's.

Why weights by D rather than by position (protocol v3): in a verified round both
sides prove over the same matches, and a match's double-blinded value W is the D
of both proofs (it is what each side returned or computed for that element). With
one weights context per round, both proofs then weight each match the same, so a
side can reuse one sum for its own proof and for checking the peer's
(protocol/verified.py): a third of the multiplies less. Soundness is that of the
RFC's batching: the weights context must bind K and every C and D (a round's
transcript hash binds both keys and all four streams), so the weights are fixed
once the prover has chosen its values, and a list wrong in any pair (copied,
swapped, re-keyed) passes with probability about 1/L; distinct D's give distinct,
independent weights. The ``context`` of the challenge binds a proof to one round
and one direction (who proves what to whom), so a proof cannot be replayed into
another round.

Cost (rbcl has no multi-scalar multiplication, every call decodes and encodes):
one weighted sum is m multiplies and m additions, split over the engine's worker
threads; a prover needs one sum (M), a verifier two (M, Z).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from protocol.errors import ProtocolError
from protocol.rules import Rule
from protocol.suites.ristretto255 import (
    DOMAIN,
    IDENTITY,
    ORDER,
    POINT_BYTES,
    SCALAR_BYTES,
    check_point,
    scalar_bytes,
    scalar_int,
    sodium,
)

PROOF_DOMAIN = DOMAIN + b"dleq|"
PROOF_BYTES = 2 * SCALAR_BYTES
RANDOM_BYTES = 64

# submit(fn, *args) -> Future: a worker pool (WorkerEngine.submit), or None for inline.
Submit = Callable[..., Future[Any]]


def frame(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def hash_to_scalar(data: bytes) -> bytes:
    return scalar_bytes(scalar_int(hashlib.sha512(data).digest()))


def seed(weights_context: bytes) -> bytes:
    return hashlib.sha512(PROOF_DOMAIN + b"seed|" + frame(weights_context)).digest()


def weight(seed_: bytes, d: bytes) -> bytes:
    return hash_to_scalar(PROOF_DOMAIN + b"composite|" + seed_ + d)


def challenge(k: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes, context: bytes) -> bytes:
    body = b"".join(frame(x) for x in (k, m, z, t2, t3, context))
    return hash_to_scalar(PROOF_DOMAIN + b"challenge|" + body)


def distinct(ds: Sequence[bytes]) -> bool:
    """Whether no D repeats: a repeated D would give two pairs one weight."""
    return len(set(ds)) == len(ds)


def start_sums(
    seed_: bytes,
    keys: Sequence[bytes],
    *lists: Sequence[bytes],
    submit: Submit | None = None,
    parts: int = 2,
) -> Callable[[], tuple[bytes, ...]]:
    """Queue, for each list, sum weight(seed, keys[i]) * list[i], and return what waits
    for them. One pass computes each weight once for all lists; the caller knows its
    lists before a proof arrives, so it can sum while the peer is still proving."""
    if not keys or any(len(points) != len(keys) for points in lists):
        raise ProtocolError("a proof needs a non-empty list of pairs", rule=Rule.PROOF_INVALID)
    size = max(1, -(-len(keys) // max(1, parts)))
    jobs = []
    for a in range(0, len(keys), size):
        args = (seed_, keys[a : a + size], [points[a : a + size] for points in lists])
        jobs.append(submit(_run, *args) if submit is not None else _inline(_run, *args))

    def result() -> tuple[bytes, ...]:
        add = sodium().crypto_core_ristretto255_add
        sums = [IDENTITY] * len(lists)
        for job in jobs:
            sums = [add(total, part) for total, part in zip(sums, job.result(), strict=True)]
        return tuple(sums)

    return result


def start_composites(
    cs: Sequence[bytes],
    ds: Sequence[bytes],
    weights_context: bytes,
    *,
    with_z: bool,
    submit: Submit | None = None,
    parts: int = 2,
) -> Callable[[], tuple[bytes, bytes]]:
    """Queue the sums (M, Z) of the pairs (Z is the identity unless ``with_z``: the
    prover skips it)."""
    lists = (cs, ds) if with_z else (cs,)
    pending = start_sums(seed(weights_context), ds, *lists, submit=submit, parts=parts)

    def result() -> tuple[bytes, bytes]:
        sums = pending()
        return sums[0], sums[1] if with_z else IDENTITY

    return result


def _run(s: bytes, keys: Sequence[bytes], lists: Sequence[Sequence[bytes]]) -> tuple[bytes, ...]:
    lib = sodium()
    mult, add = lib.crypto_scalarmult_ristretto255, lib.crypto_core_ristretto255_add
    sums = [IDENTITY] * len(lists)
    for j, key in enumerate(keys):
        w = weight(s, key)
        sums = [add(total, mult(w, points[j])) for total, points in zip(sums, lists, strict=True)]
    return tuple(sums)


def _inline(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run now, and hold the outcome as a worker's Future would: an element that does not
    decode fails where the sums are read (inside verify), not where they were queued."""
    f: Future[Any] = Future()
    try:
        f.set_result(fn(*args))
    except Exception as e:  # re-raised by Future.result()
        f.set_exception(e)
    return f


def prove_sum(key: bytes, m: bytes, context: bytes, random: bytes) -> bytes:
    """The 64-byte proof that Z = key*M for the composite ``m`` (``random``: 64 fresh
    bytes); Z itself the verifier sums or derives on its own."""
    if len(random) != RANDOM_BYTES:
        raise ValueError(f"a proof needs {RANDOM_BYTES} random bytes")
    lib = sodium()
    public = lib.crypto_scalarmult_ristretto255_base(key)
    z = lib.crypto_scalarmult_ristretto255(key, m)
    r = lib.crypto_core_ristretto255_scalar_reduce(random)
    t2 = lib.crypto_scalarmult_ristretto255_base(r)
    t3 = lib.crypto_scalarmult_ristretto255(r, m)
    c = challenge(public, m, z, t2, t3, context)
    # s = r - c*k in libsodium's constant-time scalar arithmetic (k is secret).
    s = lib.crypto_core_ristretto255_scalar_sub(r, lib.crypto_core_ristretto255_scalar_mul(c, key))
    return bytes(c) + bytes(s)


def prove(
    key: bytes,
    cs: Sequence[bytes],
    ds: Sequence[bytes],
    context: bytes,
    random: bytes,
    *,
    weights_context: bytes | None = None,
    submit: Submit | None = None,
    parts: int = 2,
) -> bytes:
    """The 64-byte proof that ds[i] = key*cs[i] for all i (``random``: 64 fresh bytes).
    ``weights_context`` defaults to ``context``."""
    if not distinct(ds):
        raise ValueError("a proof's D values must be distinct")
    wctx = context if weights_context is None else weights_context
    m, _ = start_composites(cs, ds, wctx, with_z=False, submit=submit, parts=parts)()
    return prove_sum(key, m, context, random)


def well_formed(public_key: bytes, proof: bytes) -> bool:
    """A proof of two canonical scalars under a public key that is not the identity."""
    if len(proof) != PROOF_BYTES or len(public_key) != POINT_BYTES or public_key == IDENTITY:
        return False
    # A non-canonical scalar would make the proof malleable.
    return scalar_int(proof[:SCALAR_BYTES]) < ORDER and scalar_int(proof[SCALAR_BYTES:]) < ORDER


def check_sums(public_key: bytes, m: bytes, z: bytes, context: bytes, proof: bytes) -> bool:
    """Whether ``proof`` shows Z = k*M for the k behind ``public_key``."""
    if not well_formed(public_key, proof):
        return False
    c, s = proof[:SCALAR_BYTES], proof[SCALAR_BYTES:]
    lib = sodium()
    mult0 = lib.crypto_scalarmult_ristretto255_allow_scalar_zero
    try:
        check_point(public_key)
        t2 = lib.crypto_core_ristretto255_add(
            lib.crypto_scalarmult_ristretto255_base_allow_scalar_zero(s), mult0(c, public_key)
        )
        t3 = lib.crypto_core_ristretto255_add(mult0(s, m), mult0(c, z))
    except (RuntimeError, ValueError, ProtocolError):
        return False
    return challenge(public_key, m, z, t2, t3, context) == c


def verify(
    public_key: bytes,
    cs: Sequence[bytes],
    ds: Sequence[bytes],
    context: bytes,
    proof: bytes,
    *,
    weights_context: bytes | None = None,
    submit: Submit | None = None,
    parts: int = 2,
    summed: Callable[[], tuple[bytes, bytes]] | None = None,
    own_cs: bool = False,
) -> bool:
    """Whether ``proof`` shows ds[i] = k*cs[i] for the k behind ``public_key``.

    ``weights_context`` defaults to ``context``. ``summed``: the pending (M, Z) of these
    very pairs from :func:`start_composites` (with_z). ``own_cs``: the cs are the
    verifier's own points, valid by construction, so only the ds (the prover's) are
    decoded and checked."""
    if not cs or len(cs) != len(ds) or not distinct(ds) or not well_formed(public_key, proof):
        return False
    try:
        for point in ds if own_cs else (*cs, *ds):
            check_point(point)
        if summed is None:
            wctx = context if weights_context is None else weights_context
            summed = start_composites(cs, ds, wctx, with_z=True, submit=submit, parts=parts)
        m, z = summed()
    except (RuntimeError, ValueError, ProtocolError):
        return False  # an element that does not decode: the pairs cannot be what was claimed
    return check_sums(public_key, m, z, context, proof)
