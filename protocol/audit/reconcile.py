"""Compare two labs' verified audit logs, round by round.

Each log is verified on its own first (``verify_log_bytes``); reconciling then
checks that the two labs tell the same story about the rounds between them:

  round-missing       completed in one log, absent from the other
  round-outcome       completed in one log, aborted in the other
  round-duplicate     one log records the same round twice
  round-roles / round-mode / round-kinds / round-sizes / round-intersection /
  round-transcript / round-policy / round-commitment
                      the two records of one round disagree
  receipt-mismatch    the receipt a lab kept from its peer is not the one the peer logged
  receipt-signature   a kept receipt does not verify with the peer's audit key
  receipt-log-id      a kept receipt names a log whose key is not the peer's key

and that neither lab rewrote its log after the fact. Every receipt a lab signs
names its own log head (log id, size, root). Lab A keeps B's receipts, so for
each of them B's current log must have that id and, at that size, that root:

  log-identity        B's receipt names a different log id (log replaced, key changed)
  log-truncated       B's receipt names a size beyond B's log (records removed)
  log-rewritten       B's log has another root at that size (a consistent forgery)

A round aborted on one side only is a note, not a discrepancy: an abort before
the handshake reaches the peer leaves no trace there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from protocol.audit.canonical import encode_canonical
from protocol.audit.verify_report import VerifyReport
from protocol.errors import InputError, VerificationError
from protocol.receipts import verify_receipt
from protocol.rules import Rule


@dataclass(frozen=True)
class Discrepancy:
    round_id: str | None
    rule: Rule
    detail: str

    def line(self) -> str:
        where = f"round {self.round_id}" if self.round_id else "logs"
        return f"{where}: {self.detail} [rule: {self.rule}]"


class Findings:
    """What a reconciliation report ends with: its notes and discrepancies, and the verdict."""

    notes: list[str]
    discrepancies: list[Discrepancy]

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def verdict(self) -> str:
        return "AGREE" if self.ok else f"DISAGREE: {len(self.discrepancies)} discrepancies"

    def finding_lines(self) -> list[str]:
        return [f"  note: {n}" for n in self.notes] + [
            f"  DISCREPANCY {d.line()}" for d in self.discrepancies
        ]

    def findings_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "notes": self.notes,
            "discrepancies": [d.__dict__ for d in self.discrepancies],
        }


@dataclass
class ReconcileReport(Findings):
    lab_a: str
    lab_b: str
    log_a: str
    log_b: str
    rounds_compared: int = 0
    receipts_anchored: int = 0
    notes: list[str] = field(default_factory=list)
    discrepancies: list[Discrepancy] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lab_a": self.lab_a,
            "lab_b": self.lab_b,
            "rounds_compared": self.rounds_compared,
            "receipts_anchored": self.receipts_anchored,
            **self.findings_dict(),
        }

    def summary_lines(self) -> list[str]:
        return [
            f"{self.lab_a} ({self.log_a}) and {self.lab_b} ({self.log_b}): {self.verdict()}",
            f"  rounds completed in both logs and compared: {self.rounds_compared}",
            f"  peer receipts checked against the signer's current log: {self.receipts_anchored}",
            *self.finding_lines(),
        ]


@dataclass
class _Rounds:
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)
    aborted: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    refused: int = 0


def _rounds_with(report: VerifyReport, peer: str) -> _Rounds:
    rounds = _Rounds()
    for record in report.records:
        event, body = record["event"], record["body"]
        if event == "round_refused" and peer in (body.get("peer"), body.get("claimed_lab")):
            rounds.refused += 1
        if body.get("peer") != peer or event not in ("round_completed", "round_aborted"):
            continue
        target = rounds.completed if event == "round_completed" else rounds.aborted
        if body["round_id"] in target:
            rounds.duplicates.append(body["round_id"])
        target[body["round_id"]] = body
    return rounds


def _canonical(value: Any) -> bytes:
    return encode_canonical(value)


def _other_role(role: str) -> str:
    return "responder" if role == "initiator" else "initiator"


def _compare_round(
    rid: str, a: dict[str, Any], b: dict[str, Any], labs: tuple[str, str]
) -> list[Discrepancy]:
    """Disagreements between lab A's and lab B's record of one completed round."""
    la, lb = labs

    def differ(rule: Rule, what: str, in_a: Any, in_b: Any) -> Discrepancy:
        return Discrepancy(rid, rule, f"{what}: {la}'s log says {in_a!r}, {lb}'s log says {in_b!r}")

    pairs = (
        (Rule.ROUND_ROLES, f"{la}'s role", a["role"], _other_role(b["role"])),
        (Rule.ROUND_MODE, "mode", a["mode"], b["mode"]),
        (Rule.ROUND_KINDS, "kinds", sorted(a["kinds"]), sorted(b["kinds"])),
        (Rule.ROUND_SIZES, f"{la}'s set sizes", a["own_sizes"], b["peer_sizes"]),
        (Rule.ROUND_SIZES, f"{lb}'s set sizes", a["peer_sizes"], b["own_sizes"]),
        (Rule.ROUND_INTERSECTION, "intersection sizes", a["intersection_sizes"],
         b["intersection_sizes"]),
        (Rule.ROUND_TRANSCRIPT, "transcript hash", a["transcript_hash"], b["transcript_hash"]),
        (Rule.ROUND_POLICY, "policy hash", a.get("policy_hash"), b.get("policy_hash")),
        (Rule.ROUND_COMMITMENT, f"{la}'s input commitment", a.get("own_commitment"),
         b.get("peer_commitment")),
        (Rule.ROUND_COMMITMENT, f"{lb}'s input commitment", a.get("peer_commitment"),
         b.get("own_commitment")),
    )  # fmt: skip
    found = [differ(rule, what, x, y) for rule, what, x, y in pairs if x != y]
    for holder, kept, signer, logged in ((la, a, lb, b), (lb, b, la, a)):
        if _canonical(kept["peer_receipt"]) != _canonical(logged["own_receipt"]):
            found.append(
                Discrepancy(
                    rid,
                    Rule.RECEIPT_MISMATCH,
                    f"the receipt {holder} kept from {signer} is not the receipt {signer} logged",
                )
            )
    return found


def _anchor_receipts(
    holder: VerifyReport, signer: VerifyReport, rounds: _Rounds
) -> list[Discrepancy]:
    """Check every receipt ``holder`` kept from ``signer`` against ``signer``'s log as it is now."""
    found: list[Discrepancy] = []
    for rid, body in sorted(rounds.completed.items()):
        receipt = body["peer_receipt"]
        try:
            verify_receipt(
                receipt,
                signer.public_key,
                round_id=rid,
                transcript_hash=bytes.fromhex(body["transcript_hash"]),
                signer=signer.lab,
            )
        except VerificationError as e:
            detail = f"the receipt {holder.lab} kept from {signer.lab}: {e.message}"
            found.append(Discrepancy(rid, e.rule or Rule.RECEIPT_SIGNATURE, detail))
            continue
        head = receipt["log"]
        prefix = f"{signer.lab} signed log head (size {head['size']}, root {head['root']})"
        if head["id"] != signer.log_id:
            detail = f"{prefix} of log {head['id']}, but {signer.lab}'s log is {signer.log_id}"
            found.append(Discrepancy(rid, Rule.LOG_IDENTITY, detail + ": the log was replaced"))
        elif head["size"] > signer.size:
            detail = f"{prefix}, but {signer.lab}'s log holds only {signer.size} records"
            found.append(Discrepancy(rid, Rule.LOG_TRUNCATED, detail + ": records were removed"))
        elif signer.root_at(head["size"]).hex() != head["root"]:
            detail = (
                f"{prefix}, but {signer.lab}'s log now has root "
                f"{signer.root_at(head['size']).hex()} at that size"
            )
            found.append(Discrepancy(rid, Rule.LOG_REWRITTEN, detail + ": the log was rewritten"))
    return found


def reconcile(a: VerifyReport, b: VerifyReport) -> ReconcileReport:
    """Compare two verified logs (with ``records`` kept) of different labs."""
    if a.lab == b.lab:
        raise InputError(f"both logs belong to lab {a.lab!r}; reconcile compares two labs' logs")
    report = ReconcileReport(lab_a=a.lab, lab_b=b.lab, log_a=a.log_id, log_b=b.log_id)
    ra, rb = _rounds_with(a, b.lab), _rounds_with(b, a.lab)
    for lab, rounds in ((a.lab, ra), (b.lab, rb)):
        for rid in rounds.duplicates:
            report.discrepancies.append(
                Discrepancy(rid, Rule.ROUND_DUPLICATE, f"{lab}'s log records this round twice")
            )
    outcomes: dict[str, list[str]] = defaultdict(list)
    for rid in sorted(ra.completed.keys() | rb.completed.keys()):
        if rid in ra.completed and rid in rb.completed:
            report.rounds_compared += 1
            found = _compare_round(rid, ra.completed[rid], rb.completed[rid], (a.lab, b.lab))
            report.discrepancies.extend(found)
            continue
        has, lacks, other = (a.lab, b.lab, rb) if rid in ra.completed else (b.lab, a.lab, ra)
        if rid in other.aborted:
            aborted = other.aborted[rid]
            detail = (
                f"completed in {has}'s log, aborted in {lacks}'s log "
                f"(stage {aborted.get('stage')!r}: {aborted.get('reason')})"
            )
            report.discrepancies.append(Discrepancy(rid, Rule.ROUND_OUTCOME, detail))
        else:
            detail = f"completed in {has}'s log, absent from {lacks}'s log"
            report.discrepancies.append(Discrepancy(rid, Rule.ROUND_MISSING, detail))
    for lab, rounds in ((a.lab, ra), (b.lab, rb)):
        for rid in rounds.aborted:
            if rid not in ra.completed and rid not in rb.completed:
                outcomes[rid].append(lab)
    for rid, labs in sorted(outcomes.items()):
        report.notes.append(f"round {rid} aborted ({' and '.join(labs)} logged the abort)")
    if ra.refused or rb.refused:
        report.notes.append(
            f"refused connections: {ra.refused} logged by {a.lab}, {rb.refused} logged by {b.lab}"
        )
    for holder, signer, rounds in ((a, b, ra), (b, a, rb)):
        report.receipts_anchored += len(rounds.completed)
        report.discrepancies.extend(_anchor_receipts(holder, signer, rounds))
    return report
