"""What one round's session needs from its node, named: no session takes the whole Node.

:class:`SessionDeps` is taken once, when a round is accepted (responder) or proposed
(initiator): the round runs under the settings and the policy in force at its start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node.net.recorder import RoundRecorder
from node.pki import PeerIdentity
from node.runtime import Node
from node.state.auditlog import AuditLog
from protocol.policy import Policy


@dataclass(frozen=True)
class RoundSettings:
    """The [round] and [limits] values of node.toml a session uses."""

    workers: int
    chunk_size: int
    window_chunks: int
    min_chunk_elements: int
    round_timeout: float
    epoch_days: float


@dataclass(frozen=True)
class SessionDeps:
    lab: str
    log_id: str
    audit_key: Ed25519PrivateKey  # signs our receipt
    audit: AuditLog | None  # its head goes into our receipt; checkpointed after a commit
    recorder: RoundRecorder
    policy: Policy
    settings: RoundSettings
    node_dir: Path  # epoch keys and sealed dispute records live under it
    now: Callable[[], datetime]
    still_trusted: Callable[[PeerIdentity], None]  # PolicyError once revoked or expired
    remember_peer_key: Callable[[str, Ed25519PublicKey], None]

    @classmethod
    def of(cls, node: Node) -> SessionDeps:
        c = node.config
        return cls(
            lab=node.lab,
            log_id=node.log_id,
            audit_key=node.audit_key,
            audit=node.audit,
            recorder=RoundRecorder.for_node(node),
            policy=node.policy,
            settings=RoundSettings(
                workers=c.workers,
                chunk_size=c.chunk_size,
                window_chunks=c.limits.window_chunks,
                min_chunk_elements=c.limits.min_chunk_elements,
                round_timeout=c.round_timeout,
                epoch_days=c.epoch_days,
            ),
            node_dir=node.paths.root,
            now=node.now,
            still_trusted=node.check_still_trusted,
            remember_peer_key=node.remember_peer_key,
        )
