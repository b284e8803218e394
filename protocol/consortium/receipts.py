"""Consortium receipts: what a lab and the hub both sign at the end of a round.

One receipt per participant, with the same content signed twice (by the lab and
by the hub): the round, the transcript hash, that lab's own-stream and result
digests, and its result counts per kind. So each participant's log proves what
it sent and learned, the hub's log holds all of them, and no lab ever sees
another lab's result counts.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.audit.canonical import encode_canonical, parse_bounded
from protocol.errors import ProtocolError, VerificationError
from protocol.rules import Rule

RECEIPT_VERSION = "crossmatch-consortium-receipt/v1"
SIGNING_TAG = b"crossmatch-consortium-receipt/v1\x00"
MAX_RECEIPT_BYTES = 16 * 1024
FIELDS = ("v", "round_id", "hub", "lab", "signer", "transcript_hash", "own_stream",
          "results", "result_counts")  # fmt: skip
_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_HEX64 = re.compile(r"^[0-9a-f]{128}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def build_receipt(
    *,
    round_id: str,
    hub: str,
    lab: str,
    signer: str,
    transcript_hash: bytes,
    own_stream: str,
    results: str,
    result_counts: dict[str, int],
) -> dict[str, Any]:
    return {
        "v": RECEIPT_VERSION, "round_id": round_id, "hub": hub, "lab": lab, "signer": signer,
        "transcript_hash": transcript_hash.hex(), "own_stream": own_stream, "results": results,
        "result_counts": dict(result_counts),
    }  # fmt: skip


def _signing_input(receipt: dict[str, Any]) -> bytes:
    return SIGNING_TAG + encode_canonical({k: v for k, v in receipt.items() if k != "sig"})


def sign_receipt(receipt: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The signed receipt, as canonical JSON bytes ready for the wire and the log."""
    return encode_canonical({**receipt, "sig": key.sign(_signing_input(receipt)).hex()})


def _is_hex32(value: Any) -> bool:
    return isinstance(value, str) and bool(_HEX32.match(value))


def _problem(receipt: Any) -> str | None:
    if not isinstance(receipt, dict) or set(receipt) != {*FIELDS, "sig"}:
        return "members are not those of a consortium receipt"
    counts = receipt["result_counts"]
    checks = (
        ("v", receipt["v"] == RECEIPT_VERSION),
        ("signer", receipt["signer"] in (receipt["hub"], receipt["lab"])),
        ("transcript_hash", isinstance(receipt["transcript_hash"], str)
            and _HEX32.match(receipt["transcript_hash"])),
        ("own_stream", _is_hex32(receipt["own_stream"])),
        ("results", _is_hex32(receipt["results"])),
        ("result_counts", isinstance(counts, dict) and all(
            isinstance(k, str) and _KIND.match(k) and isinstance(n, int)
            and not isinstance(n, bool) and n >= 0 for k, n in counts.items())),
        ("sig", isinstance(receipt["sig"], str) and _HEX64.match(receipt["sig"])),
    )  # fmt: skip
    for name, ok in checks:
        if not ok:
            return f"member {name!r} is missing its required form"
    return None


def parse_receipt(data: bytes) -> dict[str, Any]:
    """A signed receipt from the wire or a log; ProtocolError if malformed (signature unchecked)."""
    receipt = parse_bounded(
        data, what="receipt", limit=MAX_RECEIPT_BYTES, rule=Rule.CONSORTIUM_RECEIPT
    )
    problem = _problem(receipt)
    if problem:
        raise ProtocolError(
            f"consortium receipt is malformed: {problem}", rule=Rule.CONSORTIUM_RECEIPT
        )
    parsed: dict[str, Any] = receipt
    return parsed


def verify_receipt(
    signed: dict[str, Any], public_key: Ed25519PublicKey, *, expected: dict[str, Any]
) -> None:
    """Raise VerificationError unless ``signed`` is ``expected`` (unsigned), validly signed."""
    body = {k: v for k, v in signed.items() if k != "sig"}
    if body != expected:
        differing = sorted(k for k in expected if body.get(k) != expected[k])
        raise VerificationError(
            f"consortium receipt signed by {signed.get('signer')!r} differs in "
            f"{', '.join(differing) or 'its members'}",
            rule=Rule.CONSORTIUM_RECEIPT,
        )
    try:
        public_key.verify(bytes.fromhex(signed["sig"]), _signing_input(signed))
    except (InvalidSignature, ValueError) as e:
        raise VerificationError(
            f"consortium receipt signature of {signed['signer']!r} does not verify",
            rule=Rule.CONSORTIUM_RECEIPT,
        ) from e
