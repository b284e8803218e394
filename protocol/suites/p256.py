"""The ``openmined-p256-v1`` suite: P-256 through the openmined-psi library.

The library hashes to the curve and multiplies (``client.CreateRequest``), and
multiplies received points (``server.ProcessRequest``); points are 33-byte
compressed SEC1 encodings. It exposes no point arithmetic, so this suite cannot
prove its re-blinding (``proofs = False``): a round on it relies on the
accountability of the commitments and the audit log.

Thread safety: one library object used from two threads at once aborts the
whole process (a C++ abort, not an exception). Each worker thread therefore
builds its own client and server objects from the same key bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import private_set_intersection.python as _psi

from protocol.errors import ConfigError, ProtocolError
from protocol.rules import Rule
from protocol.suites.base import Suite, WorkerEngine

NAME = "openmined-p256-v1"
POINT_BYTES = 33
KEY_BYTES = 32
# The order of the P-256 group (SEC 2, section 2.4.2).
ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
KEY_DOMAIN = b"crossmatch/v1|" + NAME.encode() + b"|key|"


def check_key(key: bytes) -> None:
    """Raise ConfigError unless ``key`` is a valid P-256 scalar in [1, order)."""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"PSI key must be {KEY_BYTES} bytes, got {len(key)}")
    try:
        _psi.server.CreateFromKey(key, True)
    except RuntimeError as e:
        raise ConfigError(f"invalid PSI key: {e}") from e


class P256Engine(WorkerEngine):
    """Blinds and re-blinds with per-thread openmined-psi client and server objects."""

    suite_name = NAME
    point_bytes = POINT_BYTES

    def __init__(self, key: bytes, *, workers: int = 2):
        check_key(key)
        super().__init__(key, workers=workers)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = _psi.client.CreateFromKey(self._key, True)
        return client

    def _server(self) -> Any:
        server = getattr(self._local, "server", None)
        if server is None:
            server = self._local.server = _psi.server.CreateFromKey(self._key, True)
        return server

    def _blind_points(self, items: Sequence[bytes]) -> bytes:
        request = self._client().CreateRequest(list(items))
        return b"".join(request.encrypted_elements)

    def _reblind_points(self, points: list[bytes]) -> bytes:
        request = _psi.Request(reveal_intersection=True)
        request.encrypted_elements.extend(points)
        try:
            response = self._server().ProcessRequest(request)
        except RuntimeError as e:
            # The library raises when a point does not decode (not on the curve, bad prefix).
            raise ProtocolError(
                "peer sent an element that is not a valid P-256 point", rule=Rule.MALFORMED_ELEMENT
            ) from e
        return b"".join(response.encrypted_elements)


class P256Suite(Suite):
    name = NAME
    point_bytes = POINT_BYTES
    key_bytes = KEY_BYTES
    proofs = False

    def key_from_random(self, random: bytes) -> bytes:
        """A scalar in [1, order), big-endian (the library's key format)."""
        if len(random) != self.random_bytes:
            raise ValueError(f"a key needs {self.random_bytes} random bytes, got {len(random)}")
        n = int.from_bytes(hashlib.sha512(KEY_DOMAIN + random).digest(), "big")
        return (n % (ORDER - 1) + 1).to_bytes(KEY_BYTES, "big")

    def check_key(self, key: bytes) -> None:
        check_key(key)

    def engine(self, key: bytes, *, workers: int = 2) -> P256Engine:
        return P256Engine(key, workers=workers)

    def self_test(self) -> None:
        with P256Engine((1).to_bytes(KEY_BYTES, "big"), workers=1) as e:
            h = e.blind([b"\x00" * 32])
            if len(h) != POINT_BYTES or e.reblind(h) != h:
                raise ConfigError(
                    f"suite {NAME} failed its known-answer test", rule=Rule.SUITE_UNAVAILABLE
                )


P256 = P256Suite()
