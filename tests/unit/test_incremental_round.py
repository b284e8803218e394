"""Incremental rounds in memory: a repeated round under the same keys computes only what changed,
sends exactly what a round without a cache would, and finds the same intersection."""

from __future__ import annotations

import hashlib
import random

import private_set_intersection.python as psi_lib
import pytest

from protocol.psi import Engine
from protocol.round import RoundCache, RoundSide
from tests.round_harness import Wire, round_header


def new_key() -> bytes:
    return psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes()


def fp(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def run(
    ka: bytes,
    kb: bytes,
    own_a: list[bytes],
    own_b: list[bytes],
    *,
    cache_a: RoundCache | None = None,
    cache_b: RoundCache | None = None,
    mode: str = "reveal",
    keep: bool = True,
    chunk: int = 16,
):
    """Both sides of one single-kind round; returns per side (outcome, side, engine counts)."""
    header = round_header([len(own_a)], [len(own_b)], mode=mode)
    with Engine(ka) as ea, Engine(kb) as eb:
        wire = Wire(
            header, (ea, eb), own_a, own_b, chunk=chunk, seed=3, propagate_errors=False,
            caches=(cache_a, cache_b), keep_cache=keep,
        )  # fmt: skip
        wire.start()
        out = {}
        for name, engine in (("a", ea), ("b", eb)):
            outcome = wire.result(name, 60)
            wire.sides[name].join(5)
            out[name] = (outcome, wire.sides[name], (engine.blinded, engine.reblinded))
        return out


def shared(outcome, own) -> set[bytes]:
    return {own[i] for i in outcome.matched_positions["email"]}


def churn(items: list[bytes], k: int, tag: str, rng: random.Random) -> tuple[list[bytes], list]:
    """Remove k random items, add k new ones at random positions; returns (new list, added)."""
    kept = [x for x in items if x not in set(rng.sample(items, k))]
    added = [fp(f"{tag}-new-{i}") for i in range(k)]
    out = kept + added
    rng.shuffle(out)
    return out, added


@pytest.mark.parametrize("chunk", [7, 64])
def test_repeat_round_computes_only_the_change_and_matches_a_fresh_round(chunk):
    rng = random.Random(11)
    common = [fp(f"c{i}") for i in range(40)]
    a1 = common + [fp(f"a{i}") for i in range(260)]
    b1 = common + [fp(f"b{i}") for i in range(200)]
    rng.shuffle(a1)
    rng.shuffle(b1)
    ka, kb = new_key(), new_key()

    first = run(ka, kb, a1, b1, chunk=chunk)
    assert first["a"][2] == (300, 240) and first["b"][2] == (240, 300)
    cache_a, cache_b = first["a"][1].next_cache().tables(), first["b"][1].next_cache().tables()
    assert len(cache_a.own) == 300 and len(cache_a.peer) == 240

    # 1%-ish churn on each side, one new shared element among the additions.
    a2, added_a = churn(a1, 3, "a", rng)
    b2, added_b = churn(b1, 2, "b", rng)
    a2.append(fp("both-new"))
    b2.append(fp("both-new"))
    repeat = run(ka, kb, a2, b2, cache_a=cache_a, cache_b=cache_b, chunk=chunk)
    # Only the new elements went through the engine, on both sides.
    assert repeat["a"][2] == (len(added_a) + 1, len(added_b) + 1)
    assert repeat["b"][2] == (len(added_b) + 1, len(added_a) + 1)
    work = repeat["a"][1].work
    assert (work.blinded, work.blinded_cached) == (4, len(a2) - 4)
    assert (work.reblinded, work.reblinded_cached) == (3, len(b2) - 3)

    truth = set(a2) & set(b2)
    assert shared(repeat["a"][0], a2) == truth == shared(repeat["b"][0], b2)
    # The same round with fresh keys and no cache finds the same.
    fresh = run(new_key(), new_key(), a2, b2, keep=False, chunk=chunk)
    assert shared(fresh["a"][0], a2) == truth
    assert fresh["a"][0].intersection_sizes == repeat["a"][0].intersection_sizes
    # Under the same keys without a cache, every byte on the wire is the same.
    uncached = run(ka, kb, a2, b2, keep=False, chunk=chunk)
    assert uncached["a"][0].transcript_hash == repeat["a"][0].transcript_hash
    assert uncached["b"][0].transcript_hash == repeat["b"][0].transcript_hash

    # The next cache holds this round's sets only: what left them is gone.
    next_a = repeat["a"][1].next_cache().tables()
    assert len(next_a.own) == len(a2) and len(next_a.peer) == len(b2)
    removed = [x for x in a1 if x not in set(a2)]
    assert not next_a.own.contains(b"".join(removed)).any()


def test_count_mode_with_cache_still_counts_right():
    items_a = [fp(f"x{i}") for i in range(50)]
    items_b = [fp(f"x{i}") for i in range(25, 90)]
    ka, kb = new_key(), new_key()
    first = run(ka, kb, items_a, items_b, mode="count")
    assert first["a"][0].intersection_sizes == {"email": 25}
    again = run(
        ka,
        kb,
        items_a,
        items_b,
        mode="count",
        cache_a=first["a"][1].next_cache().tables(),
        cache_b=first["b"][1].next_cache().tables(),
    )
    assert again["a"][2] == (0, 0) and again["b"][2] == (0, 0)
    assert again["b"][0].intersection_sizes == {"email": 25}


def test_no_cache_without_keep_or_after_failure():
    items = [fp(f"x{i}") for i in range(10)]
    out = run(new_key(), new_key(), items, items, keep=False)
    assert out["a"][1].next_cache() is None


def test_cache_needs_fingerprint_sized_elements():
    header = round_header((1,), (1,))
    with Engine(new_key()) as e, pytest.raises(ValueError, match="32 bytes"):
        RoundSide(
            header,
            "initiator",
            [b"short"],
            e,
            lambda *a: None,
            chunk_size=4,
            rng=random.Random(1),
            keep_cache=True,
        )
