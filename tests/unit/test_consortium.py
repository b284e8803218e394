"""The consortium round's pure protocol against a plain multiset count, and its refusals."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.consortium import messages as m
from protocol.consortium.policy import ConsortiumPolicy, parse_consortium
from protocol.consortium.receipts import parse_receipt
from protocol.errors import InputError, PolicyError, ProtocolError
from protocol.policy import Policy
from protocol.policy_document import parse_policy_toml
from protocol.rules import Rule
from tests.consortium_simulator import Simulation

LABS = ("lab-a", "lab-b", "lab-c", "lab-d", "lab-e", "lab-f")


def policy(n: int, k: int, *, kinds=("email",), cap=1000, reveal=False) -> Policy:
    rules = ConsortiumPolicy(
        hub="isac", participants=LABS[:n], k=k, kinds=kinds, max_set_size=cap, reveal_count=reveal
    )
    return Policy(consortium=rules)


def fp(kind: str, value: int) -> bytes:
    return hashlib.sha256(f"{kind}:{value}".encode()).digest()


def expected(sets: dict[str, list[list[bytes]]], k: int, reveal: bool) -> dict[str, bytes]:
    out = {}
    for lab, kinds in sets.items():
        values = []
        for j, elements in enumerate(kinds):
            for e in elements:
                count = sum(e in other[j] for other in sets.values())
                values.append((count if reveal else 1) if count >= k else 0)
        out[lab] = bytes(values)
    return out


@st.composite
def rounds(draw):
    n = draw(st.integers(3, 6))
    k = draw(st.integers(1, n))
    kinds = draw(st.sampled_from([("email",), ("email", "phone")]))
    sets = {}
    for lab in LABS[:n]:
        sets[lab] = [
            [fp(kind, v) for v in sorted(draw(st.sets(st.integers(0, 14), max_size=10)))]
            for kind in kinds
        ]
    return n, k, kinds, sets, draw(st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_each_lab_learns_exactly_its_elements_held_by_k_labs(case):
    n, k, kinds, sets, reveal = case
    sim = Simulation.build(policy(n, k, kinds=kinds, reveal=reveal), sets, chunk=3)
    sim.run()
    assert sim.hub_error is None and sim.hub.state == "done"
    want = expected(sets, k, reveal)
    for lab in sim.labs.values():
        assert lab.error is None and lab.outcome is not None
        assert lab.outcome.values == want[lab.name]
        receipt = parse_receipt(lab.outcome.hub_receipt)
        assert receipt["result_counts"] == {
            kind: sum(
                1
                for e in lab.elements[j]
                if want[lab.name][sum(len(x) for x in lab.elements[:j]) + lab.elements[j].index(e)]
            )
            for j, kind in enumerate(kinds)
        }
    # Every participant's transcript hash is the same.
    assert (
        len(
            {parse_receipt(lab.outcome.own_receipt)["transcript_hash"] for lab in sim.labs.values()}
        )
        == 1
    )


def five_labs() -> dict[str, list[list[bytes]]]:
    """Element e held by exactly e labs (e = 1..5), plus one private element each."""
    sets: dict[str, list[list[bytes]]] = {lab: [[]] for lab in LABS[:5]}
    for held in range(1, 6):
        for lab in LABS[:held]:
            sets[lab][0].append(fp("email", held))
    for i, lab in enumerate(LABS[:5]):
        sets[lab][0].append(fp("email", 100 + i))
    return sets


def test_no_message_a_lab_receives_carries_more_than_its_bits():
    sim = Simulation.build(policy(5, 3), five_labs())
    sim.run()
    for lab in sim.labs.values():
        results = b"".join(
            msg.values for _, to, msg in sim.sent if to == lab.name and isinstance(msg, m.Results)
        )
        assert set(results) <= {0, 1}
        assert results == lab.outcome.values


def _failing(sim: Simulation, rule: str, culprit: str) -> None:
    sim.run()
    assert sim.hub.state == "aborted"
    assert sim.hub_error is not None and sim.hub_error.rule == rule
    for lab in sim.labs.values():
        assert lab.outcome is None
        assert lab.error is not None and lab.error.rule == rule, lab.name


def test_a_duplicated_element_is_refused():
    sets = five_labs()
    sets["lab-b"][0].append(sets["lab-b"][0][0])
    _failing(Simulation.build(policy(5, 3), sets), "consortium-duplicate", "lab-b")


def test_an_oversized_set_is_refused_at_join():
    sets = five_labs()
    sets["lab-c"][0] += [fp("email", 1000 + i) for i in range(6)]
    sim = Simulation.build(policy(5, 3, cap=8), {k: v for k, v in sets.items() if k != "lab-c"})
    with pytest.raises(PolicyError) as e:
        sim.hub.join(
            "lab-c",
            m.Join("lab-c", sim.policy.hash(), (len(sets["lab-c"][0]),)),
            sim.hub_key.public_key(),
        )
    assert e.value.rule == "max-set-size"


def test_more_elements_than_announced_are_refused():
    def extra(lab, msg):
        if lab == "lab-a" and isinstance(msg, m.OwnChunk) and msg.seq == 0:
            return m.OwnChunk(0, msg.points + msg.points[:33])
        return msg

    _failing(Simulation.build(policy(5, 3), five_labs(), tamper=extra), "consortium-size", "lab-a")


def test_a_reblinder_dropping_elements_is_caught():
    def drop(lab, msg):
        if lab == "lab-d" and isinstance(msg, m.Reblind):
            return dataclasses.replace(msg, points=msg.points[33:] or msg.points)
        return msg

    _failing(
        Simulation.build(policy(5, 3), five_labs(), chunk=2, tamper=drop),
        "consortium-reblind",
        "lab-d",
    )


def test_a_reblinder_rekeying_only_hides_matches():
    import random

    from protocol.psi import Engine
    from tests.consortium_simulator import new_psi_key

    other = Engine(new_psi_key(), workers=1)

    def rekey(lab, msg):
        if lab == "lab-e" and isinstance(msg, m.Reblind) and msg.origin == 0:
            return dataclasses.replace(msg, points=other.reblind(msg.points))
        return msg

    random.seed(0)
    sim = Simulation.build(policy(5, 3), five_labs(), tamper=rekey)
    sim.run()
    other.close()
    honest = expected(five_labs(), 3, False)
    assert sim.hub.state == "done"
    assert sim.labs["lab-a"].outcome.values == bytes(len(honest["lab-a"]))  # all hidden
    for lab in LABS[1:5]:  # never a false positive elsewhere
        got, want = sim.labs[lab].outcome.values, honest[lab]
        assert all(g <= w for g, w in zip(got, want, strict=True))


def test_a_participant_leaving_mid_round_aborts_it_for_everyone():
    def leave(lab, msg):
        if lab == "lab-c" and isinstance(msg, m.Reblind):
            return m.Abort(Rule.CONSORTIUM_PARTICIPANT_LEFT, "gone")
        return msg

    sim = Simulation.build(policy(5, 3), five_labs(), tamper=leave)
    sim.run()
    assert sim.hub.state == "aborted"
    for lab in sim.labs.values():
        assert lab.outcome is None
        if lab.name != "lab-c":
            assert lab.error.rule == "consortium-participant-left"


def test_a_forged_receipt_is_refused():
    def forge(lab, msg):
        if lab == "lab-b" and isinstance(msg, m.Receipt):
            return m.Receipt(
                msg.signed.replace(b'"result_counts":{"email":', b'"result_counts":{"email":1')
            )
        return msg

    _failing(
        Simulation.build(policy(5, 3), five_labs(), tamper=forge), "consortium-receipt", "lab-b"
    )


def test_a_roster_other_than_the_policy_is_refused():
    sim = Simulation.build(policy(5, 3), five_labs())
    lab = sim.labs["lab-a"]
    for s in sim.labs.values():
        sim.hub.join(s.name, s.session.join(), s.session._key.public_key())
    roster = sim.hub.header
    for change in ({"k": 2}, {"reveal_count": True}, {"participants": roster.participants[::-1]}):
        bad = m.Roster(dataclasses.replace(roster, **change))
        with pytest.raises(PolicyError) as e:
            lab.session.roster(bad)
        assert e.value.rule == "consortium-roster"


def test_the_hub_cannot_ask_for_more_reblinding_than_the_ring_allows():
    sim = Simulation.build(policy(3, 2), {lab: [[fp("email", 1)]] for lab in LABS[:3]})
    for s in sim.labs.values():
        sim.hub.join(s.name, s.session.join(), s.session._key.public_key())
    session = sim.labs["lab-b"].session
    session.roster(m.Roster(sim.hub.header))
    point = b"\x02" + bytes(32)
    with pytest.raises(ProtocolError):
        session.reblind_request(m.Reblind(origin=1, hop=0, seq=0, points=point))  # own set
    session.reblind_request(m.Reblind(origin=0, hop=1, seq=0, points=point))
    with pytest.raises(ProtocolError):  # a second point of a one-element set
        session.reblind_request(m.Reblind(origin=0, hop=1, seq=1, points=point))


# -- the [consortium] policy section ------------------------------------------------------------

SECTION = {
    "hub": "isac",
    "participants": ["lab-a", "lab-b", "lab-c"],
    "k": 2,
    "kinds": ["email"],
    "max_set_size": 10,
}


def test_the_section_parses_and_changes_the_policy_hash():
    assert parse_consortium(SECTION).participants == ("lab-a", "lab-b", "lab-c")
    assert Policy().hash() != Policy(consortium=parse_consortium(SECTION)).hash()


def test_the_stage_timeout_enters_the_hash_only_when_set():
    default = parse_consortium(SECTION)
    assert default.stage_timeout_seconds == 300
    assert "stage_timeout_seconds" not in default.to_dict()  # older policies keep their hash
    short = parse_consortium({**SECTION, "stage_timeout_seconds": 20})
    assert short.to_dict()["stage_timeout_seconds"] == 20
    assert Policy(consortium=default).hash() != Policy(consortium=short).hash()


@pytest.mark.parametrize(
    "change",
    [
        {"k": 4},
        {"k": 0},
        {"participants": ["lab-a", "lab-b"]},
        {"hub": "lab-a"},
        {"kinds": ["email", "email"]},
        {"kinds": ["nope"]},
        {"reveal_count": "yes"},
        {"surprise": 1},
        {"max_set_size": 0},
        {"participants": ["lab-a", "lab-a", "lab-b"]},
        {"stage_timeout_seconds": 0},
        {"stage_timeout_seconds": "soon"},
    ],
)
def test_a_bad_section_names_the_problem(change):
    with pytest.raises(InputError) as e:
        parse_consortium({**SECTION, **change})
    assert e.value.rule == "policy-syntax" and "[consortium]" in e.value.message


def test_the_section_round_trips_through_toml():
    from node.demo.sandbox import sandbox_policy

    text = (
        sandbox_policy()
        + "\n[consortium]\n"
        + "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in SECTION.items())
        + "\n"
    )
    assert parse_policy_toml(text).consortium == parse_consortium(SECTION)


def test_scheduled_rounds_start_at_multiples_of_the_interval():
    from datetime import UTC, datetime

    from node.consortium.schedule import next_slot

    at = datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC)
    assert next_slot(at, 60) == datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    assert next_slot(datetime(2026, 1, 1, 12, 1, tzinfo=UTC), 60) == datetime(
        2026, 1, 1, 12, 2, tzinfo=UTC
    )


def test_the_consortium_store_keeps_a_round_whole_or_not_at_all(tmp_path):
    import sqlite3 as sql

    from node.state.consortium_store import ConsortiumMatch, ConsortiumRound, ConsortiumStore

    def row(rid: str) -> ConsortiumRound:
        return ConsortiumRound(
            rid,
            "isac",
            list(LABS[:3]),
            2,
            False,
            ["email"],
            {"lab-a": {"email": 2}},
            {"email": 1},
            "00" * 32,
            "11" * 32,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:01Z",
        )

    with ConsortiumStore(tmp_path / "c.db") as store:
        store.save_round(row("r1"), [ConsortiumMatch("r1", "email", fp("email", 1), None)])
        with pytest.raises(sql.IntegrityError):  # a duplicate match: the round is not kept
            store.save_round(row("r2"), [ConsortiumMatch("r2", "email", fp("email", 2), 3)] * 2)
        assert [r.round_id for r in store.rounds()] == ["r1"]
        assert [m.fingerprint for m in store.matches(kind="email")] == [fp("email", 1)]
        assert store.matches(round_id="r2") == []
