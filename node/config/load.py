"""Reading node.toml into a checked NodeConfig (one readable ConfigError per mistake), and
writing it back."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

from node.config.paths import NodePaths
from node.config.settings import (
    ROUND_MODES,
    LimitsConfig,
    NodeConfig,
    PeerConfig,
    ScheduleConfig,
)
from node.state.files import atomic_write
from protocol.errors import ConfigError
from protocol.identity import validate_lab_id
from protocol.padding import parse_padding

# Tables load_config reads; any other is kept as found (NodeConfig.extra).
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

_LIMIT_INTS = (
    "rpcs_per_peer",
    "max_concurrent_rpcs",
    "window_chunks",
    "min_chunk_elements",
    "refusal_records_per_minute",
    "log_queue",
)


def check_lab(lab: str) -> str:
    return validate_lab_id(lab)


def check_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"address {address!r} is not HOST:PORT")
    return address


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
