"""Benchmark: one consortium round against the same labs running all pairwise rounds.

    nice python -m bench.consortium_bench                 # 5 labs x 100,000 elements
    nice python -m bench.consortium_bench --n 20000

Builds, with node/demo/sandbox.py, ``--labs`` lab nodes and a hub on loopback
(real processes, real gRPC with mutual TLS, real SQLite files); each lab imports
``--n`` account ids drawn from a pool of ``2n``, so each id is held by about half
of the labs. Then, in one run:

- ``consortium``: every lab runs ``crossmatch consortium-round`` at once (k =
  ``--k``); per lab, the process's wall time and CPU time (user + system, from
  wait4); the hub's CPU from /proc;
- ``pairwise``: every lab serves (``crossmatch serve``) and all n(n-1)/2 pairs run
  one first round (fresh epoch keys, no cache) with ``crossmatch round``, in slots of
  disjoint pairs run at the same time (every lab in at most one round at a time);
  per lab, its initiator processes' CPU plus its responder's CPU delta (/proc), and
  the wall time of the slots it took part in.

Prints per-lab figures and the ratios consortium / pairwise of per-lab CPU (the
target is <= 1.0) and of wall time. The machine is shared: ratios within one run
are what count, and the load average is printed before each measurement.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.demo.sandbox import Sandbox, cli_command, consortium_section, run_cli, sandbox_policy

KIND = "account_id"
HUB = "isac"
TICKS = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    one, five, _ = os.getloadavg()
    print(
        f"[{time.strftime('%H:%M:%S')} load {one:.2f} {five:.2f}] {text}",
        file=sys.stderr,
        flush=True,
    )


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Run:
    wall: float
    cpu: float


def run_processes(commands: dict[str, list[str]]) -> dict[str, Run]:
    """Start every command at once; wall and CPU of each (wait4), raising on failure."""
    start = time.monotonic()
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for name, cmd in commands.items()
    }
    by_pid = {p.pid: name for name, p in procs.items()}
    out: dict[str, Run] = {}
    while by_pid:
        pid, status, usage = os.wait4(-1, 0)
        name = by_pid.pop(pid, None)
        if name is None:
            continue
        procs[name].returncode = os.waitstatus_to_exitcode(status)
        if procs[name].returncode != 0:
            err = procs[name].stderr.read().decode(errors="replace")  # type: ignore[union-attr]
            raise SystemExit(f"{name}: {' '.join(commands[name][2:])} failed: {err[-2000:]}")
        out[name] = Run(time.monotonic() - start, usage.ru_utime + usage.ru_stime)
    return out


def slots(labs: list[str]) -> list[list[tuple[str, str]]]:
    """All pairs, grouped into rounds of disjoint pairs (the circle method)."""
    ring = labs + ([""] if len(labs) % 2 else [])
    out = []
    for _ in range(len(ring) - 1):
        half = len(ring) // 2
        pairs = [(ring[i], ring[-1 - i]) for i in range(half)]
        out.append([p for p in pairs if "" not in p])
        ring = [ring[0], ring[-1], *ring[1:-1]]
    return out


@dataclass
class Figures:
    consortium: dict[str, Run] = field(default_factory=dict)
    consortium_wall: float = 0.0
    hub_cpu: float = 0.0
    pairwise_cpu: dict[str, float] = field(default_factory=dict)
    pairwise_wall: dict[str, float] = field(default_factory=dict)
    pairwise_total_wall: float = 0.0


def build(root: Path, labs: list[str], n: int, k: int, seed: int) -> Sandbox:
    sandbox = Sandbox(root)
    policy = sandbox_policy() + consortium_section(
        HUB, labs, k=k, kinds=(KIND,), max_set_size=max(n, 1)
    )
    sandbox.create(labs, policy=policy)
    sandbox.add_hub(HUB)
    sandbox.install_policy(policy, {HUB: sandbox.labs[HUB]})
    rng = random.Random(seed)
    pool = [f"acct-{i:010d}" for i in rng.sample(range(10**10), 2 * n)]
    for lab in labs:
        values = rng.sample(pool, n)
        path = root / f"{lab}.txt"
        path.write_text("".join(v + "\n" for v in values))
        say(f"import {n} into {lab}")
        run_cli("import", sandbox.labs[lab].dir, path, "--kind", KIND)
    return sandbox


def measure_consortium(sandbox: Sandbox, labs: list[str], fig: Figures) -> None:
    hub = sandbox.labs[HUB]
    address = hub.start()
    for lab in labs:
        run_cli("peer", "add", sandbox.labs[lab].dir, "--lab", HUB, "--address", address)
    assert hub.process is not None
    before = proc_cpu(hub.process.pid)
    say("consortium round: every lab at once")
    start = time.monotonic()
    fig.consortium = run_processes(
        {lab: cli_command("consortium-round", sandbox.labs[lab].dir) for lab in labs}
    )
    fig.consortium_wall = time.monotonic() - start
    fig.hub_cpu = proc_cpu(hub.process.pid) - before
    hub.stop()


def measure_pairwise(sandbox: Sandbox, labs: list[str], fig: Figures) -> None:
    for lab in labs:
        sandbox.labs[lab].start()
    for a, b in itertools.permutations(labs, 2):
        run_cli(
            "peer", "add", sandbox.labs[a].dir, "--lab", b, "--address", sandbox.labs[b].address
        )
    serve_pids = {lab: sandbox.labs[lab].process.pid for lab in labs}  # type: ignore[union-attr]
    serve_before = {lab: proc_cpu(pid) for lab, pid in serve_pids.items()}
    fig.pairwise_cpu = dict.fromkeys(labs, 0.0)
    fig.pairwise_wall = dict.fromkeys(labs, 0.0)
    start = time.monotonic()
    for slot in slots(labs):
        say(f"pairwise rounds at once: {', '.join(f'{a}-{b}' for a, b in slot)}")
        t = time.monotonic()
        runs = run_processes(
            {
                a: cli_command("round", sandbox.labs[a].dir, "--peer", b, "--kinds", KIND)
                for a, b in slot
            }
        )
        took = time.monotonic() - t
        for a, b in slot:
            fig.pairwise_cpu[a] += runs[a].cpu
            fig.pairwise_wall[a] += took
            fig.pairwise_wall[b] += took
    fig.pairwise_total_wall = time.monotonic() - start
    for lab, pid in serve_pids.items():
        fig.pairwise_cpu[lab] += proc_cpu(pid) - serve_before[lab]
    sandbox.stop_all()


def report(fig: Figures, labs: list[str], n: int, k: int) -> str:
    lines = [
        f"consortium bench: {len(labs)} labs x {n} elements, k = {k}",
        f"{'lab':<8} {'cons cpu':>9} {'pair cpu':>9} {'cpu ratio':>9} "
        f"{'cons wall':>9} {'pair wall':>9} {'wall ratio':>10}",
    ]
    for lab in labs:
        c, p = fig.consortium[lab], fig.pairwise_cpu[lab]
        pw = fig.pairwise_wall[lab]
        lines.append(
            f"{lab:<8} {c.cpu:>8.1f}s {p:>8.1f}s {c.cpu / p:>9.2f} "
            f"{c.wall:>8.1f}s {pw:>8.1f}s {c.wall / pw:>10.2f}"
        )
    cons = sum(r.cpu for r in fig.consortium.values())
    pair = sum(fig.pairwise_cpu.values())
    wall = fig.consortium_wall / fig.pairwise_total_wall
    lines += [
        f"all labs: consortium CPU {cons:.1f} s, pairwise CPU {pair:.1f} s, "
        f"ratio {cons / pair:.2f} (target <= 1.0)",
        f"with the hub's {fig.hub_cpu:.1f} s: ratio {(cons + fig.hub_cpu) / pair:.2f}",
        f"wall: consortium round {fig.consortium_wall:.1f} s, all pairwise rounds "
        f"{fig.pairwise_total_wall:.1f} s, ratio {wall:.2f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=100_000, help="elements per lab")
    p.add_argument("--labs", type=int, default=5)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dir", type=Path, help="keep the sandbox here (default: a temp dir)")
    args = p.parse_args(argv)
    labs = [f"lab-{chr(ord('a') + i)}" for i in range(args.labs)]
    with tempfile.TemporaryDirectory(prefix="consortium-bench-") as tmp:
        root = args.dir or Path(tmp) / "c"
        sandbox = build(root, labs, args.n, args.k, args.seed)
        fig = Figures()
        try:
            measure_consortium(sandbox, labs, fig)
            measure_pairwise(sandbox, labs, fig)
        finally:
            sandbox.stop_all()
    print(report(fig, labs, args.n, args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
