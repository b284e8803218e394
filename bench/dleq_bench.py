"""Cost of the batched DLEQ proofs of verified matches, per proven element.

    python -m bench.dleq_bench                 # m = 1,000 and 10,000 pairs
    python -m bench.dleq_bench --m 100000

For each batch size m it times, in one run: the blind and re-blind of the m
elements (the round's own work on them, for scale), the prover (m multiplies and
additions, split over the workers) and the verifier (2m of each), with 1 worker
and with one per core. rbcl has no multi-scalar multiplication, so these are
linear in m; what a round pays is m = the intersection, on each side.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

from protocol.suites.ristretto255 import RISTRETTO255


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def measure(m: int, workers: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU of all threads) microseconds per element of each step."""
    key = RISTRETTO255.key_from_random(os.urandom(64))
    items = [hashlib.sha256(b"%d" % i).digest() for i in range(m)]
    with RISTRETTO255.engine(key, workers=workers) as engine:
        marks = [clocks()]
        blinded = engine.blind(items)
        marks.append(clocks())
        reblinded = engine.reblind(blinded)
        marks.append(clocks())
        cs = [blinded[i : i + 32] for i in range(0, len(blinded), 32)]
        ds = [reblinded[i : i + 32] for i in range(0, len(reblinded), 32)]
        proof = engine.prove(cs, ds, b"bench", os.urandom(64))
        marks.append(clocks())
        assert engine.verify(engine.public_key, cs, ds, b"bench", proof)
        marks.append(clocks())
    us = 1e6 / m
    steps = ("blind", "reblind", "prove", "verify")
    return {
        name: ((b[0] - a[0]) * us, (b[1] - a[1]) * us)
        for name, a, b in zip(steps, marks, marks[1:], strict=False)
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.dleq_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--m", type=int, action="append", help="pairs per proof (repeatable)")
    args = p.parse_args(argv)
    one, five, fifteen = os.getloadavg()
    print(f"load {one:.2f} {five:.2f} {fifteen:.2f}; us per element, wall / CPU (all threads)")
    print("| m | workers | blind | re-blind | prove | verify |")
    print("|---:|---:|---:|---:|---:|---:|")
    for m in args.m or [1_000, 10_000]:
        for workers in sorted({1, os.cpu_count() or 1}):
            r = measure(m, workers)
            cells = " | ".join(f"{wall:.0f} / {cpu:.0f}" for wall, cpu in r.values())
            print(f"| {m:,} | {workers} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
