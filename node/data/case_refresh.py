"""Keep cases current after rounds, off the round's critical path.

``CaseRefresher`` watches the node's audit events: a ``round_completed`` wakes a
background thread that waits a moment (the round stores its matches right after
logging, and several rounds may end together), then runs an incremental
``recompute_cases``. A failure is logged and never reaches a round; the next
round, or the ``cases`` command (which refreshes stale cases), catches up.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from node.data.cases import cases_stale, recompute_cases
from node.runtime import Node
from node.state.sqlite import store_condition
from protocol.errors import CrossmatchError

log = logging.getLogger("crossmatch.cases")
SETTLE_SECONDS = 1.0
STOP_WAIT_SECONDS = 0.5


class CaseRefresher:
    def __init__(self, node: Node, *, settle: float = SETTLE_SECONDS):
        self.node = node
        self.settle = settle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cases", daemon=True)

    def observe(self, event: str, _body: dict[str, Any]) -> None:
        if event == "round_completed":
            self._wake.set()

    def start(self) -> None:
        self.node.observers.append(self.observe)
        self._thread.start()

    def stop(self) -> None:
        """Never holds up shutdown: a rebuild cut short rolls back and runs again next time."""
        self._stop.set()
        self._wake.set()
        self._thread.join(STOP_WAIT_SECONDS)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.wait(self.settle):
                return
            self._wake.clear()
            try:
                if cases_stale(self.node.store):
                    report = recompute_cases(self.node)
                    log.info(
                        "cases refreshed: %d cluster(s) rebuilt, %d open case(s)",
                        report.clusters,
                        report.cases,
                    )
            except Exception as e:  # noqa: BLE001 - cases must never disturb serving rounds
                if store_condition(e) or isinstance(e, CrossmatchError):
                    log.warning("case refresh failed: %s", e)
                else:  # a bug: its traceback is what a maintainer needs
                    log.exception("case refresh failed")
