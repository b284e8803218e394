"""The one place a round is written down: when it starts (a start row in the store), and
when it ends: completed, aborted or refused.

Each outcome is one audit record (``round_completed``, ``round_aborted``,
``round_refused``) and one row in the store, built from the same :class:`RoundFacts`,
audit record first: a round the store holds is always in the log. The record bodies
are the audit-log format (docs/audit-log.md) and stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, cast

from node.runtime import iso
from node.state.round_starts import StartedRound
from node.state.rounds import RoundRow, StagedRound
from protocol.audit.events import EventBody, RoundAborted, RoundCompleted, RoundRefused
from protocol.errors import CrossmatchError
from protocol.transcript import RoundHeader

if TYPE_CHECKING:
    from node.runtime import Node
    from node.state.store import Store

Log = Callable[[str, Mapping[str, object]], object]


@dataclass(frozen=True)
class RoundFacts:
    """What a round's row and its audit record share, from this side's point of view."""

    round_id: str
    role: str
    peer: str
    mode: str
    kinds: tuple[str, ...]
    own_sizes: dict[str, int]
    peer_sizes: dict[str, int] = field(default_factory=dict)
    policy_hash: bytes = b""
    started_at: str = ""

    @classmethod
    def of(cls, header: RoundHeader, role: str, started_at: str) -> RoundFacts:
        other = "responder" if role == "initiator" else "initiator"
        return cls(
            round_id=header.round_id,
            role=role,
            peer=header.peer_of(role),
            mode=header.mode,
            kinds=header.kinds,
            own_sizes=dict(zip(header.kinds, header.sizes(role), strict=True)),
            peer_sizes=dict(zip(header.kinds, header.sizes(other), strict=True)),
            policy_hash=header.policy_hash,
            started_at=started_at,
        )


@dataclass(frozen=True)
class Completion:
    """What only a completed round has: its result and both sides' commitments."""

    intersection_sizes: dict[str, int]
    transcript_hash: bytes
    own_commitment: bytes
    peer_commitment: bytes
    own_receipt: dict | None
    peer_receipt: dict | None
    # Members beyond the common ones (the suite, verified matches, warninglists).
    extra: Mapping[str, object] = field(default_factory=dict)


class RoundRecorder:
    def __init__(self, store: Store, log: Log, now: Callable[[], datetime], owner: str = ""):
        self._store, self._log, self._now = store, log, now
        self._owner = owner  # this process's lease: recovery leaves its rounds alone

    @classmethod
    def for_node(cls, node: Node) -> RoundRecorder:
        return cls(node.store, node.log, node.now, node.lease.token if node.lease else "")

    def started(self, f: RoundFacts) -> None:
        """A durable start row, before any element leaves: if this process dies mid-round,
        the next one to open the node closes the round (node.state.recovery)."""
        row = self._row(f, "aborted", "", {}, b"")  # as it would be stored; its start fields
        self._store.start_round(StartedRound.of(row, self._owner))

    def stage_completed(
        self, f: RoundFacts, c: Completion, matches: list[tuple[str, bytes]], *, wait: float
    ) -> StagedRound:
        """The store rows of :meth:`completed`, written now and committed by it later;
        ``wait``: how long to wait for another writer's lock before giving up."""
        row = self._row(f, "completed", "", c.intersection_sizes, c.transcript_hash)
        return self._store.stage_round(row, matches, wait=wait)

    def completed(
        self,
        f: RoundFacts,
        c: Completion,
        matches: list[tuple[str, bytes]],
        staged: StagedRound | None = None,
    ) -> None:
        """Log the round completed, then store it: by committing ``staged`` (the same rows,
        written ahead) or, without it or if it was rolled back, by writing them now."""
        try:
            self._record_completed(f, c)
        except BaseException:
            if staged is not None:  # never leave its write lock behind
                staged.rollback()
            raise
        if staged is not None and staged.commit():
            return
        self._store.save_round(
            self._row(f, "completed", "", c.intersection_sizes, c.transcript_hash), matches
        )

    def _record_completed(self, f: RoundFacts, c: Completion) -> None:
        self._record(
            RoundCompleted(
                round_id=f.round_id,
                role=f.role,
                peer=f.peer,
                mode=f.mode,
                kinds=list(f.kinds),
                own_sizes=f.own_sizes,
                peer_sizes=f.peer_sizes,
                intersection_sizes=c.intersection_sizes,
                policy_hash=f.policy_hash.hex(),
                own_commitment=c.own_commitment.hex(),
                peer_commitment=c.peer_commitment.hex(),
                transcript_hash=c.transcript_hash.hex(),
                # Written as held (a commit follows both receipts, so never None).
                own_receipt=cast(dict, c.own_receipt),
                peer_receipt=cast(dict, c.peer_receipt),
                extra=c.extra,
            )
        )

    def aborted(
        self,
        f: RoundFacts,
        error: CrossmatchError,
        *,
        stage: str,
        transcript_hash: bytes = b"",
        extra: Mapping[str, object] | None = None,
    ) -> None:
        self._record(
            RoundAborted(
                round_id=f.round_id,
                role=f.role,
                peer=f.peer,
                stage=stage,
                reason=error.message,
                rule=error.rule or None,
                extra=extra or {},
            )
        )
        self._store.save_round(
            self._row(f, "aborted", error.diagnostics(), {}, transcript_hash), []
        )

    def refused(
        self, error: CrossmatchError, *, peer: str, claimed_lab: str, facts: RoundFacts | None
    ) -> None:
        """A proposal refused at OpenRound; stored too when ``facts`` (a round id we can
        keep: the peer authenticated, the id well formed and new) are given."""
        self._record(
            RoundRefused(
                peer=peer, claimed_lab=claimed_lab, reason=error.message, rule=error.rule or ""
            )
        )
        if facts is not None:
            self._store.save_round(self._row(facts, "refused", error.diagnostics(), {}, b""), [])

    def _record(self, body: EventBody) -> None:
        self._log(body.EVENT, body.to_body())

    def _row(
        self,
        f: RoundFacts,
        status: str,
        reason: str,
        intersection: dict[str, int],
        transcript_hash: bytes,
    ) -> RoundRow:
        return RoundRow(
            round_id=f.round_id,
            peer=f.peer,
            role=f.role,
            mode=f.mode,
            kinds=list(f.kinds),
            own_sizes=f.own_sizes,
            peer_sizes=f.peer_sizes,
            intersection_sizes=intersection,
            status=status,
            reason=reason,
            started_at=f.started_at,
            finished_at=iso(self._now()),
            policy_hash=f.policy_hash.hex(),
            transcript_hash=transcript_hash.hex(),
        )
