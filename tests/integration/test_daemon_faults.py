"""Faults a scheduled consortium must survive, with real `serve` processes on loopback.

Each test ends with `crossmatch audit verify` on every node. Sets are small and
schedules a second or two long, except where a round must last long enough to be
killed in the middle.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import tomllib
from pathlib import Path

import grpc
import pytest
import tomli_w

from node.demo.sandbox import (
    Lab,
    Sandbox,
    cli_command,
    run_cli,
    sandbox_policy,
    sandbox_policy_hash,
)
from node.schedule.scheduler import initiator_of
from protocol.psi import Engine
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb
from tests.integration.conftest import (
    after_min_interval,
    audit_ok,
    import_values,
    matches_json,
    rounds_json,
    wait_for,
)
from tests.integration.test_hostile_peers import open_request, pki_key, refused, stub_as

FAST = {"jitter_seconds": 0.0, "retry_base_seconds": 0.4, "retry_max_seconds": 3.0}


def with_peer(sandbox: Sandbox, me: str, other: str) -> list[dict]:
    return [r for r in rounds_json(sandbox.labs[me].dir) if r["peer"] == other]


def completed(sandbox: Sandbox, me: str, other: str) -> list[dict]:
    return [r for r in with_peer(sandbox, me, other) if r["status"] == "completed"]


def repeer(sandbox: Sandbox, me: str, other: str) -> None:
    """Tell `me` where `other` listens now (a restarted daemon binds a new port)."""
    sandbox.peer(me, other)


def emails(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}@mail.example" for i in range(n)]


def check_matches(sandbox: Sandbox, round_id: str, expected: set[str]) -> None:
    for lab in sandbox.labs.values():
        if any(r["round_id"] == round_id for r in rounds_json(lab.dir)):
            assert {m["value"] for m in matches_json(lab.dir, "--round", round_id)} == expected


def make_pair(
    root: Path, tmp: Path, *, policy: str | None = None, metrics: bool = False
) -> Sandbox:
    """lab-a (the initiator of the pair) and lab-b, 30 emails each, 10 shared."""
    assert initiator_of("lab-a", "lab-b") == "lab-a"
    sandbox = Sandbox(root)
    sandbox.create(["lab-a", "lab-b"], policy=policy)
    import_values(sandbox.labs["lab-a"].dir, "email", emails("s", 10) + emails("a", 20), tmp)
    import_values(sandbox.labs["lab-b"].dir, "email", emails("s", 10) + emails("b", 20), tmp)
    for lab in sandbox.labs.values():
        lab.configure(
            schedule=FAST, metrics_listen="127.0.0.1:0" if metrics else None, grace_seconds=1.0
        )
    return sandbox


SHARED = set(emails("s", 10))


def start_and_peer(sandbox: Sandbox) -> None:
    sandbox.start_all()
    sandbox.peer_all()


def test_peer_down_at_its_scheduled_time_is_retried_with_backoff(tmp_path):
    with make_pair(tmp_path / "c", tmp_path) as sandbox:
        a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
        start_and_peer(sandbox)
        b.stop()
        a.schedule_peer("lab-b", interval=60)  # only retries can explain a second attempt
        failures = wait_for(
            lambda: (
                [r for r in with_peer(sandbox, "lab-a", "lab-b") if r["status"] == "aborted"][3:]
                or None
            ),
            20,
            "four failed attempts",
        )
        b.start()
        repeer(sandbox, "lab-a", "lab-b")
        repeer(sandbox, "lab-b", "lab-a")
        done = wait_for(lambda: completed(sandbox, "lab-a", "lab-b"), 20, "a completed round")
        attempts = sorted(
            r["started_at"]
            for r in with_peer(sandbox, "lab-a", "lab-b")
            if r["status"] == "aborted"
        )
        assert "unavailable" in failures[0]["reason"].lower()
        times = [_epoch(t) for t in attempts]
        gaps = [y - x for x, y in zip(times, times[1:], strict=False)]
        assert gaps[-1] > gaps[0], gaps  # backing off, not hammering
        assert len(attempts) < 15
        check_matches(sandbox, done[0]["round_id"], SHARED)
        status = json.loads(run_cli("status", a.dir, "--json").stdout)
        row = status["peers"][0]
        assert row["rounds_completed"] >= 1 and row["failures"] == 0
        assert row["next_round"] not in ("", "-", "manual")
        sandbox.stop_all()
        audit_ok(a.dir)
        audit_ok(b.dir)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


# --- killed mid-round ----------------------------------------------------------------------------

BIG = 20_000


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory):
    """A pair whose rounds last a few seconds: 20,000 device ids a side, 2,000 shared."""
    root = tmp_path_factory.mktemp("big")
    sandbox = make_pair(root / "c", root, metrics=True)
    import_values(sandbox.labs["lab-a"].dir, "device_id", [f"d{i}" for i in range(BIG)], root)
    import_values(
        sandbox.labs["lab-b"].dir,
        "device_id",
        [f"d{i}" for i in range(BIG - 2000, 2 * BIG - 2000)],
        root,
    )
    for lab in sandbox.labs.values():
        fresh_keys_every_round(lab)
    start_and_peer(sandbox)
    yield sandbox
    sandbox.stop_all()


def fresh_keys_every_round(lab: Lab) -> None:
    """No per-epoch key reuse: a repeated round must redo all its work (and so take long
    enough to be interrupted), instead of finishing from the epoch cache in a moment."""
    path = lab.paths.config
    data = tomllib.loads(path.read_text())
    data.setdefault("round", {})["epoch_days"] = 0
    path.write_text(tomli_w.dumps(data))


def in_flight(lab: Lab, role: str) -> bool:
    try:
        return lab.metrics().get(f'crossmatch_rounds_in_flight{{role="{role}"}}', 0) >= 1
    except OSError:
        return False


def kill_mid_round(sandbox: Sandbox, victim: Lab) -> None:
    """Let lab-a's scheduler start a round, then SIGKILL `victim` while it streams."""
    b = sandbox.labs["lab-b"]
    # Due at once: the last completed round (if any) is more than 4 s old.
    sandbox.labs["lab-a"].schedule_peer("lab-b", interval=4)
    wait_for(lambda: in_flight(b, "responder"), 30, "a round in flight at lab-b")
    time.sleep(0.8)  # into the exchange (OpenRound is done in milliseconds)
    victim.kill()


def unfinished(lab: Lab) -> list[str]:
    """Round ids with a start row and no outcome yet in the lab's store."""
    db = sqlite3.connect(lab.paths.db)
    try:
        return [rid for (rid,) in db.execute("SELECT round_id FROM round_starts")]
    finally:
        db.close()


def closed_once(sandbox: Sandbox, me: str, other: str, rid: str) -> None:
    """`me` closed round `rid` at restart: one outcome in its log (aborted, node-restarted),
    the same in its store, no start row left; reconcile (which verifies both logs) agrees."""
    lab = sandbox.labs[me]
    [row] = [r for r in rounds_json(lab.dir) if r["round_id"] == rid]
    assert row["status"] == "aborted" and "node-restarted" in row["reason"], row
    records = [json.loads(line) for line in lab.paths.audit_log.read_text().splitlines()]
    outcomes = [
        r
        for r in records
        if r["event"] in ("round_completed", "round_aborted") and r["body"]["round_id"] == rid
    ]
    assert [(r["event"], r["body"].get("rule")) for r in outcomes] == [
        ("round_aborted", "node-restarted")
    ]
    assert rid not in unfinished(lab)
    proc = run_cli("audit", "reconcile", lab.dir, sandbox.labs[other].dir, "--json", check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["discrepancies"]
    assert any(rid in note and f"{me} and {other}" in note for note in report["notes"]), report


def test_responder_killed_mid_stream(big_pair):
    sandbox = big_pair
    a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
    before = {r["round_id"] for r in rounds_json(a.dir)}
    kill_mid_round(sandbox, b)
    aborted = wait_for(
        lambda: [
            r
            for r in with_peer(sandbox, "lab-a", "lab-b")
            if r["round_id"] not in before and r["status"] == "aborted" and r["peer_sizes"]
        ],
        30,
        "lab-a to record the abort",
    )
    rid = aborted[0]["round_id"]
    assert aborted[0]["intersection_sizes"] == {}
    assert matches_json(a.dir, "--round", rid) == []
    assert all(r["round_id"] != rid or r["status"] != "completed" for r in rounds_json(b.dir))
    assert rid in unfinished(b)  # killed: b's round has a start row and no outcome
    b.start()  # closes it before it serves
    repeer(sandbox, "lab-a", "lab-b")
    closed_once(sandbox, "lab-b", "lab-a", rid)
    # The scheduler retries (backoff) and the next round completes on both sides.
    done = wait_for(
        lambda: [r for r in completed(sandbox, "lab-a", "lab-b") if r["round_id"] not in before],
        60,
        "the next round",
    )
    rid = done[0]["round_id"]
    assert {m["value"] for m in matches_json(b.dir, "--round", rid, "--kind", "email")} == SHARED
    assert len(matches_json(a.dir, "--round", rid, "--kind", "device_id")) == 2000
    audit_ok(a.dir)
    audit_ok(b.dir)
    a.schedule_peer("lab-b")  # unscheduled again for the next test


def test_initiator_killed_mid_round(big_pair):
    sandbox = big_pair
    a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
    before = {r["round_id"] for r in rounds_json(b.dir)}
    kill_mid_round(sandbox, a)
    aborted = wait_for(
        lambda: [
            r
            for r in with_peer(sandbox, "lab-b", "lab-a")
            if r["round_id"] not in before and r["status"] == "aborted"
        ],
        30,
        "lab-b to record the abort",
    )
    rid = aborted[0]["round_id"]
    assert matches_json(b.dir, "--round", rid) == []
    assert "stream" in aborted[0]["reason"]
    audit_ok(b.dir)
    assert rid in unfinished(a)
    a.start()  # still scheduled; the last completed round is old, so due at once
    repeer(sandbox, "lab-b", "lab-a")
    closed_once(sandbox, "lab-a", "lab-b", rid)
    done = wait_for(
        lambda: [r for r in completed(sandbox, "lab-b", "lab-a") if r["round_id"] not in before],
        60,
        "the next round",
    )
    assert len(matches_json(b.dir, "--round", done[0]["round_id"], "--kind", "device_id")) == 2000
    audit_ok(a.dir)
    audit_ok(b.dir)
    a.schedule_peer("lab-b")


def test_initiator_cli_killed_mid_round_is_closed_by_the_next_round(big_pair):
    """`crossmatch round` SIGKILLed mid-round next to lab-a's serve: serve leaves the CLI's
    round alone while the CLI lives (its lease), the next round closes it first."""
    sandbox = big_pair
    a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
    a.stop()  # restarted unscheduled: no round of its own may race the CLI's
    a.start()
    repeer(sandbox, "lab-b", "lab-a")
    wait_for(lambda: not in_flight(b, "responder"), 30, "lab-b idle")
    before = {r["round_id"] for r in rounds_json(b.dir)}
    after_min_interval()
    cli = subprocess.Popen(
        cli_command("round", a.dir, "--peer", "lab-b"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: in_flight(b, "responder"), 30, "the CLI's round in flight at lab-b")
        time.sleep(0.8)
    finally:
        cli.kill()
        cli.wait()
    aborted = wait_for(
        lambda: [r for r in with_peer(sandbox, "lab-b", "lab-a") if r["round_id"] not in before],
        30,
        "lab-b to record the abort",
    )
    rid = aborted[0]["round_id"]
    assert aborted[0]["status"] == "aborted"
    assert unfinished(a) == [rid]
    assert rid not in {r["round_id"] for r in rounds_json(a.dir)}
    after_min_interval()
    run_cli("round", a.dir, "--peer", "lab-b")  # opens the node: closes rid, then runs
    closed_once(sandbox, "lab-a", "lab-b", rid)
    assert unfinished(a) == [] and unfinished(b) == []
    assert len(list(a.paths.leases.iterdir())) == 1  # serve's own; the dead CLI's was swept


def test_sigterm_mid_round_finishes_or_aborts_within_the_grace(big_pair):
    sandbox = big_pair
    a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
    a.stop()
    a.start()
    repeer(sandbox, "lab-b", "lab-a")
    before = {r["round_id"] for r in rounds_json(a.dir)}
    a.schedule_peer("lab-b", interval=4)
    wait_for(lambda: in_flight(b, "responder"), 30, "a round in flight")
    t0 = time.monotonic()
    assert a.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 1.0 + 8  # grace of 1 s, then a clean abort
    new = [r for r in rounds_json(a.dir) if r["round_id"] not in before]
    assert len(new) == 1 and new[0]["status"] in ("aborted", "completed")
    if new[0]["status"] == "aborted":
        assert "shutdown" in new[0]["reason"] or "shutting down" in new[0]["reason"]
        assert matches_json(a.dir, "--round", new[0]["round_id"]) == []
    row_b = wait_for(
        lambda: [r for r in rounds_json(b.dir) if r["round_id"] == new[0]["round_id"]],
        20,
        "lab-b to record the round",
    )
    assert row_b[0]["status"] in ("aborted", "completed")
    assert "serving" not in run_cli("status", a.dir).stdout.splitlines()[0]
    audit_ok(a.dir)
    audit_ok(b.dir)


def test_a_round_opened_and_never_streamed_is_recorded_at_sigterm(big_pair):
    """The responder's pending round ends at a graceful stop (rule shutdown), not at restart."""
    sandbox = big_pair
    a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
    after_min_interval()
    channel, stub = stub_as(a.dir, "lab-b", b.address)
    with channel:
        request = open_request(sizes=[pb.KindSize(kind="device_id", size=BIG)])
        stub.OpenRound(request, timeout=10)
    assert request.round_id in unfinished(b)
    assert b.stop(signal.SIGTERM) == 0
    [row] = [r for r in rounds_json(b.dir) if r["round_id"] == request.round_id]
    assert row["status"] == "aborted" and "[rule: shutdown]" in row["reason"], row
    assert unfinished(b) == []
    audit_ok(b.dir)


# --- clock skew ------------------------------------------------------------------------------


def test_clock_skew_of_minutes_breaks_neither_rounds_nor_certificates(tmp_path):
    policy = sandbox_policy(min_interval=1)
    with make_pair(tmp_path / "c", tmp_path, policy=policy) as sandbox:
        a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
        a.set_clock_offset(+170)
        b.set_clock_offset(-170)  # almost six minutes apart, beyond the 5 min of skew allowed
        start_and_peer(sandbox)
        a.schedule_peer("lab-b", interval=1.5)
        wait_for(lambda: len(completed(sandbox, "lab-a", "lab-b")) >= 2, 30, "two rounds")
        sandbox.stop_all()
        for row in completed(sandbox, "lab-a", "lab-b"):
            mirror = next(r for r in rounds_json(b.dir) if r["round_id"] == row["round_id"])
            assert mirror["status"] == "completed"
            skew = _epoch(row["started_at"]) - _epoch(mirror["started_at"])
            assert 330 < skew < 350  # each node really ran on its own clock
            check_matches(sandbox, row["round_id"], SHARED)
        audit_ok(a.dir)
        audit_ok(b.dir)


# --- three peers at once -----------------------------------------------------------------------


def test_three_peers_starting_rounds_at_one_node_at_the_same_moment(tmp_path):
    labs = ["hub", "lab-x", "lab-y", "lab-z"]
    with Sandbox(tmp_path / "c") as sandbox:
        sandbox.create(labs, policy=sandbox_policy(min_interval=60))
        for name in labs:
            import_values(
                sandbox.labs[name].dir, "email", emails("s", 10) + emails(name, 20), tmp_path
            )
        hub = sandbox.labs["hub"]
        hub.configure(metrics_listen="127.0.0.1:0")
        hub.start()
        for name in labs[1:]:
            run_cli("peer", "add", hub.dir, "--lab", name, "--address", "127.0.0.1:9")
            run_cli("peer", "add", sandbox.labs[name].dir, "--lab", "hub", "--address", hub.address)

        def burst() -> list[subprocess.CompletedProcess[str]]:
            procs = [
                subprocess.Popen(
                    cli_command("round", sandbox.labs[n].dir, "--peer", "hub", "--json"),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for n in [*labs[1:], "lab-x"]
            ]  # lab-x twice: single flight / rate
            return [
                subprocess.CompletedProcess(p.args, p.wait(60), *p.communicate()) for p in procs
            ]

        first = burst()
        codes = [p.returncode for p in first]
        assert sorted(codes) == [0, 0, 0, 77], [p.stderr for p in first]
        assert codes[1] == codes[2] == 0  # lab-y and lab-z never compete with anyone
        refusal = next(p for p in first if p.returncode == 77).stderr
        assert "[rule: single-flight]" in refusal or "[rule: min-interval]" in refusal
        # A second wave inside the policy's minimum interval: every one refused by rate limit.
        second = burst()
        assert [p.returncode for p in second] == [77, 77, 77, 77]
        assert all("[rule: min-interval]" in p.stderr for p in second)
        done = [r for r in rounds_json(hub.dir) if r["status"] == "completed"]
        assert sorted(r["peer"] for r in done) == ["lab-x", "lab-y", "lab-z"]
        for row in done:
            assert {m["value"] for m in matches_json(hub.dir, "--round", row["round_id"])} == (
                set(emails("s", 10))
            )
        samples = hub.metrics()
        assert samples['crossmatch_refusals_total{rule="min-interval"}'] >= 4
        sandbox.stop_all()
        for lab in sandbox.labs.values():
            audit_ok(lab.dir)


# --- oversized sets ----------------------------------------------------------------------------


def test_more_elements_than_policy_allows_or_than_announced(tmp_path):
    policy = sandbox_policy(max_set_size=100)
    with make_pair(tmp_path / "c", tmp_path, policy=policy, metrics=True) as sandbox:
        a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
        start_and_peer(sandbox)
        channel, stub = stub_as(a.dir, "lab-b", b.address)
        with channel:
            code, details, rule = refused(
                stub,
                open_request(
                    sizes=[pb.KindSize(kind="email", size=101)],
                    policy_hash=sandbox_policy_hash(max_set_size=100),
                ),
            )
        assert (code, rule) == (grpc.StatusCode.FAILED_PRECONDITION, "max-set-size"), details
        samples = b.metrics()
        assert samples['crossmatch_refusals_total{rule="max-set-size"}'] == 1
        assert not any(
            k.startswith("crossmatch_elements_processed_total") and v for k, v in samples.items()
        )  # refused before any work

        # Announce 20, send 25: aborted when the excess arrives, nothing stored.
        with Engine(pki_key()) as e:
            points = e.blind([os.urandom(32) for _ in range(25)])
        channel, stub = stub_as(a.dir, "lab-b", b.address)
        request = open_request(
            sizes=[pb.KindSize(kind="email", size=20)],
            policy_hash=sandbox_policy_hash(max_set_size=100),
        )
        with channel:
            stub.OpenRound(request, timeout=10)

            def stream():
                yield pb.ExchangeMessage(start=pb.Start(round_id=request.round_id))
                yield pb.ExchangeMessage(own_blinded=pb.Chunk(points=points))

            try:
                replies = [m.WhichOneof("body") for m in stub.Exchange(stream(), timeout=20)]
            except grpc.RpcError:
                replies = ["error"]
        assert "commit" not in replies
        row = wait_for(
            lambda: [r for r in rounds_json(b.dir) if r["round_id"] == request.round_id],
            10,
            "the abort",
        )[0]
        assert row["status"] == "aborted" and "size-announced" in row["reason"]
        assert matches_json(b.dir, "--round", request.round_id) == []
        # The node keeps serving: a real round completes.
        out = json.loads(run_cli("round", a.dir, "--peer", "lab-b", "--json").stdout)
        assert set(out["intersection_sizes"].values()) == {10}
        sandbox.stop_all()
        audit_ok(a.dir)
        audit_ok(b.dir)
