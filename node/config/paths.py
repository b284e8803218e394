"""The node directory: where each file lives (``NodePaths`` names every one).

NODE_DIR/
  node.toml              this node's settings and its peers
  tls/node.key, node.crt TLS identity (the certificate binds lab id and audit key)
  tls/node.csr           the certificate request, when the CA is elsewhere
  tls/ca.crt             the consortium CA; tls/crl.pem its revocation list, if any
  keys/audit.key, audit.pub  Ed25519 key that signs the audit log and round receipts
  keys/consortium.key    shared fingerprint key of the consortium
  crossmatch.db          SQLite store: signals, prompts, rounds, matches (0600)
  cache.db               SQLite: per-peer epoch keys, round caches, churn (0600, deletable)
  disclosures/           sealed round records for disputes (0600, purged after retention)
  audit.log              append-only signed audit log
  audit.checkpoint       the latest signed checkpoint of audit.log
  audit.log.quarantine   torn tail fragments cut off at open, if any ever were
  peers/<lab>.pub        each peer's certified audit key, kept at each round (for audit verify)
  policy.signed          the consortium policy, signed by the CA (`crossmatch policy install`)
  run/address            the address `serve` is listening on (written at start)
  run/metrics            the address of its Prometheus endpoint, if enabled
  run/schedule.json      the scheduler's view of every peer (read by `crossmatch status`)
  run/serve.log          the daemon's output when started by the sandbox (demo and tests)
  run/leases/            one flock'ed file per live process that opened the node (recovery)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node.state.auditlog import checkpoint_path, quarantine_path
from node.state.epochs import CACHE_FILE
from protocol.identity import validate_lab_id


@dataclass(frozen=True)
class NodePaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "node.toml"

    @property
    def tls_key(self) -> Path:
        return self.root / "tls" / "node.key"

    @property
    def tls_cert(self) -> Path:
        return self.root / "tls" / "node.crt"

    @property
    def tls_csr(self) -> Path:
        return self.root / "tls" / "node.csr"

    @property
    def ca_cert(self) -> Path:
        return self.root / "tls" / "ca.crt"

    @property
    def crl(self) -> Path:
        return self.root / "tls" / "crl.pem"

    @property
    def audit_key(self) -> Path:
        return self.root / "keys" / "audit.key"

    @property
    def audit_pub(self) -> Path:
        return self.root / "keys" / "audit.pub"

    @property
    def consortium_key(self) -> Path:
        return self.root / "keys" / "consortium.key"

    @property
    def db(self) -> Path:
        return self.root / "crossmatch.db"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    @property
    def address_file(self) -> Path:
        return self.root / "run" / "address"

    @property
    def policy(self) -> Path:
        return self.root / "policy.signed"

    @property
    def metrics_address_file(self) -> Path:
        return self.root / "run" / "metrics"

    @property
    def leases(self) -> Path:
        return self.root / "run" / "leases"

    @property
    def schedule_state(self) -> Path:
        return self.root / "run" / "schedule.json"

    @property
    def cache(self) -> Path:
        return self.root / CACHE_FILE

    @property
    def audit_checkpoint(self) -> Path:
        return checkpoint_path(self.audit_log)

    @property
    def audit_quarantine(self) -> Path:
        return quarantine_path(self.audit_log)

    @property
    def peers_dir(self) -> Path:
        return self.root / "peers"

    def peer_key(self, lab: str) -> Path:
        return self.peers_dir / f"{validate_lab_id(lab)}.pub"

    @property
    def serve_log(self) -> Path:
        return self.root / "run" / "serve.log"
