"""Fault soak: scheduled rounds between real nodes through a fault-injecting proxy.

    python -m bench.soak --labs 4 --minutes 30

N `crossmatch serve` processes on loopback, every pair scheduled (interval
``--interval`` seconds), every connection through bench/faultproxy.py (delays,
resets, half-open connections), while a chaos loop SIGKILLs (then restarts) or
SIGSTOPs (then continues) a random node. Then the faults stop, the nodes finish
what is running and stop, and the soak checks:

- every node's audit log verifies (`crossmatch audit verify`);
- every pair reconciles (`crossmatch audit reconcile --json`): each discrepancy
  is listed by rule (a round completed on one side only is the documented
  two-generals window of docs/protocol.md, counted, not hidden);
- no match is stored for a round that is not completed on both sides;
- no round is duplicated (one outcome per round id in each log) and none lost
  (an exchange one side started is recorded by the other);
- every node's store and log tell one story: each round outcome in the log is a
  row with that status in the store and the other way round, and no round is
  left started-but-unfinished once every node was opened again (as a restart
  does: rounds a SIGKILLed process left open are closed then, rule
  node-restarted; the number closed that way is reported).

Exit 0 when logs verify and nothing is duplicated or lost; the figures are printed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.faultproxy import FaultProxy
from node.demo.sandbox import Lab, Sandbox, run_cli
from node.runtime import Node

SOAK_LIMITS = dict(pending_ttl_seconds=15.0, first_message_seconds=5.0, peer_silence_seconds=15.0)


class Soak:
    def __init__(self, root: Path, labs: int, interval: float, seed: int):
        self.rng = random.Random(seed)
        self.sandbox = Sandbox(root / "consortium")
        self.names = [f"lab-{i + 1}" for i in range(labs)]
        self.sandbox.create(self.names)
        self.actions: Counter[str] = Counter()
        self.proxies: dict[str, FaultProxy] = {}
        self._setup(root, interval)

    def _setup(self, root: Path, interval: float) -> None:
        values = [f"user{i}@mail.example" for i in range(3000)]
        for n, name in enumerate(self.names):
            lab = self.sandbox.labs[name]
            lab.configure(
                limits=SOAK_LIMITS,
                round_timeout=60.0,
                grace_seconds=5.0,
                schedule=dict(jitter_seconds=2.0, retry_base_seconds=3.0, retry_max_seconds=20.0),
            )
            own = root / f"{name}.txt"
            own.write_text("".join(v + "\n" for v in values[n * 500 : n * 500 + 2000]))
            run_cli("import", lab.dir, own, "--kind", "email")
            lab.start()
            self.proxies[name] = FaultProxy(lab.address, self.rng, (0.55, 0.2, 0.15, 0.1))
        for me, other in itertools.permutations(self.names, 2):
            lab = self.sandbox.labs[me]
            run_cli(
                "peer", "add", lab.dir, "--lab", other, "--address", self.proxies[other].address
            )
            lab.schedule_peer(other, interval=interval)

    # -- chaos -------------------------------------------------------------------------------

    def chaos(self, until: float) -> None:
        while time.monotonic() < until:
            time.sleep(self.rng.uniform(5, 15))
            name = self.rng.choice(self.names)
            lab = self.sandbox.labs[name]
            if self.rng.random() < 0.5:
                self.actions["sigkill"] += 1
                lab.kill()
                time.sleep(self.rng.uniform(1, 5))
                self._restart(name, lab)
            else:
                self.actions["sigstop"] += 1
                assert lab.process is not None
                lab.process.send_signal(signal.SIGSTOP)
                time.sleep(self.rng.uniform(2, 12))
                lab.process.send_signal(signal.SIGCONT)

    def _restart(self, name: str, lab: Lab) -> None:
        lab.start()
        self.proxies[name].retarget(lab.address)
        self.actions["restart"] += 1

    # -- checks ------------------------------------------------------------------------------

    def settle(self, seconds: float) -> None:
        for proxy in self.proxies.values():
            proxy.enabled = False
        time.sleep(seconds)
        self.sandbox.stop_all()

    def rounds(self, name: str) -> dict[str, dict]:
        out = run_cli("rounds", self.sandbox.labs[name].dir, "--format", "json").stdout
        return {r["round_id"]: r for r in json.loads(out)}

    def matched_rounds(self, name: str) -> set[str]:
        db = sqlite3.connect(self.sandbox.labs[name].paths.db)
        try:
            return {r for (r,) in db.execute("SELECT DISTINCT round_id FROM matches")}
        finally:
            db.close()

    def unfinished(self, name: str) -> list[str]:
        """Rounds with a start row and no outcome in the node's store."""
        db = sqlite3.connect(self.sandbox.labs[name].paths.db)
        try:
            return [r for (r,) in db.execute("SELECT round_id FROM round_starts")]
        finally:
            db.close()

    def reopen(self) -> int:
        """Open every (stopped) node once, as its next start would: rounds a killed process
        left open are closed now. Returns how many were."""
        closed = 0
        for name in self.names:
            with Node(self.sandbox.labs[name].dir) as node:
                closed += len(node.recovered)
        return closed

    def trace_mismatches(self, name: str, rows: dict[str, dict]) -> int:
        return store_log_mismatches(self.sandbox.labs[name].paths.audit_log.read_text(), rows)

    def check(self) -> dict[str, object]:
        unfinished_at_stop = sum(len(self.unfinished(n)) for n in self.names)
        closed_at_restart = self.reopen()
        verified = {
            n: run_cli("audit", "verify", self.sandbox.labs[n].dir, check=False).returncode == 0
            for n in self.names
        }
        rounds = {n: self.rounds(n) for n in self.names}
        discrepancies: Counter[str] = Counter()
        compared = 0
        for a, b in itertools.combinations(self.names, 2):
            proc = run_cli(
                "audit",
                "reconcile",
                self.sandbox.labs[a].dir,
                self.sandbox.labs[b].dir,
                "--json",
                check=False,
            )
            report = json.loads(proc.stdout or "{}")
            compared += int(report.get("rounds_compared", 0))
            for d in report.get("discrepancies", []):
                discrepancies[d.get("rule", "?")] += 1
        unsafe_matches, lost = 0, 0
        statuses: Counter[str] = Counter()
        mismatched = sum(self.trace_mismatches(n, rounds[n]) for n in self.names)
        for n in self.names:
            for rid, row in rounds[n].items():
                statuses[row["status"]] += 1
                other = rounds.get(row["peer"], {}).get(rid)
                if rid in self.matched_rounds(n) and (other or {}).get("status") != "completed":
                    unsafe_matches += 1
                # Past OpenRound on this side (it knows the peer's sizes): the peer accepted
                # the round, so it must have recorded it too.
                if other is None and row["status"] != "refused" and row["peer_sizes"]:
                    lost += 1
        return {
            "verified": verified,
            "statuses": dict(statuses),
            "pair_rounds_compared": compared,
            "discrepancies": dict(discrepancies),
            "matches_without_both_completed": unsafe_matches,
            "lost_rounds": lost,
            "store_log_mismatches": mismatched,
            "unfinished_at_stop": unfinished_at_stop,
            "closed_at_restart": closed_at_restart,
            "unfinished_after_restart": sum(len(self.unfinished(n)) for n in self.names),
        }


def store_log_mismatches(audit_log: str, rows: dict[str, dict]) -> int:
    """Rounds whose audit outcome and store row disagree, or that have only one of them
    (``rows``: round id -> row, as `crossmatch rounds --format json` prints them)."""
    logged: Counter[tuple[str, str]] = Counter()
    for line in audit_log.splitlines():
        record = json.loads(line)
        if record["event"] in ("round_completed", "round_aborted"):
            logged[(record["body"]["round_id"], record["event"].removeprefix("round_"))] += 1
    stored = Counter((rid, r["status"]) for rid, r in rows.items() if r["status"] != "refused")
    return sum((logged - stored).values()) + sum((stored - logged).values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labs", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument(
        "--interval", type=float, default=20.0, help="Seconds between rounds of a pair."
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", type=Path, help="Keep the consortium in this directory.")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="crossmatch-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    soak = Soak(root, args.labs, args.interval, args.seed)
    try:
        chaos = threading.Thread(
            target=soak.chaos, args=(started + args.minutes * 60,), daemon=True
        )
        chaos.start()
        chaos.join()
        soak.settle(args.interval + 10)
        result = soak.check()
    finally:
        soak.sandbox.stop_all()
        for proxy in soak.proxies.values():
            proxy.close()
    faults: Counter[str] = Counter()
    for proxy in soak.proxies.values():
        faults.update(proxy.counts)
    result.update(
        {
            "minutes": round((time.monotonic() - started) / 60, 1),
            "labs": args.labs,
            "connections": dict(faults),
            "node_faults": dict(soak.actions),
            "root": str(root),
        }
    )
    print(json.dumps(result, indent=2))
    ok = (
        all(result["verified"].values())  # type: ignore[attr-defined]
        and result["lost_rounds"] == 0
        and result["store_log_mismatches"] == 0
        and result["unfinished_after_restart"] == 0
        and "round-duplicate" not in result["discrepancies"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
