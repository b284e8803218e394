"""`crossmatch serve`: the node daemon's lifecycle.

One process: the gRPC responder with mutual TLS (plus the standard health and
reflection services), the scheduler that starts this node's rounds, a
housekeeping loop (retention purge, policy reload, expiry gauges) and, if
configured, the Prometheus endpoint. Publishes the bound addresses in
NODE_DIR/run/ (tests and the demo bind port 0), logs start and stop in the
audit log, and stops cleanly on SIGTERM or SIGINT: new rounds are refused,
in-flight rounds get a bounded grace period to finish, then are aborted
cleanly (logged as aborted, nothing stored), then a final checkpoint.
"""

from __future__ import annotations

import logging
import random
import signal
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from node import pki
from node.act.sweeper import HookSweeper
from node.config import PeerConfig
from node.consortium.client import run_consortium_round
from node.consortium.schedule import ConsortiumSchedule
from node.data.case_refresh import CaseRefresher
from node.net.channel import MAX_MESSAGE
from node.net.initiator import run_round
from node.net.limiter import PeerLimiter
from node.net.service import CrossmatchService
from node.ops.logs import log_event
from node.ops.metrics import Metrics
from node.ops.suites import ensure_suite
from node.runtime import Node, file_stamp, iso
from node.schedule.scheduler import (
    PeerSpec,
    Planner,
    Scheduler,
    Settings,
    SystemClock,
    initiator_of,
    peer_spec,
    state_document,
)
from node.state import disclosures
from node.state.cases_store import purge_entities_before
from node.state.epochs import EpochStore
from node.state.files import atomic_write
from node.state.sqlite import store_condition
from protocol.audit.events import EntitiesPurged, MatchesPurged, NodeStarted, NodeStopped
from protocol.errors import ConfigError, CrossmatchError, PolicyError
from protocol.rules import Rule
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

log = logging.getLogger("crossmatch.daemon")

SERVICE_NAME = "crossmatch.v1.Crossmatch"
HOUSEKEEPING_SECONDS = 60.0
RPC_WORKERS = 32


def server_options(round_timeout: float) -> list[tuple[str, object]]:
    """Transport limits: a peer cannot park idle connections, flood pings or open
    unbounded streams on one connection (docs/reliability.md)."""
    round_ms = int(round_timeout * 1000)
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", 8),  # per connection
        ("grpc.keepalive_time_ms", 60_000),  # we ping idle connections...
        ("grpc.keepalive_timeout_ms", 20_000),  # ...and drop those that do not answer
        ("grpc.http2.min_ping_interval_without_data_ms", 30_000),  # peers' pings, at most
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", 300_000),
        ("grpc.max_connection_age_ms", round_ms + 600_000),
        ("grpc.max_connection_age_grace_ms", round_ms),  # a running round may finish
    ]


class Daemon:
    def __init__(self, node: Node, *, rng: random.Random | None = None):
        self.node = node
        self.metrics = Metrics()
        limits = node.config.limits
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=RPC_WORKERS, thread_name_prefix="rpc"),
            interceptors=[PeerLimiter(limits.rpcs_per_peer, self.metrics.peer_busy.inc)],
            options=server_options(node.config.round_timeout),
            maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
        )
        self.service = CrossmatchService(node)
        self.service.on_suppressed.append(self.metrics.refusal_unrecorded)
        pb_grpc.add_CrossmatchServicer_to_server(self.service, self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        node.observers += [self.metrics.observe, log_event]
        node.round_hooks.append(self.metrics.round_started)
        self.scheduler = self._make_scheduler(rng or random.SystemRandom())
        self.cases = CaseRefresher(node)  # cases rebuilt after rounds, off their path
        self.hooks = HookSweeper(node)  # enforcement hooks, when node.toml configures any
        self.consortium = ConsortiumSchedule(node, run_consortium_round)
        self.stopped = threading.Event()
        self._housekeeping_stop = threading.Event()
        self._metrics_server: Any = None
        self._config_stamp: tuple[int, int] | None = None
        self.address = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        creds = pki.server_credentials(
            self.node.tls_key_pem, self.node.tls_cert_pem, self.node.ca_pem
        )
        cfg = self.node.config
        host, _, _ = cfg.listen.rpartition(":")
        try:
            port = self.server.add_secure_port(cfg.listen, creds)
        except RuntimeError as e:
            raise ConfigError(f"cannot listen on {cfg.listen}: {e}") from e
        if port == 0:
            raise ConfigError(f"cannot listen on {cfg.listen} (address in use?)")
        self.server.start()
        self.address = f"{host}:{port}"
        if cfg.metrics_listen:
            try:
                self._metrics_server, metrics_address = self.metrics.serve(cfg.metrics_listen)
            except OSError as e:
                raise ConfigError(f"cannot serve metrics on {cfg.metrics_listen}: {e}") from e
            atomic_write(self.node.paths.metrics_address_file, (metrics_address + "\n").encode())
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.metrics.up.set(1)
        self.node.record(NodeStarted(lab=self.node.lab, version=_version(), address=self.address))
        try:
            self.housekeeping()
        except Exception:  # serve anyway; the loop retries and the log says why
            log.exception("housekeeping failed")
        threading.Thread(target=self._housekeeping_loop, name="housekeeping", daemon=True).start()
        self.cases.start()
        self.hooks.start()
        if cfg.schedule.enabled:
            self.scheduler.start()
            self.consortium.start()  # acts only while the policy schedules this lab
        # Written last: its presence means the node is up and has done its first housekeeping.
        atomic_write(self.node.paths.address_file, (self.address + "\n").encode())
        log.info("lab %s listening on %s", self.node.lab, self.address)
        return self.address

    def stop(self, grace: float | None = None) -> None:
        """Refuse new rounds, give running ones ``grace`` seconds, then abort them cleanly."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.consortium.stop()
        grace = self.node.config.grace_seconds if grace is None else grace
        self.service.draining = True
        self._housekeeping_stop.set()
        self.health.enter_graceful_shutdown()
        scheduler_done = threading.Thread(
            target=self.scheduler.stop, args=(grace,), name="scheduler-stop"
        )
        scheduler_done.start()
        self.server.stop(grace).wait()
        self.service.abort_pending()  # opened, never streamed: recorded now, not at restart
        scheduler_done.join()
        self.cases.stop()
        self.hooks.stop()
        self.service.flush_refusals()
        self.metrics.up.set(0)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.node.record(NodeStopped(lab=self.node.lab, version=_version()))
        if self.node.audit is not None:
            self.node.audit.checkpoint(now=self.node.now())
        self.node.paths.address_file.unlink(missing_ok=True)
        self.node.paths.metrics_address_file.unlink(missing_ok=True)

    # -- scheduling --------------------------------------------------------------------------

    def _make_scheduler(self, rng: random.Random) -> Scheduler:
        s = self.node.config.schedule
        settings = Settings(
            jitter=s.jitter_seconds,
            retry_base=s.retry_base_seconds,
            retry_max=s.retry_max_seconds,
            max_concurrent=s.max_concurrent_rounds,
        )
        return Scheduler(
            Planner(settings, rng),
            run=self._run_scheduled,
            peers=self._scheduled_peers,
            clock=SystemClock(self.node.now),
            state_sink=self._publish_schedule,
        )

    def _scheduled_peers(self) -> tuple[list[PeerSpec], dict[str, float]]:
        """Peers this node initiates rounds with (re-read when node.toml changes)."""
        self._reload_config_if_changed()
        self.node.refresh_policy()
        planner = self.scheduler.planner
        gap = float(self.node.policy.min_interval_seconds)
        if planner.settings.min_gap != gap:
            planner.settings = replace(planner.settings, min_gap=gap)
        specs = [
            peer_spec(p.lab, p.interval_seconds, p.cron)
            for p in self.node.config.peers
            if p.scheduled and initiator_of(self.node.lab, p.lab) == self.node.lab
        ]
        last: dict[str, float] = {}
        for spec in specs:
            if spec.lab not in planner.plans:
                last_start = _last_completed_start(self.node, spec.lab)
                if last_start is not None:
                    last[spec.lab] = last_start
        return specs, last

    def _reload_config_if_changed(self) -> None:
        stamp = file_stamp(self.node.paths.config)
        if stamp != self._config_stamp:
            if self._config_stamp is not None:
                self.node.reload_config()
            self._config_stamp = stamp

    def _run_scheduled(self, peer_lab: str, cancel: threading.Event) -> None:
        peer = self.node.config.peer(peer_lab)
        kinds = scheduled_kinds(self.node, peer)
        summary = run_round(self.node, peer_lab, mode=peer.mode, kinds=kinds, cancel=cancel)
        log.info(
            "scheduled round with %s completed",
            peer_lab,
            extra={
                "fields": {
                    "peer": peer_lab,
                    "round_id": summary.round_id,
                    "intersection_sizes": summary.intersection_sizes,
                }
            },
        )

    def _publish_schedule(self, peers: dict[str, object]) -> None:
        self.metrics.scheduler_state(peers)  # type: ignore[arg-type]
        try:
            atomic_write(
                self.node.paths.schedule_state,
                state_document(self.node.lab, self.node.now(), peers),
            )
        except OSError as e:
            log.warning("cannot write %s: %s", self.node.paths.schedule_state, e)

    # -- housekeeping ------------------------------------------------------------------------

    def _housekeeping_loop(self) -> None:
        interval = min(HOUSEKEEPING_SECONDS, self.node.config.schedule.purge_interval_seconds)
        while not self._housekeeping_stop.wait(interval):
            try:
                self.housekeeping()
            except Exception:  # keep serving; the next pass tries again
                log.exception("housekeeping failed")

    def housekeeping(self) -> None:
        self.service.flush_refusals()
        self.node.close_interrupted_rounds()  # a CLI round killed while we serve
        self.node.refresh_policy()
        expires = self.node.policy.expires()
        if expires is not None:
            self.metrics.policy_expiry.set(expires.timestamp())
        summary = pki.summarize_certificate(self.node.tls_cert_pem)
        self.metrics.cert_expiry.set(summary.not_after.timestamp())
        purge_matches(self.node)
        try:  # expired keys go even where no round opens cache.db any more (ADR 0016)
            EpochStore.purge_expired(self.node.paths.root, self.node.now())
        except (CrossmatchError, sqlite3.Error, OSError) as e:  # a round would rebuild it
            if not (store_condition(e) or isinstance(e, CrossmatchError)):
                raise  # a bug: housekeeping's own handler logs its traceback
            log.warning(
                "expired epoch keys not purged from cache.db: %s (deleting the file only "
                "costs each peer one full round)",
                e,
            )


def purge_matches(node: Node) -> int:
    """Retention: delete matches, and entities neither imported nor seen, older than the
    policy allows; each purge is itself audited (counts and the cut-off only)."""
    policy = node.policy
    now = node.now()
    cutoff = iso(now - timedelta(days=policy.retention_days))
    count = node.store.purge_matches_before(cutoff)
    disclosures.purge(node.paths.root, policy.retention_days, now.timestamp())
    days, policy_hash = policy.retention_days, policy.hash().hex()
    if count:
        node.record(
            MatchesPurged(count=count, before=cutoff, retention_days=days, policy_hash=policy_hash)
        )
    entities, links = purge_entities_before(node.store, cutoff)
    if entities:
        node.record(
            EntitiesPurged(
                entities=entities,
                links=links,
                before=cutoff,
                retention_days=days,
                policy_hash=policy_hash,
            )
        )
    return count


def scheduled_kinds(node: Node, peer: PeerConfig) -> list[str]:
    """Kinds of a scheduled round: held, wanted for this peer, allowed in its mode by policy."""
    policy = node.policy
    held = {k for k, n in node.store.signal_counts().items() if n > 0}
    wanted = set(peer.kinds) if peer.kinds is not None else held
    kinds = sorted(
        k for k in wanted & held if k in policy.allowed_kinds and policy.mode_allowed(k, peer.mode)
    )
    if not kinds:
        raise PolicyError(
            f"nothing to exchange with {peer.lab}: no held kind is allowed in {peer.mode} mode",
            rule=Rule.KINDS_EMPTY,
        )
    return kinds


def _last_completed_start(node: Node, peer_lab: str) -> float | None:
    for row in node.store.rounds(peer=peer_lab):
        if row.status == "completed":
            return datetime.fromisoformat(row.started_at).timestamp()
    return None


def _version() -> str:
    from importlib.metadata import version

    return version("crossmatch")


def serve(node_dir: Path, *, ready: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: shutting down", signum)
        stop.set()

    # Before anything starts: a SIGTERM during startup is a clean stop, never a kill.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with Node(node_dir) as node:
        if node.is_hub:  # no fingerprint key: a hub must never act as a lab
            raise ConfigError(f"{node_dir} is a consortium hub: run `crossmatch hub serve`")
        # A suite that cannot run here (no usable temp dir, a failed self-test) is one
        # line and a non-zero exit now, not an error in the middle of the first round.
        ensure_suite(node.policy.suite)
        daemon = Daemon(node)
        address = daemon.start()
        print(f"crossmatch: lab {node.lab} serving on {address}", flush=True)
        if node.policy_problem:
            log.warning("rounds will be refused: %s", node.policy_problem)
        if ready is not None:
            ready.set()
        while not stop.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
        daemon.stop()
        print(f"crossmatch: lab {node.lab} stopped", flush=True)
