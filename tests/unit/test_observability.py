"""Metrics, structured logs and the progress line: what operators read must be right and
must never carry an identifier."""

from __future__ import annotations

import io
import json
import logging

from prometheus_client import generate_latest

from node.ops.logs import JsonFormatter, event_fields, log_event
from node.ops.metrics import Metrics
from node.ops.progress import ProgressLine, render, terminal_progress


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels or None)


def test_metrics_follow_the_audit_events():
    m = Metrics()
    m.round_started("r1", "responder")
    assert sample(m, "crossmatch_rounds_in_flight", role="responder") == 1
    m.observe(
        "round_completed",
        {
            "round_id": "r1",
            "role": "responder",
            "peer": "lab-a",
            "own_sizes": {"email": 30, "phone": 2},
            "peer_sizes": {"email": 40},
        },
    )
    assert (
        sample(m, "crossmatch_rounds_total", peer="lab-a", role="responder", outcome="completed")
        == 1
    )
    assert sample(m, "crossmatch_elements_processed_total", kind="email") == 70
    assert sample(m, "crossmatch_elements_processed_total", kind="phone") == 2
    assert sample(m, "crossmatch_rounds_in_flight", role="responder") == 0
    assert (
        sample(m, "crossmatch_round_duration_seconds_count", role="responder", outcome="completed")
        == 1
    )
    m.round_started("r2", "initiator")
    m.observe(
        "round_aborted",
        {"round_id": "r2", "role": "initiator", "peer": "lab-b", "rule": "shutdown"},
    )
    assert sample(m, "crossmatch_round_aborts_total", rule="shutdown") == 1
    assert sample(m, "crossmatch_rounds_in_flight", role="initiator") == 0
    m.observe("round_refused", {"peer": "lab-c", "rule": "max-set-size"})
    m.observe("round_refused", {"peer": "", "rule": "unknown-peer"})
    assert sample(m, "crossmatch_refusals_total", rule="max-set-size") == 1
    assert sample(m, "crossmatch_rounds_total", peer="-", role="responder", outcome="refused") == 1
    m.observe("matches_purged", {"count": 12, "before": "2026-01-01T00:00:00.000000Z"})
    assert sample(m, "crossmatch_matches_purged_total") == 12
    m.scheduler_state({"lab-b": {"failures": 3, "next_due": "2026-01-01T00:00:00Z"}})
    assert sample(m, "crossmatch_peer_consecutive_failures", peer="lab-b") == 3
    assert sample(m, "crossmatch_peer_next_round_timestamp_seconds", peer="lab-b") == 1767225600
    assert b"crossmatch_rounds_total" in generate_latest(m.registry)


def test_two_nodes_in_one_process_keep_separate_metrics():
    a, b = Metrics(), Metrics()
    a.observe("round_refused", {"peer": "x", "rule": "min-interval"})
    assert sample(b, "crossmatch_refusals_total", rule="min-interval") is None


def test_event_logs_keep_only_allowlisted_fields():
    body = {
        "round_id": "r1",
        "peer": "lab-b",
        "rule": "kind-mode",
        "reason": "x" * 1000,
        "value": "alice@example.com",
        "own_receipt": {"sig": "..."},
        "intersection_sizes": {"email": 3},
    }
    fields = event_fields("round_aborted", body)
    assert fields["event"] == "round_aborted" and fields["intersection_sizes"] == {"email": 3}
    assert "value" not in fields and "own_receipt" not in fields
    assert len(fields["reason"]) == 300


def test_json_formatter_writes_one_object_a_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("crossmatch.events")
    logger.addHandler(handler)
    try:
        log_event(
            "round_refused",
            {
                "peer": "lab-c",
                "rule": "min-interval",
                "reason": "soon\nx",
                "value": "alice@example.com",
            },
        )
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "warning" and record["event"] == "round_refused"
    assert record["rule"] == "min-interval" and record["ts"].endswith("Z")
    assert "alice" not in lines[0]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal():
    assert terminal_progress("import", io.StringIO()) is None
    assert terminal_progress("import", FakeTty()) is not None


def test_progress_line_is_throttled_and_ends_with_a_newline():
    out = FakeTty()
    now = [0.0]
    line = ProgressLine("round with lab-b", out, clock=lambda: now[0])
    line(0, 100)
    line(10, 100)  # within 0.1 s of the last draw: skipped
    now[0] = 0.5
    line(50, 100)
    now[0] = 0.51
    line(100, 100)  # the end is always drawn
    line(100, 100)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "50/100" in text and "100.0%" in text and "10/100" not in text


def test_render_without_a_total():
    assert render("import", 1500, 0, 2.0) == "import 1,500 750/s"
