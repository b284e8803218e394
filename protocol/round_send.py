"""The two sending workers of a round side (protocol/round.py): one blinds our elements
and sends them in order; the other re-blinds the peer's chunks as they come, commits to
the release stream, waits for the peer's commitment, then releases it (ADR 0006).

A mixin of :class:`~protocol.round.RoundSide`, which owns the state declared below; kept
apart so that each module stays readable. Attack tests override :meth:`_release_stream`
on a subclass to cheat in one place.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError

import numpy as np

from protocol.errors import CrossmatchError, ProtocolError
from protocol.psi import RandomSource, has_duplicates, shuffle_packed_within_sections
from protocol.round_work import CachedWork, Chunk
from protocol.rules import Rule
from protocol.transcript import RoundHeader, Transcript, reblind_commitment

# send(message_kind, seq, payload); message_kind is "own_blinded", "reblind_commitment"
# (payload: the 32-byte commitment) or "peer_reblinded" (payload: packed points).
Send = Callable[[str, int, bytes], None]


class SendingWorkers:
    # The state of RoundSide the workers use.
    header: RoundHeader
    role: str
    peer_sizes: tuple[int, ...]
    transcript: Transcript
    _own: Sequence[bytes]
    _own_total: int
    _own_blinded: np.ndarray
    _own_blinded_count: int
    _peer_double: np.ndarray
    _peer_double_count: int
    _compute: CachedWork
    _send: Send
    _chunk: int
    _window: int
    _w: int
    _rng: RandomSource
    _failed: threading.Event
    _peer_committed: threading.Event
    _reblind_done: threading.Event
    _reblind_queue: queue.Queue[Chunk | None]

    def fail(self, error: CrossmatchError) -> None:
        raise NotImplementedError

    def _blind_chunks(self) -> list[tuple[int, int]]:
        return [
            (s, min(s + self._chunk, self._own_total))
            for s in range(0, self._own_total, self._chunk)
        ]

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except CrossmatchError as e:
                self.fail(e)
            except CancelledError:  # only after a failure: its queued work was dropped
                if not self._failed.is_set():
                    self.fail(ProtocolError("round work cancelled", rule=Rule.INTERNAL))
            except Exception as e:  # a bug or a transport failure: fail the round, not the node
                self.fail(
                    ProtocolError(f"round failed: {type(e).__name__}: {e}", rule=Rule.INTERNAL)
                )

        return run

    def _blind_and_send(self) -> None:
        pending: deque[Chunk] = deque()
        seq = 0

        def flush_one() -> None:
            nonlocal seq
            packed = pending.popleft().result()
            self.transcript.absorb(f"{self.role}_blinded", packed)
            if len(self._own_blinded):
                at = self._own_blinded_count * self._w
                self._own_blinded[at : at + len(packed)] = np.frombuffer(packed, np.uint8)
                self._own_blinded_count += len(packed) // self._w
            self._send("own_blinded", seq, packed)
            seq += 1

        for start, end in self._blind_chunks():
            if self._failed.is_set():
                return
            pending.append(self._compute.blind(self._own, start, end, self._own_blinded))
            if len(pending) >= self._window:
                flush_one()
        while pending and not self._failed.is_set():
            flush_one()

    def _reblind_and_send(self) -> None:
        while True:
            chunk = self._reblind_queue.get()
            if chunk is None or self._failed.is_set():
                break
            packed = chunk.result()
            at = self._peer_double_count * self._w
            self._peer_double[at : at + len(packed)] = np.frombuffer(packed, np.uint8)
            self._peer_double_count += len(packed) // self._w
        if self._failed.is_set():
            return
        # Re-blinding is a bijection, so a repeated value means a repeated peer point: with
        # one, count mode's multiplicities would tell the peer which of its guesses matched.
        if has_duplicates(self._peer_double, self._w):
            raise ProtocolError("peer sent the same blinded point twice", rule=Rule.DUPLICATE_POINT)
        stream = self._release_stream()
        commitment = reblind_commitment(self.header.round_id, self.role, bytes(stream))
        self.transcript.commit(self.role, commitment)
        self._send("reblind_commitment", 0, commitment)
        self._peer_committed.wait()  # set by the peer's commitment, or by a failure
        if self._failed.is_set():
            return
        step = self._chunk * self._w
        for seq, start in enumerate(range(0, len(stream), step)):
            packed = bytes(stream[start : start + step])
            self.transcript.absorb(f"{self.role}_reblinded", packed)
            self._send("peer_reblinded", seq, packed)
        self._reblind_done.set()

    def _release_stream(self) -> bytes:
        """Our re-blinding of the peer's points as we will release it: in the peer's order
        (reveal), or shuffled within each kind's section so positions tell nothing (count)."""
        if self.header.mode == "count":
            return shuffle_packed_within_sections(
                self._peer_double, self.peer_sizes, self._rng, self._w
            )
        return self._peer_double.tobytes()
