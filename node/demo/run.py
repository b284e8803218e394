"""`crossmatch demo`: three labs on loopback, end to end, checked against the known truth.

Every step is the real CLI in a real process: CA, consortium key, a policy
signed by the consortium CA and installed on every lab, three node
directories, imports in three file formats, three `serve` daemons over mutual
TLS whose schedulers start the pairwise rounds by themselves every few
seconds, a status table while they run, then the matches each lab learned
in every round, a count-only round, and `audit verify` of every log. Exits 0
only if every pair completed at least two rounds, every lab learned exactly the
offenders it shares with each peer and nothing else, and every log verifies.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

from node.cli.common import table_lines
from node.cli.status import collect, peer_table
from node.demo.data import KINDS, Consortium, generate
from node.demo.sandbox import Sandbox, run_cli, sandbox_policy
from node.schedule.scheduler import initiator_of
from protocol.errors import CrossmatchError

LABS = ["lab-a", "lab-b", "lab-c"]
ROUNDS_PER_PAIR = 2
INTERVAL_SECONDS = 3.0  # each pair's schedule
MIN_INTERVAL_SECONDS = 2  # the policy's rate limit per pair
RUN_TIMEOUT = 40.0
SCHEDULE = {
    "jitter_seconds": 0.5,
    "retry_base_seconds": 0.5,
    "retry_max_seconds": 3.0,
    "max_concurrent_rounds": 2,
}

Say = Callable[[str], None]


def write_inputs(root: Path, data: Consortium) -> dict[str, list[tuple[str, Path, list[str]]]]:
    """One file per lab and kind, in the formats labs really export."""
    plan: dict[str, list[tuple[str, Path, list[str]]]] = {}
    for name, lab in data.labs.items():
        folder = root / "inputs" / name
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        emails = folder / "flagged_accounts.csv"
        with emails.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["flagged_at", "email", "reason"])
            for i, v in enumerate(lab.values("email")):
                w.writerow([f"2026-11-{1 + i % 26:02d}", v, "distillation-campaign"])
        files.append(("email", emails, ["--column", "email"]))
        phones = folder / "phones.jsonl"
        phones.write_text(
            "".join(
                json.dumps({"phone": v, "source": "signup"}) + "\n" for v in lab.values("phone")
            )
        )
        files.append(("phone", phones, ["--field", "phone"]))
        for kind in ("ip", "account_id"):
            path = folder / f"{kind}s.txt"
            path.write_text("".join(v + "\n" for v in lab.values(kind)))
            files.append((kind, path, []))
        plan[name] = files
    return plan


# The demo consortium runs on the faster, verifiable suite (docs/adr/0008).
DEMO_SUITE = "ristretto255-v1"


def run(workdir: Path | None, say: Say, *, live: bool | None = None) -> bool:
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="crossmatch-demo-"))
    if root.exists() and any(root.iterdir()):
        raise CrossmatchError(f"{root} is not empty; give an empty or new --workdir")
    live = sys.stdout.isatty() if live is None else live
    say(f"crossmatch demo in {root}")
    data = generate(LABS)
    ok = True
    with Sandbox(root) as sandbox:
        _set_up(sandbox, root, data, say)
        _start(sandbox, say)
        say(f"4. rounds happen by themselves until every pair completed {ROUNDS_PER_PAIR}")
        ok &= _watch(sandbox, say, live)
        say("5. what each lab learned in every round, against the known truth")
        for a, b in combinations(LABS, 2):
            ok &= _check_pair(sandbox, data, a, b, say)
        say("6. a count-only round: both learn how many, not which")
        ok &= _count_round(sandbox, data, "lab-a", "lab-b", say)
        say("6b. lab-a's analyst: 12 flagged accounts of one actor become one case")
        ok &= _show_case(sandbox, data, root, say)
        sandbox.stop_all()
        say("7. every lab's audit log verifies offline")
        ok &= _verify_logs(sandbox, say)
    say(
        "demo "
        + (
            "PASSED: rounds ran on schedule, every lab learned exactly the offenders it "
            "shares, and every log verifies"
            if ok
            else "FAILED"
        )
    )
    return ok


def _set_up(sandbox: Sandbox, root: Path, data: Consortium, say: Say) -> None:
    """Steps 1 and 2: the consortium with its policy, then each lab's signal imports."""
    say("1. consortium CA, consortium key, a policy signed by the CA, three lab nodes")
    policy = sandbox_policy(
        policy_id="demo-consortium", min_interval=MIN_INTERVAL_SECONDS, suite=DEMO_SUITE
    )
    sandbox.create(LABS, policy=policy)
    say(
        f"   policy demo-consortium: every kind, at most one round per pair every "
        f"{MIN_INTERVAL_SECONDS} s, suite {DEMO_SUITE} (reveal matches verified by DLEQ "
        f"proofs), installed on {', '.join(LABS)}"
    )
    say("2. each lab imports its flagged signals (CSV, JSON lines, plain lines)")
    for name, files in write_inputs(root, data).items():
        for kind, path, opts in files:
            out = run_cli("import", sandbox.labs[name].dir, path, "--kind", kind, *opts)
            say(f"   {name}: {out.stdout.strip()}")


def _start(sandbox: Sandbox, say: Say) -> None:
    """Step 3: the daemons, peered with each other, each pair on a schedule."""
    say("3. three daemons start on loopback with mutual TLS, metrics and schedules")
    for lab in sandbox.labs.values():
        lab.configure(schedule=SCHEDULE, metrics_listen="127.0.0.1:0")
    sandbox.start_all()
    sandbox.peer_all()
    for a, b in combinations(LABS, 2):
        for me, other in ((a, b), (b, a)):
            sandbox.labs[me].schedule_peer(other, interval=INTERVAL_SECONDS)
    for lab in sandbox.labs.values():
        say(f"   {lab.name} serving on {lab.address}")
    for a, b in combinations(LABS, 2):
        say(f"   {a} <-> {b}: every {INTERVAL_SECONDS:g} s, started by {initiator_of(a, b)}")


def _verify_logs(sandbox: Sandbox, say: Say) -> bool:
    ok = True
    for lab in sandbox.labs.values():
        proc = run_cli("audit", "verify", lab.dir, check=False)
        good = proc.returncode == 0
        ok &= good
        lines = proc.stdout.strip().splitlines()
        say(
            f"   {lab.name}: {'OK' if good else 'FAILED'} "
            f"{lines[-1] if lines else proc.stderr.strip()}"
        )
    return ok


def _show_case(sandbox: Sandbox, data: Consortium, root: Path, say: Say) -> bool:
    """Import an actor's accounts (4 shared with lab-b, 4 with lab-c, 4 lab-a's alone)
    as entities under one campaign label, then show the case they form."""
    lab = data.labs["lab-a"]
    values = {kind: dict(lab.signals[kind]) for kind in ("email", "ip", "account_id")}
    actor = [
        i
        for group in (("lab-a", "lab-b"), ("lab-a", "lab-c"), ("lab-a",))
        for i in data.groups[frozenset(group)][:4]
    ]
    path = root / "inputs" / "lab-a" / "actor_accounts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account", "email", "ip", "campaign", "severity"])
        for ident in actor:
            w.writerow(
                [
                    values["account_id"][ident],
                    values["email"][ident],
                    values["ip"][ident],
                    "demo-actor",
                    "high",
                ]
            )
    a_dir = sandbox.labs["lab-a"].dir
    imported = run_cli("import", a_dir, path, "--entities", "--map", "account_id=account")
    say("   " + imported.stdout.strip())
    listing = json.loads(run_cli("cases", a_dir, "--format", "json").stdout)
    if listing["total"] != 1:
        say(f"   expected one case, found {listing['total']}")
        return False
    case = listing["cases"][0]
    for line in run_cli("case", "show", a_dir, case["case_id"]).stdout.splitlines()[:18]:
        say("   " + line)
    return case["entities"] == len(actor) and case["peers"] == ["lab-b", "lab-c"]


def _completed(sandbox: Sandbox, a: str, b: str) -> list[dict]:
    rows = json.loads(
        run_cli("rounds", sandbox.labs[a].dir, "--peer", b, "--format", "json").stdout
    )
    return [r for r in rows if r["status"] == "completed" and r["mode"] == "reveal"]


def _watch(sandbox: Sandbox, say: Say, live: bool) -> bool:
    """Show the status table until every pair has its rounds (or time runs out)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    seen: set[tuple[str, str, str]] = set()
    while True:
        states = {name: collect(lab.dir) for name, lab in sandbox.labs.items()}
        done = {
            (a, b): min(_done(states, a, b), _done(states, b, a)) for a, b in combinations(LABS, 2)
        }
        if live:
            _redraw(states, say)
        else:
            for name, st in states.items():
                for row in st["peers"]:
                    key = (name, row["lab"], row["last_round"])
                    if row["last_round"] and key not in seen and row["initiator"] == name:
                        seen.add(key)
                        say(
                            f"   {name} -> {row['lab']}: {row['last_status']} round at "
                            f"{row['last_round']}, {row['rounds_completed']} completed"
                            + (f" ({row['last_error'][:60]})" if row["last_error"] else "")
                        )
        if all(n >= ROUNDS_PER_PAIR for n in done.values()):
            say(f"   every pair completed {ROUNDS_PER_PAIR} rounds")
            return True
        if time.monotonic() > deadline:
            say(f"   TIMEOUT: completed rounds per pair {done}")
            return False
        time.sleep(0.5)


def _done(states: dict[str, dict], me: str, other: str) -> int:
    return next((r["rounds_completed"] for r in states[me]["peers"] if r["lab"] == other), 0)


def _redraw(states: dict[str, dict], say: Say) -> None:
    say("\033[H\033[J" + "crossmatch demo: scheduled rounds (refreshing)")
    for name, st in states.items():
        say(f"\n{name} ({'serving' if st['serving'] else 'down'})")
        for line in table_lines(*peer_table(st)):
            say("  " + line)


def _check_pair(sandbox: Sandbox, data: Consortium, a: str, b: str, say: Say) -> bool:
    truth = data.shared(a, b)
    ok = True
    rounds = _completed(sandbox, a, b)
    for row in rounds:
        rid = row["round_id"]
        for me in (a, b):
            found = json.loads(
                run_cli("matches", sandbox.labs[me].dir, "--round", rid, "--format", "json").stdout
            )
            for kind in KINDS:
                expected = data.labs[me].rendered(kind, truth)
                got = {m["value"] for m in found if m["kind"] == kind}
                if got != expected:
                    ok = False
                    say(
                        f"      {me} {kind} round {rid[:12]}: MISMATCH expected "
                        f"{len(expected)}, got {len(got)}"
                    )
    sample = sorted(
        {
            m["value"]
            for m in json.loads(
                run_cli(
                    "matches",
                    sandbox.labs[a].dir,
                    "--peer",
                    b,
                    "--kind",
                    "email",
                    "--format",
                    "json",
                ).stdout
            )
        }
    )[:2]
    say(
        f"   {a} <-> {b}: {len(rounds)} rounds, each found {len(truth)} shared offenders per "
        f"kind on both sides, {'as expected' if ok else 'WRONG'}; e.g. {', '.join(sample)}"
    )
    return ok and len(rounds) >= ROUNDS_PER_PAIR


def _count_round(sandbox: Sandbox, data: Consortium, a: str, b: str, say: Say) -> bool:
    # The schedulers keep running: a refusal by single flight or the rate limit is expected
    # now and then, and names its rule; try again shortly.
    for _ in range(20):
        proc = run_cli(
            "round", sandbox.labs[a].dir, "--peer", b, "--mode", "count", "--json", check=False
        )
        if proc.returncode != 77:
            break
        time.sleep(0.5)
    if proc.returncode != 0:
        say(f"   {a} <-> {b} count mode: FAILED {proc.stderr.strip()}")
        return False
    summary = json.loads(proc.stdout)
    expected = {k: len(data.shared(a, b)) for k in KINDS}
    got = summary["intersection_sizes"]
    stored = json.loads(
        run_cli(
            "matches", sandbox.labs[a].dir, "--round", summary["round_id"], "--format", "json"
        ).stdout
    )
    ok = got == expected and stored == []
    say(
        f"   {a} <-> {b} count mode: {got} ({'as expected' if ok else 'WRONG'}), "
        f"{len(stored)} values revealed"
    )
    return ok
