"""The node directory: where each file lives, and node.toml.

NODE_DIR/
  node.toml              this node's settings and its peers
  tls/node.key, node.crt TLS identity (the certificate binds lab id and audit key)
  tls/ca.crt             the consortium CA; tls/crl.pem its revocation list, if any
  keys/audit.key, .pub   Ed25519 key that signs the audit log and round receipts
  keys/consortium.key    shared fingerprint key of the consortium
  crossmatch.db          SQLite store: signals, rounds, matches
  audit.log              append-only signed audit log
  run/address            the address `serve` is listening on (written at start)
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from node.files import atomic_write
from protocol.errors import ConfigError

LAB_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
CONSORTIUM_KEY_HEADER = "crossmatch-consortium-key-v1:"


def check_lab(lab: str) -> str:
    if not LAB_RE.match(lab or ""):
        raise ConfigError(
            f"lab id {lab!r} is not valid: use lowercase letters, digits and '-' (a DNS label)"
        )
    return lab


def check_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"address {address!r} is not HOST:PORT")
    return address


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
        return self.root / "policy.toml"


@dataclass
class PeerConfig:
    lab: str
    address: str


@dataclass
class NodeConfig:
    root: Path
    lab: str
    listen: str
    default_region: str = "US"
    chunk_size: int = 8192
    workers: int = 2
    round_timeout: float = 3600.0
    peers: list[PeerConfig] = field(default_factory=list)

    @property
    def paths(self) -> NodePaths:
        return NodePaths(self.root)

    def peer(self, lab: str) -> PeerConfig:
        for p in self.peers:
            if p.lab == lab:
                return p
        known = ", ".join(p.lab for p in self.peers) or "none"
        raise ConfigError(f"unknown peer {lab!r} (known peers: {known}); add it with `peer add`")

    def to_toml(self) -> dict[str, object]:
        return {
            "lab": self.lab,
            "listen": self.listen,
            "default_region": self.default_region,
            "round": {
                "chunk_size": self.chunk_size,
                "workers": self.workers,
                "timeout_seconds": self.round_timeout,
            },
            "peers": [{"lab": p.lab, "address": p.address} for p in self.peers],
        }


def load_config(node_dir: Path) -> NodeConfig:
    paths = NodePaths(Path(node_dir))
    if not paths.config.exists():
        raise ConfigError(f"{paths.config} not found: is {node_dir} a node directory? "
                          "(create one with `crossmatch init`)")
    try:
        data = tomllib.loads(paths.config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{paths.config}: {e}") from e
    try:
        rounds = data.get("round", {})
        cfg = NodeConfig(
            root=Path(node_dir),
            lab=check_lab(data["lab"]),
            listen=check_address(data["listen"]),
            default_region=str(data.get("default_region", "US")),
            chunk_size=int(rounds.get("chunk_size", 8192)),
            workers=int(rounds.get("workers", 2)),
            round_timeout=float(rounds.get("timeout_seconds", 3600.0)),
            peers=[
                PeerConfig(check_lab(p["lab"]), check_address(p["address"]))
                for p in data.get("peers", [])
            ],
        )
    except KeyError as e:
        raise ConfigError(f"{paths.config}: missing setting {e.args[0]!r}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{paths.config}: {e}") from e
    if not 1 <= cfg.chunk_size <= 100_000:
        raise ConfigError(f"{paths.config}: round.chunk_size must be 1..100000")
    return cfg


def save_config(cfg: NodeConfig) -> None:
    atomic_write(cfg.paths.config, tomli_w.dumps(cfg.to_toml()).encode("utf-8"))


def read_consortium_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read consortium key {path}: {e}") from e
    if not text.startswith(CONSORTIUM_KEY_HEADER):
        raise ConfigError(f"{path} is not a crossmatch consortium key file")
    try:
        key = bytes.fromhex(text[len(CONSORTIUM_KEY_HEADER) :])
    except ValueError as e:
        raise ConfigError(f"{path}: consortium key is not hex") from e
    if len(key) != 32:
        raise ConfigError(f"{path}: consortium key must be 32 bytes, got {len(key)}")
    return key


def format_consortium_key(key: bytes) -> bytes:
    return (CONSORTIUM_KEY_HEADER + key.hex() + "\n").encode("ascii")
