"""The sandbox reads a daemon's metrics with prometheus_client's own parser; on our real
exposition it gives what the hand-written line split it replaced gave."""

from __future__ import annotations

from prometheus_client import generate_latest

from node.demo.sandbox import parse_samples
from node.ops.metrics import Metrics


def old_line_split(text: str) -> dict[str, float]:
    # The parser this replaced, kept here only as the reference it must agree with.
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def exposition() -> str:
    metrics = Metrics()
    metrics.round_started("r1", "initiator")
    body = {"peer": "lab-b", "role": "initiator", "round_id": "r1", "own_sizes": {"email": 3}}
    metrics.observe("round_completed", body)
    metrics.observe("round_refused", {"peer": "lab-c", "rule": "certificate-revoked"})
    metrics.observe("round_aborted", {"peer": "lab-b", "role": "responder", "rule": "timeout"})
    return generate_latest(metrics.registry).decode()


def test_same_samples_as_the_line_split_it_replaced() -> None:
    text = exposition()
    assert parse_samples(text) == old_line_split(text)
    assert parse_samples(text)['crossmatch_refusals_total{rule="certificate-revoked"}'] == 1


def test_escaped_label_values_and_comments() -> None:
    text = '# HELP x a "help"\n# TYPE x gauge\nx{a="q\\"uote",b="two words"} 2.5\n'
    assert parse_samples(text) == {'x{a="q\\"uote",b="two words"}': 2.5}
