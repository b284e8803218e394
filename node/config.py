"""The node directory: where each file lives (``NodePaths`` names every one), and node.toml.

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

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from node.state.auditlog import checkpoint_path, quarantine_path
from node.state.epochs import CACHE_FILE
from node.state.files import atomic_write
from protocol.errors import ConfigError
from protocol.identity import validate_lab_id
from protocol.messages import MODES
from protocol.padding import parse_padding


def check_lab(lab: str) -> str:
    return validate_lab_id(lab)


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


ROUND_MODES = MODES
_KNOWN_TABLES = frozenset(
    {
        "lab",
        "listen",
        "default_region",
        "round",
        "schedule",
        "daemon",
        "logging",
        "metrics",
        "peers",
        "limits",
    }
)


@dataclass
class PeerConfig:
    lab: str
    address: str
    # Scheduled rounds (run by whichever side of the pair is the initiator, see
    # node/schedule/scheduler.py): every interval_seconds, or at the times of a cron expression.
    interval_seconds: float | None = None
    cron: str | None = None
    mode: str = "reveal"
    kinds: list[str] | None = None  # None: every kind held that the policy allows

    @property
    def scheduled(self) -> bool:
        return self.interval_seconds is not None or self.cron is not None

    def to_toml(self) -> dict[str, object]:
        out: dict[str, object] = {"lab": self.lab, "address": self.address}
        if self.interval_seconds is not None:
            out["interval_seconds"] = self.interval_seconds
        if self.cron is not None:
            out["cron"] = self.cron
        if self.mode != "reveal":
            out["mode"] = self.mode
        if self.kinds is not None:
            out["kinds"] = list(self.kinds)
        return out


@dataclass
class ScheduleConfig:
    """[schedule]: how the daemon's scheduler spaces, retries and bounds rounds."""

    enabled: bool = True
    jitter_seconds: float = 30.0  # random delay added to every scheduled time
    retry_base_seconds: float = 30.0  # first retry after a failure; doubles each time
    retry_max_seconds: float = 1800.0
    max_concurrent_rounds: int = 2
    purge_interval_seconds: float = 3600.0  # retention purge of old matches

    def to_toml(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "jitter_seconds": self.jitter_seconds,
            "retry_base_seconds": self.retry_base_seconds,
            "retry_max_seconds": self.retry_max_seconds,
            "max_concurrent_rounds": self.max_concurrent_rounds,
            "purge_interval_seconds": self.purge_interval_seconds,
        }


@dataclass
class LimitsConfig:
    """[limits]: what a peer may hold of this node (docs/reliability.md lists the defaults)."""

    pending_ttl_seconds: float = 120.0  # an accepted round waits this long for its stream
    first_message_seconds: float = 10.0  # an Exchange stream must send Start within this
    peer_silence_seconds: float = 120.0  # longest wait for the peer's next message in a round
    rpcs_per_peer: int = 4  # concurrent RPCs one client certificate may hold
    max_concurrent_rpcs: int = 64  # all callers; beyond this gRPC answers RESOURCE_EXHAUSTED
    window_chunks: int = 8  # chunks of a peer's stream queued for our workers at most
    min_chunk_elements: int = 256  # a peer's chunk smaller than this (but the last) is refused
    refusal_records_per_minute: int = 6  # per caller; beyond, refusals are counted and summarised
    log_queue: int = 10_000  # application log lines waiting for the writer; beyond, dropped

    def to_toml(self) -> dict[str, object]:
        return dict(vars(self))


_LIMIT_INTS = (
    "rpcs_per_peer",
    "max_concurrent_rpcs",
    "window_chunks",
    "min_chunk_elements",
    "refusal_records_per_minute",
    "log_queue",
)


@dataclass
class NodeConfig:
    root: Path
    lab: str
    listen: str
    default_region: str = "US"
    chunk_size: int = 8192
    workers: int = 2
    round_timeout: float = 3600.0
    pad_to: str | int = "off"  # [round] pad_to: "off", "pow2" or a bucket size (padding.py)
    epoch_days: float = 7.0  # [round] epoch_days: life of a per-peer PSI key; 0: fresh per round
    peers: list[PeerConfig] = field(default_factory=list)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    metrics_listen: str | None = None  # [metrics] listen = "127.0.0.1:9464"; None: off
    log_format: str = "json"  # [logging] format = "json" | "text"
    grace_seconds: float = 10.0  # [daemon] grace_seconds: in-flight rounds at shutdown
    # Tables this module does not read ([[hooks]], [ui], ...): kept as found, so that
    # `peer add` rewriting node.toml never drops another component's settings.
    extra: dict[str, object] = field(default_factory=dict)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

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
        out: dict[str, object] = {
            "lab": self.lab,
            "listen": self.listen,
            "default_region": self.default_region,
            "round": {
                "chunk_size": self.chunk_size,
                "workers": self.workers,
                "timeout_seconds": self.round_timeout,
                "pad_to": self.pad_to,
                "epoch_days": self.epoch_days,
            },
            "schedule": self.schedule.to_toml(),
            "daemon": {"grace_seconds": self.grace_seconds},
            "logging": {"format": self.log_format},
            "limits": self.limits.to_toml(),
        }
        if self.metrics_listen is not None:
            out["metrics"] = {"listen": self.metrics_listen}
        out["peers"] = [p.to_toml() for p in self.peers]
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out


def load_config(node_dir: Path) -> NodeConfig:
    paths = NodePaths(Path(node_dir))
    if not paths.config.exists():
        raise ConfigError(
            f"{paths.config} not found: is {node_dir} a node directory? "
            "(create one with `crossmatch init`)"
        )
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
            pad_to=rounds.get("pad_to", "off"),
            epoch_days=float(rounds.get("epoch_days", 7.0)),
            peers=[_load_peer(p) for p in data.get("peers", [])],
            schedule=_load_schedule(data.get("schedule", {})),
            metrics_listen=_load_metrics(data.get("metrics", {})),
            log_format=str(data.get("logging", {}).get("format", "json")),
            grace_seconds=float(data.get("daemon", {}).get("grace_seconds", 10.0)),
            extra={k: v for k, v in data.items() if k not in _KNOWN_TABLES},
            limits=_load_limits(data.get("limits", {})),
        )
    except KeyError as e:
        raise ConfigError(f"{paths.config}: missing setting {e.args[0]!r}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{paths.config}: {e}") from e
    if not 1 <= cfg.chunk_size <= 100_000:
        raise ConfigError(f"{paths.config}: round.chunk_size must be 1..100000")
    try:
        parse_padding(cfg.pad_to)  # a config error now rather than at the first round
    except ConfigError as e:
        raise ConfigError(f"{paths.config}: {e.message}") from e
    if cfg.epoch_days < 0:
        raise ConfigError(f"{paths.config}: round.epoch_days must be >= 0")
    if cfg.log_format not in ("json", "text"):
        raise ConfigError(f"{paths.config}: logging.format must be 'json' or 'text'")
    if cfg.schedule.max_concurrent_rounds < 1:
        raise ConfigError(f"{paths.config}: schedule.max_concurrent_rounds must be >= 1")
    return cfg


def _load_peer(p: dict[str, object]) -> PeerConfig:
    interval = p.get("interval_seconds")
    cron = p.get("cron")
    kinds = p.get("kinds")
    peer = PeerConfig(
        check_lab(str(p["lab"])),
        check_address(str(p["address"])),
        interval_seconds=float(interval) if interval is not None else None,  # type: ignore[arg-type]
        cron=str(cron) if cron is not None else None,
        mode=str(p.get("mode", "reveal")),
        kinds=[str(k) for k in kinds] if isinstance(kinds, list) else None,
    )
    if peer.interval_seconds is not None and peer.interval_seconds <= 0:
        raise ValueError(f"peer {peer.lab}: interval_seconds must be positive")
    if peer.mode not in ROUND_MODES:
        raise ValueError(f"peer {peer.lab}: mode must be 'reveal' or 'count'")
    if peer.cron is not None:
        from node.schedule.cron import parse_cron

        parse_cron(peer.cron)  # a bad expression is a config error now, not at 3 a.m.
    return peer


def _load_schedule(s: dict[str, object]) -> ScheduleConfig:
    d = ScheduleConfig()
    return ScheduleConfig(
        enabled=bool(s.get("enabled", d.enabled)),
        jitter_seconds=float(s.get("jitter_seconds", d.jitter_seconds)),  # type: ignore[arg-type]
        retry_base_seconds=float(s.get("retry_base_seconds", d.retry_base_seconds)),  # type: ignore[arg-type]
        retry_max_seconds=float(s.get("retry_max_seconds", d.retry_max_seconds)),  # type: ignore[arg-type]
        max_concurrent_rounds=int(s.get("max_concurrent_rounds", d.max_concurrent_rounds)),  # type: ignore[call-overload]
        purge_interval_seconds=float(s.get("purge_interval_seconds", d.purge_interval_seconds)),  # type: ignore[arg-type]
    )


def _load_limits(section: dict[str, object]) -> LimitsConfig:
    d = LimitsConfig()
    unknown = set(section) - set(vars(d))
    if unknown:
        raise ValueError(f"[limits] has unknown setting(s) {', '.join(sorted(unknown))}")
    values: dict[str, object] = {}
    for name, default in vars(d).items():
        raw = section.get(name, default)
        value = int(raw) if name in _LIMIT_INTS else float(raw)  # type: ignore[call-overload, arg-type]
        if value <= 0:
            raise ValueError(f"limits.{name} must be positive")
        values[name] = value
    return LimitsConfig(**values)  # type: ignore[arg-type]


def _load_metrics(m: dict[str, object]) -> str | None:
    listen = m.get("listen")
    return check_address(str(listen)) if listen else None


def save_config(cfg: NodeConfig) -> None:
    atomic_write(cfg.paths.config, tomli_w.dumps(cfg.to_toml()).encode("utf-8"))
