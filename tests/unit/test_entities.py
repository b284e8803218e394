"""Entity import: mapping, merging rows, metadata, FILE:LINE errors, all or nothing, re-import."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.data.entities import import_entities, parse_maps, read_entities
from node.state.cases_store import ensure_schema, round_fingerprints
from node.state.staging import CHUNK_ROWS
from node.state.store import Store
from protocol.errors import InputError
from protocol.fingerprints import fingerprint, normalize

KEY = bytes(range(32))
NOW = "2026-11-30T10:00:00Z"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "node.sqlite") as opened:
        yield opened


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rows(store: Store, query: str, *params: object) -> list[tuple]:
    with store.reading() as db:
        return db.execute(query, params).fetchall()


def test_maps_either_way_round():
    assert parse_maps(["email=Email", "card_fp=payment_fingerprint"]) == {
        "Email": "email",
        "card_fp": "payment_fingerprint",
    }
    with pytest.raises(InputError, match="neither side is a kind"):
        parse_maps(["foo=bar"])
    with pytest.raises(InputError, match="KIND=COLUMN"):
        parse_maps(["email"])


def test_csv_import_links_every_signal_to_its_entity(tmp_path, store):
    path = write(
        tmp_path,
        "acc.csv",
        "account,Email,ip,card,severity,first_seen,reason\n"
        "u1,A@x.com,203.0.113.7,pf-1,high,2026-11-01,distill\n"
        "u2,b@x.com,,pf-1,,2026-11-02T05:00:00+01:00,\n",
    )
    result = import_entities(
        store, path, KEY, maps=["email=Email", "card=payment_fingerprint"], now=NOW
    )
    assert (result.read, result.entities_added, result.entities_updated) == (2, 2, 0)
    assert {k: r.added for k, r in result.signals.items()} == {
        "email": 2,
        "ip": 1,
        "payment_fingerprint": 1,
    }
    linked = rows(
        store,
        "SELECT e.key, s.kind, s.fingerprint FROM entity_signals es"
        " JOIN entities e ON e.id = es.entity_id JOIN signals s"
        " ON s.id = es.signal_id ORDER BY e.key, s.kind",
    )
    assert [(k, kind) for k, kind, _ in linked] == [
        ("u1", "email"),
        ("u1", "ip"),
        ("u1", "payment_fingerprint"),
        ("u2", "email"),
        ("u2", "payment_fingerprint"),
    ]
    email_fp = fingerprint(KEY, "email", normalize("email", "A@x.com"))
    assert bytes(linked[0][2]) == email_fp
    meta = rows(store, "SELECT key, first_seen, severity, reason FROM entities ORDER BY key")
    assert meta == [
        ("u1", "2026-11-01T00:00:00Z", "high", "distill"),
        ("u2", "2026-11-02T04:00:00Z", "", ""),
    ]
    nets = rows(store, "SELECT k.key FROM entity_links l JOIN link_keys k ON k.id = l.link_id")
    assert nets == [("net:203.0.113.0/24",)]


def test_rows_of_one_key_merge_and_reimport_updates(tmp_path, store):
    first = write(
        tmp_path,
        "a.jsonl",
        "\n".join(
            json.dumps(r)
            for r in [
                {"account": "u1", "ip": ["198.51.100.1", "198.51.100.2"], "reason": "old"},
                {"account": "u1", "device_id": "DEV-1", "last_seen": "2026-11-05"},
            ]
        )
        + "\n",
    )
    result = import_entities(store, first, KEY, now=NOW)
    assert (result.read, result.entities_added) == (1, 1)
    again = write(
        tmp_path,
        "b.jsonl",
        json.dumps(
            {"account": "u1", "email": "u1@x.com", "reason": "new", "last_seen": "2026-11-09"}
        )
        + "\n",
    )
    result = import_entities(store, again, KEY, now=NOW)
    assert (result.entities_added, result.entities_updated) == (0, 1)
    assert rows(store, "SELECT reason, last_seen FROM entities") == [
        ("new", "2026-11-09T00:00:00Z")
    ]
    assert rows(store, "SELECT COUNT(*) FROM entity_signals") == [(4,)]


def test_bad_lines_are_named_and_nothing_is_imported(tmp_path, store):
    path = write(
        tmp_path,
        "bad.csv",
        "account,email,severity\n"
        "u1,a@x.com,low\n"
        ",b@x.com,low\n"
        "u3,not-an-email,low\n"
        "u4,c@x.com,urgent\n",
    )
    with pytest.raises(InputError) as caught:
        import_entities(store, path, KEY, now=NOW)
    text = caught.value.message
    assert f"{path}:3: entity key 'account' missing or empty" in text
    assert f"{path}:5: severity must be" in text
    assert "not-an-email" not in text  # values never appear in errors
    ensure_schema(store)
    assert rows(store, "SELECT COUNT(*) FROM entities") == [(0,)]
    assert store.signal_counts() == {}
    fixed = write(tmp_path, "bad2.csv", "account,email\nu1,a@x.com\nu3,not-an-email\n")
    with pytest.raises(InputError, match=r"bad2.csv:3: email: "):
        import_entities(store, fixed, KEY, now=NOW)
    assert store.signal_counts() == {}


def test_unreadable_header_and_rows_name_their_line(tmp_path, store):
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"account,em\xffail\nu1,a@x.com\n")
    with pytest.raises(InputError, match="header row: invalid UTF-8") as caught:
        import_entities(store, broken, KEY, now=NOW)
    assert caught.value.where == f"{broken}:1"
    rows_bad = tmp_path / "rows.csv"
    rows_bad.write_bytes(b"account,email\nu1,a@x.com\n\nu2,b\xff@x.com\n")
    with pytest.raises(InputError) as caught:
        import_entities(store, rows_bad, KEY, now=NOW)
    assert f"{rows_bad}:3: empty line" in caught.value.message
    assert f"{rows_bad}:4: invalid UTF-8 at byte 5 of the line" in caught.value.message
    assert store.signal_counts() == {}


def test_screened_values_are_held_back(tmp_path, store):
    path = write(tmp_path, "a.csv", "account,ip\nu1,10.0.0.1\nu2,203.0.113.9\n")
    result = import_entities(
        store, path, KEY, now=NOW, screen=lambda kind, v: "local" if v.startswith("10.") else None
    )
    assert result.held_back == 1
    held = rows(
        store, "SELECT s.normalized, h.list FROM held_back h JOIN signals s ON s.id = h.signal_id"
    )
    assert held == [("10.0.0.1", "local")]
    # Rounds read fingerprints through round_fingerprints: the held one is left out.
    assert store.fingerprints("ip") == sorted(
        fingerprint(KEY, "ip", v) for v in ("10.0.0.1", "203.0.113.9")
    )
    assert round_fingerprints(store, "ip") == [fingerprint(KEY, "ip", "203.0.113.9")]


_keys = (
    st.text(
        st.characters(min_codepoint=33, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc")),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    st.lists(
        st.tuples(
            _keys, st.sampled_from(["a@x.com", "b@y.org", ""]), st.sampled_from(["low", "", "high"])
        ),
        min_size=1,
        max_size=12,
    )
)
def test_csv_round_trip_any_keys(tmp_path, entries):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["account", "email", "severity"])
    writer.writerows(entries)
    path = write(tmp_path, "h.csv", buffer.getvalue())
    parsed = read_entities(path)
    assert [e.key for e in parsed] == list(dict.fromkeys(k for k, _, _ in entries))
    for entity in parsed:
        expected = [("email", m) for k, m, _ in entries if k == entity.key and m]
        assert entity.identifiers == expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_with_a_line(tmp_path, data):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        read_entities(path)
    except InputError as e:
        assert e.where is None or e.where.startswith(str(path))


def test_a_file_of_many_chunks_is_stored_whole_or_not_at_all(tmp_path, store):
    # u0 appears in the first and the last chunk: its rows merge as they do within a chunk.
    lines = [f"u{i},u{i}@x.com,,reason-{i}" for i in range(2 * CHUNK_ROWS + 10)]
    lines.append("u0,,DEV-0,")
    header = "account,email,device_id,reason\n"
    bad = write(tmp_path, "bad.csv", header + "\n".join([*lines, "u9,not-an-email,,"]) + "\n")
    with pytest.raises(InputError, match=rf"(?s)1 bad line of entities.*bad\.csv:{len(lines) + 2}"):
        import_entities(store, bad, KEY, now=NOW)
    assert rows(store, "SELECT COUNT(*) FROM entities") == [(0,)]
    assert store.signal_counts() == {}
    good = write(tmp_path, "good.csv", header + "\n".join(lines) + "\n")
    result = import_entities(store, good, KEY, now=NOW)
    assert (result.read, result.entities_added, result.entities_updated) == (
        len(lines) - 1,
    ) * 2 + (0,)
    assert rows(store, "SELECT reason, source FROM entities WHERE key = 'u0'") == [
        ("reason-0", f"{good}:{len(lines) + 1}")
    ]
    linked = rows(
        store,
        "SELECT s.kind FROM entity_signals es JOIN entities e ON e.id = es.entity_id"
        " JOIN signals s ON s.id = es.signal_id WHERE e.key = 'u0' ORDER BY s.kind",
    )
    assert linked == [("device_id",), ("email",)]


def test_a_reimport_with_empty_cells_keeps_the_metadata_held(tmp_path, store):
    first = write(tmp_path, "a.csv", "account,email,reason,severity\nu1,a@x.com,distill,high\n")
    import_entities(store, first, KEY, now=NOW)
    second = write(tmp_path, "b.csv", "account,email,reason,severity\nu1,a@x.com,,\n")
    result = import_entities(store, second, KEY, now=NOW)
    assert (result.entities_added, result.entities_updated) == (0, 1)
    assert rows(store, "SELECT reason, severity FROM entities") == [("distill", "high")]
