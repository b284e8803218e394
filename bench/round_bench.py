"""Benchmark of a round: two real nodes, real gRPC and mutual TLS, against the library alone.

    python -m bench.round_bench                      # N = 100,000 a side, every suite
    python -m bench.round_bench --n 100000 --n 1000000
    python -m bench.round_bench --suite ristretto255-v1+proofs --suite openmined-p256-v1

For each N (sets of N account ids a side, ``--overlap`` of them shared) it builds a
two-lab consortium on loopback with ``node/demo/sandbox.py`` (each lab's ``crossmatch
serve`` is its own process; the initiator is a third process holding lab A's node
directory, as the CLI or the scheduler would) and measures, in one run:

- ``import``: ``crossmatch import`` of each lab's N values (not part of any round);
- ``naive``: the library's own one-way flow in this process on one thread
  (client CreateRequest, server CreateSetupMessage (raw), server ProcessRequest,
  client GetIntersection); only the client learns;
- then, for each ``--suite`` configuration (``ristretto255-v1+proofs``: the
  ristretto suite with verified matches, ``ristretto255-v1`` without,
  ``openmined-p256-v1``), under a signed policy naming it:
- ``floor``: the same blind and re-blind work as a mutual round (both sides' N
  blindings and N re-blindings) on that suite's engine with one worker per core,
  in memory;
- ``first``: a full mutual round in which both sides learn (epoch keys new, no cache);
- ``repeat``: the next round after ``--churn`` of each set was replaced (that many
  removed, as many new values added): in the same epoch, and so incremental, with
  verified matches only (ADR 0016); a first round again otherwise;

and prints the times, the ratios first/naive, repeat/first and first/floor, and
the peak resident memory (VmHWM) of both ``serve`` processes and of the initiator
(over the whole run, so the largest of the suites measured).
Timings on a shared machine are noisy: ratios within one run are what count, and
the load average is printed before each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.demo.sandbox import Sandbox

KIND = "account_id"
# (suite, verified matches) of each configuration, and its targets (None: report only).
CONFIGS = {
    "ristretto255-v1+proofs": ("ristretto255-v1", True),
    "ristretto255-v1": ("ristretto255-v1", False),
    "openmined-p256-v1": ("openmined-p256-v1", False),
}
TARGETS: dict[str, dict[str, float]] = {
    "ristretto255-v1+proofs": {"first/naive": 0.45, "repeat/first": 0.04},
    # Without proofs every round draws a fresh key (ADR 0016): a repeat round is a first.
    "ristretto255-v1": {"first/naive": 0.40},
    "openmined-p256-v1": {},
}
RATIOS = ("first/naive", "repeat/first", "first/floor")
RSS_TARGET_MIB = 600
# CPU seconds of the last measurement of each kind (the machine may be shared: CPU time is
# what the work cost, wall time what it took).
LAST_CPU: dict[str, float] = {}


# -- helpers -----------------------------------------------------------------------------


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model or platform.processor()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


# -- the data ------------------------------------------------------------------------------


def make_sets(n: int, overlap: float, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    shared = int(n * overlap)
    ids = [f"acct-{i:010d}" for i in rng.sample(range(10**10), 2 * n - shared)]
    return ids[:n], ids[n - shared :]


def churn_sets(
    a: list[str], b: list[str], fraction: float, overlap: float, seed: int
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """(removed, added) for each side: ``fraction`` of each set replaced by new values,
    ``overlap`` of the new values held by both sides."""
    rng = random.Random(seed)
    k = max(1, int(len(a) * fraction))
    shared = int(k * overlap)
    new = [f"new-{i:010d}" for i in rng.sample(range(10**10), 2 * k - shared)]
    return (rng.sample(a, k), new[:k]), (rng.sample(b, k), new[k - shared :])


def write_lines(path: Path, values: list[str]) -> Path:
    path.write_text("".join(v + "\n" for v in values))
    return path


def remove_signals(node_dir: Path, kind: str, fingerprints: list[bytes]) -> None:
    # There is no `crossmatch` command that retires signals yet, so the benchmark
    # deletes them itself (signal_values follow by ON DELETE CASCADE).
    db = sqlite3.connect(node_dir / "crossmatch.db", timeout=60)
    try:
        db.execute("PRAGMA foreign_keys = ON")
        with db:
            db.executemany(
                "DELETE FROM signals WHERE kind = ? AND fingerprint = ?",
                [(kind, fp) for fp in fingerprints],
            )
    finally:
        db.close()


def fingerprints_of(values: list[str], consortium_key: bytes) -> list[bytes]:
    from protocol.fingerprints import fingerprint_many, normalize

    return fingerprint_many(consortium_key, KIND, [normalize(KIND, v) for v in values])


# -- the measurements ----------------------------------------------------------------------


def measure_naive(a: list[bytes], b: list[bytes]) -> tuple[float, int]:
    """The library's one-way flow, one thread: only the client learns."""
    import private_set_intersection.python as psi

    t0 = time.perf_counter()
    c0 = time.process_time()
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    request = client.CreateRequest(a)
    setup = server.CreateSetupMessage(0.0, len(a), b, psi.DataStructure.RAW)
    response = server.ProcessRequest(request)
    found = client.GetIntersection(setup, response)
    LAST_CPU["naive"] = time.process_time() - c0
    return time.perf_counter() - t0, len(found)


def measure_floor(a: list[bytes], b: list[bytes], chunk: int, suite_name: str) -> float:
    """Both sides' blind and re-blind work, on one worker per core, no network or storage."""
    from node.ops.suites import ensure_suite
    from node.state.epochs import new_psi_key

    suite = ensure_suite(suite_name)
    workers = os.cpu_count() or 1
    with (
        suite.engine(new_psi_key(suite_name), workers=workers) as alpha,
        suite.engine(new_psi_key(suite_name), workers=workers) as beta,
    ):
        t0 = time.perf_counter()
        blinded = [(alpha.submit_blind(a[i : i + chunk]), beta) for i in range(0, len(a), chunk)]
        blinded += [(beta.submit_blind(b[i : i + chunk]), alpha) for i in range(0, len(b), chunk)]
        reblinded = [other.submit_reblind(f.result()) for f, other in blinded]
        for f in reblinded:
            f.result()
        return time.perf_counter() - t0


@dataclass
class Initiator:
    """A process that holds lab A's node open and runs rounds on request."""

    node_dir: Path
    peer: str
    process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.round_bench",
                "--initiator",
                str(self.node_dir),
                "--peer",
                self.peer,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reply()  # "ready"

    def _reply(self) -> dict:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"initiator exited with {self.process.wait()}")
        return json.loads(line)

    def round(self, responder_pid: int) -> dict:
        """One round; ``cpu_s`` is the CPU time of both sides (this process and the responder)."""
        assert self.process is not None and self.process.stdin is not None
        before = cpu_seconds(self.process.pid) + cpu_seconds(responder_pid)
        self.process.stdin.write("round\n")
        self.process.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise RuntimeError(f"round failed: {reply['error']}")
        reply["cpu_s"] = cpu_seconds(self.process.pid) + cpu_seconds(responder_pid) - before
        return reply

    def stop(self) -> None:
        if self.process is not None:
            if self.process.stdin:
                self.process.stdin.close()
            self.process.wait(30)


def initiator_main(node_dir: Path, peer: str) -> None:
    from node.net.initiator import run_round
    from node.ops.allocator import return_large_buffers
    from node.runtime import Node
    from protocol.errors import CrossmatchError

    return_large_buffers()  # as the crossmatch CLI does at start
    with Node(node_dir) as node:
        print(json.dumps({"ready": True}), flush=True)
        for command in sys.stdin:
            if command.strip() != "round":
                continue
            t0 = time.perf_counter()
            try:
                summary = run_round(node, peer, kinds=[KIND])
            except CrossmatchError as e:
                print(json.dumps({"error": e.diagnostics()}), flush=True)
                continue
            seconds = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "seconds": seconds,
                        "shared": summary.intersection_sizes[KIND],
                        "rss_mib": peak_rss_mib(os.getpid()),
                    }
                ),
                flush=True,
            )


@dataclass
class Result:
    """Times of one N; with several trials, each figure is the fastest trial's (the least
    disturbed by other load on the machine), and every trial is kept in ``trials``.
    Names are ``naive`` and ``churn``, or ``floor``/``first``/``repeat`` and a configuration."""

    n: int
    import_s: float = 0.0
    trials: dict[str, list[float]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    loads: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds, the last trial's

    def add(self, name: str, seconds: float) -> None:
        self.trials.setdefault(name, []).append(seconds)
        say(f"N={self.n}: {name} {seconds:.2f} s")

    def best(self, name: str) -> float:
        return min(self.trials.get(name, [0.0]))

    def ratio(self, config: str, name: str) -> float | None:
        top, bottom = (f"{x} {config}" if x != "naive" else x for x in name.split("/"))
        a, b = self.best(top), self.best(bottom)
        return a / b if a and b else None


def configure(node_dir: Path, workers: int | None, chunk: int | None) -> None:
    from node.config import load_config, save_config

    cfg = load_config(node_dir)
    if workers:
        cfg.workers = workers
    if chunk:
        cfg.chunk_size = chunk
    save_config(cfg)


def bench_policy(config: str, version: int) -> str:
    from node.demo.sandbox import sandbox_policy

    suite, verified = CONFIGS[config]
    return sandbox_policy(version=version, suite=suite, verified_matches=verified)


def bench_one(n: int, args: argparse.Namespace, root: Path) -> Result:
    from node.demo.sandbox import Sandbox, run_cli
    from node.pki.keys import read_consortium_key

    res = Result(n)
    sandbox = Sandbox(root / f"n{n}")
    sandbox.create(["lab-a", "lab-b"], policy=bench_policy(args.suite[0], 1))
    a_dir, b_dir = sandbox.labs["lab-a"].dir, sandbox.labs["lab-b"].dir
    for d in (a_dir, b_dir):
        configure(d, args.workers, args.chunk)
    va, vb = make_sets(n, args.overlap, seed=n)

    say(f"N={n}: importing {n} values into each lab ({load()})")
    t0 = time.perf_counter()
    for d, values in ((a_dir, va), (b_dir, vb)):
        run_cli(
            "import",
            d,
            write_lines(root / f"{d.name}-{n}.txt", values),
            "--kind",
            KIND,
            timeout=7200,
        )
    res.import_s = time.perf_counter() - t0

    key = read_consortium_key(sandbox.key_file)
    initiator = Initiator(a_dir, "lab-b")
    try:
        sandbox.start_all()
        sandbox.peer_all()
        initiator.start()
        version = 1
        for trial in range(args.trials):
            if not args.no_naive:
                naive_trial(res, va, vb, key, f"N={n} trial {trial + 1}/{args.trials}")
            for config in args.suite:
                if version > 1:  # the daemons and the initiator pick the new policy up
                    sandbox.install_policy(bench_policy(config, version))
                version += 1
                va, vb = run_trial(res, args, sandbox, initiator, key, va, vb, trial, config)
        assert initiator.process is not None
        res.rss_mib["initiator (lab-a)"] = peak_rss_mib(initiator.process.pid)
        for name, lab in sandbox.labs.items():
            assert lab.process is not None
            res.rss_mib[f"serve {name}"] = peak_rss_mib(lab.process.pid)
    finally:
        initiator.stop()
        sandbox.stop_all()
    return res


def forget_epoch_keys(sandbox: Sandbox) -> None:
    """Make the next round a first round: both labs drop their epoch keys and caches."""
    from node.state.epochs import EpochStore

    for name, lab in sandbox.labs.items():
        for other in sandbox.labs:
            if other != name:
                with EpochStore.for_node(lab.dir, 7) as epochs:
                    epochs.forget(other)


def naive_trial(res: Result, va: list[str], vb: list[str], key: bytes, tag: str) -> None:
    fa, fb = fingerprints_of(va, key), fingerprints_of(vb, key)
    say(f"{tag}: naive one-way flow, one thread ({load()})")
    res.loads.append("naive " + load())
    seconds, found = measure_naive(fa, fb)
    assert found == len(set(va) & set(vb)), (found, len(set(va) & set(vb)))
    res.add("naive", seconds)
    res.cpu["naive"] = LAST_CPU["naive"]


def run_trial(
    res: Result,
    args: argparse.Namespace,
    sandbox: Sandbox,
    initiator: Initiator,
    key: bytes,
    va: list[str],
    vb: list[str],
    trial: int,
    config: str,
) -> tuple[list[str], list[str]]:
    """floor, first, churn, repeat of one configuration on the current sets; returns the
    churned sets."""
    from node.demo.sandbox import run_cli

    n = res.n
    a_dir, b_dir = sandbox.labs["lab-a"].dir, sandbox.labs["lab-b"].dir
    expected = len(set(va) & set(vb))
    tag = f"N={n} trial {trial + 1}/{args.trials} {config}"
    fa, fb = fingerprints_of(va, key), fingerprints_of(vb, key)
    say(f"{tag}: floor, engine only, {os.cpu_count()} workers ({load()})")
    res.loads.append(f"floor {config} " + load())
    res.add(f"floor {config}", measure_floor(fa, fb, args.chunk or 8192, CONFIGS[config][0]))
    del fa, fb

    forget_epoch_keys(sandbox)
    say(f"{tag}: first round ({load()})")
    res.loads.append(f"first {config} " + load())
    responder = sandbox.labs["lab-b"].process
    assert responder is not None
    first = initiator.round(responder.pid)
    assert first["shared"] == expected, (first, expected)
    res.add(f"first {config}", first["seconds"])
    res.cpu[f"first {config}"] = first["cpu_s"]

    seed = n + 1 + trial + 1000 * list(CONFIGS).index(config)
    (rm_a, add_a), (rm_b, add_b) = churn_sets(va, vb, args.churn, args.overlap, seed=seed)
    say(f"{tag}: replacing {len(rm_a)} values a side ({load()})")
    t0 = time.perf_counter()
    for d, rm, add in ((a_dir, rm_a, add_a), (b_dir, rm_b, add_b)):
        remove_signals(d, KIND, fingerprints_of(rm, key))
        new_file = write_lines(sandbox.root / f"{d.name}-{n}-new{seed}.txt", add)
        run_cli("import", d, new_file, "--kind", KIND)
    res.add("churn", time.perf_counter() - t0)
    gone_a, gone_b = set(rm_a), set(rm_b)
    va = [v for v in va if v not in gone_a] + add_a
    vb = [v for v in vb if v not in gone_b] + add_b

    say(f"{tag}: repeat round ({load()})")
    res.loads.append(f"repeat {config} " + load())
    repeat = initiator.round(responder.pid)
    assert repeat["shared"] == len(set(va) & set(vb)), repeat
    res.add(f"repeat {config}", repeat["seconds"])
    res.cpu[f"repeat {config}"] = repeat["cpu_s"]
    return va, vb


def fmt_s(x: float) -> str:
    return f"{x:.2f} s" if x else "-"


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"machine: {machine()}",
        f"sets: N a side, {args.overlap:.0%} overlap; churn {args.churn:.0%} a side; "
        f"workers per node: {args.workers or 'config default'}; "
        f"chunk: {args.chunk or 'config default'}",
        "",
        "| N | suite | naive | floor | first | repeat | first/naive | repeat/first | first/floor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for c in args.suite:
            ratios = [r.ratio(c, k) for k in RATIOS]
            lines.append(
                f"| {r.n:,} | {c} | {fmt_s(r.best('naive'))} | {fmt_s(r.best(f'floor {c}'))} | "
                f"{fmt_s(r.best(f'first {c}'))} | {fmt_s(r.best(f'repeat {c}'))} | "
                + " | ".join(f"{x:.3f}" if x is not None else "-" for x in ratios)
                + " |"
            )
    lines += [
        "",
        "CPU seconds (both nodes' processes for a round; the one thread for naive): the work,",
        "whatever else runs on the machine.",
        "",
        "| N | suite | naive CPU | first CPU | repeat CPU | first/naive CPU | repeat/first CPU |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for c in args.suite:
            naive, first, repeat = (
                r.cpu.get(k, 0.0) for k in ("naive", f"first {c}", f"repeat {c}")
            )
            lines.append(
                f"| {r.n:,} | {c} | {fmt_s(naive)} | {fmt_s(first)} | {fmt_s(repeat)} | "
                f"{first / naive if naive and first else 0:.3f} | "
                f"{repeat / first if first and repeat else 0:.3f} |"
            )
    lines.append("")
    lines.append(
        "targets: "
        + "; ".join(
            f"{c}: " + ", ".join(f"{k} <= {v}" for k, v in TARGETS[c].items())
            for c in args.suite
            if TARGETS[c]
        )
        + f"; peak RSS <= {RSS_TARGET_MIB} MiB per node"
    )
    for r in results:
        misses = [
            f"{c} {k} {x:.3f} (target {t}, {x / t - 1:+.0%})"
            for c in args.suite
            for k, t in TARGETS[c].items()
            if (x := r.ratio(c, k)) is not None and x > t
        ]
        big = [f"{k} {v:.0f} MiB" for k, v in r.rss_mib.items() if v > RSS_TARGET_MIB]
        verdict = "; ".join(misses + big) or "all targets met"
        lines.append(f"N={r.n:,}: {verdict}")
        lines.append(
            "  import (both labs): "
            + fmt_s(r.import_s)
            + "; peak RSS MiB: "
            + ", ".join(f"{k} {v:.0f}" for k, v in r.rss_mib.items())
        )
        lines.append(
            "  every trial (s): "
            + "; ".join(
                f"{name} " + ", ".join(f"{x:.2f}" for x in xs) for name, xs in r.trials.items()
            )
        )
        lines.append(f"  load averages at each start: {'; '.join(r.loads)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.round_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, action="append", help="set size a side (repeatable)")
    p.add_argument("--overlap", type=float, default=0.10)
    p.add_argument("--churn", type=float, default=0.01)
    p.add_argument("--workers", type=int, help="engine workers per node (default: node config)")
    p.add_argument("--chunk", type=int, help="elements per chunk (default: node config)")
    p.add_argument(
        "--trials",
        type=int,
        default=1,
        help="repeat naive, floor, first and repeat; report the fastest of each",
    )
    p.add_argument("--no-naive", action="store_true", help="skip the library's one-way flow")
    p.add_argument(
        "--suite",
        action="append",
        choices=list(CONFIGS),
        help="a suite configuration to measure (repeatable; default: all)",
    )
    p.add_argument("--dir", type=Path, help="keep the consortium here (default: a temp dir)")
    p.add_argument("--initiator", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--peer", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.initiator:
        initiator_main(args.initiator, args.peer)
        return 0
    sizes = args.n or [100_000]
    args.suite = args.suite or list(CONFIGS)
    results = []
    with tempfile.TemporaryDirectory(prefix="crossmatch-bench-") as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            results.append(bench_one(n, args, root))
            print(report(results, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
