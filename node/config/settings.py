"""node.toml's settings as typed values, with their defaults (no parsing: see load.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.config.paths import NodePaths
from protocol.errors import ConfigError
from protocol.messages import MODES

ROUND_MODES = MODES


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
    # [round] epoch_days: life of a per-peer PSI key (verified reveal rounds only, ADR
    # 0016); 0: fresh per round
    epoch_days: float = 7.0
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
