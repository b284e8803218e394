"""The attacks of issue 10 against the real round state machine, in memory.

Each test plays a hostile side the way a member lab that modified its node would
(changing one thing) against an honest RoundSide, and checks that the honest side
refuses with the named rule before it learns anything false, or, where the round
cannot catch the cheat, that the honest side releases nothing it should not.
"""

from __future__ import annotations

import hashlib
import threading

import private_set_intersection.python as psi_lib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from protocol.psi import POINT_BYTES, Engine, pack, unpack
from tests import round_harness as harness


def fp(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture(scope="module")
def engines():
    def key() -> bytes:
        return psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes()

    a, b = Engine(key(), workers=1), Engine(key(), workers=1)
    yield a, b
    a.close()
    b.close()


class Wire(harness.Wire):
    """One single-kind round in memory; ``tamper`` (the hostile initiator's transport)
    may rewrite or drop (return None) what side "a" sends."""

    def __init__(self, engines, own_a, own_b, *, mode="reveal", chunk=4, tamper=None):
        header = harness.round_header([len(own_a)], [len(own_b)], mode=mode, round_id="r-attack")

        def hook(frm, kind, seq, payload):
            return tamper(kind, seq, payload) if frm == "a" else payload

        super().__init__(
            header, engines, own_a, own_b, chunk=chunk, seed=5, tamper=hook if tamper else None
        )

    def run(self, timeout: float = 30):
        self.start()
        try:
            return self.result("b", timeout)
        finally:
            self.close(fail=True)


def honest_b() -> list[bytes]:
    return [fp(f"b{i}") for i in range(10)]


# -- attack 1: planted matches -----------------------------------------------------------


def test_planted_matches_copied_from_the_responders_release(engines):
    """The hostile initiator holds none of B's set and copies B's re-blinded values into
    chosen positions of its own release. It can only do so after B released, i.e. after
    its own commitment: the copies do not open it."""
    b_released = threading.Event()
    wire: Wire

    def tamper(kind, seq, payload):
        if kind != "peer_reblinded" or seq != 0:
            return payload
        b_released.wait(10)  # hold our release until B's values are in
        theirs = unpack(b"".join(wire.released_by("b")))
        ours = unpack(payload)
        ours[0], ours[1], ours[2] = theirs[0], theirs[1], theirs[2]  # chosen positions
        return pack(ours)

    wire = Wire(engines, [fp(f"a{i}") for i in range(10)], honest_b(), tamper=tamper)
    original = wire.sides["a"].on_peer_reblinded

    def on_b_release(packed: bytes) -> None:
        original(packed)
        if sum(len(p) for p in wire.released_by("b")) == 10 * POINT_BYTES:
            b_released.set()

    wire.sides["a"].on_peer_reblinded = on_b_release  # type: ignore[method-assign]
    with pytest.raises(ProtocolError) as err:
        wire.run()
    assert err.value.rule == "reblind-commitment", err.value.message


def test_planted_matches_by_waiting_for_the_responder_to_release_first(engines):
    """The hostile initiator withholds its commitment until B releases: B never does."""
    wire = Wire(
        engines,
        [fp(f"a{i}") for i in range(10)],
        honest_b(),
        tamper=lambda kind, seq, p: None if kind != "own_blinded" else p,
    )
    with pytest.raises(ProtocolError) as err:
        wire.run(timeout=3)
    assert err.value.rule == "timeout"
    assert wire.released_by("b") == []  # B's re-blinding of A's points never left B


def test_planted_matches_in_count_mode(engines):
    """Count mode: inflating the count by copying is refused the same way."""

    def tamper(kind, seq, payload):
        if kind != "peer_reblinded":
            return payload
        pts = unpack(payload)
        pts[1] = pts[0]  # a copy of another of our values: a duplicate
        return pack(pts)

    wire = Wire(engines, [fp(f"a{i}") for i in range(10)], honest_b(), mode="count", tamper=tamper)
    with pytest.raises(ProtocolError) as err:
        wire.run()
    assert err.value.rule == "reblind-commitment"


# -- attack 3: count mode reveals which (by multiplicities) ---------------------------------


def test_count_mode_reveals_which_by_sending_guess_k_k_times(engines):
    """The hostile initiator sends guess k exactly k times, hoping the shuffled counts
    tell it which guesses B holds. B refuses the duplicates before releasing anything."""
    guesses = [fp(f"b{i}") for i in (0, 3, 7, 11, 12)]  # three of B's, two not
    own = [g for k, g in enumerate(guesses, start=1) for _ in range(k)]
    wire = Wire(engines, own, honest_b(), mode="count")
    with pytest.raises(ProtocolError) as err:
        wire.run()
    assert err.value.rule == "duplicate-point"
    assert wire.released_by("b") == []
    assert [kind for kind, _ in wire.sent["b"]].count("reblind_commitment") == 0


# -- any single tampered, copied, swapped or duplicated point --------------------------------


def _mutate(points: list[bytes], how: str, i: int, j: int) -> list[bytes]:
    out = list(points)
    if how == "tampered":
        out[i] = out[i][:5] + bytes([out[i][5] ^ 1]) + out[i][6:]  # one bit changed
    elif how == "copied":
        out[i] = out[j]
    elif how == "swapped":
        out[i], out[j] = out[j], out[i]
    elif how == "duplicated":
        out[j] = out[i]
    return out


MUTATIONS = ("tampered", "copied", "swapped", "duplicated")


FIXTURE_OK = [HealthCheck.function_scoped_fixture]


def eight_a_side(engines, mode, tamper):
    """Eight elements a side, the whole stream in one chunk, ``tamper`` on the wire."""
    return Wire(
        engines,
        [fp(f"a{k}") for k in range(8)],
        [fp(f"b{k}") for k in range(8)],
        mode=mode,
        chunk=8,
        tamper=tamper,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    how=st.sampled_from(MUTATIONS),
    i=st.integers(0, 7),
    j=st.integers(0, 7),
    mode=st.sampled_from(("reveal", "count")),
)
def test_any_single_changed_point_in_the_release_is_caught(engines, how, i, j, mode):
    if i == j:
        j = (i + 1) % 8

    def tamper(kind, seq, payload):
        # The whole release in one chunk (chunk=8), changed after the commitment.
        if kind == "peer_reblinded":
            return pack(_mutate(unpack(payload), how, i, j))
        return payload

    wire = eight_a_side(engines, mode, tamper)
    with pytest.raises(ProtocolError) as err:
        wire.run()
    assert err.value.rule == "reblind-commitment"


@settings(max_examples=10, deadline=None, suppress_health_check=FIXTURE_OK)
@given(i=st.integers(0, 7), j=st.integers(0, 7), mode=st.sampled_from(("reveal", "count")))
def test_any_duplicated_point_in_the_own_stream_is_caught(engines, i, j, mode):
    if i == j:
        j = (i + 1) % 8

    def tamper(kind, seq, payload):
        if kind == "own_blinded":
            return pack(_mutate(unpack(payload), "duplicated", i, j))
        return payload

    wire = eight_a_side(engines, mode, tamper)
    with pytest.raises(ProtocolError) as err:
        wire.run()
    assert err.value.rule == "duplicate-point"
    assert wire.released_by("b") == []


def test_release_before_commitment_is_refused(engines):
    """A side that releases re-blinded points without committing first is refused, and
    the honest side, without that commitment, never releases its own."""
    wire = Wire(
        engines,
        [fp(f"a{k}") for k in range(4)],
        [fp(f"b{k}") for k in range(4)],
        tamper=lambda kind, seq, p: None if kind == "reblind_commitment" else p,
    )
    with pytest.raises(ProtocolError) as err:
        wire.run(timeout=10)
    assert err.value.rule == "message-order"
    assert wire.released_by("b") == []


def test_duplicates_found_even_among_rows_sharing_the_sort_prefix():
    from protocol.psi import has_duplicates

    tail = b"\x07" * 8  # the sort key: every row shares it, as a crafting peer could arrange
    rows = [bytes([2]) + i.to_bytes(24, "big") + tail for i in range(5000)]
    assert not has_duplicates(pack(rows))
    assert has_duplicates(pack(rows + [rows[1234]]))
    assert not has_duplicates(b"") and not has_duplicates(pack(rows[:1]))
    distinct = [fp(f"d{i}") + b"\x02" for i in range(1000)]
    assert not has_duplicates(pack(distinct))
    assert has_duplicates(pack(distinct[:500] + [distinct[7]] + distinct[500:]))
