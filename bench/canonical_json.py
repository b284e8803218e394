"""Canonical JSON encoding: ours against the rfc8785 package, same run, interleaved.

    .venv/bin/python -m bench.canonical_json [--rounds 20] [--trials 2]

Encodes every record of a simulated audit log (the hot path: every record,
receipt and checkpoint is encoded) and prints microseconds per record for each
encoder in each trial (min and median of 20 repeats: the machine is shared).
It also checks that both give the same bytes. See docs/adr/0005-libraries-and-duplicates.md.
"""

from __future__ import annotations

import argparse
import timeit

import rfc8785

from protocol.audit.canonical import encode_canonical, parse_canonical
from tests.audit_simulator import memory_lab, populate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    a, b = memory_lab("lab-a"), memory_lab("lab-b")
    populate(a, b, rounds=args.rounds)
    values = [parse_canonical(line) for lab in (a, b) for line in lab.log.lines]  # type: ignore[attr-defined]
    assert all(rfc8785.dumps(v) == encode_canonical(v) for v in values)
    print(f"{len(values)} records, identical bytes from both encoders")
    for trial in range(args.trials):
        line = []
        for name, encode in (("ours", encode_canonical), ("rfc8785", rfc8785.dumps)):
            runs = timeit.repeat(lambda e=encode: [e(v) for v in values], number=20, repeat=20)
            per_record = sorted(t / 20 / len(values) * 1e6 for t in runs)
            line.append(f"{name} min {per_record[0]:.1f} us median {per_record[10]:.1f} us")
        print(f"trial {trial + 1}: " + ", ".join(line))


if __name__ == "__main__":
    main()
