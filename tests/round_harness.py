"""Both sides of one PSI round in memory, for the tests of protocol/round.py.

No network: each side's ``send`` calls the other side's ``on_<kind>`` directly, every
message is recorded in ``sent``, and ``tamper`` (a hostile transport) may rewrite a
message or drop it (return None). A side that raises fails; with ``propagate_errors``
its error reaches the other side as the transport's Abort would carry it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from protocol.errors import CrossmatchError, ProtocolError
from protocol.psi import Engine
from protocol.round import RoundCache, RoundOutcome, RoundSide
from protocol.transcript import RoundHeader

# tamper(from_side, kind, seq, payload) -> payload to deliver, or None to drop it
Tamper = Callable[[str, str, int, bytes], bytes | None]
PEER = {"a": "b", "b": "a"}


def deliver_to(sides: dict[str, RoundSide], to: str) -> Callable[[str, int, bytes], None]:
    """A side's ``send`` that hands each message to ``sides[to]`` at once; the receiver
    fails with whatever its handler raises (as the transport would abort it)."""

    def send(kind: str, seq: int, payload: bytes) -> None:
        try:
            getattr(sides[to], "on_" + kind)(payload)
        except CrossmatchError as e:
            sides[to].fail(e)

    return send


def round_header(
    sizes_a: Sequence[int],
    sizes_b: Sequence[int],
    *,
    kinds: Sequence[str] = ("email",),
    mode: str = "reveal",
    round_id: str = "r",
) -> RoundHeader:
    return RoundHeader(
        round_id=round_id, initiator="lab-a", responder="lab-b", mode=mode, kinds=tuple(kinds),
        initiator_sizes=tuple(sizes_a), responder_sizes=tuple(sizes_b),
        policy_hash=b"p" * 32, initiator_commitment=b"a" * 32, responder_commitment=b"b" * 32,
    )  # fmt: skip


class Wire:
    """One round between side "a" (initiator) and side "b" (responder)."""

    def __init__(
        self,
        header: RoundHeader,
        engines: tuple[Engine, Engine],
        own_a: Sequence[bytes],
        own_b: Sequence[bytes],
        *,
        chunk: int = 4,
        seed: int = 5,
        tamper: Tamper | None = None,
        propagate_errors: bool = True,
        caches: tuple[RoundCache | None, RoundCache | None] = (None, None),
        keep_cache: bool = False,
    ):
        self.header = header
        self.sent: dict[str, list[tuple[str, bytes]]] = {"a": [], "b": []}
        self.tamper = tamper
        self.sides: dict[str, RoundSide] = {}
        rng = random.Random(seed)
        plan = (("a", "initiator", own_a, engines[0], caches[0]),
                ("b", "responder", own_b, engines[1], caches[1]))  # fmt: skip
        for name, role, own, engine, cache in plan:
            on_error = self._failer(PEER[name]) if propagate_errors else None
            self.sides[name] = RoundSide(
                header, role, list(own), engine, self._deliver(name), chunk_size=chunk, rng=rng,
                on_error=on_error, cache=cache, keep_cache=keep_cache,
            )  # fmt: skip

    def _failer(self, to: str) -> Callable[[CrossmatchError], None]:
        return lambda e: self.sides[to].fail(e)

    def _deliver(self, frm: str) -> Callable[[str, int, bytes], None]:
        to = PEER[frm]

        def send(kind: str, seq: int, payload: bytes) -> None:
            self.sent[frm].append((kind, payload))
            if self.tamper is not None:
                changed = self.tamper(frm, kind, seq, payload)
                if changed is None:
                    return
                payload = changed
            deliver_to(self.sides, to)(kind, seq, payload)

        return send

    def start(self) -> None:
        for side in self.sides.values():
            side.start()

    def result(self, name: str, timeout: float = 30) -> RoundOutcome:
        return self.sides[name].result(timeout)

    def close(self, *, fail: bool = False) -> None:
        """Join both sides; with ``fail``, stop any side still waiting first."""
        for side in self.sides.values():
            if fail:
                side.fail(ProtocolError("test over", rule="closed"))
            side.join(5)

    def released_by(self, name: str) -> list[bytes]:
        return [p for kind, p in self.sent[name] if kind == "peer_reblinded"]
