"""A progress line for long imports and rounds, on a terminal only.

``terminal_progress(label)`` returns a ``progress(done, total)`` callback that
redraws one line on stderr, at most ten times a second, or ``None`` when
stderr is not a terminal (logs, pipes, CI and daemons stay clean). The same
callback shape serves the importer (rows read) and the initiator (elements
received from the peer).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressCallback = Callable[[int, int], None]
REDRAW_SECONDS = 0.1


class ProgressLine:
    def __init__(self, label: str, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self._last_draw = -1.0
        self._done = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        finished = total > 0 and done >= total
        if self._done or (not finished and now - self._last_draw < REDRAW_SECONDS):
            return
        self._last_draw = now
        self.stream.write("\r" + render(self.label, done, total, now - self.started))
        if finished:
            self.stream.write("\n")
            self._done = True
        self.stream.flush()


def render(label: str, done: int, total: int, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    if total > 0:
        width = 24
        filled = min(width, int(width * done / total))
        bar = "#" * filled + "-" * (width - filled)
        return f"{label} [{bar}] {done:,}/{total:,} {100 * done / total:5.1f}% {rate:,.0f}/s"
    return f"{label} {done:,} {rate:,.0f}/s"


def terminal_progress(label: str, stream: TextIO | None = None) -> ProgressCallback | None:
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty():
        return None
    return ProgressLine(label, stream)
