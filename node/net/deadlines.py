"""Per-stage deadlines on a peer's stream: a silent peer loses its stream, not our worker.

``first_message`` bounds the wait for an Exchange stream's Start; a
:class:`Watchdog` bounds every later wait for the peer's next message (each
chunk, the receipts), and fires once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc

from node.net.wire import ExchangeMessage, decode_exchange
from protocol.errors import ProtocolError
from protocol.rules import Rule


def first_message(
    requests: Iterator[ExchangeMessage], context: grpc.ServicerContext, seconds: float
) -> str:
    """The round id of the stream's Start, within ``seconds``; ProtocolError otherwise
    (the stream is cut)."""
    timer = threading.Timer(seconds, context.cancel)
    timer.daemon = True
    timer.start()
    try:
        first = next(requests, None)
    except grpc.RpcError:
        first = None
    finally:
        timer.cancel()
    if first is None and not context.is_active():
        raise ProtocolError(f"no Start message within {seconds:g} s", rule=Rule.TIMEOUT)
    start = decode_exchange(first) if first is not None else None
    if start is None or start.body != "start" or not isinstance(start.value, str):
        raise ProtocolError("stream must begin with Start", rule=Rule.MESSAGE_ORDER)
    return start.value


class Watchdog:
    """Calls ``on_silence`` once if ``seen`` is not called for ``seconds``."""

    def __init__(self, seconds: float, on_silence: Callable[[], None]):
        self.seconds = seconds
        self._on_silence = on_silence
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def seen(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        tick = min(1.0, self.seconds / 4)
        while not self._stop.wait(tick):
            if time.monotonic() - self._last > self.seconds:
                self._stop.set()
                self._on_silence()
