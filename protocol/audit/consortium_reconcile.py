"""Compare n verified audit logs (participants' and the hub's) over consortium rounds.

For every consortium round any of the logs records as completed:

  consortium-missing    a participant (or the hub) whose log was given has no record of it
  consortium-outcome    completed in one log, aborted in another
  consortium-header     the records disagree on hub, participants, policy, k, kinds, sizes
                        or transcript hash
  consortium-receipt    a receipt does not verify with its signer's audit key, is not about
                        this round and lab, or differs from the copy the other party logged
  consortium-counts     a lab's logged result counts differ from what its receipts or the
                        hub's log say
  consortium-duplicate  one log records the same round twice

A lab's log shows only its own result counts; the hub's log holds every lab's.
Logs not given are named in a note, and receipts they would check stay unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.audit.canonical import encode_canonical
from protocol.audit.reconcile import Discrepancy, Findings
from protocol.audit.verify_report import VerifyReport
from protocol.consortium.receipts import verify_receipt
from protocol.errors import InputError, VerificationError
from protocol.rules import Rule

HEADER_FIELDS = ("hub", "participants", "policy_hash", "k", "reveal_count", "kinds", "sizes",
                 "transcript_hash")  # fmt: skip


@dataclass
class ConsortiumReconcileReport(Findings):
    labs: list[str]
    rounds_compared: int = 0
    receipts_checked: int = 0
    notes: list[str] = field(default_factory=list)
    discrepancies: list[Discrepancy] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labs": self.labs,
            "rounds_compared": self.rounds_compared,
            "receipts_checked": self.receipts_checked,
            **self.findings_dict(),
        }

    def summary_lines(self) -> list[str]:
        return [
            f"{', '.join(self.labs)}: {self.verdict()}",
            f"  consortium rounds compared: {self.rounds_compared}",
            f"  receipts checked: {self.receipts_checked}",
            *self.finding_lines(),
        ]


def _records(
    report: VerifyReport, event: str, out: ConsortiumReconcileReport
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for record in report.records:
        if record["event"] == event:
            rid = record["body"].get("round_id", "")
            if rid in found and event == "consortium_completed":
                out.discrepancies.append(
                    Discrepancy(
                        rid, Rule.CONSORTIUM_DUPLICATE, f"{report.lab}'s log records it twice"
                    )
                )
            found[rid] = record["body"]
    return found


def reconcile_consortium(reports: list[VerifyReport]) -> ConsortiumReconcileReport:
    """Reconcile the given verified logs (with ``records`` kept), one per lab or hub."""
    labs = [r.lab for r in reports]
    if len(set(labs)) != len(labs):
        raise InputError("two of the logs belong to the same lab")
    out = ConsortiumReconcileReport(labs=labs)
    by_lab = {r.lab: r for r in reports}
    done = {r.lab: _records(r, "consortium_completed", out) for r in reports}
    aborted = {r.lab: _records(r, "consortium_aborted", out) for r in reports}
    for rid in sorted({rid for records in done.values() for rid in records}):
        out.rounds_compared += 1
        first = next(records[rid] for records in done.values() if rid in records)
        parties = [*first["participants"], first["hub"]]
        absent = [p for p in parties if p not in by_lab]
        if absent:
            out.notes.append(f"round {rid}: no log given for {', '.join(absent)}")
        for party in parties:
            if party in by_lab and rid not in done[party]:
                rule, how = (
                    (Rule.CONSORTIUM_OUTCOME, "aborted it")
                    if rid in aborted[party]
                    else (Rule.CONSORTIUM_MISSING, "has no record of it")
                )
                out.discrepancies.append(Discrepancy(rid, rule, f"{party}'s log {how}"))
        bodies = {p: done[p][rid] for p in parties if p in by_lab and rid in done[p]}
        for name in HEADER_FIELDS:
            values = {p: encode_canonical(b.get(name)) for p, b in bodies.items()}
            if len(set(values.values())) > 1:
                out.discrepancies.append(
                    Discrepancy(
                        rid,
                        Rule.CONSORTIUM_HEADER,
                        f"the logs disagree on {name} "
                        f"({', '.join(f'{p}: {v.decode()[:80]}' for p, v in values.items())})",
                    )
                )
        hub_body = bodies.get(first["hub"])
        for lab in first["participants"]:
            if lab in bodies:
                _check_lab(rid, lab, bodies[lab], by_lab, first["hub"], hub_body, out)
    aborted_only = {rid for records in aborted.values() for rid in records} - {
        rid for records in done.values() for rid in records
    }
    for rid in sorted(aborted_only):
        who = [lab for lab in labs if rid in aborted[lab]]
        out.notes.append(
            f"round {rid or '(before the roster)'} aborted (logged by {', '.join(who)})"
        )
    return out


def _check_lab(
    rid: str,
    lab: str,
    body: dict[str, Any],
    by_lab: dict[str, VerifyReport],
    hub: str,
    hub_body: dict[str, Any] | None,
    out: ConsortiumReconcileReport,
) -> None:
    own, from_hub = body.get("own_receipt"), body.get("hub_receipt")
    if not isinstance(own, dict) or not isinstance(from_hub, dict):
        out.discrepancies.append(
            Discrepancy(rid, Rule.CONSORTIUM_RECEIPT, f"{lab}'s record lacks its receipts")
        )
        return
    expected = {k: v for k, v in own.items() if k != "sig"}
    _check_receipt_claims(rid, lab, hub, body, expected, out)
    signers = [(own, lab, expected), (from_hub, hub, {**expected, "signer": hub})]
    for signed, signer, want in signers:
        if signer in by_lab:
            _check_signature(rid, lab, signed, signer, want, by_lab[signer], out)
    if hub_body is not None:
        _check_against_hub(rid, lab, body, own, from_hub, hub_body, out)


def _check_receipt_claims(
    rid: str,
    lab: str,
    hub: str,
    body: dict[str, Any],
    expected: dict[str, Any],
    out: ConsortiumReconcileReport,
) -> None:
    """The lab's own receipt says what its record says: this round, lab, hub and counts."""
    claims = {
        "round_id": rid,
        "lab": lab,
        "hub": hub,
        "signer": lab,
        "transcript_hash": body["transcript_hash"],
        "result_counts": body["result_counts"],
    }
    wrong = [k for k, v in claims.items() if expected.get(k) != v]
    if wrong:
        out.discrepancies.append(
            Discrepancy(
                rid,
                Rule.CONSORTIUM_COUNTS if wrong == ["result_counts"] else Rule.CONSORTIUM_RECEIPT,
                f"{lab}'s own receipt differs from its record in {', '.join(wrong)}",
            )
        )


def _check_signature(
    rid: str,
    lab: str,
    signed: dict[str, Any],
    signer: str,
    want: dict[str, Any],
    signer_log: VerifyReport,
    out: ConsortiumReconcileReport,
) -> None:
    try:
        verify_receipt(signed, signer_log.public_key, expected=want)
        out.receipts_checked += 1
    except VerificationError as e:
        out.discrepancies.append(
            Discrepancy(
                rid,
                Rule.CONSORTIUM_RECEIPT,
                f"the receipt {lab} logged, signed by {signer}: {e.message}",
            )
        )


def _check_against_hub(
    rid: str,
    lab: str,
    body: dict[str, Any],
    own: dict[str, Any],
    from_hub: dict[str, Any],
    hub_body: dict[str, Any],
    out: ConsortiumReconcileReport,
) -> None:
    """The hub logged the same two receipts and the same result counts for this lab."""
    for name, kept in (("lab_receipts", own), ("hub_receipts", from_hub)):
        if encode_canonical(hub_body.get(name, {}).get(lab)) != encode_canonical(kept):
            out.discrepancies.append(
                Discrepancy(
                    rid,
                    Rule.CONSORTIUM_RECEIPT,
                    f"the hub's {name} for {lab} differ from {lab}'s log",
                )
            )
    if hub_body.get("result_counts", {}).get(lab) != body["result_counts"]:
        out.discrepancies.append(
            Discrepancy(
                rid, Rule.CONSORTIUM_COUNTS, f"the hub's log gives {lab} other result counts"
            )
        )
