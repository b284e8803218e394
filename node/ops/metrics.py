"""Prometheus metrics of one node, fed by the audit events the node writes.

Every metric comes from one place, ``Metrics.observe(event, body)``, called by
``Node.log`` after each audit record: the metrics can never disagree with the
audit log about what happened. Label values are lab ids, roles, outcomes, kinds
and rule names only, never identifiers.

Served over plain HTTP on the address in ``[metrics] listen`` (keep it on
loopback or a monitoring network: it reveals peers and round counts, not data).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from node.ops.logs import dropped_lines
from protocol.rules import parse_rule

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def _label(rule: object) -> str:
    """A rule as a label value: one of ours, else "-" (never a peer's text)."""
    known = parse_rule(rule) if isinstance(rule, str) else None
    return known.value if known is not None else "-"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        counter, gauge = self._counter, self._gauge
        self.rounds = counter(
            "crossmatch_rounds",
            "Rounds by peer, role and outcome (completed, aborted, refused).",
            "peer",
            "role",
            "outcome",
        )
        self.duration = Histogram(
            "crossmatch_round_duration_seconds",
            "Wall time of rounds that reached the exchange.",
            ["role", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.elements = counter(
            "crossmatch_elements_processed",
            "Elements of completed rounds (own and peer sets), by kind.",
            "kind",
        )
        self.refusals = counter(
            "crossmatch_refusals",
            "Rounds refused by this responder, by rule (recorded one by one or not).",
            "rule",
        )
        self.aborts = counter("crossmatch_round_aborts", "Aborted rounds by rule.", "rule")
        self.in_flight = gauge("crossmatch_rounds_in_flight", "Rounds running now.", "role")
        self.purged = counter("crossmatch_matches_purged", "Matches deleted by retention.")
        self._add_peer_gauges()
        self._add_health()
        self._started: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        return Counter(name, doc, list(labels), registry=self.registry)

    def _gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(name, doc, list(labels), registry=self.registry)

    def _add_peer_gauges(self) -> None:
        self.last_success = self._gauge(
            "crossmatch_peer_last_success_timestamp_seconds",
            "When the last round with the peer completed.",
            "peer",
        )
        self.next_round = self._gauge(
            "crossmatch_peer_next_round_timestamp_seconds",
            "When this node will next start a round with the peer.",
            "peer",
        )
        self.failures = self._gauge(
            "crossmatch_peer_consecutive_failures",
            "Scheduled rounds with the peer that failed in a row.",
            "peer",
        )

    def _add_health(self) -> None:
        counter, gauge = self._counter, self._gauge
        """The daemon's own health: expiries, liveness, refusals it could not record."""
        self.cert_expiry = gauge(
            "crossmatch_certificate_expiry_timestamp_seconds",
            "When this node's TLS certificate expires.",
        )
        self.policy_expiry = gauge(
            "crossmatch_policy_expiry_timestamp_seconds",
            "When the installed consortium policy expires.",
        )
        self.up = gauge("crossmatch_up", "1 while the daemon serves.")
        self.refusals_unrecorded = counter(
            "crossmatch_refusals_unrecorded",
            "Refusals counted but not written one by one (outsiders, or over a caller's "
            "allowance); summarised in refusals_summarised records.",
            "rule",
        )
        self.peer_busy = counter(
            "crossmatch_calls_rejected_busy",
            "Calls answered RESOURCE_EXHAUSTED because the caller held its share of workers.",
        )
        self.log_dropped = gauge(
            "crossmatch_log_lines_dropped",
            "Application log lines dropped because the log writer could not keep up.",
        )
        self.log_dropped.set_function(lambda: float(dropped_lines()))

    # -- fed by the node ---------------------------------------------------------------------

    def round_started(self, round_id: str, role: str) -> None:
        with self._lock:
            self._started[round_id] = (role, time.monotonic())
        self.in_flight.labels(role).inc()

    def _round_ended(self, round_id: str, outcome: str) -> None:
        with self._lock:
            started = self._started.pop(round_id, None)
        if started is not None:
            role, t0 = started
            self.in_flight.labels(role).dec()
            self.duration.labels(role, outcome).observe(time.monotonic() - t0)

    def observe(self, event: str, body: dict[str, Any]) -> None:
        peer = str(body.get("peer", "") or "-")
        if event == "round_completed":
            self.rounds.labels(peer, str(body.get("role", "")), "completed").inc()
            for sizes in (body.get("own_sizes") or {}, body.get("peer_sizes") or {}):
                for kind, n in sizes.items():
                    self.elements.labels(kind).inc(int(n))
            self.last_success.labels(peer).set(time.time())
            self._round_ended(str(body.get("round_id", "")), "completed")
        elif event == "round_aborted":
            self.rounds.labels(peer, str(body.get("role", "")), "aborted").inc()
            self.aborts.labels(_label(body.get("rule"))).inc()
            self._round_ended(str(body.get("round_id", "")), "aborted")
        elif event == "round_refused":
            self.rounds.labels(peer, "responder", "refused").inc()
            self.refusals.labels(_label(body.get("rule"))).inc()
        elif event == "matches_purged":
            self.purged.inc(int(body.get("count", 0)))

    def refusal_unrecorded(self, rule: str) -> None:
        """A refusal counted but not written one by one (it still counts as a refusal)."""
        rule = _label(rule)
        self.refusals.labels(rule).inc()
        self.refusals_unrecorded.labels(rule).inc()

    def scheduler_state(self, peers: dict[str, Any]) -> None:
        from datetime import datetime

        for lab, view in peers.items():
            self.failures.labels(lab).set(int(view.get("failures", 0)))
            due = view.get("next_due")
            if due:
                self.next_round.labels(lab).set(datetime.fromisoformat(due).timestamp())

    # -- HTTP --------------------------------------------------------------------------------

    def serve(self, listen: str) -> tuple[Any, str]:
        """Start the /metrics endpoint; returns (server, bound "host:port")."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host, registry=self.registry)
        return server, f"{host}:{server.server_port}"
