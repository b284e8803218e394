"""`crossmatch demo`: three labs on loopback, end to end, checked against the known truth.

Every step is the real CLI in a real process: CA, consortium key, three node
directories, imports in three file formats, three `serve` daemons over mutual
TLS, every pairwise round, the matches each lab learned, and `audit verify`
of every log. Exits 0 only if every lab learned exactly the offenders it
shares with each peer, and nothing else, and every audit log verifies.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

from node.demo_data import KINDS, Consortium, generate
from node.sandbox import Sandbox, run_cli
from protocol.errors import CrossmatchError

LABS = ["lab-a", "lab-b", "lab-c"]

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
        phones.write_text("".join(json.dumps({"phone": v, "source": "signup"}) + "\n"
                                  for v in lab.values("phone")))
        files.append(("phone", phones, ["--field", "phone"]))
        for kind in ("ip", "account_id"):
            path = folder / f"{kind}s.txt"
            path.write_text("".join(v + "\n" for v in lab.values(kind)))
            files.append((kind, path, []))
        plan[name] = files
    return plan


def run(workdir: Path | None, say: Say) -> bool:
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="crossmatch-demo-"))
    if root.exists() and any(root.iterdir()):
        raise CrossmatchError(f"{root} is not empty; give an empty or new --workdir")
    say(f"crossmatch demo in {root}")
    data = generate(LABS)
    ok = True
    with Sandbox(root) as sandbox:
        say("1. consortium CA, consortium key, three lab nodes")
        sandbox.create(LABS)
        say("2. each lab imports its flagged signals (CSV, JSON lines, plain lines)")
        for name, files in write_inputs(root, data).items():
            for kind, path, opts in files:
                out = run_cli("import", sandbox.labs[name].dir, path, "--kind", kind, *opts)
                say(f"   {name}: {out.stdout.strip()}")
        say("3. responders start on loopback with mutual TLS; labs exchange addresses")
        sandbox.start_all()
        sandbox.peer_all()
        for lab in sandbox.labs.values():
            say(f"   {lab.name} serving on {lab.address}")
        say("4. pairwise rounds (reveal mode: both sides learn the shared offenders)")
        for a, b in combinations(LABS, 2):
            ok &= _pair_round(sandbox, data, a, b, say)
        say("5. a count-only round: both learn how many, not which")
        ok &= _count_round(sandbox, data, "lab-a", "lab-b", say)
        sandbox.stop_all()
        say("6. every lab's audit log verifies offline")
        for lab in sandbox.labs.values():
            proc = run_cli("audit", "verify", lab.dir, check=False)
            good = proc.returncode == 0
            ok &= good
            detail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else (
                proc.stderr.strip())
            say(f"   {lab.name}: {'OK' if good else 'FAILED'} {detail}")
    say("demo " + ("PASSED: every lab learned exactly the offenders it shares, and every log "
                   "verifies" if ok else "FAILED"))
    return ok


def _pair_round(sandbox: Sandbox, data: Consortium, a: str, b: str, say: Say) -> bool:
    out = run_cli("round", sandbox.labs[a].dir, "--peer", b, "--json")
    summary = json.loads(out.stdout)
    rid = summary["round_id"]
    truth = data.shared(a, b)
    ok = True
    say(f"   {a} <-> {b}: round {rid[:12]}, shared {summary['intersection_sizes']}")
    for me, other in ((a, b), (b, a)):
        found = json.loads(run_cli("matches", sandbox.labs[me].dir, "--round", rid,
                                   "--format", "json").stdout)
        for kind in KINDS:
            expected = data.labs[me].rendered(kind, truth)
            got = {m["value"] for m in found if m["kind"] == kind}
            good = got == expected
            ok &= good
            if not good:
                say(f"      {me} {kind}: MISMATCH expected {len(expected)}, got {len(got)}: "
                    f"missing {sorted(expected - got)[:3]}, extra {sorted(got - expected)[:3]}")
        sample = sorted(m["value"] for m in found if m["kind"] == "email")[:3]
        say(f"      {me} learned {len(found)} shared signals with {other}, "
            f"{'as expected' if ok else 'WRONG'}; e.g. {', '.join(sample)}")
    return ok


def _count_round(sandbox: Sandbox, data: Consortium, a: str, b: str, say: Say) -> bool:
    out = run_cli("round", sandbox.labs[a].dir, "--peer", b, "--mode", "count", "--json")
    summary = json.loads(out.stdout)
    expected = {k: len(data.shared(a, b)) for k in KINDS}
    got = summary["intersection_sizes"]
    stored = json.loads(run_cli("matches", sandbox.labs[a].dir, "--round", summary["round_id"],
                                "--format", "json").stdout)
    ok = got == expected and stored == []
    say(f"   {a} <-> {b} count mode: {got} ({'as expected' if ok else 'WRONG'}), "
        f"{len(stored)} values revealed")
    return ok
