"""Countersigned round receipts: what each side signs at the end of a round.

A receipt states the round's outcome (who, mode, kinds, set sizes, intersection
sizes) over the transcript hash, and names the signer's audit log head at
signing time (log id, size, root). Each side keeps the peer's signed receipt in
its own audit log, so either lab can later show a third party what the other
agreed happened, and a lab that rewrites its whole log is caught: the peer
still holds a receipt naming the old root at that size.

Wire and storage form: canonical JSON (see protocol.audit.canonical)::

    {"v": "crossmatch-receipt/v1", "round_id": ..., "initiator": LAB, "responder": LAB,
     "signer": LAB, "mode": "reveal"|"count", "kinds": [...], "transcript_hash": HEX,
     "sizes": {"initiator": {KIND: N}, "responder": {KIND: N}}, "intersection_sizes": {KIND: N},
     "log": {"id": LOG_ID, "size": N, "root": HEX}, "sig": HEX}

``sig`` is Ed25519 by the signer's audit key over
``b"crossmatch-receipt/v1\\x00" || canonical JSON of the receipt without "sig"``.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.audit.canonical import encode_canonical, parse_bounded
from protocol.audit.records import HEX32_RE, HEX64_RE, parse_log_id
from protocol.errors import InputError, ProtocolError, VerificationError
from protocol.identity import is_valid_lab_id, key_fingerprint
from protocol.messages import MODES
from protocol.rules import Rule

RECEIPT_VERSION = "crossmatch-receipt/v1"
SIGNING_TAG = b"crossmatch-receipt/v1\x00"
ROLES = ("initiator", "responder")
MAX_RECEIPT_BYTES = 64 * 1024
FIELDS = (
    "v", "round_id", "initiator", "responder", "signer", "mode", "kinds",
    "transcript_hash", "sizes", "intersection_sizes", "log",
)  # fmt: skip
ROUND_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_counts(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and KIND_RE.match(k) and _is_count(n) for k, n in value.items()
    )


def _shape_problem(receipt: Any, *, signed: bool) -> str | None:
    """What is wrong with the receipt's members, or None."""
    if not isinstance(receipt, dict):
        return "a receipt must be a JSON object"
    expected = set(FIELDS) | ({"sig"} if signed else set())
    if set(receipt) != expected:
        return f"members are {sorted(receipt)}, expected {sorted(expected)}"
    if receipt["v"] != RECEIPT_VERSION:
        return f"version is {receipt['v']!r}, expected {RECEIPT_VERSION!r}"
    log = receipt["log"]
    checks = (
        ("round_id", isinstance(receipt["round_id"], str)
            and ROUND_ID_RE.match(receipt["round_id"])),
        ("initiator", is_valid_lab_id(receipt["initiator"])),
        ("responder", is_valid_lab_id(receipt["responder"])),
        ("signer", receipt["signer"] in (receipt["initiator"], receipt["responder"])),
        ("mode", receipt["mode"] in MODES),
        ("kinds", isinstance(receipt["kinds"], list)
            and all(isinstance(k, str) and KIND_RE.match(k) for k in receipt["kinds"])
            and len(set(receipt["kinds"])) == len(receipt["kinds"])),
        ("transcript_hash", isinstance(receipt["transcript_hash"], str)
            and HEX32_RE.match(receipt["transcript_hash"])),
        ("sizes", isinstance(receipt["sizes"], dict) and set(receipt["sizes"]) == set(ROLES)
            and all(_is_counts(c) for c in receipt["sizes"].values())),
        ("intersection_sizes", _is_counts(receipt["intersection_sizes"])),
        ("log", isinstance(log, dict) and set(log) == {"id", "size", "root"}
            and isinstance(log["id"], str) and _is_count(log["size"])
            and isinstance(log["root"], str) and HEX32_RE.match(log["root"])),
        ("sig", not signed or (isinstance(receipt["sig"], str) and HEX64_RE.match(receipt["sig"]))),
    )  # fmt: skip
    for name, ok in checks:
        if not ok:
            return f"member {name!r} is missing its required form"
    return None


def build_receipt(
    *,
    round_id: str,
    initiator: str,
    responder: str,
    signer: str,
    mode: str,
    kinds: list[str],
    transcript_hash: bytes,
    sizes: dict[str, dict[str, int]],
    intersection_sizes: dict[str, int],
    log_id: str,
    log_size: int,
    log_root: bytes,
) -> dict[str, Any]:
    """The unsigned receipt; ``sizes`` maps "initiator" and "responder" to set sizes per kind."""
    receipt = {
        "v": RECEIPT_VERSION,
        "round_id": round_id,
        "initiator": initiator,
        "responder": responder,
        "signer": signer,
        "mode": mode,
        "kinds": list(kinds),
        "transcript_hash": transcript_hash.hex(),
        "sizes": {lab: dict(counts) for lab, counts in sizes.items()},
        "intersection_sizes": dict(intersection_sizes),
        "log": {"id": log_id, "size": log_size, "root": log_root.hex()},
    }
    problem = _shape_problem(receipt, signed=False)
    if problem is None and (len(transcript_hash) != 32 or len(log_root) != 32):
        problem = "transcript hash and log root must be 32 bytes"
    if problem:
        raise InputError(f"cannot build receipt: {problem}", rule=Rule.RECEIPT_FORMAT)
    return receipt


def _signing_input(receipt: dict[str, Any]) -> bytes:
    return SIGNING_TAG + encode_canonical({k: v for k, v in receipt.items() if k != "sig"})


def sign_receipt(receipt: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The receipt with ``sig`` added."""
    return {**receipt, "sig": key.sign(_signing_input(receipt)).hex()}


def receipt_bytes(signed: dict[str, Any]) -> bytes:
    return encode_canonical(signed)


def parse_receipt(data: bytes) -> dict[str, Any]:
    """A signed receipt from the wire; ProtocolError on anything malformed (signature unchecked)."""
    receipt = parse_bounded(data, what="receipt", limit=MAX_RECEIPT_BYTES, rule=Rule.RECEIPT_FORMAT)
    problem = _shape_problem(receipt, signed=True)
    if problem:
        raise ProtocolError(f"receipt is malformed: {problem}", rule=Rule.RECEIPT_FORMAT)
    checked: dict[str, Any] = receipt
    return checked


def check_receipt_claims(
    signed: dict[str, Any], *, round_id: str, transcript_hash: bytes, signer: str
) -> None:
    """Everything but the signature: form, round, transcript, signer, log id; VerificationError."""
    problem = _shape_problem(signed, signed=True)
    if problem:
        raise VerificationError(f"receipt is malformed: {problem}", rule=Rule.RECEIPT_FORMAT)
    if signed["round_id"] != round_id:
        raise VerificationError(
            f"receipt is for round {signed['round_id']!r}, expected {round_id!r}",
            rule=Rule.RECEIPT_ROUND,
        )
    if signed["transcript_hash"] != transcript_hash.hex():
        raise VerificationError(
            f"receipt transcript hash is {signed['transcript_hash']}, "
            f"expected {transcript_hash.hex()}",
            rule=Rule.RECEIPT_TRANSCRIPT,
        )
    if signed["signer"] != signer:
        raise VerificationError(
            f"receipt is signed as {signed['signer']!r}, expected {signer!r}",
            rule=Rule.RECEIPT_SIGNER,
        )
    log_lab, _ = parse_log_id(signed["log"]["id"])
    if log_lab != signer:
        raise VerificationError(
            f"receipt names log {signed['log']['id']!r}, which is not {signer!r}'s",
            rule=Rule.RECEIPT_LOG_ID,
        )


def verify_receipt(
    signed: dict[str, Any],
    public_key: Ed25519PublicKey,
    *,
    round_id: str,
    transcript_hash: bytes,
    signer: str,
) -> None:
    """Raise VerificationError unless ``signed`` is ``signer``'s valid receipt for this round."""
    check_receipt_claims(signed, round_id=round_id, transcript_hash=transcript_hash, signer=signer)
    _, fingerprint = parse_log_id(signed["log"]["id"])
    if fingerprint != key_fingerprint(public_key):
        raise VerificationError(
            f"receipt names log {signed['log']['id']!r}, "
            f"whose key is not the one given for {signer!r} "
            f"({key_fingerprint(public_key)})",
            rule=Rule.RECEIPT_LOG_ID,
        )
    try:
        public_key.verify(bytes.fromhex(signed["sig"]), _signing_input(signed))
    except InvalidSignature as e:
        raise VerificationError(
            f"receipt signature does not verify with {signer!r}'s audit key "
            f"{key_fingerprint(public_key)}",
            rule=Rule.RECEIPT_SIGNATURE,
        ) from e
