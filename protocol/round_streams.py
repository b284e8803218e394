"""The two streams of points a round side receives, each checked chunk by chunk.

A :class:`PointStream` lands a peer's chunks in one buffer of the size the peer
announced (or none, when the values need not be kept): a chunk that is empty, would
overrun the announced size, or comes after the stream's chunk budget is spent is
refused before it is written. The budget stops a peer from splitting a stream into
tiny chunks (each costs objects and work): the chunks of ``min_chunk`` points its
size needs, plus a few. :func:`check_opening` is the check of the peer's re-blinding
of our points once it is complete (commit before release, ADR 0006).
"""

from __future__ import annotations

import numpy as np

from protocol.errors import ProtocolError
from protocol.psi import count_points, has_duplicates
from protocol.rules import Rule
from protocol.transcript import reblind_commitment

SPARE_CHUNKS = 4  # chunks a stream may use beyond those its size needs at min_chunk


def empty_buffer(points: int, width: int) -> np.ndarray:
    """A zeroed buffer; np.zeros maps zero pages, so memory is committed as it is written."""
    return np.zeros(points * width, np.uint8)


class PointStream:
    def __init__(
        self, name: str, total: int, width: int, *, min_chunk: int, keep: bool, overrun: str
    ):
        self.name = name
        self.total = total
        self.count = 0
        self.buffer = empty_buffer(total if keep else 0, width)
        self._w = width
        self._budget = -(-total // max(1, min_chunk)) + SPARE_CHUNKS
        self._overrun = overrun  # the message when a peer sends more than ``total``

    def points(self, packed: bytes) -> int:
        """How many points ``packed`` holds: ProtocolError unless whole points, and some."""
        n = count_points(packed, self._w)
        if n == 0:
            raise ProtocolError("empty element chunk", rule=Rule.MALFORMED_ELEMENT)
        return n

    def take(self, packed: bytes, n: int) -> None:
        """Add a chunk of ``n`` points (from :meth:`points`), or refuse it."""
        self._budget -= 1
        if self._budget < 0:
            raise ProtocolError(
                f"peer split its {self.name} stream into too many small chunks",
                rule=Rule.CHUNK_SIZE,
            )
        if self.count + n > self.total:
            raise ProtocolError(self._overrun, rule=Rule.SIZE_ANNOUNCED)
        if len(self.buffer):
            at = self.count * self._w
            self.buffer[at : at + len(packed)] = np.frombuffer(packed, np.uint8)
        self.count += n

    @property
    def complete(self) -> bool:
        return self.count == self.total

    def drop(self) -> None:
        """Let the buffer go (its values are no longer needed)."""
        self.buffer = empty_buffer(0, self._w)


def check_opening(
    round_id: str, peer_role: str, stream: np.ndarray, commitment: bytes | None, width: int
) -> None:
    """The peer's whole re-blinding of our points must open the commitment it sent before
    it and, our points being distinct, hold no point twice."""
    opened = reblind_commitment(round_id, peer_role, stream.data)
    if opened != commitment:
        raise ProtocolError(
            "peer's re-blinded points do not open the commitment it sent before them",
            rule=Rule.REBLIND_COMMITMENT,
        )
    if has_duplicates(stream, width):
        raise ProtocolError(
            "peer returned the same re-blinded point twice", rule=Rule.DUPLICATE_POINT
        )
