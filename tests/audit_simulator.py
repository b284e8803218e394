"""Two labs that run pretend rounds and write real, signed audit logs.

No network and no PSI: a "round" here is the bookkeeping a real round ends with
(both heads, both receipts signed with real Ed25519 keys, one round_completed
record on each side, then checkpoints), which is all the audit trail sees.
``MemoryLog`` keeps lines in memory for pure tests; the same code drives the
real ``node.state.auditlog.AuditLog`` for file and CLI tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.audit.canonical import parse_canonical
from protocol.audit.checkpoint import make_checkpoint, sign_checkpoint
from protocol.audit.events import (
    NodeStarted,
    RoundAborted,
    RoundCompleted,
    RoundRefused,
    SignalsImported,
)
from protocol.audit.records import (
    GENESIS_EVENT,
    build_record,
    encode_record,
    genesis_body,
    make_log_id,
    parse_time,
    sign_record,
)
from protocol.audit.verify import LogVerifier
from protocol.receipts import build_receipt, sign_receipt

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def fixed_key(seed: str) -> Ed25519PrivateKey:
    """Deterministic keys, so failures reproduce."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


class LogLike(Protocol):
    def append(self, event: str, body: dict[str, Any], *, now: datetime) -> dict[str, Any]: ...
    def head(self) -> tuple[int, bytes]: ...
    def checkpoint(self, *, now: datetime) -> str: ...


class MemoryLog:
    """The AuditLog contract over a list of lines (pure: no files)."""

    def __init__(
        self, key: Ed25519PrivateKey, log_id: str, now: datetime, lines: list[bytes] | None = None
    ):
        """A new log, or (with ``lines``) one that continues those lines."""
        self.key, self.log_id = key, log_id
        self.lines: list[bytes] = []
        self.notes: list[str] = []
        self._verifier = LogVerifier(public_key=key.public_key(), log_id=log_id, keep=False)
        for line in lines or []:
            self._verifier.feed(line)
            self.lines.append(line)
        if not self.lines:
            self.append(GENESIS_EVENT, genesis_body(log_id, key.public_key()), now=now)

    def append(self, event: str, body: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        last = self._verifier.last_time
        now = max(now, last) if last is not None else now  # as AuditLog: time never goes back
        record = sign_record(
            build_record(
                log_id=self.log_id,
                seq=self._verifier.size,
                time=now,
                event=event,
                body=body,
                prev=self._verifier.last_leaf,
            ),
            self.key,
        )
        line = encode_record(record)
        self._verifier.feed(line)
        self.lines.append(line)
        return record

    def head(self) -> tuple[int, bytes]:
        return self._verifier.size, self._verifier.root

    def checkpoint(self, *, now: datetime) -> str:
        size, root = self.head()
        note = sign_checkpoint(
            make_checkpoint(origin=self.log_id, size=size, root=root, now=now), self.key
        )
        self.append("checkpoint", {"checkpoint": note}, now=now)
        self.notes.append(note)
        return note

    def data(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines)


@dataclass
class Lab:
    name: str
    key: Ed25519PrivateKey
    log: LogLike
    clock: list[datetime] = field(default_factory=lambda: [T0])

    @property
    def log_id(self) -> str:
        return make_log_id(self.name, self.key.public_key())

    def now(self) -> datetime:
        self.clock[0] += timedelta(minutes=7)
        return self.clock[0]


def memory_lab(name: str, seed: str | None = None) -> Lab:
    key = fixed_key(seed or name)
    return Lab(name, key, MemoryLog(key, make_log_id(name, key.public_key()), T0))


def _hex(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def run_round(
    initiator: Lab,
    responder: Lab,
    *,
    round_id: str,
    mode: str = "reveal",
    sizes: tuple[dict[str, int], dict[str, int]] = (
        {"email": 120, "phone": 40},
        {"email": 90, "phone": 55},
    ),
    intersection: dict[str, int] | None = None,
    checkpoint: bool = True,
) -> None:
    """Both sides end a round as the node does: heads, receipts, round_completed, checkpoint."""
    kinds = sorted(sizes[0])
    intersection = intersection or {k: min(sizes[0][k], sizes[1][k]) // 10 for k in kinds}
    transcript = hashlib.sha256(f"transcript:{round_id}".encode()).digest()
    size_map = {"initiator": sizes[0], "responder": sizes[1]}
    receipts = {}
    for lab in (initiator, responder):
        size, root = lab.log.head()
        unsigned = build_receipt(
            round_id=round_id,
            initiator=initiator.name,
            responder=responder.name,
            signer=lab.name,
            mode=mode,
            kinds=kinds,
            transcript_hash=transcript,
            sizes=size_map,
            intersection_sizes=intersection,
            log_id=lab.log_id,
            log_size=size,
            log_root=root,
        )
        receipts[lab.name] = sign_receipt(unsigned, lab.key)
    commitments = {
        lab.name: _hex(f"commitment:{round_id}:{lab.name}") for lab in (initiator, responder)
    }
    for lab, peer, role, own, theirs in (
        (initiator, responder, "initiator", sizes[0], sizes[1]),
        (responder, initiator, "responder", sizes[1], sizes[0]),
    ):
        completed = RoundCompleted(
            round_id=round_id,
            role=role,
            peer=peer.name,
            mode=mode,
            kinds=kinds,
            own_sizes=own,
            peer_sizes=theirs,
            intersection_sizes=intersection,
            policy_hash=_hex("policy:v1"),
            own_commitment=commitments[lab.name],
            peer_commitment=commitments[peer.name],
            transcript_hash=transcript.hex(),
            own_receipt=receipts[lab.name],
            peer_receipt=receipts[peer.name],
        )
        lab.log.append(completed.EVENT, completed.to_body(), now=lab.now())
        if checkpoint:
            lab.log.checkpoint(now=lab.now())


def round_id(n: int) -> str:
    return hashlib.sha256(f"round-{n}".encode()).hexdigest()[:32]


def populate(a: Lab, b: Lab, *, rounds: int = 3) -> None:
    """A realistic little history: starts, imports, rounds both ways, an abort, a refusal."""
    for lab in (a, b):
        started = NodeStarted(lab=lab.name, version="0.1.0")
        imported = SignalsImported(
            kind="email", added=120, already_held=0, total=120, source_sha256=_hex(lab.name)
        )
        for body in (started, imported):
            lab.log.append(body.EVENT, body.to_body(), now=lab.now())
    for n in range(rounds):
        first, second = (a, b) if n % 2 == 0 else (b, a)
        run_round(first, second, round_id=round_id(n), mode="reveal" if n % 3 else "count")
    aborted = RoundAborted(
        round_id=round_id(99),
        role="initiator",
        peer=b.name,
        stage="connect",
        reason="peer unavailable: connection refused",
    )
    a.log.append(aborted.EVENT, aborted.to_body(), now=a.now())
    refused = RoundRefused(
        peer="unknown",
        claimed_lab="lab-x",
        reason="certificate from another CA",
        rule="peer-certificate",
    )
    b.log.append(refused.EVENT, refused.to_body(), now=b.now())


def forge_log(
    lines: list[bytes],
    key: Ed25519PrivateKey,
    lab: str,
    *,
    keep: Callable[[dict[str, Any]], bool] = lambda record: True,
    edit: Callable[[dict[str, Any]], None] = lambda record: None,
) -> MemoryLog:
    """What a key holder can do: rebuild the whole log, dropping or editing records.

    Its own receipts are re-signed to name the new heads and new checkpoints are
    made, so the forgery verifies on its own. The peers' receipts are kept as
    they were: the forger cannot sign for a peer.
    """
    log_id = make_log_id(lab, key.public_key())
    first = parse_canonical(lines[0])
    forged = MemoryLog(key, log_id, parse_time(first["time"]))
    for line in lines[1:]:
        record = parse_canonical(line)
        if not keep(record):
            continue
        edit(record)
        when = parse_time(record["time"])
        if record["event"] == "checkpoint":
            forged.checkpoint(now=when)
            continue
        if record["event"] == "round_completed":
            size, root = forged.head()
            own = {k: v for k, v in record["body"]["own_receipt"].items() if k != "sig"}
            own["log"] = {"id": log_id, "size": size, "root": root.hex()}
            record["body"]["own_receipt"] = sign_receipt(own, key)
        forged.append(record["event"], record["body"], now=when)
    return forged
