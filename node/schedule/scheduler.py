"""Scheduled pairwise rounds inside `crossmatch serve`.

Who starts a pair's rounds. Exactly one side of a pair initiates its scheduled
rounds, so a pair never races itself: ``initiator_of(a, b)`` picks one of the two
lab ids by the first byte of ``SHA-256("crossmatch/v1/initiator" | sorted pair)``.
Both sides compute the same answer without talking; across a consortium the
initiator's load spreads evenly (the smaller id would make one lab initiate
everything). The other side simply answers.

When. Per peer, every ``interval_seconds`` from the start of the last round,
or at the times of a ``cron`` expression (UTC); plus a random delay of up to
``jitter_seconds`` so that many nodes do not all fire at the same second. Never
sooner than the policy's minimum interval per pair.

Failure. A failed round (peer down, refused, aborted) is retried after an
exponential backoff: ``retry_base * 2**(n-1)``, capped at ``retry_max``, each
delay scaled by a random factor in [0.5, 1] ("equal jitter") so that retries
of nodes that failed together spread out.

Catch-up. After downtime each peer is due at most once: a node that missed ten
intervals runs one round per peer, staggered by the jitter, never ten.

Bounds. One round per peer at a time (single flight) and at most
``max_concurrent_rounds`` at once; a due peer waits for a free slot.

Time and randomness are injected: ``Planner`` is a pure state machine over a
float clock (seconds since the epoch), so tests run days of schedule in
milliseconds; ``Scheduler`` is the thin thread around it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from node.schedule.cron import Cron, parse_cron
from protocol.errors import CrossmatchError
from protocol.timestamps import format_utc

log = logging.getLogger("crossmatch.scheduler")

INITIATOR_DOMAIN = b"crossmatch/v1/initiator"
CONFIG_POLL_SECONDS = 2.0  # how often the loop looks for node.toml changes when idle


def initiator_of(lab_a: str, lab_b: str) -> str:
    """The lab that initiates the pair's scheduled rounds (the same answer on both sides)."""
    low, high = sorted((lab_a, lab_b))
    digest = hashlib.sha256(INITIATOR_DOMAIN + b"|" + low.encode() + b"|" + high.encode()).digest()
    return low if digest[0] % 2 == 0 else high


# --- the pure planner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    jitter: float = 30.0
    retry_base: float = 30.0
    retry_max: float = 1800.0
    max_concurrent: int = 2
    min_gap: float = 0.0  # the policy's minimum interval between rounds of a pair


@dataclass(frozen=True)
class PeerSpec:
    lab: str
    interval: float | None = None
    cron: Cron | None = None


@dataclass
class PeerPlan:
    spec: PeerSpec
    next_due: float
    running: bool = False
    failures: int = 0
    last_started: float | None = None
    last_finished: float | None = None
    last_success: float | None = None
    last_outcome: str = ""
    last_error: str = ""


class Planner:
    """Decides which peers are due. Pure: every method takes ``now``; randomness is ``rng``."""

    def __init__(self, settings: Settings, rng: random.Random):
        self.settings = settings
        self.rng = rng
        self.plans: dict[str, PeerPlan] = {}

    def set_peers(
        self, specs: list[PeerSpec], now: float, last_rounds: dict[str, float] | None = None
    ) -> None:
        """Track exactly these peers; a new peer is planned from its last round (catch-up)."""
        last_rounds = last_rounds or {}
        keep = {s.lab for s in specs}
        for lab in [lab for lab, p in self.plans.items() if lab not in keep and not p.running]:
            del self.plans[lab]
        for spec in specs:
            plan = self.plans.get(spec.lab)
            if plan is None:
                self.plans[spec.lab] = PeerPlan(
                    spec, self._first_due(spec, now, last_rounds.get(spec.lab))
                )
                self.plans[spec.lab].last_started = last_rounds.get(spec.lab)
            elif plan.spec != spec:
                plan.spec = spec
                if not plan.running and plan.failures == 0:
                    plan.next_due = self._regular_next(spec, plan.last_started, now)

    def _first_due(self, spec: PeerSpec, now: float, last: float | None) -> float:
        if last is None:
            return now + self._jitter()
        # However many runs were missed, one catch-up round, staggered by the jitter.
        return max(self._regular_next(spec, last, now), now + self._jitter())

    def _jitter(self) -> float:
        return self.rng.uniform(0, self.settings.jitter) if self.settings.jitter > 0 else 0.0

    def _regular_next(self, spec: PeerSpec, last_started: float | None, now: float) -> float:
        if last_started is None:
            return now + self._jitter()
        if spec.cron is not None:
            base = spec.cron.next_after(datetime.fromtimestamp(last_started, UTC)).timestamp()
        else:
            base = last_started + float(spec.interval or 0)
        base = max(base, last_started + self.settings.min_gap)
        return base + self._jitter()

    def backoff(self, failures: int) -> float:
        s = self.settings
        delay = min(s.retry_max, s.retry_base * 2 ** max(failures - 1, 0))
        return delay * self.rng.uniform(0.5, 1.0)

    def running_count(self) -> int:
        return sum(p.running for p in self.plans.values())

    def due(self, now: float) -> list[str]:
        """Peers to start now: due, idle, most overdue first, within the concurrency bound."""
        free = self.settings.max_concurrent - self.running_count()
        ready = sorted(
            (p.next_due, lab)
            for lab, p in self.plans.items()
            if not p.running and p.next_due <= now
        )
        return [lab for _, lab in ready[: max(free, 0)]]

    def start(self, lab: str, now: float) -> None:
        plan = self.plans[lab]
        if plan.running:
            raise RuntimeError(f"round with {lab} already running")  # single flight
        plan.running = True
        plan.last_started = now

    def finish(self, lab: str, now: float, *, ok: bool, outcome: str, error: str = "") -> None:
        plan = self.plans.get(lab)
        if plan is None:
            return
        plan.running = False
        plan.last_finished = now
        plan.last_outcome = outcome
        if ok:
            plan.failures = 0
            plan.last_success = now
            plan.last_error = ""
            plan.next_due = max(self._regular_next(plan.spec, plan.last_started, now), now)
        else:
            plan.failures += 1
            plan.last_error = error
            plan.next_due = now + self.backoff(plan.failures)

    def next_wake(self) -> float | None:
        """When the loop must look again (None: only when a round finishes or peers change)."""
        if self.running_count() >= self.settings.max_concurrent:
            return None
        idle = [p.next_due for p in self.plans.values() if not p.running]
        return min(idle) if idle else None


# --- the thread around it ------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (the node's clock)."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until ``event`` is set."""
        ...


class SystemClock:
    def __init__(self, now: Callable[[], datetime]):
        self._now = now

    def now(self) -> float:
        return self._now().timestamp()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)


# run(peer_lab, cancel) runs one round and raises CrossmatchError on failure.
RoundRunner = Callable[[str, threading.Event], None]
PeerSource = Callable[[], tuple[list[PeerSpec], dict[str, float]]]


@dataclass
class Scheduler:
    """Runs due rounds on a small thread pool until ``stop``."""

    planner: Planner
    run: RoundRunner
    peers: PeerSource  # (specs we initiate, last round start per peer), re-read on wake
    clock: Clock
    state_sink: Callable[[dict[str, object]], None] | None = None
    _wakeup: threading.Event = field(default_factory=threading.Event)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _futures: dict[str, Future[None]] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(
            self.planner.settings.max_concurrent, thread_name_prefix="round"
        )
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wakeup.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad tick
                log.exception("scheduler tick failed")
            with self._lock:
                wake_at = self.planner.next_wake()
            timeout = CONFIG_POLL_SECONDS
            if wake_at is not None:
                timeout = min(timeout, max(0.0, wake_at - self.clock.now()))
            self.clock.wait(self._wakeup, timeout)
            self._wakeup.clear()

    def tick(self) -> list[str]:
        """Refresh peers, start whatever is due; returns the labs started."""
        specs, last_rounds = self.peers()
        now = self.clock.now()
        with self._lock:
            self.planner.set_peers(specs, now, last_rounds)
            started = [] if self._stopping.is_set() else self.planner.due(now)
            for lab in started:
                self.planner.start(lab, now)
        for lab in started:
            assert self._pool is not None
            self._futures[lab] = self._pool.submit(self._run_one, lab)
        self._publish()
        return started

    def _run_one(self, lab: str) -> None:
        ok, outcome, error = True, "completed", ""
        try:
            self.run(lab, self._cancel)
        except CrossmatchError as e:
            ok, outcome, error = False, _outcome_of(e), e.diagnostics()
        except Exception as e:  # a bug in one round must not stop the schedule
            log.exception("scheduled round with %s failed", lab)
            ok, outcome, error = False, "error", f"internal error: {type(e).__name__}"
        with self._lock:
            self.planner.finish(lab, self.clock.now(), ok=ok, outcome=outcome, error=error)
        self._publish()
        self._wakeup.set()

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {lab: _plan_view(p) for lab, p in sorted(self.planner.plans.items())}

    def _publish(self) -> None:
        if self.state_sink is not None:
            self.state_sink(self.snapshot())

    def stop(self, grace: float) -> None:
        """Start nothing new; give in-flight rounds ``grace`` seconds, then cancel them."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join()
        pending = [f for f in self._futures.values() if not f.done()]
        done = _wait_all(pending, grace)
        if not done:
            log.warning(
                "cancelling %d in-flight round(s) after %.0f s grace",
                sum(not f.done() for f in pending),
                grace,
            )
            self._cancel.set()  # each aborts cleanly: logged as aborted, nothing stored
            _wait_all(pending, 30.0)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _wait_all(futures: list[Future[None]], timeout: float) -> bool:
    from concurrent.futures import wait

    if not futures:
        return True
    _, not_done = wait(futures, timeout=timeout)
    return not not_done


def _outcome_of(error: CrossmatchError) -> str:
    from protocol.errors import PeerUnavailableError, PolicyError

    if isinstance(error, PeerUnavailableError):
        return "unavailable"
    if isinstance(error, PolicyError):
        return "refused"
    return "aborted"


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return format_utc(datetime.fromtimestamp(t, UTC), timespec="seconds")


def _plan_view(p: PeerPlan) -> dict[str, object]:
    return {
        "schedule": (
            f"cron {p.spec.cron.expression}" if p.spec.cron else f"every {p.spec.interval:g} s"
        ),
        "next_due": _iso(None if p.running else p.next_due),
        "running": p.running,
        "failures": p.failures,
        "last_started": _iso(p.last_started),
        "last_finished": _iso(p.last_finished),
        "last_success": _iso(p.last_success),
        "last_outcome": p.last_outcome,
        "last_error": p.last_error,
    }


def peer_spec(lab: str, interval: float | None, cron: str | None) -> PeerSpec:
    return PeerSpec(lab, interval, parse_cron(cron) if cron else None)


def state_document(lab: str, now: datetime, peers: dict[str, object]) -> bytes:
    """What `crossmatch status` reads from run/schedule.json."""
    doc = {
        "lab": lab,
        "updated": format_utc(now, timespec="seconds"),
        "peers": peers,
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
