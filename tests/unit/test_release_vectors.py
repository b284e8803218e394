"""Golden vectors of round-bound release values (docs/protocol.md, "Round-bound release").

Fixed inputs, expected bytes written out once; a second, plain computation from the
spec's formula (hashlib only) must agree, so an independent implementer can reproduce
them from docs/protocol.md alone.
"""

from __future__ import annotations

import hashlib

import pytest

from protocol import release
from protocol.transcript import RoundHeader, header_hash

HEADER = RoundHeader(
    round_id="00112233445566778899aabbccddeeff", initiator="lab-a", responder="lab-b",
    mode="reveal", kinds=("email",), initiator_sizes=(3,), responder_sizes=(2,),
    policy_hash=bytes(range(32)), initiator_commitment=bytes([1]) * 32,
    responder_commitment=bytes([2]) * 32, suite="openmined-p256-v1",
)  # fmt: skip
HEADER_HASH = "9d92a32b78da5a1592ab68ec081fa7e614009a550aa0c1b7fdc54a74f7a6dddb"
CONTEXT = "0ec765aa244908b217b4e9d9181a520988b6032dc73e1b23fa4b6c8c82739aa3"
# (point encoding, release value): a 33-byte P-256 shape and a 32-byte ristretto255 shape
VALUES = [
    (bytes([2]) + bytes(range(32)), "c02ce19b4553f8d822c60cb94b484166"),
    (bytes(range(32, 64)), "a5607e84b7450628fe242eb65976bbc9"),
]


def plain_value(header_digest: bytes, point: bytes) -> bytes:
    ctx = hashlib.sha256(b"crossmatch/v4/release" + header_digest).digest()
    return hashlib.sha256(ctx + point).digest()[:16]


def test_the_context_vector():
    assert header_hash(HEADER).hex() == HEADER_HASH
    assert release.context(HEADER).hex() == CONTEXT


@pytest.mark.parametrize("point,expected", VALUES)
def test_the_value_vectors_and_a_plain_computation_agree(point, expected):
    ours = release.release_values(release.context(HEADER), point, len(point))
    assert ours.hex() == expected
    assert plain_value(bytes.fromhex(HEADER_HASH), point).hex() == expected


def test_a_run_of_points_is_valued_point_by_point_in_order():
    points = b"".join(p for p, _ in VALUES[:1]) * 2 + bytes([3]) + bytes(32)
    out = release.release_values(release.context(HEADER), points, 33)
    assert len(out) == 3 * release.RELEASE_BYTES
    assert out[:16] == out[16:32] == bytes.fromhex(VALUES[0][1])
    assert out[32:] == plain_value(header_hash(HEADER), bytes([3]) + bytes(32))
    with pytest.raises(ValueError):
        release.release_values(release.context(HEADER), points[:-1], 33)


def test_which_rounds_are_round_bound():
    verified = RoundHeader(
        **{**HEADER.__dict__, "suite": "ristretto255-v1", "verified_matches": True}
    )
    count = RoundHeader(**{**HEADER.__dict__, "mode": "count"})
    assert release.round_bound(HEADER)
    assert not release.round_bound(verified) and not release.round_bound(count)
    assert release.release_width(HEADER, 33) == 16
    assert release.release_width(verified, 32) == 32 and release.release_width(count, 33) == 33
