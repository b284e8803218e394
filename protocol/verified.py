"""Verified matches: a reveal-mode match is stored only behind the peer's DLEQ proof.

After commit-before-release both sides hold the whole round. Each side A has
sent X_i = a*H(x_i) and received Y_i, which the peer B claims is b*X_i; A found
Y_i among its own re-blinding a*P_j of B's points for the positions i in S.
A asks B for one batched DLEQ proof (protocol/suites/dleq.py) that Y_i = b*X_i
for every i in S, under the public key K_B = b*G that B sent before any of its
points. If it holds, Y_i = b*a*H(x_i) = a*P_j, so P_j = b*H(x_i): B really holds
x_i, and the match is real. A copied, swapped, duplicated or re-keyed Y_i
breaks the proof and the round aborts (rule ``proof-invalid``), nothing stored.

What B learns from S: nothing new in reveal mode, where B computes the same
comparison from its side. B proves at most as many positions as it found
matching itself (rule ``proof-request``), so a peer cannot make it work over
whole streams: the cost is proportional to the intersection, not the sets.

Both proofs of a round weight each pair by its double-blinded value W (the Y_i
of A's match and the a*P_j it equals; protocol/suites/dleq.py), from one weights
context per round (WEIGHTS_CONTEXT || frame(transcript hash)). So A sums, once
its matches are known, SX = sum w(W_i)*X_i and SP = sum w(W_i)*P_j(i) (P_j the
peer point its match i found): SX is the M of B's proof to A, and a*SP is its Z
(sum w*Y_i, since each Y_i = a*P_j(i)); SP is the M of A's own proof to B when B
asks for the same matches, as an honest B does, and a*SP again its Z. Two sums
a side instead of three, and the returned Y_i need no decoding (each equals a
point A computed). A peer that asks for other positions gets a proof summed
afresh over what it asked.

Wire forms: ``ProofRequest.positions`` is the sorted, distinct positions (in
the requester's element order, all kinds' sections together) as 4-byte
big-endian integers; ``MatchProof.proof`` is the 64-byte proof, empty when no
position was asked. The proof's context is PROOF_CONTEXT || frame(transcript
hash) || frame(prover role), so a proof is bound to one round and direction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from protocol.errors import ProtocolError
from protocol.psi import Packed, PackedTable, RandomSource, TableSource, rows
from protocol.rules import Rule
from protocol.suites import dleq
from protocol.suites.base import WorkerEngine
from protocol.suites.ristretto255 import RistrettoEngine, check_point

POSITION_BYTES = 4
PROOF_CONTEXT = b"crossmatch/v1|verified-matches|"
WEIGHTS_CONTEXT = PROOF_CONTEXT + b"weights|"


def encode_positions(positions: np.ndarray | list[int]) -> bytes:
    return np.asarray(positions, dtype=">u4").tobytes()


def decode_positions(data: bytes, total: int, limit: int) -> np.ndarray:
    """The positions a peer asks us to prove; ProtocolError (``proof-request``) unless they
    are whole, strictly increasing, inside our stream, and no more than ``limit``."""
    if len(data) % POSITION_BYTES:
        raise ProtocolError("proof request is not whole positions", rule=Rule.PROOF_REQUEST)
    positions = np.frombuffer(data, dtype=">u4").astype(np.int64)
    if len(positions) > limit:
        raise ProtocolError(
            f"peer asked for a proof over {len(positions)} positions; we found {limit} matches",
            rule=Rule.PROOF_REQUEST,
        )
    if len(positions) and (positions[-1] >= total or np.any(np.diff(positions) <= 0)):
        raise ProtocolError(
            "proof request positions are not distinct, sorted and inside the stream",
            rule=Rule.PROOF_REQUEST,
        )
    return positions


def context(transcript_hash: bytes, prover_role: str) -> bytes:
    """The challenge context of one direction's proof."""
    return PROOF_CONTEXT + dleq.frame(transcript_hash) + dleq.frame(prover_role.encode())


def weights_seed(transcript_hash: bytes) -> bytes:
    """The weights' seed, one per round: both directions' proofs share it."""
    return dleq.seed(WEIGHTS_CONTEXT + dleq.frame(transcript_hash))


@dataclass(frozen=True)
class Material:
    """One side's buffers of a finished round (protocol/round.py, ``proof_material``):
    ``sent`` our points and ``returned`` the peer's re-blinding of them (our order);
    ``received`` the peer's points and ``reblinded`` ours of them (the peer's order);
    ``matched`` our matching positions; ``found`` how many we found."""

    sent: Packed
    returned: Packed
    received: Packed
    reblinded: Packed
    matched: np.ndarray
    found: int
    peer_total: int
    width: int


def public_key_of(engine: WorkerEngine) -> bytes:
    return _proofs(engine).public_key


def check_public_key(key: bytes) -> None:
    """The peer's public key must be a valid element (named rules, as any received point)."""
    check_point(key)


def unproven(m: Material, known: PackedTable | None) -> np.ndarray:
    """Our matching positions whose pair (X, Y) is not already known to be proven.

    ``known`` maps X to a Y proven earlier under the same peer key: a pair found there
    with the same Y needs no new proof (Y = k*X does not depend on the round)."""
    if known is None or not len(known) or not len(m.matched):
        return m.matched
    sent = np.ascontiguousarray(rows(m.sent, m.width)[m.matched])
    returned = rows(m.returned, m.width)[m.matched]
    values, found = known.lookup(sent)
    same = found & np.all(values == returned, axis=1)
    return m.matched[~same]


def proven_pairs(m: Material) -> TableSource:
    """Every matching pair of this round, all proven now or earlier: the next round's
    ``known`` table."""
    sent = np.ascontiguousarray(rows(m.sent, m.width)[m.matched])
    returned = np.ascontiguousarray(rows(m.returned, m.width)[m.matched])
    return TableSource(sent, m.width, returned, m.width)


@dataclass(frozen=True)
class Sums:
    """Our weighted sums over our asked matches (see the module docstring): ``keys``
    their W values, sorted (to tell whether the peer asks for the same matches);
    ``own`` and ``peer`` wait for SX and SP."""

    transcript_hash: bytes
    keys: np.ndarray
    own: Callable[[], bytes]
    peer: Callable[[], bytes]


def start_sums(
    engine: WorkerEngine, m: Material, transcript_hash: bytes, asked: np.ndarray
) -> Sums:
    """Start SX and SP over ``asked`` on the workers: they need only our own buffers and
    the transcript, so they overlap the peer's proving."""
    w = m.width
    keys = np.ascontiguousarray(rows(m.returned, w)[asked])
    # The peer points our asked matches found: where our re-blinding is one of their W.
    # A table of the m W values, not of the whole stream: at 1M a side the stream's
    # table would be a 70 MB transient.
    reblinded = rows(m.reblinded, w)
    _, hit = PackedTable(keys, np.zeros((len(keys), 0), np.uint8)).lookup(reblinded)
    partners = np.flatnonzero(hit)
    if len(partners) != len(keys):
        raise ValueError("a matching position without the peer point it matched")
    proofs, seed = _proofs(engine), weights_seed(transcript_hash)
    # Weights are by W, so each sum may run in its own order. SP first: our proof needs
    # only SP, so it can go out while SX is still being summed. (Each sum hashes its own
    # weights: about 1 us an element against 70 us of point work, for the earlier proof.)
    peer = proofs.start_sums(
        seed, _split(reblinded[partners]), _split(rows(m.received, w)[partners])
    )
    own = proofs.start_sums(seed, _split(keys), _split(rows(m.sent, w)[asked]))
    return Sums(transcript_hash, _sorted_rows(keys), lambda: own()[0], lambda: peer()[0])


def answer(
    engine: WorkerEngine,
    m: Material,
    data: bytes,
    transcript_hash: bytes,
    role: str,
    random: bytes,
    sums: Sums | None = None,
) -> bytes:
    """Our MatchProof for the peer's request ``data`` (``proof-request`` if it overreaches):
    over SP when it asks for exactly the matches we summed, else over a fresh sum."""
    positions = decode_positions(data, m.peer_total, m.found)
    if not len(positions):
        return b""
    proofs = _proofs(engine)
    ds = np.ascontiguousarray(rows(m.reblinded, m.width)[positions])
    asked = _sorted_rows(ds)  # refuses a repeated value, whichever sum we prove over
    if sums is not None and sums.transcript_hash == transcript_hash:
        if np.array_equal(asked, sums.keys):
            composite = sums.peer()
            return proofs.prove_sum(composite, context(transcript_hash, role), random)
    cs = rows(m.received, m.width)[positions]
    (composite,) = proofs.start_sums(weights_seed(transcript_hash), _split(ds), _split(cs))()
    return proofs.prove_sum(composite, context(transcript_hash, role), random)


def check(
    engine: WorkerEngine,
    m: Material,
    peer_key: bytes,
    transcript_hash: bytes,
    peer_role: str,
    proof: bytes,
    asked: np.ndarray | None = None,
    sums: Sums | None = None,
) -> None:
    """ProtocolError (``proof-invalid``) unless ``proof`` shows that every returned value at
    the positions we asked about (default: all our matches) is our point times the peer's
    committed key."""
    asked = m.matched if asked is None else asked
    if not len(asked):
        if proof:
            raise ProtocolError("peer sent a proof for no positions", rule=Rule.PROOF_INVALID)
        return
    if sums is None or sums.transcript_hash != transcript_hash:
        sums = start_sums(engine, m, transcript_hash, asked)
    proofs = _proofs(engine)
    # Z = sum w*Y_i = sum w*(a*P_j(i)) = a*SP: every asked Y_i is our re-blinding of P_j(i).
    z = proofs.times_key(sums.peer())
    if not dleq.check_sums(peer_key, sums.own(), z, context(transcript_hash, peer_role), proof):
        raise ProtocolError(
            f"peer's proof over its re-blinding of our {len(asked)} matching elements "
            "does not verify: a returned value is not our point times its committed key",
            rule=Rule.PROOF_INVALID,
        )


def _split(points: np.ndarray) -> list[bytes]:
    return [r.tobytes() for r in points]


def _sorted_rows(points: np.ndarray) -> np.ndarray:
    """The rows sorted, as one value each; ProtocolError if one repeats (the weights are
    by value: the round has already refused repeated points, this keeps the proofs safe
    on their own)."""
    points = np.ascontiguousarray(points)
    values = np.sort(points.view(np.dtype((np.void, points.shape[1]))).ravel())
    if len(values) > 1 and bool(np.any(values[1:] == values[:-1])):
        raise ProtocolError("a proof over a repeated point", rule=Rule.DUPLICATE_POINT)
    return values


def _proofs(engine: WorkerEngine) -> RistrettoEngine:
    if not isinstance(engine, RistrettoEngine):
        raise ValueError(f"verified matches need a suite with proofs, not {engine.suite_name}")
    return engine


class ProofExchange:
    """One side's half of the proof exchange of a verified round.

    ``our_request`` once matched; ``answer_peer`` when the peer's request arrives
    (the round must be matched: the peer matched only after our whole release);
    ``check_peer`` when its proof arrives. ``settled`` is set once both happened:
    only then may a receipt be sent (the responder) or accepted (the initiator).
    """

    def __init__(
        self,
        engine: WorkerEngine,
        role: str,
        peer_role: str,
        random: RandomSource,
        known: tuple[bytes, PackedTable] | None = None,
    ):
        self._engine, self._role, self._peer_role, self._random = engine, role, peer_role, random
        # Pairs proven in earlier rounds of the epoch, under that peer key.
        self._known = known
        self._asked: np.ndarray | None = None
        self._sums: Sums | None = None
        self._answered = threading.Event()
        self._checked = threading.Event()
        self.verified_positions = 0  # our matches, all proven (now or earlier)
        self.proven_now = 0  # of which this round's proof covered

    @property
    def settled(self) -> bool:
        return self._answered.is_set() and self._checked.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._answered.wait(timeout) and self._checked.wait(timeout)

    def our_request(
        self, m: Material, peer_key: bytes = b"", transcript_hash: bytes | None = None
    ) -> bytes:
        """Our ProofRequest; with ``transcript_hash`` our sums start now, on the workers,
        while the peer proves (checking its proof and making ours then cost a few
        multiplies)."""
        known = self._known[1] if self._known and self._known[0] == peer_key else None
        self._asked = unproven(m, known)
        if transcript_hash is not None and len(self._asked):
            self._sums = start_sums(self._engine, m, transcript_hash, self._asked)
        return encode_positions(self._asked)

    def answer_peer(self, m: Material, data: bytes, transcript_hash: bytes) -> bytes:
        if self._answered.is_set():
            raise ProtocolError("second proof request", rule=Rule.MESSAGE_ORDER)
        random = self._random.randbytes(dleq.RANDOM_BYTES)
        proof = answer(self._engine, m, data, transcript_hash, self._role, random, self._sums)
        self._answered.set()
        return proof

    def check_peer(
        self,
        m: Material,
        peer_key: bytes,
        proof: bytes,
        transcript_hash: bytes,
    ) -> None:
        if self._checked.is_set():
            raise ProtocolError("second match proof", rule=Rule.MESSAGE_ORDER)
        if self._asked is None:
            raise ProtocolError("match proof before our request", rule=Rule.MESSAGE_ORDER)
        check(
            self._engine, m, peer_key, transcript_hash, self._peer_role, proof, self._asked,
            self._sums,
        )  # fmt: skip
        self.verified_positions, self.proven_now = len(m.matched), len(self._asked)
        self._checked.set()
