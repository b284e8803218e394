"""A plain, slow, pure-Python ristretto255 (RFC 9496), for tests only.

Written from the RFC's pseudo-code (sections 4.2-4.4) with Python integers, so
that libsodium (through rbcl) and the batched DLEQ verifier can be checked
against a second implementation that shares no code with them. Not constant
time; never used by a node.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended Edwards coordinates (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def _neg(x: int) -> bool:
    return x % P % 2 == 1


def _abs(x: int) -> int:
    return (-x) % P if _neg(x) else x % P


def sqrt_ratio_m1(u: int, v: int) -> tuple[bool, int]:
    r = (u * pow(v, 3, P)) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    check = v * r * r % P
    correct = check == u % P
    flipped = check == (-u) % P
    flipped_i = check == (-u) * SQRT_M1 % P
    if flipped or flipped_i:
        r = r * SQRT_M1 % P
    return correct or flipped, _abs(r)


INVSQRT_A_MINUS_D = sqrt_ratio_m1(1, (-1 - D) % P)[1]
# The RFC fixes the root of -d-1 whose least significant bit is 1 (the "negative" one).
SQRT_AD_MINUS_ONE = P - sqrt_ratio_m1((-D - 1) % P, 1)[1]
ONE_MINUS_D_SQ = (1 - D * D) % P
D_MINUS_ONE_SQ = (D - 1) * (D - 1) % P


def decode(b: bytes) -> Point | None:
    """The element ``b`` encodes, or None when it is not a canonical encoding."""
    s = int.from_bytes(b, "little")
    if len(b) != 32 or s >= P or _neg(s):
        return None
    ss = s * s % P
    u1, u2 = (1 - ss) % P, (1 + ss) % P
    u2_sqr = u2 * u2 % P
    v = (-(D * u1 * u1) - u2_sqr) % P
    was_square, invsqrt = sqrt_ratio_m1(1, v * u2_sqr % P)
    den_x = invsqrt * u2 % P
    den_y = invsqrt * den_x * v % P
    x = _abs(2 * s * den_x)
    y = u1 * den_y % P
    t = x * y % P
    if not was_square or _neg(t) or y == 0:
        return None
    return (x, y, 1, t)


def encode(p: Point) -> bytes:
    x0, y0, z0, t0 = p
    u1 = (z0 + y0) * (z0 - y0) % P
    u2 = x0 * y0 % P
    _, invsqrt = sqrt_ratio_m1(1, u1 * u2 * u2 % P)
    den1, den2 = invsqrt * u1 % P, invsqrt * u2 % P
    z_inv = den1 * den2 * t0 % P
    rotate = _neg(t0 * z_inv)
    x, y = (y0 * SQRT_M1 % P, x0 * SQRT_M1 % P) if rotate else (x0, y0)
    den_inv = den1 * INVSQRT_A_MINUS_D % P if rotate else den2
    if _neg(x * z_inv):
        y = (-y) % P
    s = _abs(den_inv * (z0 - y))
    return s.to_bytes(32, "little")


def add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = (b - a) % P, (d - c) % P, (d + c) % P, (b + a) % P
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def mul(k: int, p: Point) -> Point:
    out, acc = IDENTITY, p
    k %= L
    while k:
        if k & 1:
            out = add(out, acc)
        acc = add(acc, acc)
        k >>= 1
    return out


def _map(t: int) -> Point:
    r = SQRT_M1 * t * t % P
    u = (r + 1) * ONE_MINUS_D_SQ % P
    v = (-1 - r * D) * (r + D) % P
    was_square, s = sqrt_ratio_m1(u, v)
    if not was_square:
        s = (-_abs(s * t)) % P
    c = P - 1 if was_square else r
    n = (c * (r - 1) * D_MINUS_ONE_SQ - v) % P
    w0 = 2 * s * v % P
    w1 = n * SQRT_AD_MINUS_ONE % P
    w2 = (1 - s * s) % P
    w3 = (1 + s * s) % P
    return (w0 * w3 % P, w2 * w1 % P, w1 * w3 % P, w0 * w2 % P)


def one_way_map(b: bytes) -> bytes:
    """RFC 9496 section 4.3.4: 64 uniform bytes to an encoded element."""
    t1 = int.from_bytes(b[:32], "little") & ((1 << 255) - 1)
    t2 = int.from_bytes(b[32:64], "little") & ((1 << 255) - 1)
    return encode(add(_map(t1 % P), _map(t2 % P)))


GENERATOR = decode(
    bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
)


def hash_to_scalar(data: bytes) -> int:
    return int.from_bytes(hashlib.sha512(data).digest(), "little") % L


# -- a second batched DLEQ verifier, written from docs/protocol.md, not from dleq.py ----------

_PROOF_DOMAIN = b"crossmatch/v1|ristretto255-v1|dleq|"


def _frame(x: bytes) -> bytes:
    return len(x).to_bytes(2, "big") + x


def verify_dleq(
    public: bytes,
    cs: list[bytes],
    ds: list[bytes],
    context: bytes,
    proof: bytes,
    weights_context: bytes | None = None,
) -> bool:
    """Plain re-implementation of the batched DLEQ check (slow: for a few pairs)."""
    k_point = decode(public)
    if k_point is None or public == bytes(32) or len(proof) != 64 or not cs:
        return False
    c = int.from_bytes(proof[:32], "little")
    s = int.from_bytes(proof[32:], "little")
    if c >= L or s >= L:
        return False
    if len(set(ds)) != len(ds):
        return False  # weights are by D: a repeated D is no statement
    wctx = context if weights_context is None else weights_context
    seed = hashlib.sha512(_PROOF_DOMAIN + b"seed|" + _frame(wctx)).digest()
    m, z = IDENTITY, IDENTITY
    for ci, di in zip(cs, ds, strict=True):
        pc, pd = decode(ci), decode(di)
        if pc is None or pd is None:
            return False
        w = hash_to_scalar(_PROOF_DOMAIN + b"composite|" + seed + di)
        m, z = add(m, mul(w, pc)), add(z, mul(w, pd))
    assert GENERATOR is not None
    t2 = add(mul(s, GENERATOR), mul(c, k_point))
    t3 = add(mul(s, m), mul(c, z))
    body = b"".join(
        _frame(x) for x in (public, encode(m), encode(z), encode(t2), encode(t3), context)
    )
    return hash_to_scalar(_PROOF_DOMAIN + b"challenge|" + body) == c
