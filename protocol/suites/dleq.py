"""Batched discrete-log-equality proofs on ristretto255 (RFC 9497 section 2.2 construction).

A prover with secret k and public key K = k*G shows, in one 64-byte proof, that
D_i = k*C_i for every pair of a list, without revealing k. Byte for byte
(docs/protocol.md, "Batched DLEQ proofs"), with ``||`` concatenation,
``frame(x)`` = 2-byte big-endian length || x, and HashToScalar(x) = SHA-512(x)
read little-endian, mod L:

- seed = SHA-512(PROOF_DOMAIN || "seed|" || frame(K) || frame(context));
- d_i = HashToScalar(PROOF_DOMAIN || "composite|" || seed || I2OSP(i, 8) ||
  C_i || D_i) for i = 0..m-1 (8-byte index: a batch may exceed 65535);
- M = sum d_i*C_i, Z = sum d_i*D_i (the prover computes Z = k*M);
- prover: r from 64 random bytes (reduced mod L), t2 = r*G, t3 = r*M;
- c = HashToScalar(PROOF_DOMAIN || "challenge|" || frame(K) || frame(M) ||
  frame(Z) || frame(t2) || frame(t3) || frame(context)); s = r - c*k mod L;
- proof = c || s (32 bytes each, little-endian, canonical: < L);
- verifier: t2 = s*G + c*K, t3 = s*M + c*Z, accept iff the recomputed c equals
  the proof's.

The ``context`` binds a proof to one round and one direction (who proves what
to whom), so a proof cannot be replayed into another round. A list that is
wrong in any pair (copied, swapped, re-keyed, duplicated) passes only with
probability about 1/L: the weights d_i are fixed before the prover can choose t2.

Cost (rbcl has no multi-scalar multiplication, every call decodes and encodes):
the prover does m multiplies and m additions, the verifier 2m and 2m; both
split the sums over the engine's worker threads.
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


def seed(public_key: bytes, context: bytes) -> bytes:
    return hashlib.sha512(PROOF_DOMAIN + b"seed|" + frame(public_key) + frame(context)).digest()


def weight(seed_: bytes, i: int, c: bytes, d: bytes) -> bytes:
    return hash_to_scalar(PROOF_DOMAIN + b"composite|" + seed_ + i.to_bytes(8, "big") + c + d)


def challenge(k: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes, context: bytes) -> bytes:
    body = b"".join(frame(x) for x in (k, m, z, t2, t3, context))
    return hash_to_scalar(PROOF_DOMAIN + b"challenge|" + body)


def start_composites(
    public_key: bytes,
    cs: Sequence[bytes],
    ds: Sequence[bytes],
    context: bytes,
    *,
    with_z: bool,
    submit: Submit | None = None,
    parts: int = 2,
) -> Callable[[], tuple[bytes, bytes]]:
    """Queue the sums (M, Z) of the pairs (Z is the identity unless ``with_z``: the
    prover skips it) and return what waits for them: a verifier
    knows its pairs and the weights' seed before the proof arrives, so it can sum
    while the peer is still proving (the weights do not depend on the proof)."""
    if len(cs) != len(ds) or not cs:
        raise ProtocolError("a proof needs a non-empty list of pairs", rule=Rule.PROOF_INVALID)
    s = seed(public_key, context)
    size = max(1, -(-len(cs) // max(1, parts)))
    runs = [(a, cs[a : a + size], ds[a : a + size]) for a in range(0, len(cs), size)]
    jobs = []
    for start, c_run, d_run in runs:
        args = (s, start, c_run, d_run, with_z)
        jobs.append(submit(_run, *args) if submit is not None else _inline(_run, *args))

    def result() -> tuple[bytes, bytes]:
        lib = sodium()
        m = z = IDENTITY
        for job in jobs:
            pm, pz = job.result()
            m = lib.crypto_core_ristretto255_add(m, pm)
            z = lib.crypto_core_ristretto255_add(z, pz)
        return m, z

    return result


def _run(
    s: bytes,
    start: int,
    cs: Sequence[bytes],
    ds: Sequence[bytes],
    with_z: bool,
) -> tuple[bytes, bytes]:
    lib = sodium()
    mult, add = lib.crypto_scalarmult_ristretto255, lib.crypto_core_ristretto255_add
    m = z = IDENTITY
    for j, (c, d) in enumerate(zip(cs, ds, strict=True)):
        w = weight(s, start + j, c, d)
        m = add(m, mult(w, c))
        if with_z:
            z = add(z, mult(w, d))
    return m, z


def _inline(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run now, and hold the outcome as a worker's Future would: an element that does not
    decode fails where the sums are read (inside verify), not where they were queued."""
    f: Future[Any] = Future()
    try:
        f.set_result(fn(*args))
    except Exception as e:  # re-raised by Future.result()
        f.set_exception(e)
    return f


def prove(
    key: bytes,
    cs: Sequence[bytes],
    ds: Sequence[bytes],
    context: bytes,
    random: bytes,
    *,
    submit: Submit | None = None,
    parts: int = 2,
) -> bytes:
    """The 64-byte proof that ds[i] = key*cs[i] for all i (``random``: 64 fresh bytes)."""
    if len(random) != RANDOM_BYTES:
        raise ValueError(f"a proof needs {RANDOM_BYTES} random bytes")
    lib = sodium()
    public = lib.crypto_scalarmult_ristretto255_base(key)
    m, _ = start_composites(public, cs, ds, context, with_z=False, submit=submit, parts=parts)()
    z = lib.crypto_scalarmult_ristretto255(key, m)
    r = lib.crypto_core_ristretto255_scalar_reduce(random)
    t2 = lib.crypto_scalarmult_ristretto255_base(r)
    t3 = lib.crypto_scalarmult_ristretto255(r, m)
    c = challenge(public, m, z, t2, t3, context)
    # s = r - c*k in libsodium's constant-time scalar arithmetic (k is secret).
    s = lib.crypto_core_ristretto255_scalar_sub(r, lib.crypto_core_ristretto255_scalar_mul(c, key))
    return bytes(c) + bytes(s)


def verify(
    public_key: bytes,
    cs: Sequence[bytes],
    ds: Sequence[bytes],
    context: bytes,
    proof: bytes,
    *,
    submit: Submit | None = None,
    parts: int = 2,
    summed: Callable[[], tuple[bytes, bytes]] | None = None,
    own_cs: bool = False,
) -> bool:
    """Whether ``proof`` shows ds[i] = k*cs[i] for the k behind ``public_key``.

    ``summed``: the pending (M, Z) of these very pairs from :func:`start_composites`
    (with_z). ``own_cs``: the cs are the verifier's own points, valid by construction,
    so only the ds (the prover's) are decoded and checked."""
    if len(proof) != PROOF_BYTES or len(public_key) != POINT_BYTES or public_key == IDENTITY:
        return False
    c, s = proof[:SCALAR_BYTES], proof[SCALAR_BYTES:]
    if scalar_int(c) >= ORDER or scalar_int(s) >= ORDER:
        return False  # a non-canonical scalar would make the proof malleable
    lib = sodium()
    try:
        for point in (public_key, *ds) if own_cs else (public_key, *cs, *ds):
            check_point(point)
        if summed is None:
            summed = start_composites(
                public_key, cs, ds, context, with_z=True, submit=submit, parts=parts
            )
        m, z = summed()
        mult0 = lib.crypto_scalarmult_ristretto255_allow_scalar_zero
        t2 = lib.crypto_core_ristretto255_add(
            lib.crypto_scalarmult_ristretto255_base_allow_scalar_zero(s), mult0(c, public_key)
        )
        t3 = lib.crypto_core_ristretto255_add(mult0(s, m), mult0(c, z))
    except (RuntimeError, ValueError, ProtocolError):
        return False  # an element that does not decode: the pairs cannot be what was claimed
    return challenge(public_key, m, z, t2, t3, context) == c
