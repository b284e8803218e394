"""The daemon's hook sweeper: delivers case events soon after rounds, decisions and re-opens.

It observes the node's audit events (``round_completed``, ``case_decision``,
``case_reopened``), waits a moment for the case refresh to settle, then runs
``casefeed.sweep``. It also sweeps every ``interval`` seconds, which picks up
decisions taken by other processes (`crossmatch case confirm`, the web UI). A
failure is logged and never reaches a round.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from node.act.casefeed import node_dispatcher, sweep
from node.act.hooks import load_hooks
from node.runtime import Node

log = logging.getLogger("crossmatch.hooks")
WAKE_EVENTS = frozenset({"round_completed", "case_decision", "case_reopened"})


class HookSweeper:
    def __init__(self, node: Node, *, interval: float = 60.0, settle: float = 3.0):
        self.node, self.interval, self.settle = node, interval, settle
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="hooks", daemon=True)
        # Read now, so a bad [[hooks]] table stops the daemon before it serves.
        self.configured = bool(load_hooks(node.paths.root, node.config.extra))

    def observe(self, event: str, _body: dict[str, Any]) -> None:
        if event in WAKE_EVENTS:
            self._wake.set()

    def start(self) -> bool:
        """Start only when node.toml configures hooks."""
        if not self.configured:
            return False
        self.node.observers.append(self.observe)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            if self._stop.wait(self.settle):
                return
            self._wake.clear()
            try:
                results = sweep(self.node.store, node_dispatcher(self.node))
                if results:
                    log.info(
                        "hooks: %d delivery(ies), %d dead-lettered",
                        len(results),
                        sum(r.outcome != "delivered" for r in results),
                    )
            except Exception:  # noqa: BLE001 - hooks must never disturb serving rounds
                log.exception("hook sweep failed")
