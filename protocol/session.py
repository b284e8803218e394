"""The end of a round as a pure state machine: receipts, then commit, or an abort.

Once both sides have matched, a round ends with a short receipt dance:

    responder -> initiator   Receipt(R)    when the responder's matching (and proofs) are done
    initiator -> responder   Receipt(I)    after verifying R against its own transcript
    responder -> initiator   Commit        after verifying I; the responder has committed
    the initiator commits on Commit.

:class:`ReceiptSession` holds where one side is in it and decides, for each event, what
the transport must do; it performs nothing. Each event returns a list of actions:
:class:`SendReceipt` (sign ours and send it), :class:`StoreAndCommit` (record the round
as completed, with the peer's receipt), :class:`SendCommit`, :class:`EndStream`, or a
single :class:`AbortRound` naming the rule that was broken. ``node/net/exchange.py`` is
the adapter that performs them. A round is committed only after the peer's receipt
verifies; anything else aborts it, and an aborted round stores no match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import CrossmatchError, ProtocolError, VerificationError
from protocol.limits import peer_text
from protocol.receipts import build_receipt, parse_receipt, sign_receipt, verify_receipt
from protocol.round_work import RoundOutcome
from protocol.rules import Rule, parse_rule
from protocol.transcript import RoundHeader

MAX_QUOTED_REASON = 200  # characters of a peer's abort reason we quote


@dataclass(frozen=True)
class SendReceipt:
    """Sign our receipt (:func:`our_receipt`) and send it."""


@dataclass(frozen=True)
class StoreAndCommit:
    """Record the round as completed, with the peer's verified receipt."""

    peer_receipt: dict[str, Any]


@dataclass(frozen=True)
class SendCommit:
    """Tell the initiator we have committed."""


@dataclass(frozen=True)
class EndStream:
    """The round is over for this side: close our half of the stream."""


@dataclass(frozen=True)
class AbortRound:
    """The round is aborted under ``error.rule``; nothing is stored."""

    error: CrossmatchError


Action = SendReceipt | StoreAndCommit | SendCommit | EndStream | AbortRound


def _order(message: str) -> list[Action]:
    return [AbortRound(ProtocolError(message, rule=Rule.MESSAGE_ORDER))]


@dataclass
class ReceiptSession:
    """One side's receipt exchange. ``proofs``: a verified round, whose receipts wait for
    the match proofs (protocol/verified.py)."""

    role: str
    round_id: str
    peer_lab: str
    peer_key: Ed25519PublicKey
    proofs: bool = False
    receipt_sent: bool = False
    peer_receipt: dict[str, Any] | None = None
    committed: bool = False  # decided to commit (recording it may still fail, and abort)

    def __post_init__(self) -> None:
        if self.role not in ("initiator", "responder"):
            raise ValueError(f"role must be initiator or responder, not {self.role!r}")

    @property
    def stage(self) -> str:
        """The stage an abort is recorded at."""
        return "receipt" if self.receipt_sent or self.peer_receipt is not None else "exchange"

    def matched(self) -> list[Action]:
        """Our matching (and, in a verified round, both proofs) is done. The responder
        speaks first; the initiator waits for the responder's receipt."""
        if self.role != "responder" or self.receipt_sent:
            return []
        self.receipt_sent = True
        return [SendReceipt()]

    def on_receipt(
        self, data: bytes, *, proofs_settled: bool, ours: Callable[[], RoundOutcome]
    ) -> list[Action]:
        """The peer's receipt. ``ours`` gives our result; it is asked for only once the
        receipt came in order (on the initiator it may wait for our matching to end)."""
        if self.peer_receipt is not None:
            return _order("second receipt")
        if self.proofs and not proofs_settled:
            return _order("receipt before the match proofs")
        if self.role == "responder" and not self.receipt_sent:
            return _order("receipt before ours")
        try:
            receipt = parse_receipt(data)
            self._check(receipt, ours())
        except CrossmatchError as e:
            return [AbortRound(e)]
        self.peer_receipt = receipt
        if self.role == "initiator":
            self.receipt_sent = True
            return [SendReceipt()]
        self.committed = True
        return [StoreAndCommit(receipt), SendCommit(), EndStream()]

    def _check(self, receipt: dict[str, Any], ours: RoundOutcome) -> None:
        verify_receipt(
            receipt,
            self.peer_key,
            round_id=self.round_id,
            transcript_hash=ours.transcript_hash,
            signer=self.peer_lab,
        )
        theirs = {k: int(v) for k, v in receipt.get("intersection_sizes", {}).items()}
        if theirs != ours.intersection_sizes:
            raise VerificationError(
                f"peer's receipt reports intersection sizes {theirs}, "
                f"we found {ours.intersection_sizes}",
                rule=Rule.RECEIPT_MISMATCH,
            )

    def on_commit(self) -> list[Action]:
        """The responder committed: the initiator commits too, once it sent its receipt."""
        if self.role != "initiator" or not self.receipt_sent or self.peer_receipt is None:
            return _order("unexpected commit")
        self.committed = True
        return [StoreAndCommit(self.peer_receipt), EndStream()]

    def on_abort(self, reason: str, rule: str) -> list[Action]:
        """The peer aborted. Its words are quoted, bounded; its rule is kept only if it is
        one of ours (it becomes a record field and a metric label)."""
        quoted = peer_text(reason, MAX_QUOTED_REASON)
        error = ProtocolError(
            f"peer aborted the round: {quoted}", rule=parse_rule(rule) or Rule.PEER_ABORT
        )
        return [AbortRound(error)]


def our_receipt(
    header: RoundHeader,
    ours: RoundOutcome,
    *,
    signer: str,
    log_id: str,
    log_head: tuple[int, bytes],
    key: Ed25519PrivateKey,
) -> dict[str, Any]:
    """Our signed receipt: the round, our result and the head of our audit log."""
    h = header
    receipt = build_receipt(
        round_id=h.round_id,
        initiator=h.initiator,
        responder=h.responder,
        signer=signer,
        mode=h.mode,
        kinds=list(h.kinds),
        transcript_hash=ours.transcript_hash,
        sizes={
            "initiator": dict(zip(h.kinds, h.initiator_sizes, strict=True)),
            "responder": dict(zip(h.kinds, h.responder_sizes, strict=True)),
        },
        intersection_sizes=ours.intersection_sizes,
        log_id=log_id,
        log_size=log_head[0],
        log_root=log_head[1],
    )
    return sign_receipt(receipt, key)
