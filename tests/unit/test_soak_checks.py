"""The soak's store/log check (bench/soak.py): one story per round in a node's store and
its audit log; a round in only one of them, or with two different outcomes, is counted."""

from __future__ import annotations

import json

from bench.soak import store_log_mismatches


def log_of(*outcomes: tuple[str, str]) -> str:
    lines = [json.dumps({"event": "log_created", "body": {}})]
    lines += [
        json.dumps({"event": f"round_{status}", "body": {"round_id": rid}})
        for rid, status in outcomes
    ]
    lines.append(json.dumps({"event": "round_refused", "body": {"peer": "lab-b"}}))
    return "\n".join(lines) + "\n"


def rows_of(*rows: tuple[str, str]) -> dict[str, dict]:
    return {rid: {"round_id": rid, "status": status} for rid, status in rows}


def test_one_story_is_no_mismatch():
    log = log_of(("r1", "completed"), ("r2", "aborted"))
    rows = rows_of(("r1", "completed"), ("r2", "aborted"), ("r3", "refused"))
    assert store_log_mismatches(log, rows) == 0


def test_a_round_in_the_log_only_or_the_store_only_is_counted():
    assert store_log_mismatches(log_of(("r1", "aborted")), {}) == 1
    assert store_log_mismatches(log_of(), rows_of(("r1", "completed"))) == 1


def test_different_outcomes_and_two_outcomes_are_counted():
    assert store_log_mismatches(log_of(("r1", "completed")), rows_of(("r1", "aborted"))) == 2
    twice = log_of(("r1", "aborted"), ("r1", "aborted"))
    assert store_log_mismatches(twice, rows_of(("r1", "aborted"))) == 1
