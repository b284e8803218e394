"""What a verified audit log holds: ``VerifyReport``, as ``LogVerifier.report`` returns it.

Reconcile, prove, the HTML report and the CLI read it; ``summary_lines`` is what
``crossmatch audit verify`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.audit.checkpoint import Checkpoint
from protocol.identity import key_fingerprint

KEY_SUPPLIED = "supplied"
KEY_EMBEDDED = "embedded"


@dataclass
class VerifyReport:
    """What a verified log holds; ``records`` and ``roots`` feed reconcile, prove and report."""

    log_id: str
    lab: str
    size: int
    root: bytes
    public_key: Ed25519PublicKey
    key_source: str
    events: dict[str, int]
    checkpoints_in_log: int
    external_checkpoints: list[Checkpoint]
    peer_receipts_verified: int
    peer_receipts_unchecked: dict[str, int]
    recoveries: list[dict[str, Any]]
    warnings: list[str]
    first_time: str | None
    last_time: str | None
    records: list[dict[str, Any]] = field(repr=False, default_factory=list)
    lines: list[bytes] = field(repr=False, default_factory=list)
    roots: list[bytes] = field(repr=False, default_factory=list)
    leaf_hashes: list[bytes] = field(repr=False, default_factory=list)

    @property
    def key_fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def root_at(self, size: int) -> bytes:
        return self.roots[size]

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "lab": self.lab,
            "records": self.size,
            "root": self.root.hex(),
            "key_fingerprint": self.key_fingerprint,
            "key_source": self.key_source,
            "events": dict(sorted(self.events.items())),
            "checkpoints_in_log": self.checkpoints_in_log,
            "external_checkpoints": [
                {"size": c.size, "root": c.root.hex(), "time": c.time}
                for c in self.external_checkpoints
            ],
            "peer_receipts_verified": self.peer_receipts_verified,
            "peer_receipts_unchecked": dict(sorted(self.peer_receipts_unchecked.items())),
            "recoveries": self.recoveries,
            "warnings": self.warnings,
            "first_time": self.first_time,
            "last_time": self.last_time,
        }

    def summary_lines(self) -> list[str]:
        key_note = (
            "the key you supplied"
            if self.key_source == KEY_SUPPLIED
            else "the key embedded in record 0 (self-asserted: compare its fingerprint "
            "with one you obtained independently, or pass --key)"
        )
        lines = [
            f"log {self.log_id}: intact",
            f"  records: {self.size}, root {self.root.hex()}",
            f"  signatures: all {self.size} verified with {key_note}, "
            f"fingerprint {self.key_fingerprint}",
            f"  hash chain and Merkle tree: consistent; "
            f"{self.checkpoints_in_log} in-log checkpoints match",
        ]
        for c in self.external_checkpoints:
            lines.append(f"  external checkpoint at size {c.size} ({c.time}): consistent")
        lines.append(f"  peer receipts verified with peer keys: {self.peer_receipts_verified}")
        for peer, n in sorted(self.peer_receipts_unchecked.items()):
            lines.append(f"  peer receipts NOT signature-checked (no key for {peer}): {n}")
        for r in self.recoveries:
            lines.append(
                f"  recovery at record {r['seq']}: {r['bytes']} torn bytes "
                f"moved to {r['quarantine_file']}"
            )
        lines.extend(f"  warning: {w}" for w in self.warnings)
        events = ", ".join(f"{name} {n}" for name, n in sorted(self.events.items()))
        lines.append(f"  events: {events}")
        if self.first_time:
            lines.append(f"  from {self.first_time} to {self.last_time}")
        return lines
