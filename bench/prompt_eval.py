"""Evaluate prompt fingerprints on synthetic campaigns: recall, false positives, cost, speed.

    python -m bench.prompt_eval            # the full evaluation (a few minutes)
    python -m bench.prompt_eval --quick    # smaller data, no 100k throughput run

Definitions (pairs of distinct prompts of one lab's data, Jaccard similarity on
the shingles of the parameter set under test):

- recall: of the pairs with Jaccard >= 0.7, the fraction that share >= 1 token;
- false positive rate (FPR): of the pairs with Jaccard <= 0.3, the fraction that
  share >= 1 token;
- tokens per prompt: ``bands`` (before deduplication); distinct tokens per prompt
  after a lab deduplicates its token set (what PSI actually carries);
- throughput: prompts fingerprinted per second on one core (text to tokens).

Exact Jaccard of all pairs is found without comparing all pairs: pairs above
0.3 come from a prefix-filtered self-join (a pair with Jaccard >= t must share
one of the rarest ``|A| - ceil(t |A|) + 1`` shingles of each set), pairs that
share a token from an inverted index of tokens; every other pair has Jaccard
<= 0.3 and shares no token.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from bench.prompt_campaigns import generate
from protocol.fingerprints.prompts import (
    DEFAULT_PARAMS,
    PromptParams,
    iter_prompt_tokens,
    normalize_prompt,
    param_set_id,
    params_from_id,
    shingles,
)

KEY = bytes(range(32))  # any fixed key: the measures do not depend on it
HIGH, LOW = 0.7, 0.3
ALTERNATIVES = (
    "pm1-nfkc1-w3-b20r5-shake128u32",
    "pm1-nfkc1-w3-b8r3-shake128u32",
    "pm1-nfkc1-w3-b10r4-shake128u32",
    "pm1-nfkc1-w3-b12r4-shake128u32",
    "pm1-nfkc1-w3-b16r4-shake128u32",
    "pm1-nfkc1-w3-b16r5-shake128u32",
    "pm1-nfkc1-w3-b32r6-shake128u32",
    "pm1-nfkc1-w2-b20r5-shake128u32",
    "pm1-nfkc1-w4-b20r5-shake128u32",
    "pm1-nfkc1-c5-b20r5-shake128u32",
)

Pair = tuple[int, int]


@dataclass
class PairResult:
    set_id: str
    prompts: int
    high_pairs: int
    high_hits: int
    low_pairs: int
    low_hits: int
    tokens_per_prompt: int
    distinct_tokens_per_prompt: float
    prompts_per_second: float
    similar: dict[Pair, float]
    sharing: set[Pair]
    jaccard_of_sharing: dict[Pair, float]

    @property
    def recall(self) -> float:
        return self.high_hits / self.high_pairs if self.high_pairs else float("nan")

    @property
    def fpr(self) -> float:
        return self.low_hits / self.low_pairs if self.low_pairs else float("nan")


def evaluate_pairs(texts: Sequence[str], params: PromptParams) -> PairResult:
    """Recall, FPR and cost of one parameter set on one lab's prompts."""
    sets = [shingles(normalize_prompt(text), params) for text in texts]
    started = time.perf_counter()
    tokens = list(iter_prompt_tokens(KEY, texts, params))
    elapsed = time.perf_counter() - started
    similar = similar_pairs(sets, LOW)
    sharing = token_sharing_pairs(tokens)
    jaccard_of_sharing = {
        pair: similar.get(pair) or _jaccard(sets[pair[0]], sets[pair[1]]) for pair in sharing
    }
    total_pairs = len(texts) * (len(texts) - 1) // 2
    high = [pair for pair, value in similar.items() if value >= HIGH]
    above_low = sum(1 for value in similar.values() if value > LOW)
    distinct = len({token for row in tokens for token in row})
    return PairResult(
        set_id=param_set_id(params),
        prompts=len(texts),
        high_pairs=len(high),
        high_hits=sum(1 for pair in high if pair in sharing),
        low_pairs=total_pairs - above_low,
        low_hits=sum(1 for value in jaccard_of_sharing.values() if value <= LOW),
        tokens_per_prompt=params.bands,
        distinct_tokens_per_prompt=distinct / len(texts),
        prompts_per_second=len(texts) / elapsed,
        similar=similar,
        sharing=sharing,
        jaccard_of_sharing=jaccard_of_sharing,
    )


def similar_pairs(sets: Sequence[frozenset[str]], threshold: float) -> dict[Pair, float]:
    """Every pair (i < j) with Jaccard >= threshold, exactly, by a prefix-filtered self-join."""
    frequency = Counter(shingle for shingle_set in sets for shingle in shingle_set)
    index: dict[str, list[int]] = defaultdict(list)
    found: dict[Pair, float] = {}
    for i, shingle_set in enumerate(sets):
        ordered = sorted(shingle_set, key=lambda s: (frequency[s], s))
        prefix = len(ordered) - math.ceil(threshold * len(ordered)) + 1
        candidates: set[int] = set()
        for shingle in ordered[:prefix]:
            postings = index[shingle]
            candidates.update(postings)
            postings.append(i)
        size = len(shingle_set)
        for j in candidates:
            other = sets[j]
            # Length filter: Jaccard <= min/max of the sizes.
            if min(size, len(other)) < threshold * max(size, len(other)):
                continue
            value = _jaccard(shingle_set, other)
            if value >= threshold:
                found[(j, i)] = value
    return found


def token_sharing_pairs(tokens: Sequence[Sequence[bytes]]) -> set[Pair]:
    """Every pair (i < j) of prompts with at least one token in common."""
    holders: dict[bytes, list[int]] = defaultdict(list)
    for i, row in enumerate(tokens):
        for token in row:
            holders[token].append(i)
    pairs: set[Pair] = set()
    for prompts in holders.values():
        if len(prompts) > 1:
            pairs.update(combinations(sorted(set(prompts)), 2))
    return pairs


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    common = len(a & b)
    return common / (len(a) + len(b) - common)


# --- S-curve -----------------------------------------------------------------------------


def s_curve_rows(result: PairResult, params: PromptParams) -> list[tuple[str, int, float, float]]:
    """Per Jaccard bucket above 0.3: pairs, measured share rate, and the S-curve's prediction."""
    rows = []
    edges = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001]
    for low, high in zip(edges, edges[1:], strict=False):
        values = [(pair, v) for pair, v in result.similar.items() if low < v <= high]
        hits = sum(1 for pair, _ in values if pair in result.sharing)
        predicted = (
            sum(params.match_probability(v) for _, v in values) / len(values) if values else 0.0
        )
        label = f"({low:.1f}, {min(high, 1.0):.1f}]"
        rows.append((label, len(values), hits / len(values) if values else 0.0, predicted))
    return rows


# --- two labs ----------------------------------------------------------------------------


@dataclass
class TwoLabResult:
    shared_campaigns: int
    shared_found: int
    unrelated_campaigns: int
    unrelated_linked: int
    sibling_campaigns: int
    sibling_linked: int
    background_prompts: int
    background_reported: int
    background_reported_twice: int
    intersection_tokens: int
    lab_tokens: tuple[int, int]


def two_labs(
    params: PromptParams, *, per_campaign: int, background: int, seed: int
) -> TwoLabResult:
    """Two labs and plain set intersection of their token sets (what PSI computes).

    Both labs are hit by the same 6 campaigns (skeletons 0-5; each lab has its
    own sample, no text in common). Each also has 3 campaigns of its own on
    skeletons nobody else uses (lab 1: 6-8, lab 2: 9-11), and lab 1 has 3
    *siblings*: other campaigns on skeletons 0-2 (other wording and values).
    """
    shared_seed = seed * 1000
    layout = {
        1: [(6, 0, shared_seed), (3, 6, shared_seed + 1), (3, 0, shared_seed + 3)],
        2: [(6, 0, shared_seed), (3, 9, shared_seed + 2)],
    }
    labs = []
    for lab, parts in layout.items():
        records = generate(seed * 10 + lab, 0, 0, background)
        for number, (count, first, campaign_seed) in enumerate(parts):
            records += generate(
                seed * 10 + lab + 100 * (number + 1),
                count,
                per_campaign,
                0,
                campaign_seed=campaign_seed,
                first_skeleton=first,
            )
        tokens = list(iter_prompt_tokens(KEY, [r["text"] or "" for r in records], params))
        labs.append((records, tokens))
    token_sets = [{t for row in tokens for t in row} for _, tokens in labs]
    common = token_sets[0] & token_sets[1]
    texts = [{r["text"] for r in records} for records, _ in labs]
    assert not texts[0] & texts[1], "the two labs' samples must not share a prompt text"
    linked: set[str] = set()
    background_reported = background_twice = 0
    for records, tokens in labs:
        for record, row in zip(records, tokens, strict=True):
            matched = len(common.intersection(row))
            if not matched:
                continue
            if record["campaign"] is None:
                background_reported += 1
                background_twice += matched >= 2
            else:
                linked.add(record["campaign"])
    return TwoLabResult(
        shared_campaigns=6,
        shared_found=sum(1 for c in linked if c.startswith(f"campaign-{shared_seed}-")),
        unrelated_campaigns=6,
        unrelated_linked=sum(
            1
            for c in linked
            if c.startswith((f"campaign-{shared_seed + 1}-", f"campaign-{shared_seed + 2}-"))
        ),
        sibling_campaigns=3,
        sibling_linked=sum(1 for c in linked if c.startswith(f"campaign-{shared_seed + 3}-")),
        background_prompts=2 * background,
        background_reported=background_reported,
        background_reported_twice=background_twice,
        intersection_tokens=len(common),
        lab_tokens=(len(token_sets[0]), len(token_sets[1])),
    )


# --- throughput --------------------------------------------------------------------------


def throughput(params: PromptParams, n: int, seed: int) -> tuple[float, float, float]:
    """Seconds and prompts/s to fingerprint n prompts (20% campaign, 80% background), 1 core."""
    per_campaign = 100
    records = generate(seed, n // 5 // per_campaign, per_campaign, n - n // 5, campaign_seed=seed)
    texts = [r["text"] or "" for r in records]
    words = sum(len(t.split()) for t in texts) / len(texts)
    started = time.perf_counter()
    count = sum(1 for _ in iter_prompt_tokens(KEY, texts, params))
    elapsed = time.perf_counter() - started
    assert count == len(texts)
    return elapsed, count / elapsed, words


# --- report ------------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prompt_eval", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--campaigns", type=int, default=40)
    parser.add_argument("--per-campaign", type=int, default=60)
    parser.add_argument("--background", type=int, default=6000)
    parser.add_argument("--throughput", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--quick", action="store_true", help="small data, no throughput run")
    parser.add_argument("--params", action="append", help="param_set_id to compare (repeatable)")
    args = parser.parse_args(argv)
    if args.quick:
        args.campaigns, args.per_campaign, args.background, args.throughput = 12, 30, 1000, 0
    candidates = [params_from_id(i) for i in (args.params or ALTERNATIVES)]
    if DEFAULT_PARAMS not in candidates:
        candidates.insert(0, DEFAULT_PARAMS)

    print(f"command: python -m bench.prompt_eval {' '.join(argv or sys.argv[1:])}".rstrip())
    print(f"machine: {machine()}")
    records = generate(args.seed, args.campaigns, args.per_campaign, args.background)
    texts = [r["text"] or "" for r in records]
    print(
        f"data: seed {args.seed}, {args.campaigns} campaigns x {args.per_campaign} prompts + "
        f"{args.background} background = {len(texts)} prompts, "
        f"{len(texts) * (len(texts) - 1) // 2:,} pairs"
    )
    print()
    print(
        "| param_set_id | default | tokens/prompt | distinct tokens/prompt | pairs J>=0.7 "
        "| recall | pairs J<=0.3 | false positive pairs | FPR | prompts/s (this data) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    for params in candidates:
        result = evaluate_pairs(texts, params)
        results[result.set_id] = result
        print(
            f"| `{result.set_id}` | {'yes' if params == DEFAULT_PARAMS else ''} "
            f"| {result.tokens_per_prompt} | {result.distinct_tokens_per_prompt:.2f} "
            f"| {result.high_pairs:,} | {result.recall:.4f} | {result.low_pairs:,} "
            f"| {result.low_hits:,} | {result.fpr:.2e} | {result.prompts_per_second:,.0f} |"
        )
        sys.stdout.flush()

    default = results[param_set_id(DEFAULT_PARAMS)]
    print()
    print(f"S-curve of the default ({default.set_id}): share rate per Jaccard bucket")
    print()
    print("| Jaccard | pairs | measured P(share a token) | predicted 1-(1-J^r)^b |")
    print("|---|---|---|---|")
    for label, count, measured, predicted in s_curve_rows(default, DEFAULT_PARAMS):
        print(f"| {label} | {count:,} | {measured:.4f} | {predicted:.4f} |")
    low_values = sorted(v for v in default.jaccard_of_sharing.values() if v <= LOW)
    if low_values:
        print(
            f"\nfalse positive pairs: Jaccard from {low_values[0]:.3f} to {low_values[-1]:.3f}, "
            f"median {low_values[len(low_values) // 2]:.3f}"
        )
    high_in_campaign = _label_mix(records, default)
    print(high_in_campaign)

    print()
    print("Two labs (plain intersection of their token sets, which is what PSI computes):")
    lab = two_labs(
        DEFAULT_PARAMS,
        per_campaign=args.per_campaign,
        background=args.background // 2,
        seed=args.seed + 1,
    )
    print(
        f"- shared campaigns found: {lab.shared_found}/{lab.shared_campaigns}; "
        f"unrelated private campaigns linked: {lab.unrelated_linked}/{lab.unrelated_campaigns}; "
        f"sibling campaigns (same skeleton, other wording) linked: "
        f"{lab.sibling_linked}/{lab.sibling_campaigns}"
    )
    print(
        f"- background prompts with a token in the intersection: "
        f"{lab.background_reported}/{lab.background_prompts} "
        f"(with 2 or more: {lab.background_reported_twice})"
    )
    print(
        f"- distinct tokens per lab: {lab.lab_tokens[0]:,} and {lab.lab_tokens[1]:,}; "
        f"in the intersection: {lab.intersection_tokens:,}"
    )

    if args.throughput:
        elapsed, rate, words = throughput(DEFAULT_PARAMS, args.throughput, args.seed + 2)
        print()
        print(
            f"Throughput ({param_set_id(DEFAULT_PARAMS)}): "
            f"{args.throughput:,} prompts (mean {words:.0f} words) in {elapsed:.1f} s "
            f"= {rate:,.0f} prompts/s on one core"
        )
    return 0


def _label_mix(records: Sequence[dict[str, str | None]], result: PairResult) -> str:
    """Where the similar pairs and the false positives come from."""

    def origin(pair: Pair) -> str:
        a, b = (records[i]["campaign"] for i in pair)
        if a is None or b is None:
            return "with background"
        return "same campaign" if a == b else "two campaigns"

    similar = Counter((origin(p), v >= HIGH) for p, v in result.similar.items())
    false = Counter(origin(p) for p, v in result.jaccard_of_sharing.items() if v <= LOW)
    kinds = ("same campaign", "two campaigns", "with background")

    def spell(counts: Counter, key: object = None) -> str:
        return ", ".join(f"{counts[(k, key) if key is not None else k]:,} {k}" for k in kinds)

    return (
        f"pairs J>=0.7: {spell(similar, True)}\n"
        f"pairs 0.3<J<0.7: {spell(similar, False)}\n"
        f"false positive pairs: {spell(false)}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
