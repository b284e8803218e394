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
    return PROOF_CONTEXT + dleq.frame(transcript_hash) + dleq.frame(prover_role.encode())


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


def answer(engine: WorkerEngine, m: Material, data: bytes, ctx: bytes, random: bytes) -> bytes:
    """Our MatchProof for the peer's request ``data`` (``proof-request`` if it overreaches)."""
    positions = decode_positions(data, m.peer_total, m.found)
    if not len(positions):
        return b""
    cs, ds = _pairs(m.received, m.reblinded, positions, m.width)
    return _proofs(engine).prove(cs, ds, ctx, random)


def check(
    engine: WorkerEngine,
    m: Material,
    peer_key: bytes,
    ctx: bytes,
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
    if sums is None:
        sums = start_sums(engine, m, peer_key, ctx, asked)
    cs, ds, summed = sums
    if not _proofs(engine).verify(peer_key, cs, ds, ctx, proof, summed=summed, own_cs=True):
        raise ProtocolError(
            f"peer's proof over its re-blinding of our {len(asked)} matching elements "
            "does not verify: a returned value is not our point times its committed key",
            rule=Rule.PROOF_INVALID,
        )


# The verifier's pairs and its pending (M, Z) over them (protocol/suites/dleq.py).
Sums = tuple[list[bytes], list[bytes], Callable[[], tuple[bytes, bytes]]]


def start_sums(
    engine: WorkerEngine, m: Material, peer_key: bytes, ctx: bytes, asked: np.ndarray
) -> Sums:
    """Start summing what the peer's proof over ``asked`` will be checked against: the
    sums need only our pairs and the context, so they overlap the peer's proving."""
    cs, ds = _pairs(m.sent, m.returned, asked, m.width)
    return cs, ds, _proofs(engine).start_sums(peer_key, cs, ds, ctx)


def _proofs(engine: WorkerEngine) -> RistrettoEngine:
    if not isinstance(engine, RistrettoEngine):
        raise ValueError(f"verified matches need a suite with proofs, not {engine.suite_name}")
    return engine


def _pairs(
    first: Packed,
    second: Packed,
    positions: np.ndarray,
    width: int,
) -> tuple[list[bytes], list[bytes]]:
    a, b = rows(first, width)[positions], rows(second, width)[positions]
    return [r.tobytes() for r in a], [r.tobytes() for r in b]


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
        self._sums: tuple[bytes, bytes, Sums] | None = None
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
        """Our ProofRequest; with ``transcript_hash`` the checking sums start now, on the
        workers, while the peer proves (the check itself then costs four multiplies)."""
        known = self._known[1] if self._known and self._known[0] == peer_key else None
        self._asked = unproven(m, known)
        if transcript_hash is not None and peer_key and len(self._asked):
            ctx = context(transcript_hash, self._peer_role)
            self._sums = (peer_key, ctx, start_sums(self._engine, m, peer_key, ctx, self._asked))
        return encode_positions(self._asked)

    def answer_peer(self, m: Material, data: bytes, transcript_hash: bytes) -> bytes:
        if self._answered.is_set():
            raise ProtocolError("second proof request", rule=Rule.MESSAGE_ORDER)
        proof = answer(
            self._engine,
            m,
            data,
            context(transcript_hash, self._role),
            self._random.randbytes(dleq.RANDOM_BYTES),
        )
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
        ctx = context(transcript_hash, self._peer_role)
        sums = None
        if self._sums is not None and self._sums[:2] == (peer_key, ctx):
            sums = self._sums[2]  # summed over the same pairs under the same key and context
        check(self._engine, m, peer_key, ctx, proof, self._asked, sums)
        self.verified_positions, self.proven_now = len(m.matched), len(self._asked)
        self._checked.set()
