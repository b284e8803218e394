"""The scheduler's decisions, run as a discrete-event simulation in virtual time.

Days of schedule run in milliseconds: the Planner is pure (time and randomness are
parameters), and the simulator below plays the peers (up or down, rounds taking
some seconds) around it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path

import pytest

from node.schedule.cron import parse_cron
from node.schedule.scheduler import (
    PeerSpec,
    Planner,
    Scheduler,
    Settings,
    SystemClock,
    initiator_of,
)
from protocol.errors import ConfigError, PeerUnavailableError, RoundAbortedError

Attempt = tuple[float, str, bool]  # (start time, peer, succeeded)


def simulate(
    planner: Planner,
    until: float,
    *,
    up: Callable[[str, float], bool] | None = None,
    duration: float = 2.0,
    start: float = 0.0,
) -> list[Attempt]:
    """Drive the planner: start what is due, finish rounds `duration` later."""
    up = up or (lambda lab, t: True)
    attempts: list[Attempt] = []
    running: dict[str, tuple[float, bool]] = {}  # lab -> (finish time, will succeed)
    now = start
    while True:
        times = [f for f, _ in running.values()]
        wake = planner.next_wake()
        if wake is not None:
            times.append(max(wake, now))
        if not times:
            break
        now = min(times)
        if now > until:
            break
        for lab, (finish, ok) in list(running.items()):
            if finish <= now:
                planner.finish(lab, now, ok=ok, outcome="completed" if ok else "unavailable")
                del running[lab]
        for lab in planner.due(now):
            planner.start(lab, now)
            ok = up(lab, now)
            attempts.append((now, lab, ok))
            running[lab] = (now + (duration if ok else 0.1), ok)
        assert planner.running_count() <= planner.settings.max_concurrent
    return attempts


def starts(attempts: list[Attempt], lab: str, ok: bool | None = None) -> list[float]:
    return [t for t, p, good in attempts if p == lab and (ok is None or good == ok)]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_rounds_follow_the_interval_plus_jitter():
    planner = Planner(Settings(jitter=10, max_concurrent=2), random.Random(1))
    planner.set_peers([PeerSpec("lab-b", interval=100)], now=0)
    attempts = simulate(planner, until=10_000)
    times = starts(attempts, "lab-b")
    assert len(times) > 80
    assert times[0] <= 10  # first round within the jitter of startup
    assert all(100 <= g <= 110 for g in gaps(times)), gaps(times)
    assert len({round(g, 6) for g in gaps(times)}) > 10  # the jitter really varies


def test_retries_back_off_exponentially_and_recover_when_the_peer_returns():
    settings = Settings(jitter=0, retry_base=10, retry_max=160, max_concurrent=1)
    planner = Planner(settings, random.Random(2))
    planner.set_peers([PeerSpec("lab-b", interval=3600)], now=0)
    attempts = simulate(planner, until=5000, up=lambda lab, t: t >= 1000)
    failed = starts(attempts, "lab-b", ok=False)
    # Each retry waits retry_base * 2**(n-1) scaled into [0.5, 1], capped at retry_max.
    for n, gap in enumerate(gaps(failed), start=1):
        nominal = min(160, 10 * 2 ** (n - 1))
        assert 0.5 * nominal <= gap - 0.1 <= nominal + 1e-9, (n, gap)
    assert 8 <= len(failed) <= 14  # not 100 attempts at a fixed 10 s
    ok = starts(attempts, "lab-b", ok=True)
    assert ok and 1000 <= ok[0] <= 1000 + 160  # back within one capped backoff
    assert planner.plans["lab-b"].failures == 0
    # Then the regular interval again, not the retry cadence.
    assert ok[1] - ok[0] == pytest.approx(3600)


def test_catch_up_after_downtime_is_one_round_not_a_burst():
    planner = Planner(Settings(jitter=30, max_concurrent=4), random.Random(3))
    now = 1_000_000.0
    # The last round was 10 intervals ago: ten runs were missed.
    planner.set_peers([PeerSpec("lab-b", interval=600)], now=now, last_rounds={"lab-b": now - 6000})
    attempts = simulate(planner, until=now + 1300, start=now)
    times = starts(attempts, "lab-b")
    assert times[0] - now <= 30
    assert len([t for t in times if t < now + 590]) == 1  # one catch-up round only
    assert times[1] - times[0] >= 600


def test_recent_last_round_is_respected_at_startup():
    planner = Planner(Settings(jitter=0), random.Random(4))
    planner.set_peers([PeerSpec("lab-b", interval=600)], now=1000, last_rounds={"lab-b": 900})
    assert planner.plans["lab-b"].next_due == pytest.approx(1500)


def test_concurrency_is_bounded_and_every_peer_is_served():
    settings = Settings(jitter=0, max_concurrent=2)
    planner = Planner(settings, random.Random(5))
    labs = [f"lab-{c}" for c in "bcdefg"]
    planner.set_peers([PeerSpec(lab, interval=50) for lab in labs], now=0)
    attempts = simulate(planner, until=500, duration=10)  # simulate() asserts the bound
    first = {lab: starts(attempts, lab)[0] for lab in labs}
    assert sorted(first.values()) == [0, 0, 10, 10, 20, 20]  # two at a time, queued fairly
    assert all(len(starts(attempts, lab)) >= 8 for lab in labs)


def test_single_flight_per_peer():
    planner = Planner(Settings(jitter=0, max_concurrent=5), random.Random(6))
    planner.set_peers([PeerSpec("lab-b", interval=1)], now=0)
    assert planner.due(0) == ["lab-b"]
    planner.start("lab-b", 0)
    assert planner.due(100) == []  # long overdue, but running
    with pytest.raises(RuntimeError):
        planner.start("lab-b", 100)
    planner.finish("lab-b", 100, ok=True, outcome="completed")
    assert planner.due(101) == ["lab-b"]


def test_policy_minimum_interval_wins_over_a_shorter_schedule():
    planner = Planner(Settings(jitter=0, min_gap=60), random.Random(7))
    planner.set_peers([PeerSpec("lab-b", interval=5)], now=0)
    times = starts(simulate(planner, until=600), "lab-b")
    assert all(g >= 60 for g in gaps(times)) and len(times) >= 9


def test_cron_schedule_drives_start_times():
    planner = Planner(Settings(jitter=0), random.Random(8))
    t0 = datetime(2026, 3, 2, 0, 7, tzinfo=UTC).timestamp()  # a Monday, 00:07
    planner.set_peers(
        [PeerSpec("lab-b", cron=parse_cron("*/30 2-3 * * *"))],
        now=t0,
        last_rounds={"lab-b": t0 - 60},
    )
    times = starts(simulate(planner, until=t0 + 2 * 86400, start=t0), "lab-b")
    stamps = [datetime.fromtimestamp(t, UTC).strftime("%d %H:%M") for t in times]
    assert stamps[:5] == ["02 02:00", "02 02:30", "02 03:00", "02 03:30", "03 02:00"]


def test_removed_peer_is_dropped_and_a_changed_interval_applies():
    planner = Planner(Settings(jitter=0), random.Random(9))
    planner.set_peers([PeerSpec("lab-b", interval=100), PeerSpec("lab-c", interval=100)], now=0)
    planner.start("lab-b", 0)
    planner.finish("lab-b", 1, ok=True, outcome="completed")
    planner.set_peers([PeerSpec("lab-b", interval=500)], now=2)
    assert set(planner.plans) == {"lab-b"}
    assert planner.plans["lab-b"].next_due == pytest.approx(500)


# --- cron ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", "2026-01-01T10:07:30", "2026-01-01T10:15:00"),
        ("0 3 * * 1", "2026-01-01T00:00:00", "2026-01-05T03:00:00"),  # next Monday
        ("30 12 1 * *", "2026-01-01T12:30:00", "2026-02-01T12:30:00"),  # strictly after
        ("0 0 29 2 *", "2026-01-01T00:00:00", "2028-02-29T00:00:00"),  # leap day
        ("0 0 13 * 5", "2026-01-01T00:00:00", "2026-01-02T00:00:00"),  # dom OR dow (a Friday)
        ("0 0 * * 7", "2026-01-01T00:00:00", "2026-01-04T00:00:00"),  # 7 is Sunday too
        ("5-10/5 1,2 * * *", "2026-01-01T01:06:00", "2026-01-01T01:10:00"),
    ],
)
def test_cron_next_after(expr, after, expected):
    moment = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert parse_cron(expr).next_after(moment) == datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


@pytest.mark.parametrize(
    "expr",
    [
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "*/0 * * * *",
        "MON * * * *",
        "5-1 * * * *",
        "0 0 31 2 *",
    ],
)
def test_bad_cron_is_a_config_error(expr):
    with pytest.raises(ConfigError):
        parse_cron(expr).next_after(datetime(2026, 1, 1, tzinfo=UTC))


# --- initiator choice ------------------------------------------------------------------------


def test_initiator_is_one_of_the_pair_and_both_sides_agree():
    labs = [f"lab-{i:02d}" for i in range(30)]
    picks = []
    for a, b in combinations(labs, 2):
        assert initiator_of(a, b) == initiator_of(b, a) in (a, b)
        picks.append(initiator_of(a, b) == min(a, b))
    # Not always the smaller id: the load spreads across the consortium.
    assert 0.3 < sum(picks) / len(picks) < 0.7


# --- the thread around the planner -------------------------------------------------------------


class FakeClock:
    """Virtual time: waiting advances the clock instantly instead of sleeping."""

    def __init__(self, start: float = 1_000_000.0):
        self.t = start
        self.lock = threading.Lock()

    def now(self) -> float:
        with self.lock:
            return self.t

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        with self.lock:
            self.t += timeout
        time.sleep(0.001)  # let round threads run
        return event.is_set()


def test_scheduler_thread_retries_a_down_peer_and_publishes_state():
    clock = FakeClock()
    calls: list[float] = []
    published: list[dict] = []

    def run(lab: str, cancel: threading.Event) -> None:
        calls.append(clock.now())
        if len(calls) < 4:
            raise PeerUnavailableError("connection refused", where=f"peer {lab}")

    planner = Planner(Settings(jitter=0, retry_base=10, retry_max=1000), random.Random(10))
    scheduler = Scheduler(
        planner,
        run=run,
        peers=lambda: ([PeerSpec("lab-b", 3600)], {}),
        clock=clock,
        state_sink=published.append,
    )
    scheduler.start()
    deadline = time.monotonic() + 5
    while len(calls) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    scheduler.stop(grace=1)
    assert len(calls) >= 5
    retry_gaps = gaps(calls[:4])
    assert retry_gaps[0] < retry_gaps[2]  # backing off
    assert calls[4] - calls[3] >= 3600  # success: back to the interval
    final = [p for p in published if p["lab-b"]["last_outcome"] == "completed"]
    assert final and final[-1]["lab-b"]["failures"] == 0
    assert any(
        p["lab-b"]["last_error"].startswith("peer lab-b: connection refused") for p in published
    )


def test_stop_gives_running_rounds_a_grace_period_then_cancels_them():
    started = threading.Event()
    outcome: list[str] = []

    def run(lab: str, cancel: threading.Event) -> None:
        started.set()
        if cancel.wait(10):
            outcome.append("cancelled")
            raise RoundAbortedError("this node is shutting down", rule="shutdown")

    planner = Planner(Settings(jitter=0), random.Random(11))
    scheduler = Scheduler(
        planner,
        run=run,
        peers=lambda: ([PeerSpec("lab-b", 3600)], {}),
        clock=SystemClock(lambda: datetime.now(UTC)),
    )
    scheduler.start()
    assert started.wait(5)
    t0 = time.monotonic()
    scheduler.stop(grace=0.3)
    assert 0.3 <= time.monotonic() - t0 < 3
    assert outcome == ["cancelled"]
    assert planner.plans["lab-b"].last_outcome == "aborted"
    assert scheduler.tick() == []  # stopped: nothing new starts


def test_cron_reproduces_the_hand_written_parser_it_replaced():
    # tests/vectors/cron.json was made with the parser cronsim replaced (see its "source").
    doc = json.loads((Path(__file__).parents[1] / "vectors" / "cron.json").read_text())
    for case in doc["cases"]:
        cron, moment = parse_cron(case["expression"]), datetime.fromisoformat(case["after"])
        for expected in case["next"]:
            moment = cron.next_after(moment)
            assert moment == datetime.fromisoformat(expected), case["expression"]
