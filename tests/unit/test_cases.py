"""Cases from a real store: clustering, one case per actor, stable ids, scores, lifecycle."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.data.case_build import recompute
from node.data.cases import get_case, list_cases
from node.data.entities import import_entities
from node.state.cases_store import purge_entities_before
from node.state.consortium_store import ConsortiumMatch, ConsortiumRound, ConsortiumStore
from node.state.store import Store
from protocol.cases.clusters import cluster_labels, network_key
from protocol.cases.ids import case_id
from protocol.cases.lifecycle import next_state
from protocol.cases.scoring import score_case
from protocol.errors import InputError
from protocol.fingerprints import fingerprint, normalize
from tests.store_rows import save_reveal_round

KEY = bytes(range(32))
CASE_KEY = bytes(range(100, 132))
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def fp(kind: str, value: str) -> bytes:
    return fingerprint(KEY, kind, normalize(kind, value))


def actor_file(tmp_path: Path) -> Path:
    """12 accounts of one actor: one card for all, a /24 for the second half; plus a loner."""
    lines = ["account,email,payment_fingerprint,ip,device_id"]
    for i in range(12):
        ip = f"203.0.113.{i + 1}" if i >= 6 else ""
        card = "card-shared" if i < 7 else ""  # account 6 holds both: one actor
        lines.append(f"acct-{i:02d},u{i}@example.com,{card},{ip},dev-{i}")
    lines.append("loner,loner@example.com,,198.51.100.1,")
    path = tmp_path / "actor.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def save_round(
    store: Store, rid: str, peer: str, matches: list[tuple[str, bytes]], at: datetime = NOW
) -> None:
    save_reveal_round(store, rid, peer, matches, stamp=at.strftime("%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "node.sqlite") as opened:
        import_entities(opened, actor_file(tmp_path), KEY, now="2026-11-29T00:00:00Z")
        yield opened


def build(store: Store, now: datetime = NOW, **kw: object):
    return recompute(store, CASE_KEY, now=now, retention_days=90, **kw)  # type: ignore[arg-type]


def test_one_case_names_the_whole_actor(store):
    save_round(
        store,
        "r-b",
        "lab-b",
        [("email", fp("email", "u3@example.com")), ("email", fp("email", "u9@example.com"))],
    )
    save_round(store, "r-c", "lab-c", [("device_id", fp("device_id", "dev-11"))])
    report = build(store)
    assert report.reclustered and report.cases == 1
    page = list_cases(store)
    assert page.total == 1
    case = page.cases[0]
    assert case.entities == 12 and case.peers == ["lab-b", "lab-c"]
    assert case.kinds == ["device_id", "email"] and case.pairs == 3
    assert case.case_id == case_id(CASE_KEY, "acct-00")
    assert case.terms["peers_points"] == 40 and case.terms["kinds_points"] == 20
    detail = get_case(store, case.case_id)
    assert [e["key"] for e in detail.entities] == [f"acct-{i:02d}" for i in range(12)]
    assert {(m["entity"], m["peer"]) for m in detail.matches} == {
        ("acct-03", "lab-b"),
        ("acct-09", "lab-b"),
        ("acct-11", "lab-c"),
    }


def test_ids_stay_stable_and_reopen_on_new_pairs(store):
    save_round(store, "r1", "lab-b", [("email", fp("email", "u3@example.com"))])
    build(store)
    (first,) = list_cases(store).cases
    from node.state.cases_store import ensure_schema  # noqa: PLC0415

    ensure_schema(store)
    with store.transaction() as db:
        db.execute("UPDATE cases SET state = 'false_positive', decided_pairs = pairs")
    save_round(
        store, "r2", "lab-b", [("email", fp("email", "u3@example.com"))], NOW + timedelta(days=1)
    )
    report = build(store, NOW + timedelta(days=1))
    assert not report.reclustered and report.reopened == []  # same pair again: stays decided
    assert list_cases(store).cases[0].state == "false_positive"
    save_round(
        store, "r3", "lab-c", [("email", fp("email", "u4@example.com"))], NOW + timedelta(days=2)
    )
    report = build(store, NOW + timedelta(days=2))
    assert report.reopened == [(first.case_id, "false_positive", 1)]
    (again,) = list_cases(store).cases
    assert again.case_id == first.case_id and again.state == "new" and again.pairs == 2


def test_loner_is_its_own_case_and_expires(store):
    save_round(store, "r1", "lab-b", [("ip", fp("ip", "198.51.100.1"))])
    build(store)
    (loner,) = list_cases(store, peer="lab-b").cases
    assert loner.entities == 1 and loner.case_id == case_id(CASE_KEY, "loner")
    report = build(store, NOW + timedelta(days=91))
    assert report.expired == 1
    assert list_cases(store, state="expired").total == 1
    assert list_cases(store, state="open").total == 0


def test_retention_deletes_entities_past_it_with_their_links(store, tmp_path):
    save_round(store, "r-b", "lab-b", [("email", fp("email", "u3@example.com"))])
    build(store)
    seen = tmp_path / "seen.csv"  # acct-00 was seen after the cut-off: it stays
    seen.write_text("account,last_seen\nacct-00,2027-03-01\n")
    import_entities(store, seen, KEY, now="2026-11-29T00:00:00Z")
    signals = store.signal_counts()
    assert purge_entities_before(store, "2026-11-28T00:00:00Z") == (0, 0)

    def count(query: str) -> int:
        with store.reading() as db:
            return int(db.execute(query).fetchone()[0])

    others = "(SELECT id FROM entities WHERE key != 'acct-00')"
    links = count(f"SELECT COUNT(*) FROM entity_signals WHERE entity_id IN {others}")
    links += count(f"SELECT COUNT(*) FROM entity_links WHERE entity_id IN {others}")
    assert purge_entities_before(store, "2027-01-01T00:00:00+01:00") == (12, links)
    assert count("SELECT COUNT(*) FROM entities") == 1
    assert count("SELECT COUNT(*) FROM link_keys") == 0  # the /24s had no other holder
    assert store.signal_counts() == signals  # the imported signals themselves stay
    build(store)  # the case lost the entity its match came through: expired
    assert list_cases(store, state="open").total == 0
    with pytest.raises(InputError, match="cutoff"):
        purge_entities_before(store, "2027-01-01")


def consortium_round(rid: str, k: int, reveal: bool) -> ConsortiumRound:
    stamp = "2026-11-30T12:00:00Z"
    labs = ["lab-a", "lab-b", "lab-c", "lab-d"]
    return ConsortiumRound(
        rid, "isac", labs, k, reveal, ["email"], {}, {}, "00", "11", stamp, stamp
    )


def test_a_case_shows_its_consortium_evidence(store, tmp_path):
    save_round(store, "r-b", "lab-b", [("email", fp("email", "u3@example.com"))])
    save_round(store, "r-c", "lab-c", [("ip", fp("ip", "198.51.100.1"))])  # the loner's case
    build(store)
    assert [c.consortium for c in list_cases(store).cases] == [{}, {}]  # no consortium tables
    with ConsortiumStore(tmp_path / "node.sqlite") as rounds:
        flagged = ConsortiumMatch("c1", "email", fp("email", "u5@example.com"), None)
        rounds.save_round(consortium_round("c1", 3, False), [flagged])
        actor = get_case(store, case_id(CASE_KEY, "acct-00")).summary
        assert actor.consortium["seen_by"] == ">= 3 labs"  # the policy hid the count
        counted = [
            ConsortiumMatch("c2", "email", fp("email", "u5@example.com"), 4),
            ConsortiumMatch("c2", "device_id", fp("device_id", "dev-7"), 3),
        ]
        rounds.save_round(consortium_round("c2", 3, True), counted)
    actor = get_case(store, case_id(CASE_KEY, "acct-00")).summary
    assert actor.consortium == {
        "signals": 2,
        "kinds": ["device_id", "email"],
        "rounds": 2,
        "labs": 4,
        "at_least": 3,
        "seen_by": "4 labs",
    }
    loner = get_case(store, case_id(CASE_KEY, "loner")).summary
    assert loner.consortium == {}
    page = {c.case_id: c.consortium for c in list_cases(store).cases}
    assert page == {actor.case_id: actor.consortium, loner.case_id: {}}


def test_held_back_signals_do_not_link(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("account,ip\nx1,10.1.1.1\nx2,10.1.1.1\n")
    with Store(tmp_path / "s.sqlite") as store:
        import_entities(store, path, KEY, screen=lambda k, v: "nat")
        save_round(store, "r1", "lab-b", [("ip", fp("ip", "10.1.1.1"))])
        build(store)
        assert sorted(c.entities for c in list_cases(store).cases) == [1, 1]


def test_lifecycle_rules():
    assert next_state("new", "review") == "in_review"
    assert next_state("in_review", "confirm") == "confirmed"
    assert next_state("confirmed", "note") == "confirmed"
    with pytest.raises(InputError, match="already"):
        next_state("confirmed", "confirm")
    with pytest.raises(InputError, match="notes only"):
        next_state("merged", "confirm")


def test_score_terms_are_explained():
    s = score_case(["a", "b", "b"], ["ip", "ip_prefix", "email", "device_id"], 30)
    assert (s.peers_points, s.kinds_points, s.recency) == (40, 30, 0.5)
    assert s.score == 35 and "= 35" in s.explain()


def test_network_keys():
    assert network_key("203.0.113.77") == "203.0.113.0/24"
    assert network_key("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_key("203.0.113.0/24") is None


_IPV4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_IPV6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@given(_IPV4 | _IPV6)
def test_network_key_is_the_network_of_the_address(address):
    bits = 24 if address.version == 4 else 48
    expected = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    assert network_key(str(address)) == str(expected)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.lists(st.tuples(st.integers(0, 29), st.integers(0, 15)), max_size=60))
def test_components_equal_a_plain_union_find(n, edges):
    edges = [(e % n, link) for e, link in edges]
    labels = cluster_labels(
        n,
        np.array([e for e, _ in edges], dtype=np.int64),
        np.array([link for _, link in edges], dtype=np.int64),
    )
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    holders: dict[int, int] = {}
    for e, link in edges:
        if link in holders:
            parent[find(e)] = find(holders[link])
        holders[link] = e
    for a in range(n):
        for b in range(n):
            assert (labels[a] == labels[b]) == (find(a) == find(b))


def test_summary_json_round_trips(store):
    save_round(store, "r1", "lab-b", [("email", fp("email", "u1@example.com"))])
    build(store)
    detail = get_case(store, list_cases(store).cases[0].case_id)
    assert json.loads(json.dumps(detail.to_dict()))["summary"]["entities"] == 12
