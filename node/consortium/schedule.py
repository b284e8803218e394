"""Scheduled consortium rounds in `crossmatch serve`: every participant joins at the same
instants, the multiples of the policy's ``[consortium] interval_seconds`` on the clock.

No coordination is needed beyond the signed policy and roughly synchronized clocks: each
lab's daemon wakes at the next multiple of the interval and joins the hub; the hub starts
the round once all have joined within its join timeout. A failed round is already logged
(``consortium_aborted``); the loop simply waits for the next slot.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from node.runtime import Node
from protocol.errors import CrossmatchError

log = logging.getLogger("crossmatch.consortium")


def next_slot(now: datetime, interval: float) -> datetime:
    """The first multiple of ``interval`` seconds since the epoch strictly after ``now``."""
    t = now.timestamp()
    return datetime.fromtimestamp((math.floor(t / interval) + 1) * interval, UTC)


class ConsortiumSchedule:
    def __init__(self, node: Node, run: Callable[[Node], object]):
        self.node, self._run = node, run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="consortium-schedule", daemon=True)

    def interval(self) -> float:
        """The policy's interval if this lab takes part in scheduled rounds, else 0."""
        self.node.refresh_policy()
        rules = self.node.policy.consortium
        if self.node.policy_problem or rules is None or self.node.lab not in rules.participants:
            return 0.0
        return float(rules.interval_seconds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            interval = self.interval()
            if interval <= 0:  # not (or no longer) scheduled: look again in a minute
                self._stop.wait(60.0)
                continue
            now = self.node.now()
            if self._stop.wait((next_slot(now, interval) - now).total_seconds()):
                return
            try:
                self._run(self.node)
            except CrossmatchError as e:  # logged as consortium_aborted by the client
                log.warning("scheduled consortium round failed: %s", e.diagnostics())
            except Exception:  # keep the schedule alive; the next slot tries again
                log.exception("scheduled consortium round failed")
