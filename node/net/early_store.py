"""The initiator's rows of a round, written while the responder commits (ADR 0015).

The receipt dance orders the two commits: the responder stores the round and only then
sends ``Commit``; the initiator stores on ``Commit``. Storing a round with many matches
takes long (100k matches, about 0.6 s), so the two stores, one after the other, were a
fifth of a repeat round at a million elements a side. Once the initiator has sent its
receipt it knows every row it will store, so it writes them then, in a transaction that
stays open (``node/state/rounds.StagedRound``), and on ``Commit`` it only logs and
commits. The order of the commits is unchanged: nothing is visible before ``Commit``, an
abort or a crash leaves nothing, and the window of the two generals is the same.

While staged, the store's other writers wait (and, in this process, so do readers behind
a waiting writer: the store's connection is shared behind one lock). A responder that
never sends ``Commit`` could keep them waiting, so the transaction is held
``HOLD_SECONDS`` at most from its ``BEGIN``; past that it is rolled back, and ``Commit``,
if it still comes, stores the round as before. Staging itself waits for no other writer.
"""

from __future__ import annotations

import logging
import threading
import time

from node.net.recorder import Completion, RoundFacts, RoundRecorder
from node.state.rounds import StagedRound

log = logging.getLogger("crossmatch.exchange")

HOLD_SECONDS = 5.0  # the longest a peer can keep our store's writers waiting, per round
# Staging never waits behind another writer (another round's staged rows, say): it gives
# up and leaves the rows to Commit, so two staged rounds never add up past the store's
# 10 s busy timeout.
STAGE_WAIT_SECONDS = 0.2


class EarlyStore:
    """At most one staged round: staged once, then taken (to commit) or dropped, once."""

    def __init__(self, recorder: RoundRecorder, hold: float = HOLD_SECONDS):
        self._recorder = recorder
        self._hold = hold
        self._lock = threading.Lock()  # held while staging: take/drop wait for it
        self._staged: StagedRound | None = None
        self._timer: threading.Timer | None = None
        self._settled = False

    def stage(
        self, facts: RoundFacts, completion: Completion, matches: list[tuple[str, bytes]]
    ) -> None:
        """Write the round's rows now, uncommitted; on any error, leave them to Commit."""
        with self._lock:
            if self._settled or self._staged is not None:
                return
            started = time.monotonic()  # the hold counts from BEGIN, not from the last row
            try:
                staged = self._recorder.stage_completed(
                    facts, completion, matches, wait=STAGE_WAIT_SECONDS
                )
            except Exception as e:  # noqa: BLE001 - an optimisation: never fails the round
                log.info("round %s: rows left to write on Commit: %s", facts.round_id, e)
                return
            self._staged = staged
            left = max(0.0, self._hold - (time.monotonic() - started))
            self._timer = threading.Timer(left, staged.rollback)
            self._timer.daemon = True
            self._timer.start()

    def take(self) -> StagedRound | None:
        """The staged round, to commit (None if none; it may have been rolled back by
        the hold, and then commits as False). Nothing is staged after this."""
        with self._lock:
            self._settled = True
            staged, self._staged = self._staged, None
            if self._timer is not None:
                self._timer.cancel()
            return staged

    def drop(self) -> None:
        """Roll back whatever is staged (an abort, or a session closing uncommitted)."""
        staged = self.take()
        if staged is not None:
            staged.rollback()
