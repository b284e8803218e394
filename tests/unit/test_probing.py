"""Attack 6 of issue 10 (probing) against the signed policy and the round, in memory:
each anti-probing rule refuses before any cryptographic work, with its name."""

from __future__ import annotations

import hashlib
import random

import private_set_intersection.python as psi_lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import InputError, PolicyError, ProtocolError
from protocol.policy_document import parse_policy_toml
from protocol.psi import Engine
from protocol.round import RoundSide
from tests.round_harness import deliver_to, round_header

HEAD = """\
policy_id = "p"
version = 1
purpose = "x"
not_before = 2026-01-01T00:00:00Z
not_after = 2027-01-01T00:00:00Z
"""
KINDS = """
[kinds.email]
max_set_size = 100000
min_set_size = 100
"""


def policy(extra: str = "", kinds: str = KINDS):
    return parse_policy_toml(HEAD + extra + kinds)


def rule_of(fn) -> str | None:
    try:
        fn()
    except (PolicyError, InputError) as e:
        return e.rule
    return None


def test_a_zero_interval_is_refused_at_parse_and_absent_means_an_hour():
    assert rule_of(lambda: policy("min_interval_seconds = 0\n")) == "policy-syntax"
    assert policy().min_interval_seconds == 3600
    assert policy("min_interval_seconds = 1\n").min_interval_seconds == 1


def test_probing_with_a_tiny_set_is_refused():
    p = policy()
    assert rule_of(lambda: p.check_sizes(["email"], [99])) == "min-set-size"
    p.check_sizes(["email"], [100])


@pytest.mark.parametrize(
    ("pad_to", "good", "bad"),
    [
        ("1024", [1024, 2048, 100000], [1000, 1025]),  # 100000 = the cap: padding stops there
        ('"pow2"', [128, 1024, 65536], [100, 1000, 1025]),
    ],
)
def test_sizes_must_be_the_policy_buckets(pad_to, good, bad):
    p = policy(f"pad_to = {pad_to}\n")
    for n in good:
        p.check_sizes(["email"], [n])
    for n in bad:
        assert rule_of(lambda n=n: p.check_sizes(["email"], [n])) == "pad-bucket", n


def test_policy_settings_are_strict_and_hashed():
    for bad in ('pad_to = "lots"\n', "pad_to = -4\n", "max_churn_per_epoch = -1\n"):
        assert rule_of(lambda bad=bad: policy(bad)) == "policy-syntax", bad
    assert rule_of(lambda: policy(kinds=KINDS.replace("100\n", "1000000\n"))) == "policy-syntax"
    hashes = {
        policy(x).hash()
        for x in ("", "pad_to = 1024\n", 'pad_to = "pow2"\n', "max_churn_per_epoch = 5\n")
    }
    assert len(hashes) == 4
    plain = parse_policy_toml(HEAD + "[kinds.email]\nmax_set_size = 10\n")
    assert "pad_to" not in plain.to_dict() and "min_set_size" not in plain.to_dict()


@settings(max_examples=50, deadline=None)
@given(cap=st.integers(0, 10**6), used=st.integers(0, 10**6), new=st.integers(0, 10**6))
def test_churn_cap(cap, used, new):
    p = policy(f"max_churn_per_epoch = {cap}\n")
    got = rule_of(lambda: p.check_churn(used, new))
    assert got == ("epoch-churn" if used + new > cap else None)


# -- adaptive probing against cached blindings, in the round ---------------------------------


def fp(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def one_round(ka, kb, own_a, own_b, cache_b=None, churn_check=None):
    header = round_header((len(own_a),), (len(own_b),))
    sides: dict[str, RoundSide] = {}
    with Engine(ka) as ea, Engine(kb) as eb:
        rng = random.Random(1)
        sides["a"] = RoundSide(
            header,
            "initiator",
            own_a,
            ea,
            deliver_to(sides, "b"),
            chunk_size=8,
            rng=rng,
            on_error=lambda e: sides["b"].fail(e),
        )
        sides["b"] = RoundSide(
            header,
            "responder",
            own_b,
            eb,
            deliver_to(sides, "a"),
            chunk_size=8,
            rng=rng,
            cache=cache_b,
            keep_cache=True,
            churn_check=churn_check,
            on_error=lambda e: sides["a"].fail(e),
        )
        for s in sides.values():
            s.start()
        try:
            sides["b"].result(30)
            update = sides["b"].next_cache()
            return update.tables() if update else None, sides["b"]
        finally:
            for s in sides.values():
                s.fail(ProtocolError("done", rule="closed"))
                s.join(5)


def test_probing_by_varying_the_set_within_an_epoch_is_capped():
    """The peer keeps its epoch key and changes its set round after round to test
    candidates one by one against our cached blindings: refused once the epoch's churn
    passes the policy's cap, before the new points are re-blinded."""

    def key():
        return psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes()

    ka, kb = key(), key()
    p = policy("max_churn_per_epoch = 3\n")
    base = [fp(f"x{i}") for i in range(20)]
    ours = [fp(f"o{i}") for i in range(20)]
    cache, _ = one_round(ka, kb, base, ours)
    used = 0
    for probe in range(4):  # one new candidate per round
        own_a = base[1:] + [fp(f"guess{probe}")]
        try:
            cache, side = one_round(
                ka,
                kb,
                own_a,
                ours,
                cache_b=cache,
                churn_check=lambda n, used=used: p.check_churn(used, n),
            )
        except PolicyError as e:
            assert e.rule == "epoch-churn" and used == 3
            return
        used += side.peer_new
        assert side.peer_new == 1
    raise AssertionError("the fourth probe of the epoch was not refused")
