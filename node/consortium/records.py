"""The audit bodies of a consortium round, built in one place for a participant and the hub."""

from __future__ import annotations

from typing import Any

from protocol.audit.events import ConsortiumAborted, ConsortiumCompleted
from protocol.consortium.transcript import ConsortiumHeader
from protocol.errors import CrossmatchError
from protocol.rules import Rule

ABORT_REASON_CHARS = 300  # an abort quotes this much of its reason (a peer's may be longer)
Receipts = dict[str, Any]


def completed(
    header: ConsortiumHeader,
    *,
    role: str,
    result_counts: dict[str, Any],
    own_receipt: Receipts | None = None,
    hub_receipt: Receipts | None = None,
    lab_receipts: Receipts | None = None,
    hub_receipts: Receipts | None = None,
) -> ConsortiumCompleted:
    """What the round committed to: header, counts and the receipts this side keeps."""
    return ConsortiumCompleted(
        round_id=header.round_id,
        role=role,
        hub=header.hub,
        participants=list(header.participants),
        policy_hash=header.policy_hash.hex(),
        k=header.k,
        reveal_count=header.reveal_count,
        kinds=list(header.kinds),
        sizes=header.all_sizes(),
        result_counts=result_counts,
        transcript_hash=header.transcript_hash().hex(),
        own_receipt=own_receipt,
        hub_receipt=hub_receipt,
        lab_receipts=lab_receipts,
        hub_receipts=hub_receipts,
    )


def aborted(
    error: CrossmatchError,
    *,
    round_id: str,
    role: str,
    hub: str,
    stage: str,
    participants: list[str] | None = None,
) -> ConsortiumAborted:
    return ConsortiumAborted(
        round_id=round_id,
        role=role,
        hub=hub,
        stage=stage,
        reason=error.message[:ABORT_REASON_CHARS],
        rule=error.rule or Rule.INTERNAL,
        participants=participants,
    )
