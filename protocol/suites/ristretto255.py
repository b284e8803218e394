"""The ``ristretto255-v1`` suite: RFC 9496 ristretto255 through libsodium (``rbcl``).

Byte for byte (docs/protocol.md, "Suite ristretto255-v1"):

- a point is a 32-byte canonical ristretto255 encoding; the identity
  (32 zero bytes) is never a valid element;
- H(x) = ONE_WAY_MAP(SHA-512(H2G_DOMAIN || x)), the RFC 9496 section 4.3.4
  one-way map (``crypto_core_ristretto255_from_hash``) of 64 bytes;
- a secret key is a scalar k in [1, L), 32 bytes little-endian, made from 64
  random bytes by reduction mod L; its public key is k*G (G the RFC 9496
  generator);
- blind(x) = k*H(x); reblind(P) = k*P (``crypto_scalarmult_ristretto255``,
  which multiplies by the scalar as given: no clamping for ristretto255);
- a received point is decoded before use: a non-canonical or invalid
  encoding is refused (rule ``element-noncanonical``), the identity too
  (rule ``element-identity``).

``rbcl`` writes its embedded libsodium to a temporary file when it is first
imported, so the import happens in :func:`sodium` (on first use, or at node
start-up through :func:`load`), never when this module is imported: importing
``protocol`` does no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from protocol.errors import ConfigError, ProtocolError
from protocol.rules import Rule
from protocol.suites.base import Suite, WorkerEngine

NAME = "ristretto255-v1"
POINT_BYTES = 32
SCALAR_BYTES = 32
# The order of the ristretto255 group (RFC 9496, section 4.1).
ORDER = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes(POINT_BYTES)
DOMAIN = b"crossmatch/v1|" + NAME.encode() + b"|"
H2G_DOMAIN = DOMAIN + b"h2g|"
KEY_DOMAIN = DOMAIN + b"key|"

_sodium: Any = None


def sodium() -> Any:
    """The ``rbcl`` module, imported on first use; ConfigError if it cannot load."""
    global _sodium
    if _sodium is None:
        try:
            import rbcl
        except (OSError, ImportError) as e:
            raise ConfigError(
                f"suite {NAME} unavailable: rbcl could not load its libsodium ({e}); "
                "it needs a writable, executable temporary directory (set TMPDIR)",
                rule=Rule.SUITE_UNAVAILABLE,
            ) from e
        _sodium = rbcl
    return _sodium


def load() -> ModuleType:
    """Import the library and run the known-answer test: the node calls this at start-up."""
    lib: ModuleType = sodium()
    RISTRETTO255.self_test()
    return lib


def hash_input(fingerprint: bytes) -> bytes:
    """The 64 uniform bytes fed to the one-way map for ``fingerprint``."""
    return hashlib.sha512(H2G_DOMAIN + fingerprint).digest()


def hash_to_group(fingerprint: bytes) -> bytes:
    """H(x): the encoded element a fingerprint maps to."""
    point: bytes = sodium().crypto_core_ristretto255_from_hash(hash_input(fingerprint))
    return point


def scalar_bytes(n: int) -> bytes:
    return (n % ORDER).to_bytes(SCALAR_BYTES, "little")


def scalar_int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _noncanonical() -> ProtocolError:
    return ProtocolError(
        "peer sent a non-canonical or invalid ristretto255 encoding", rule=Rule.ELEMENT_NONCANONICAL
    )


def _screen(point: bytes) -> None:
    """What libsodium's decoder does not check itself.

    The identity decodes, and the libsodium inside rbcl 1.1.2 ignores bit 255 (it
    accepts s + 2^255 for a valid s: found by the reference implementation's
    property test). RFC 9496 section 4.3.1 requires s < p, so bit 255 is clear.
    """
    if point == IDENTITY:
        raise ProtocolError("peer sent the identity element", rule=Rule.ELEMENT_IDENTITY)
    if point[31] & 0x80:
        raise _noncanonical()


def check_point(point: bytes) -> None:
    """ProtocolError (named rule) unless ``point`` is a valid non-identity element."""
    if len(point) != POINT_BYTES:
        raise ProtocolError(
            f"element of {len(point)} bytes, expected {POINT_BYTES}", rule=Rule.MALFORMED_ELEMENT
        )
    _screen(point)
    if not sodium().crypto_core_ristretto255_is_valid_point(point):
        raise _noncanonical()


def multiply(scalar: bytes, point: bytes) -> bytes:
    """scalar*point for a received point: decoded first (named rules on failure)."""
    _screen(point)
    try:
        out: bytes = sodium().crypto_scalarmult_ristretto255(scalar, point)
    except RuntimeError:
        # libsodium refuses to decode it (the result of a valid point and a key in
        # [1, L) is never the identity): a non-canonical or invalid encoding.
        raise _noncanonical() from None
    return out


class RistrettoEngine(WorkerEngine):
    suite_name = NAME
    point_bytes = POINT_BYTES

    def __init__(self, key: bytes, *, workers: int = 2):
        RISTRETTO255.check_key(key)
        super().__init__(key, workers=workers)
        self._lib = sodium()

    def _blind_points(self, items: Sequence[bytes]) -> bytes:
        mult, h2g, key = self._lib.crypto_scalarmult_ristretto255, hash_to_group, self._key
        return b"".join([mult(key, h2g(x)) for x in items])

    def _reblind_points(self, points: list[bytes]) -> bytes:
        key = self._key
        return b"".join([multiply(key, p) for p in points])

    @property
    def public_key(self) -> bytes:
        """k*G: what this side commits to before its points, for the peer's proof checks."""
        return RISTRETTO255.public_key(self._key)

    def times_key(self, point: bytes) -> bytes:
        """k*P for one point of our own making (a proof's composite)."""
        return multiply(self._key, point)

    def prove(
        self,
        cs: Sequence[bytes],
        ds: Sequence[bytes],
        context: bytes,
        random: bytes,
        *,
        weights_context: bytes | None = None,
    ) -> bytes:
        """A batched DLEQ proof that ds[i] = k*cs[i] (protocol/suites/dleq.py), on the workers."""
        from protocol.suites import dleq  # dleq builds on this module

        return dleq.prove(
            self._key,
            cs,
            ds,
            context,
            random,
            weights_context=weights_context,
            submit=self.submit,
            parts=self.workers,
        )

    def prove_sum(self, m: bytes, context: bytes, random: bytes) -> bytes:
        """The proof that Z = k*M for a composite M already summed (dleq.prove_sum)."""
        from protocol.suites import dleq

        return dleq.prove_sum(self._key, m, context, random)

    def verify(
        self,
        public: bytes,
        cs: Sequence[bytes],
        ds: Sequence[bytes],
        context: bytes,
        proof: bytes,
        *,
        weights_context: bytes | None = None,
    ) -> bool:
        from protocol.suites import dleq

        return dleq.verify(
            public,
            cs,
            ds,
            context,
            proof,
            weights_context=weights_context,
            submit=self.submit,
            parts=self.workers,
        )

    def start_sums(
        self, seed: bytes, keys: Sequence[bytes], *lists: Sequence[bytes]
    ) -> Callable[[], tuple[bytes, ...]]:
        """Weighted sums of a proof (dleq.start_sums), summed on the workers now."""
        from protocol.suites import dleq

        return dleq.start_sums(seed, keys, *lists, submit=self.submit, parts=self.workers)


class Ristretto255Suite(Suite):
    name = NAME
    point_bytes = POINT_BYTES
    key_bytes = SCALAR_BYTES
    proofs = True

    def key_from_random(self, random: bytes) -> bytes:
        if len(random) != self.random_bytes:
            raise ValueError(f"a key needs {self.random_bytes} random bytes, got {len(random)}")
        k = scalar_int(hashlib.sha512(KEY_DOMAIN + random).digest()) % ORDER
        if k == 0:  # probability 2^-252
            raise ConfigError("derived key is zero: draw new randomness")
        return scalar_bytes(k)

    def check_key(self, key: bytes) -> None:
        if len(key) != SCALAR_BYTES:
            raise ConfigError(f"{NAME} key must be {SCALAR_BYTES} bytes, got {len(key)}")
        if not 0 < scalar_int(key) < ORDER:
            raise ConfigError(f"{NAME} key is not a scalar in [1, L)")

    def engine(self, key: bytes, *, workers: int = 2) -> RistrettoEngine:
        return RistrettoEngine(key, workers=workers)

    def public_key(self, key: bytes) -> bytes:
        self.check_key(key)
        out: bytes = sodium().crypto_scalarmult_ristretto255_base(key)
        return out

    def self_test(self) -> None:
        """Known answers from RFC 9496 (A.1, A.3) and from our own vectors."""
        lib = sodium()
        checks = {
            "generator": (lib.crypto_scalarmult_ristretto255_base(scalar_bytes(2)), _KAT_2G),
            "one-way map": (lib.crypto_core_ristretto255_from_hash(_KAT_MAP_IN), _KAT_MAP_OUT),
            "blind": (
                lib.crypto_scalarmult_ristretto255(scalar_bytes(7), hash_to_group(b"\x00" * 32)),
                _KAT_BLIND,
            ),
        }
        for what, (got, want) in checks.items():
            if got != want:
                raise ConfigError(
                    f"suite {NAME} failed its known-answer test ({what})",
                    rule=Rule.SUITE_UNAVAILABLE,
                )
        # The decoder as a whole (ours and libsodium's): an RFC 9496 A.2 encoding, and a
        # valid element with bit 255 set.
        for bad in (b"\xff" * 31 + b"\x7f", _KAT_MAP_OUT[:31] + bytes([_KAT_MAP_OUT[31] | 0x80])):
            try:
                check_point(bad)
            except ProtocolError:
                continue
            raise ConfigError(
                f"suite {NAME} accepts a non-canonical encoding", rule=Rule.SUITE_UNAVAILABLE
            )


# RFC 9496 A.1: 2*G; A.3: the first element-derivation vector.
_KAT_2G = bytes.fromhex("6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919")
_KAT_MAP_IN = bytes.fromhex(
    "5d1be09e3d0c82fc538112490e35701979d99e06ca3e2b5b54bffe8b4dc772c1"
    "4d98b696a1bbfb5ca32c436cc61c16563790306c79eaca7705668b47dffe5bb6"
)
_KAT_MAP_OUT = bytes.fromhex("3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46")
# 7*H(32 zero bytes), from tests/vectors/ristretto255/suite.json (checked by the pure-Python
# reference implementation in tests/ristretto_ref.py).
_KAT_BLIND = bytes.fromhex("ecf55ba6fa9be6217c1b66bc1009adffb0b056eca830266a11bc9681e4b2f00d")

RISTRETTO255 = Ristretto255Suite()
