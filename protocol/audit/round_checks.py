"""The checks of a ``round_completed`` record beyond its envelope: the types of the members
verification relies on, both receipts (signature, claims, the own receipt's log head),
and each receipt's agreement with the record. ``LogVerifier`` calls them per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.audit.events import RoundCompleted, shape_problem
from protocol.audit.records import record_error
from protocol.errors import VerificationError
from protocol.receipts import check_receipt_claims, verify_receipt
from protocol.rules import Rule


def check_round_completed(
    n: int,
    body: dict[str, Any],
    *,
    key: Ed25519PublicKey,
    lab: str,
    log_id: str,
    roots: Sequence[bytes],
    peer_key: Ed25519PublicKey | None,
) -> None:
    """Record ``n``, a round_completed body: member types, both receipts (the peer's
    signature only with ``peer_key``), and agreement of each receipt with the body."""
    problem = round_body_problem(body)
    if problem:
        raise record_error(n, f"round_completed {problem}", Rule.BODY_SCHEMA)
    transcript = bytes.fromhex(body["transcript_hash"])
    round_id, peer = body["round_id"], body["peer"]
    own, theirs = body["own_receipt"], body["peer_receipt"]
    try:
        verify_receipt(own, key, round_id=round_id, transcript_hash=transcript, signer=lab)
    except VerificationError as e:
        raise record_error(n, f"own receipt: {e.message}", e.rule or Rule.RECEIPT_SIGNATURE) from e
    _check_own_head(n, own, log_id, roots)
    try:
        if peer_key is not None:
            verify_receipt(
                theirs, peer_key, round_id=round_id, transcript_hash=transcript, signer=peer
            )
        else:
            check_receipt_claims(theirs, round_id=round_id, transcript_hash=transcript, signer=peer)
    except VerificationError as e:
        raise record_error(
            n, f"peer receipt from {peer!r}: {e.message}", e.rule or Rule.RECEIPT_SIGNATURE
        ) from e
    for name, receipt in (("own", own), ("peer", theirs)):
        problem = receipt_disagreement(body, receipt, own_lab=lab)
        if problem:
            raise record_error(
                n, f"{name} receipt disagrees with the record: {problem}", Rule.RECEIPT_BODY
            )


def _check_own_head(n: int, own: dict[str, Any], log_id: str, roots: Sequence[bytes]) -> None:
    head = own["log"]
    if head["id"] != log_id:
        raise record_error(
            n, f"own receipt names log {head['id']!r}, not this log", Rule.OWN_RECEIPT_HEAD
        )
    if head["size"] > n:
        raise record_error(
            n,
            f"own receipt names log size {head['size']}, beyond the {n} records before it",
            Rule.OWN_RECEIPT_HEAD,
        )
    if head["root"] != roots[head["size"]].hex():
        raise record_error(
            n,
            f"own receipt names root {head['root']} at size {head['size']}, "
            f"but this log's root there is {roots[head['size']].hex()}",
            Rule.OWN_RECEIPT_HEAD,
        )


def round_body_problem(body: dict[str, Any]) -> str | None:
    """Types of the round_completed members that verification relies on, or None."""
    return shape_problem(RoundCompleted, body)


def _sorted_counts(value: Any) -> Any:
    return dict(sorted(value.items())) if isinstance(value, dict) else value


def receipt_disagreement(
    body: dict[str, Any], receipt: dict[str, Any], *, own_lab: str
) -> str | None:
    """How a round_completed body and one of its receipts disagree, or None."""
    peer, role = body["peer"], body["role"]
    initiator, responder = (own_lab, peer) if role == "initiator" else (peer, own_lab)
    if (receipt["initiator"], receipt["responder"]) != (initiator, responder):
        return (
            f"receipt has initiator {receipt['initiator']!r} and responder {receipt['responder']!r}"
        )
    sizes = receipt["sizes"]
    peer_role = "responder" if role == "initiator" else "initiator"
    comparisons = (
        ("mode", body["mode"], receipt["mode"]),
        ("kinds", sorted(body["kinds"]), sorted(receipt["kinds"])),
        ("own_sizes", _sorted_counts(body["own_sizes"]), _sorted_counts(sizes.get(role))),
        ("peer_sizes", _sorted_counts(body["peer_sizes"]), _sorted_counts(sizes.get(peer_role))),
        ("intersection_sizes", _sorted_counts(body["intersection_sizes"]),
         _sorted_counts(receipt["intersection_sizes"])),
    )  # fmt: skip
    for name, in_body, in_receipt in comparisons:
        if in_body != in_receipt:
            return f"{name} is {in_body!r} in the record and {in_receipt!r} in the receipt"
    return None
