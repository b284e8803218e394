"""One side of a round's element exchange, independent of the transport.

Both sides run the same state machine (DESIGN.md, "The round"):

- blind own elements in chunks and send them (``own_blinded``), in order;
- re-blind each chunk of the peer's elements as it arrives (the release stream is
  these values in order, or, in count mode, shuffled within each kind's section);
- commit before release: send a hash of the whole release stream
  (``reblind_commitment``, absorbed into the transcript) and wait for the peer's;
  only then send the stream (``peer_reblinded``). A peer therefore fixes its
  re-blinding of our points before it sees any of our re-blinding of its points,
  and cannot copy our values into its stream to plant matches (ADR 0006);
- collect the peer's re-blinding of our own elements, check that it opens the
  peer's commitment (``reblind-commitment``) and holds no point twice
  (``duplicate-point``, as does the peer's own stream);
- when both are complete, match locally and report the outcome.

The transport (gRPC in ``node/``, queues in tests) feeds received messages in
with :meth:`RoundSide.on_own_blinded` / :meth:`on_reblind_commitment` /
:meth:`on_peer_reblinded` and gets outgoing ones through the ``send`` callback.
Work overlaps: blinding, the peer's re-blinding and the network all proceed at
once on the engine's workers; only the release waits for both commitments.

Incremental rounds: with a :class:`RoundCache` from an earlier round under the
same key (an epoch key, ``node/state/epochs.py``), an own element found in
``cache.own`` is not blinded again and a peer point found in ``cache.peer`` is
not re-blinded again; only what changed goes to the engine. The wire, the
transcript and the outcome are exactly those of a round without a cache. With
``keep_cache`` the side remembers what it computed and :meth:`next_cache`
returns the cache for the next round: this round's values, nothing older.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

from protocol import verified
from protocol.errors import CrossmatchError, ProtocolError
from protocol.psi import (
    RandomSource,
)
from protocol.round_send import Send, SendingWorkers
from protocol.round_streams import PointStream, check_opening, empty_buffer
from protocol.round_work import (
    CachedWork,
    CacheUpdate,
    Chunk,
    RoundCache,
    RoundOutcome,
    RoundWork,
    cache_update,
    check_side_inputs,
    match_sections,
    matched_rows,
)
from protocol.rules import Rule
from protocol.suites.base import WorkerEngine
from protocol.transcript import COMMITMENT_BYTES, RoundHeader, Transcript

__all__ = ["CacheUpdate", "RoundCache", "RoundOutcome", "RoundSide", "RoundWork", "Send"]


def _send_nothing(kind: str, seq: int, packed: bytes) -> None:
    pass


class RoundSide(SendingWorkers):
    def __init__(
        self,
        header: RoundHeader,
        role: str,
        own: Sequence[bytes],
        engine: WorkerEngine,
        send: Send,
        *,
        chunk_size: int,
        rng: RandomSource,
        window: int = 4,
        peer_window: int = 0,
        min_chunk: int = 1,
        on_error: Callable[[CrossmatchError], None] | None = None,
        cache: RoundCache | None = None,
        keep_cache: bool = False,
        churn_check: Callable[[int], None] | None = None,
    ):
        if role not in ("initiator", "responder"):
            raise ValueError(f"role must be initiator or responder, not {role!r}")
        self.header = header
        self.role = role
        self.peer_role = "responder" if role == "initiator" else "initiator"
        self.own_sizes = header.sizes(role)
        self.peer_sizes = header.sizes(self.peer_role)
        self._w = engine.point_bytes
        # Verified matches keep what a proof is over: our points and what came back, the
        # peer's points and our re-blinding of them (VerifiedState, protocol/verified.py).
        self.verified = header.verified_matches and header.mode == "reveal"
        caching = check_side_inputs(header, role, own, engine, cache, keep_cache)
        self._own = own
        self._engine = engine
        # The engine behind the cache; its queued work is cancelled when the round fails.
        self._compute = CachedWork(engine, cache, self._w, churn_check)
        self._send = send
        self._chunk = max(1, chunk_size)
        self._rng = rng
        self._window = max(1, window)
        self._on_error = on_error
        self._keep = keep_cache
        self.transcript = Transcript(header)
        self.peer_public_key = b""
        self._init_streams(caching, peer_window, min_chunk)
        self._init_sync()

    def _init_streams(self, caching: bool, peer_window: int, min_chunk: int) -> None:
        own, peer, w = sum(self.own_sizes), sum(self.peer_sizes), self._w
        self._own_total, self._peer_total = own, peer
        self._own_blinded_count = 0
        self._peer_double_count = 0
        # Every stream of points lands in one buffer of its final size (announced, and
        # enforced as chunks arrive): no lists of chunks, no joined copies.
        self._peer_double = empty_buffer(peer, w)  # our re-blinding, in the peer's order
        # The peer's points, and its re-blinding of ours (in our order).
        self._from_peer = PointStream(
            "own_blinded", peer, w, min_chunk=min_chunk, keep=self._keep or self.verified,
            overrun=f"peer sent more than the {peer} elements it announced",
        )  # fmt: skip
        self._returned = PointStream(
            "peer_reblinded", own, w, min_chunk=min_chunk, keep=True,
            overrun=f"peer returned more than our {own} elements",
        )  # fmt: skip
        # Kept for the next cache, or for the proofs.
        self._own_blinded = empty_buffer(own if caching or self.verified else 0, w)
        # Flow control: at most peer_window of the peer's chunks wait for our workers; a
        # fuller queue blocks the reader, and so (through HTTP/2) the peer. 0: unbounded.
        self._reblind_queue: queue.Queue[Chunk | None] = queue.Queue(max(0, peer_window))

    def _init_sync(self) -> None:
        self._reblind_done = threading.Event()
        self._own_double_done = threading.Event()
        self._peer_commitment: bytes | None = None
        self._peer_committed = threading.Event()  # also set on failure, to stop waiting
        self._failed = threading.Event()
        self._error: CrossmatchError | None = None
        self._threads: list[threading.Thread] = []
        self._outcome: RoundOutcome | None = None
        self._match_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        if self.verified:  # our key before any of our points (protocol/verified.py)
            key = verified.public_key_of(self._engine)
            self.transcript.public_key(self.role, key)
            self._send("public_key", 0, key)
        if self._peer_total == 0:
            self._reblind_queue.put(None)
        for target, name in ((self._blind_and_send, "blind"), (self._reblind_and_send, "reblind")):
            t = threading.Thread(target=self._guard(target), name=f"round-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def fail(self, error: CrossmatchError) -> None:
        """Stop the round; :meth:`result` raises ``error`` (the first failure wins).

        The transport hears of the first failure through ``on_error`` so that it can
        tell the peer (an Abort message) instead of leaving it waiting.
        """
        first = self._error is None
        if first:
            self._error = error
        self._failed.set()
        self._compute.stop()  # queued chunks are cancelled: an aborted round stops computing
        try:
            self._reblind_queue.put_nowait(None)
        except queue.Full:  # the re-blinder sees _failed at its next chunk
            pass
        self._reblind_done.set()
        self._own_double_done.set()
        self._peer_committed.set()
        if first and self._on_error is not None:
            self._on_error(error)

    @property
    def error(self) -> CrossmatchError | None:
        return self._error

    @property
    def work(self) -> RoundWork:
        return self._compute.work

    @property
    def peer_new(self) -> int:
        """Peer points so far that the epoch cache did not know (the churn of this round)."""
        return self._compute.peer_new

    def result(self, timeout: float | None = None) -> RoundOutcome:
        """Block until both halves are complete; raise the round's error if it failed."""
        for event in (self._reblind_done, self._own_double_done):
            if not event.wait(timeout):
                raise ProtocolError("timed out waiting for the peer", rule=Rule.TIMEOUT)
        if self._error is not None:
            raise self._error
        with self._match_lock:  # several threads may ask; match once
            if self._outcome is None:
                self._outcome = self._match()
        return self._outcome

    def settle(self, timeout: float) -> None:
        """Wait for queued re-blinding to finish, so a failure in it (a malformed point)
        is reported as the round's error rather than whatever happened next."""
        self._reblind_done.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)

    def next_cache(self) -> CacheUpdate | None:
        """This round's values as the cache of the next round under the same key: all of
        them, and apart the rows the cache did not know (a store may append those to what
        it holds; node/state/epochs.py bounds what that keeps of elements that left).
        None unless ``keep_cache`` was set and the round computed everything (a failed
        round leaves the cache alone).
        """
        if not self._keep or self._outcome is None:
            return None
        return cache_update(
            self._own,
            self._own_blinded,
            self._from_peer.buffer,
            self._peer_double,
            self._w,
            own_found=self._compute.own_found,
            peer_found=self._compute.peer_found(self._peer_total),
            loaded=self._compute.loaded,
        )

    def release(self) -> None:
        """Drop the round's buffers and caches now (call once the outcome and the next
        cache are no longer needed), rather than whenever a garbage collection finds
        the reference cycles of a finished round's threads and callbacks."""
        self._compute.cache = RoundCache()
        self._returned.drop()
        self._from_peer.drop()
        self._peer_double = empty_buffer(0, self._w)
        self._own_blinded = empty_buffer(0, self._w)
        self._own = []
        # The callbacks are the transport's bound methods: a reference cycle to break.
        self._send = _send_nothing
        self._on_error = None

    # -- received from the peer -------------------------------------------

    def on_public_key(self, key: bytes) -> None:
        """The peer's public key, committed to before its points (verified matches)."""
        if not self.verified or self.peer_public_key:
            raise ProtocolError("unexpected public key", rule=Rule.MESSAGE_ORDER)
        verified.check_public_key(key)
        self.peer_public_key = key
        self.transcript.public_key(self.peer_role, key)

    def _enqueue(self, chunk: Chunk | None) -> None:
        while not self._failed.is_set():
            try:
                self._reblind_queue.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue

    def on_own_blinded(self, packed: bytes) -> None:
        if self.verified and not self.peer_public_key:
            raise ProtocolError("peer sent points before its public key", rule=Rule.MESSAGE_ORDER)
        self._from_peer.take(packed, self._from_peer.points(packed))
        self.transcript.absorb(f"{self.peer_role}_blinded", packed)
        self._enqueue(self._compute.reblind(packed))
        if self._from_peer.complete:
            self._compute.cache.peer = None  # every lookup is done: let it go
            self._enqueue(None)

    def on_reblind_commitment(self, commitment: bytes) -> None:
        """The peer's commitment to its re-blinding of our points (before it releases them)."""
        if len(commitment) != COMMITMENT_BYTES:
            raise ProtocolError(
                f"re-blinding commitment of {len(commitment)} bytes, not {COMMITMENT_BYTES}",
                rule=Rule.REBLIND_COMMITMENT,
            )
        if self._peer_commitment is not None:
            raise ProtocolError("second re-blinding commitment", rule=Rule.MESSAGE_ORDER)
        self._peer_commitment = commitment
        self.transcript.commit(self.peer_role, commitment)
        self._peer_committed.set()
        if self._own_total == 0:
            self._opened()

    def on_peer_reblinded(self, packed: bytes) -> None:
        n = self._returned.points(packed)
        if self._peer_commitment is None:
            raise ProtocolError(
                "peer released re-blinded points before committing to them", rule=Rule.MESSAGE_ORDER
            )
        self._returned.take(packed, n)
        self.transcript.absorb(f"{self.peer_role}_reblinded", packed)
        if self._returned.complete:
            self._opened()

    def _opened(self) -> None:
        """The whole re-blinding of our points is in, and opens the peer's commitment."""
        check_opening(
            self.header.round_id,
            self.peer_role,
            self._returned.buffer,
            self._peer_commitment,
            self._w,
        )
        self._own_double_done.set()

    def proof_material(self) -> verified.Material:
        """What the proofs of a verified round are over (after :meth:`result`)."""
        if not self.verified or self._outcome is None:
            raise ValueError("proofs are for a matched round with verified matches")
        return verified.Material(
            sent=self._own_blinded,
            returned=self._returned.buffer,
            received=self._from_peer.buffer,
            reblinded=self._peer_double,
            matched=matched_rows(self.header.kinds, self.own_sizes, self._outcome),
            found=sum(self._outcome.intersection_sizes.values()),
            peer_total=self._peer_total,
            width=self._w,
        )

    def missing(self) -> str:
        """What has not arrived yet, for a precise 'stream ended early' message."""
        return (
            f"received {self._from_peer.count}/{self._peer_total} peer elements and "
            f"{self._returned.count}/{self._own_total} re-blinded own elements"
        )

    # -- matching ----------------------------------------------------------

    def _match(self) -> RoundOutcome:
        sizes, positions = match_sections(
            self.header,
            self.role,
            self._returned.buffer,
            self._peer_double,
            self._w,
        )
        if not self.verified:  # no longer needed (a cache or a proof would need them)
            if not self._keep:
                self._peer_double = empty_buffer(0, self._w)
            self._returned.drop()
        return RoundOutcome(self.transcript.digest(), sizes, positions)
