"""An opened node directory: config, keys, certificates, store and audit log."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node import pki
from node.config import NodeConfig, load_config
from node.pki.keys import read_consortium_key
from node.state.auditlog import AuditLog
from node.state.files import atomic_write, check_private, read_or_raise, read_secret
from node.state.leases import ProcessLease
from node.state.recovery import recover_rounds
from node.state.store import Store
from protocol.audit.events import EventBody
from protocol.audit.records import make_log_id
from protocol.errors import ConfigError, CrossmatchError, PolicyError
from protocol.policy import DEFAULT_POLICY, Policy
from protocol.policy_document import verify_signed_policy
from protocol.rollback import crl_next_update
from protocol.rules import Rule
from protocol.timestamps import format_utc

Clock = Callable[[], datetime]
Observer = Callable[[str, dict[str, Any]], None]

# Test-only: shifts this process's node clock (audit times, certificate and policy checks,
# schedules, rate limits) to simulate clock skew between nodes. TLS itself uses the system
# clock. Never set it in production.
CLOCK_OFFSET_ENV = "CROSSMATCH_CLOCK_OFFSET_SECONDS"
HUB_MARKER = "hub.role"  # in a hub's directory: this node is a consortium hub


def utc_now() -> datetime:
    return datetime.now(UTC)


def node_clock() -> Clock:
    """The system clock, shifted by CROSSMATCH_CLOCK_OFFSET_SECONDS when set (tests only)."""
    raw = os.environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not raw:
        return utc_now
    try:
        offset = timedelta(seconds=float(raw))
    except ValueError as e:
        raise ConfigError(f"{CLOCK_OFFSET_ENV}={raw!r} is not a number of seconds") from e
    return lambda: datetime.now(UTC) + offset


def iso(t: datetime) -> str:
    return format_utc(t)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def audit_log_id(lab: str, public_key: Ed25519PublicKey) -> str:
    return make_log_id(lab, public_key)


def load_audit_key(path: Path) -> Ed25519PrivateKey:
    data = read_secret(path, "audit key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"cannot load audit key {path}: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def read_file(path: Path, what: str) -> bytes:
    hint = " (run `crossmatch cert install` first?)" if what == "certificate" else ""
    return read_or_raise(path, what, hint=hint)


class Node:
    """Everything a command needs from a node directory, opened once."""

    def __init__(self, node_dir: Path, *, clock: Clock | None = None, open_audit: bool = True):
        self.clock = clock or node_clock()
        clock = self.clock
        self.config: NodeConfig = load_config(Path(node_dir))
        self.paths = self.config.paths
        self.lab = self.config.lab
        # A consortium hub (`crossmatch hub init`) never holds the fingerprint key: it
        # routes blinded points only, and the key would let it fingerprint guesses.
        self.is_hub = (self.paths.root / HUB_MARKER).exists()
        if not self.is_hub:
            check_private(self.paths.consortium_key, "consortium key")
        self.consortium_key = b"" if self.is_hub else read_consortium_key(self.paths.consortium_key)
        self.audit_key = load_audit_key(self.paths.audit_key)
        check_private(self.paths.tls_key, "TLS key")
        self.tls_key_pem = read_file(self.paths.tls_key, "TLS key")
        self.tls_cert_pem = read_file(self.paths.tls_cert, "certificate")
        self.ca_pem = read_file(self.paths.ca_cert, "CA certificate")
        self.policy: Policy = DEFAULT_POLICY
        self.policy_problem = ""  # why the installed policy cannot be used ("" when it can)
        self._policy_rule: Rule = Rule.POLICY_UNSIGNED
        self._policy_stamp: tuple[int, int] | None | bool = False  # False: never loaded
        self._crl: tuple[tuple[int, int] | None, frozenset[int], datetime | None] = (
            None,
            frozenset(),
            None,
        )
        self.observers: list[Observer] = []
        self.round_hooks: list[Callable[[str, str], None]] = []
        self._reload_lock = threading.Lock()
        self.refresh_policy()
        self.log_id = audit_log_id(self.lab, self.audit_key.public_key())
        self.store = Store(self.paths.db)
        self.audit: AuditLog | None = None
        if open_audit:
            self.audit = AuditLog.open(
                self.paths.audit_log, self.audit_key, log_id=self.log_id, now=clock()
            )
        # Rounds this process starts name its lease; rounds a dead process left open
        # are closed now, before this process runs any (node.state.recovery).
        self.lease: ProcessLease | None = None
        self.recovered: list[str] = []
        if self.audit is not None:  # only a node that can log can run (or close) a round
            self.lease = ProcessLease(self.paths.leases)
            self.recovered = self.close_interrupted_rounds()

    def reload_config(self) -> None:
        self.config = load_config(self.paths.root)

    def remember_peer_key(self, lab: str, key: Ed25519PublicKey) -> None:
        """Keep each peer's CA-certified audit key in NODE_DIR/peers/<lab>.pub, so that
        `audit verify NODE_DIR` checks the peer receipts in our log without any set-up."""
        path = self.paths.peer_key(lab)
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if not path.exists() or path.read_bytes() != pem:
            atomic_write(path, pem)

    def now(self) -> datetime:
        return self.clock()

    # -- consortium policy -----------------------------------------------------------------

    def refresh_policy(self) -> None:
        """(Re)load policy.signed if it changed on disk; a running daemon picks up installs."""
        stamp = file_stamp(self.paths.policy)
        with self._reload_lock:
            if stamp == self._policy_stamp:
                return
            policy, problem, rule = (
                DEFAULT_POLICY,
                "no signed consortium policy installed (`crossmatch policy install NODE_DIR FILE`)",
                Rule.POLICY_UNSIGNED,
            )
            if stamp is not None:
                try:
                    policy = verify_signed_policy(
                        self.paths.policy.read_bytes(), ca_public_key(self.ca_pem)
                    ).policy
                    problem = ""
                except (OSError, CrossmatchError) as e:
                    problem = f"installed policy is not usable: {e}"
                    rule = getattr(e, "rule", None) or Rule.POLICY_UNSIGNED
            self.policy, self.policy_problem, self._policy_rule = policy, problem, rule
            self._policy_stamp = stamp

    def require_policy(self) -> Policy:
        """The signed, currently valid policy rounds run under; PolicyError naming the rule."""
        self.refresh_policy()
        policy, problem = self.policy, self.policy_problem
        if problem:
            raise PolicyError(problem, rule=self._policy_rule)
        policy.check_time(self.now())
        return policy

    # -- revocation --------------------------------------------------------------------------

    def revoked_serials(self) -> frozenset[int]:
        """Serials on the installed CRL, re-read whenever the file changes.

        PolicyError when the CRL is past its ``next_update`` (rule crl-stale: its
        issuer may have revoked someone since), or when the policy requires a CRL and
        none is installed (rule crl-missing).
        """
        stamp = file_stamp(self.paths.crl)
        cached_stamp, serials, next_update = self._crl
        if stamp != cached_stamp:
            serials, next_update = frozenset(), None
            if stamp is not None:
                data = self.paths.crl.read_bytes()
                serials = pki.load_revoked_serials(data, self.ca_pem)
                next_update = crl_next_update(data)
            self._crl = (stamp, serials, next_update)
        if stamp is None and self.policy.require_crl:
            raise PolicyError(
                f"the consortium policy requires a CRL and none is installed at {self.paths.crl}",
                rule=Rule.CRL_MISSING,
            )
        if next_update is not None and self.now() > next_update:
            raise PolicyError(
                f"the installed CRL was due for renewal at {iso(next_update)}; "
                "install a fresh one (`crossmatch crl install`)",
                rule=Rule.CRL_STALE,
            )
        return serials

    def check_still_trusted(self, peer: pki.PeerIdentity) -> None:
        """Revocation and expiry, again, at a later stage of a round (the CRL may have
        changed since the peer authenticated)."""
        if peer.serial in self.revoked_serials():
            raise PolicyError(
                f"certificate serial {peer.serial} of lab {peer.lab} was revoked during the round",
                rule=Rule.CERTIFICATE_REVOKED,
            )
        if self.now() > peer.not_after:
            raise PolicyError(
                f"certificate of lab {peer.lab} expired during the round",
                rule=Rule.CERTIFICATE_EXPIRED,
            )

    def peer_identity(self, cert_pem: bytes) -> pki.PeerIdentity:
        return pki.identity_from_certificate(
            cert_pem, self.ca_pem, now=self.now(), revoked=self.revoked_serials()
        )

    def log(self, event: str, body: Mapping[str, object]) -> dict[str, object]:
        assert self.audit is not None, "node opened without its audit log"
        record = self.audit.append(event, dict(body), now=self.now())
        for observe in self.observers:  # metrics and structured logs; never fatal
            try:
                observe(event, dict(body))
            except Exception:  # noqa: BLE001 - an observer bug must not fail a round
                logging.getLogger("crossmatch.node").exception("observer failed on %s", event)
        return record

    def record(self, body: EventBody) -> dict[str, object]:
        """Append a typed audit body (``protocol/audit/events.py``) as its event."""
        return self.log(body.EVENT, body.to_body())

    def require_audit(self) -> None:
        """PolicyError (rule disk-full or write_failed) while the audit log cannot be written:
        no round may start that could not be recorded."""
        if self.audit is not None and not self.audit.writable(self.now()):
            raise PolicyError(
                "this node cannot write its audit log (disk full?); it resumes "
                "by itself once it can",
                rule=Rule.DISK_FULL,
            )

    def close_interrupted_rounds(self) -> list[str]:
        """Close (aborted, rule node-restarted) the rounds of processes that died mid-round:
        at open, and on the daemon's housekeeping for a CLI round killed next to it."""
        if self.audit is None:
            return []
        closed = recover_rounds(self.store, self.audit, self.paths.leases, self.now)
        if closed:
            logging.getLogger("crossmatch.node").warning(
                "closed %d round(s) left open by a process that stopped mid-round "
                "(aborted, rule node-restarted): %s",
                len(closed),
                ", ".join(closed),
            )
        return closed

    def round_started(self, round_id: str, role: str) -> None:
        """Tell observers a round began (for durations and in-flight gauges)."""
        for hook in self.round_hooks:
            hook(round_id, role)

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        self.store.close()
        if self.lease is not None:
            self.lease.release()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


def ca_public_key(ca_pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = x509.load_pem_x509_certificate(ca_pem).public_key()
    except ValueError as e:
        raise ConfigError(f"CA certificate is not PEM X.509: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("consortium CA key must be ECDSA")
    return key
