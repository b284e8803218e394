"""Closing the rounds a dead process left open, when a node is opened (``serve``, a round).

A round's start row (``node.state.round_starts``) is deleted with its outcome, so a row
whose owner's lease is no longer held (``node.state.leases``) is a round whose process
died mid-round. Each is closed in two steps:

1. one ``round_aborted`` record (rule ``node-restarted``) is appended, unless the audit
   log already ends the round (an earlier, interrupted recovery, or the dead process
   itself just before it died): checked and written under the log's file lock;
2. the outcome the log now holds is stored and the start row deleted, in one transaction.

Interrupted anywhere and run again, it writes nothing twice: step 1 finds its record,
step 2 finds its row. Two processes recovering at once write one record between them.
A round the log says completed keeps that outcome in the store, without its matches
(they were never stored): the store never contradicts the signed log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from node.state.auditlog import AuditLog
from node.state.leases import lease_held, sweep_leases
from node.state.round_starts import StartedRound, start_fields
from node.state.rounds import RoundRow
from node.state.store import Store
from protocol.audit.events import RoundAborted
from protocol.errors import RoundAbortedError
from protocol.rules import Rule
from protocol.timestamps import format_utc

STAGE = "interrupted"
REASON = "this node stopped mid-round (its process ended before the round did)"


def recover_rounds(
    store: Store, audit: AuditLog, leases: Path, now: Callable[[], datetime]
) -> list[str]:
    """Close every round left open by a process that died; returns their round ids."""
    closed = []
    for started in store.started_rounds():
        if lease_held(leases, started.owner):
            continue  # another live process (serve, a CLI round) is running it
        error = RoundAbortedError(REASON, rule=Rule.NODE_RESTARTED)
        body = RoundAborted(
            round_id=started.round_id,
            role=started.role,
            peer=started.peer,
            stage=STAGE,
            reason=error.message,
            rule=Rule.NODE_RESTARTED,
        )
        event, _ = audit.append_outcome(body.EVENT, body.to_body(), now=now())
        store.close_interrupted(_outcome_row(started, event, error, format_utc(now())))
        closed.append(started.round_id)
    sweep_leases(leases)
    return closed


def _outcome_row(
    started: StartedRound, event: str, error: RoundAbortedError, finished_at: str
) -> RoundRow:
    completed = event == "round_completed"
    return RoundRow(
        **start_fields(started),
        intersection_sizes={},
        status="completed" if completed else "aborted",
        reason=(
            "completed in the audit log; the node stopped before storing its matches"
            if completed
            else error.diagnostics()
        ),
        finished_at=finished_at,
        transcript_hash="",
    )
