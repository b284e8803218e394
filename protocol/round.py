"""One side of a round's element exchange, independent of the transport.

Both sides run the same state machine (DESIGN.md, "The round"):

- blind own elements in chunks and send them (``own_blinded``), in order;
- re-blind each chunk of the peer's elements as it arrives and send it back
  (``peer_reblinded``), in order, or, in count mode, shuffled within each kind's
  section once all have arrived;
- collect the peer's re-blinding of our own elements;
- when both are complete, match locally and report the outcome.

The transport (gRPC in ``node/``, queues in tests) feeds received chunks in
with :meth:`RoundSide.on_own_blinded` / :meth:`on_peer_reblinded` and gets
outgoing chunks through the ``send`` callback. Work overlaps: blinding, the
peer's re-blinding and the network all proceed at once on the engine's workers.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from protocol.errors import CrossmatchError, ProtocolError
from protocol.psi import (
    Engine,
    Shuffler,
    count_points,
    match_positions,
    pack,
    sections,
    shuffle_within_sections,
    unpack,
)
from protocol.transcript import RoundHeader, Transcript

# send(message_kind, seq, packed_points); message_kind is "own_blinded" or "peer_reblinded".
Send = Callable[[str, int, bytes], None]


@dataclass
class RoundOutcome:
    transcript_hash: bytes
    intersection_sizes: dict[str, int]
    # Reveal mode: positions within each kind's section of our own element list.
    matched_positions: dict[str, list[int]] = field(default_factory=dict)


class RoundSide:
    def __init__(
        self,
        header: RoundHeader,
        role: str,
        own: Sequence[bytes],
        engine: Engine,
        send: Send,
        *,
        chunk_size: int,
        rng: Shuffler,
        window: int = 4,
        on_error: Callable[[CrossmatchError], None] | None = None,
    ):
        if role not in ("initiator", "responder"):
            raise ValueError(f"role must be initiator or responder, not {role!r}")
        self.header = header
        self.role = role
        self.peer_role = "responder" if role == "initiator" else "initiator"
        self.own_sizes = header.sizes(role)
        self.peer_sizes = header.sizes(self.peer_role)
        if len(own) != sum(self.own_sizes):
            raise ValueError("own elements do not match the announced sizes")
        self._own = own
        self._engine = engine
        self._send = send
        self._chunk = max(1, chunk_size)
        self._rng = rng
        self._window = max(1, window)
        self._on_error = on_error
        self.transcript = Transcript(header)

        self._own_total = sum(self.own_sizes)
        self._peer_total = sum(self.peer_sizes)
        self._peer_received = 0
        self._own_double: list[bytes] = []
        self._own_double_count = 0
        self._reblind_queue: queue.Queue[Future[bytes] | None] = queue.Queue()
        self._peer_double: list[set[bytes]] = [set() for _ in self.peer_sizes]

        self._reblind_done = threading.Event()
        self._own_double_done = threading.Event()
        self._failed = threading.Event()
        self._error: CrossmatchError | None = None
        self._threads: list[threading.Thread] = []
        self._outcome: RoundOutcome | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        if self._peer_total == 0:
            self._reblind_queue.put(None)
        if self._own_total == 0:
            self._own_double_done.set()
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
        self._reblind_queue.put(None)
        self._reblind_done.set()
        self._own_double_done.set()
        if first and self._on_error is not None:
            self._on_error(error)

    @property
    def error(self) -> CrossmatchError | None:
        return self._error

    def result(self, timeout: float | None = None) -> RoundOutcome:
        """Block until both halves are complete; raise the round's error if it failed."""
        for event in (self._reblind_done, self._own_double_done):
            if not event.wait(timeout):
                raise ProtocolError("timed out waiting for the peer", rule="timeout")
        if self._error is not None:
            raise self._error
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

    # -- received from the peer -------------------------------------------

    def on_own_blinded(self, packed: bytes) -> None:
        n = count_points(packed)
        if n == 0:
            raise ProtocolError("empty element chunk", rule="malformed-element")
        if self._peer_received + n > self._peer_total:
            raise ProtocolError(
                f"peer sent more than the {self._peer_total} elements it announced",
                rule="size-announced",
            )
        self._peer_received += n
        self.transcript.absorb(f"{self.peer_role}_blinded", packed)
        self._reblind_queue.put(self._engine.submit_reblind(packed))
        if self._peer_received == self._peer_total:
            self._reblind_queue.put(None)

    def on_peer_reblinded(self, packed: bytes) -> None:
        n = count_points(packed)
        if n == 0:
            raise ProtocolError("empty element chunk", rule="malformed-element")
        if self._own_double_count + n > self._own_total:
            raise ProtocolError(
                f"peer returned more than our {self._own_total} elements", rule="size-announced"
            )
        self._own_double_count += n
        self.transcript.absorb(f"{self.peer_role}_reblinded", packed)
        self._own_double.append(packed)
        if self._own_double_count == self._own_total:
            self._own_double_done.set()

    def missing(self) -> str:
        """What has not arrived yet, for a precise 'stream ended early' message."""
        return (
            f"received {self._peer_received}/{self._peer_total} peer elements and "
            f"{self._own_double_count}/{self._own_total} re-blinded own elements"
        )

    # -- workers -----------------------------------------------------------

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except CrossmatchError as e:
                self.fail(e)
            except Exception as e:  # a bug or a transport failure: fail the round, not the node
                self.fail(ProtocolError(f"round failed: {type(e).__name__}: {e}", rule="internal"))

        return run

    def _blind_and_send(self) -> None:
        pending: deque[Future[bytes]] = deque()
        seq = 0

        def flush_one() -> None:
            nonlocal seq
            packed = pending.popleft().result()
            self.transcript.absorb(f"{self.role}_blinded", packed)
            self._send("own_blinded", seq, packed)
            seq += 1

        for start in range(0, self._own_total, self._chunk):
            if self._failed.is_set():
                return
            pending.append(self._engine.submit_blind(self._own[start : start + self._chunk]))
            if len(pending) >= self._window:
                flush_one()
        while pending and not self._failed.is_set():
            flush_one()

    def _reblind_and_send(self) -> None:
        ends = [end for _, end in sections(self.peer_sizes)]
        position = section = 0
        seq = 0
        held: list[bytes] = []  # count mode: everything, shuffled before sending
        while True:
            future = self._reblind_queue.get()
            if future is None or self._failed.is_set():
                break
            packed = future.result()
            points = unpack(packed)
            for p in points:
                while position >= ends[section]:  # skip to the kind this position belongs to
                    section += 1
                self._peer_double[section].add(p)
                position += 1
            if self.header.mode == "reveal":
                self.transcript.absorb(f"{self.role}_reblinded", packed)
                self._send("peer_reblinded", seq, packed)
                seq += 1
            else:
                held.extend(points)
        if self._failed.is_set():
            return
        if self.header.mode == "count":
            shuffled = shuffle_within_sections(held, self.peer_sizes, self._rng)
            for start in range(0, len(shuffled), self._chunk):
                packed = pack(shuffled[start : start + self._chunk])
                self.transcript.absorb(f"{self.role}_reblinded", packed)
                self._send("peer_reblinded", seq, packed)
                seq += 1
        self._reblind_done.set()

    # -- matching ----------------------------------------------------------

    def _match(self) -> RoundOutcome:
        own_double = unpack(b"".join(self._own_double))
        sizes: dict[str, int] = {}
        positions: dict[str, list[int]] = {}
        # Sections line up by kind: the peer's section i holds the same kind as ours.
        for kind, (start, end), peer_set in zip(
            self.header.kinds, sections(self.own_sizes), self._peer_double, strict=True
        ):
            found = match_positions(own_double[start:end], peer_set)
            sizes[kind] = len(found)
            if self.header.mode == "reveal":
                positions[kind] = found
        return RoundOutcome(self.transcript.digest(), sizes, positions)
