"""Proof documents a lab hands to a third party, and their verification.

An inclusion proof shows one record is in the log whose root a signed
checkpoint states; a consistency proof shows an older checkpoint's tree is a
prefix of a newer one (nothing was removed or rewritten in between). Both are
JSON documents carrying hex hashes and, where the log holds one for that size,
the signed checkpoint text, so the checker needs only the lab's audit public key.

    {"v": "crossmatch-inclusion-proof/v1", "log_id", "leaf_index", "tree_size",
     "record": "<the record's line>", "leaf_hash", "root", "proof": [hex...],
     "checkpoint": "<signed note for tree_size>" | null}

    {"v": "crossmatch-consistency-proof/v1", "log_id", "size1", "size2",
     "root1", "root2", "proof": [hex...], "checkpoint1": ... | null, "checkpoint2": ... | null}
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.audit import merkle
from protocol.audit.canonical import parse_canonical
from protocol.audit.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from protocol.audit.records import HEX32_RE, key_fingerprint, parse_log_id, verify_record_signature
from protocol.audit.verify_report import VerifyReport
from protocol.errors import CrossmatchError, VerificationError
from protocol.rules import Rule

INCLUSION_VERSION = "crossmatch-inclusion-proof/v1"
CONSISTENCY_VERSION = "crossmatch-consistency-proof/v1"


def _checkpoints_by_size(report: VerifyReport) -> dict[int, str]:
    notes = {}
    for record in report.records:
        if record["event"] == "checkpoint":
            note = record["body"]["checkpoint"]
            notes[parse_checkpoint(note).size] = note
    return notes


def _default_size(report: VerifyReport, at_least: int) -> int:
    """The newest checkpointed size >= at_least (a signed root), else the whole log."""
    signed = [size for size in _checkpoints_by_size(report) if size >= at_least]
    return max(signed) if signed else report.size


def build_inclusion_proof(
    report: VerifyReport, index: int, size: int | None = None
) -> dict[str, Any]:
    """Proof that record ``index`` is in the tree of ``size`` records of a verified log."""
    if not 0 <= index < report.size:
        raise VerificationError(
            f"record {index} does not exist: the log holds {report.size} records",
            rule=Rule.PROOF_INDEX,
        )
    size = _default_size(report, index + 1) if size is None else size
    path = merkle.inclusion_proof(report.leaf_hashes, index, size)
    return {
        "v": INCLUSION_VERSION,
        "log_id": report.log_id,
        "leaf_index": index,
        "tree_size": size,
        "record": report.lines[index].decode("utf-8"),
        "leaf_hash": report.leaf_hashes[index].hex(),
        "root": report.root_at(size).hex(),
        "proof": [p.hex() for p in path],
        "checkpoint": _checkpoints_by_size(report).get(size),
    }


def build_consistency_proof(
    report: VerifyReport, size1: int, size2: int | None = None
) -> dict[str, Any]:
    """Proof that the log at ``size1`` records is a prefix of the log at ``size2``."""
    size2 = _default_size(report, size1) if size2 is None else size2
    path = merkle.consistency_proof(report.leaf_hashes, size1, size2)
    notes = _checkpoints_by_size(report)
    return {
        "v": CONSISTENCY_VERSION,
        "log_id": report.log_id,
        "size1": size1,
        "size2": size2,
        "root1": report.root_at(size1).hex(),
        "root2": report.root_at(size2).hex(),
        "proof": [p.hex() for p in path],
        "checkpoint1": notes.get(size1),
        "checkpoint2": notes.get(size2),
    }


def _proof_error(message: str) -> VerificationError:
    return VerificationError(f"proof document is malformed: {message}", rule=Rule.PROOF_FORMAT)


def _hash(doc: dict[str, Any], name: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str) or not HEX32_RE.match(value):
        raise _proof_error(f"{name} is not 32 bytes of hex")
    return bytes.fromhex(value)


def _count(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _proof_error(f"{name} is not a non-negative integer")
    return value


def _path(doc: dict[str, Any]) -> list[bytes]:
    value = doc.get("proof")
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise _proof_error("proof is not a list of hex strings")
    try:
        return [bytes.fromhex(p) for p in value]
    except ValueError as e:
        raise _proof_error("proof holds something that is not hex") from e


def _check_log_key(log_id: str, key: Ed25519PublicKey | None) -> None:
    _, fingerprint = parse_log_id(log_id)
    if key is not None and key_fingerprint(key) != fingerprint:
        raise VerificationError(
            f"log {log_id} is not signed by the given key ({key_fingerprint(key)})",
            rule=Rule.LOG_KEY,
        )


def _signed_checkpoint(
    note: Any, key: Ed25519PublicKey | None, log_id: str, size: int, root: bytes, what: str
) -> str:
    """Check a checkpoint names this log, size and root; its signature if a key is given."""
    if not isinstance(note, str):
        raise _proof_error(f"{what} is not text")
    checkpoint: Checkpoint = (
        verify_checkpoint(note, key, origin=log_id) if key else parse_checkpoint(note)
    )
    if checkpoint.origin != log_id:
        raise VerificationError(
            f"{what} is for log {checkpoint.origin!r}, not {log_id!r}", rule=Rule.CHECKPOINT_ORIGIN
        )
    if (checkpoint.size, checkpoint.root) != (size, root):
        raise VerificationError(
            f"{what} states size {checkpoint.size} root {checkpoint.root.hex()}, "
            f"the proof is for size {size} root {root.hex()}",
            rule=Rule.PROOF_CHECKPOINT,
        )
    signed = "signature verified" if key else "signature NOT checked (no key given)"
    return f"{what} at size {size} ({checkpoint.time}) matches; {signed}"


def check_inclusion(
    doc: dict[str, Any], *, key: Ed25519PublicKey | None, checkpoint: str | None
) -> list[str]:
    """Verify an inclusion proof document; the lines say what was checked."""
    log_id, index, size = doc.get("log_id"), _count(doc, "leaf_index"), _count(doc, "tree_size")
    if not isinstance(log_id, str) or not isinstance(doc.get("record"), str):
        raise _proof_error("log_id and record must be text")
    _check_log_key(log_id, key)
    line = doc["record"].encode("utf-8")
    leaf, root = _hash(doc, "leaf_hash"), _hash(doc, "root")
    if merkle.leaf_hash(line) != leaf:
        raise VerificationError(
            f"leaf hash does not match the record: expected {leaf.hex()}, "
            f"calculated {merkle.leaf_hash(line).hex()}",
            rule=Rule.PROOF_LEAF,
        )
    try:
        record = parse_canonical(line)
    except CrossmatchError as e:
        raise VerificationError(
            f"record is not canonical JSON: {e.message}", rule=Rule.PROOF_RECORD
        ) from e
    if not isinstance(record, dict) or record.get("log") != log_id or record.get("seq") != index:
        raise VerificationError(
            f"the record is not record {index} of log {log_id}", rule=Rule.PROOF_RECORD
        )
    if key is not None:
        verify_record_signature(record, key)
    merkle.verify_inclusion(index=index, size=size, leaf_hash=leaf, proof=_path(doc), root=root)
    lines = [
        f"record {index} ({record.get('event')}, {record.get('time')}) is in log {log_id} "
        f"at tree size {size}, root {root.hex()}",
        "record signature verified" if key else "record signature NOT checked (no key given)",
    ]
    if doc.get("checkpoint") is not None:
        lines.append(_signed_checkpoint(doc["checkpoint"], key, log_id, size, root, "checkpoint"))
    if checkpoint is not None:
        lines.append(_signed_checkpoint(checkpoint, key, log_id, size, root, "your checkpoint"))
    return lines


def check_consistency(
    doc: dict[str, Any], *, key: Ed25519PublicKey | None, checkpoint: str | None
) -> list[str]:
    """Verify a consistency proof document; the lines say what was checked."""
    log_id = doc.get("log_id")
    if not isinstance(log_id, str):
        raise _proof_error("log_id must be text")
    _check_log_key(log_id, key)
    size1, size2 = _count(doc, "size1"), _count(doc, "size2")
    root1, root2 = _hash(doc, "root1"), _hash(doc, "root2")
    merkle.verify_consistency(size1=size1, size2=size2, root1=root1, root2=root2, proof=_path(doc))
    lines = [f"log {log_id} at size {size1} is a prefix of the log at size {size2}"]
    for name, size, root in (("checkpoint1", size1, root1), ("checkpoint2", size2, root2)):
        if doc.get(name) is not None:
            lines.append(_signed_checkpoint(doc[name], key, log_id, size, root, name))
    if checkpoint is not None:
        held = parse_checkpoint(checkpoint)
        size, root = (size1, root1) if held.size == size1 else (size2, root2)
        lines.append(_signed_checkpoint(checkpoint, key, log_id, size, root, "your checkpoint"))
    return lines


def check_proof(
    doc: Any, *, key: Ed25519PublicKey | None = None, checkpoint: str | None = None
) -> list[str]:
    """Verify an inclusion or consistency proof document; VerificationError on any failure."""
    if not isinstance(doc, dict):
        raise _proof_error("not a JSON object")
    if doc.get("v") == INCLUSION_VERSION:
        return check_inclusion(doc, key=key, checkpoint=checkpoint)
    if doc.get("v") == CONSISTENCY_VERSION:
        return check_consistency(doc, key=key, checkpoint=checkpoint)
    raise _proof_error(f"unknown version {doc.get('v')!r}")
