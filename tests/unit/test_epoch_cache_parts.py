"""An epoch cache grows by parts (protocol/epoch_cache.py, node/state/epochs.py, ADR 0015):
a repeat round appends the rows it computed; past a tenth of stale rows, or MAX_PARTS
parts, it rewrites the table with its own rows, and what left the sets is gone."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.state.epochs import CACHE_FILE, SCHEMA_VERSION, EpochStore
from protocol.epoch_cache import MAX_PARTS, append_as_part
from protocol.psi import POINT_BYTES, PackedTable, TableSource
from protocol.round import CacheUpdate, RoundCache
from protocol.tables import LayeredTable, joined_tables
from tests.unit.test_incremental_round import churn, fp, new_key, run

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def key_of(i: int, tag: bytes = b"k") -> bytes:
    return hashlib.sha256(tag + i.to_bytes(4, "big")).digest()


def value_of(key: bytes) -> bytes:
    return b"\x02" + hashlib.sha256(b"v" + key).digest()  # one value per key, as under a key


def source(keys: list[bytes]) -> TableSource:
    return TableSource(b"".join(keys), 32, b"".join(value_of(k) for k in keys), POINT_BYTES)


def update(
    live: list[bytes], new: list[bytes] | None, known: int, peer: list[bytes] | None = None
) -> CacheUpdate:
    """A round's cache update: ``live`` its rows, ``new`` those the cache did not know."""
    peer = peer if peer is not None else live[:1]
    return CacheUpdate(
        own=source(live),
        peer=source(peer),
        own_new=source(new) if new is not None else None,
        peer_new=source([]) if new is not None else None,
        own_known=known,
        peer_known=len(peer) if new is not None else 0,
    )


def stored_keys(store: EpochStore, key) -> set[bytes]:
    table = store.load(key).own
    assert table is not None
    layers = table.layers if isinstance(table, LayeredTable) else [table]
    return {bytes(r) for layer in layers for r in layer.sorted_keys}


def parts(path, name: str = "own") -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT count(*) FROM epoch_cache_parts WHERE name = ?", (name,)
        ).fetchone()[0]
    finally:
        db.close()


# -- the rule --------------------------------------------------------------------------


def test_rule_appends_while_stale_rows_stay_under_a_tenth():
    assert append_as_part(stored_rows=1000, stored_parts=0, known=990, new=10)
    # 100 stale of 1000 in use: exactly a tenth is still allowed, one more is not.
    assert append_as_part(stored_rows=1000, stored_parts=3, known=900, new=100)
    assert not append_as_part(stored_rows=1001, stored_parts=3, known=900, new=100)
    assert not append_as_part(stored_rows=1000, stored_parts=MAX_PARTS, known=1000, new=0)
    assert not append_as_part(stored_rows=0, stored_parts=0, known=0, new=10)  # nothing stored
    assert not append_as_part(stored_rows=1000, stored_parts=0, known=0, new=1000)


@settings(max_examples=60, deadline=None)
@given(
    stored=st.integers(0, 10_000),
    nparts=st.integers(0, 20),
    known=st.integers(0, 10_000),
    new=st.integers(0, 10_000),
)
def test_rule_never_lets_stale_rows_pass_a_tenth(stored, nparts, known, new):
    if append_as_part(stored, nparts, known, new):
        assert (stored - known) * 10 <= known + new and nparts < MAX_PARTS and known > 0


# -- layered tables --------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    layers=st.lists(
        st.lists(st.integers(0, 200), max_size=40, unique=True), min_size=1, max_size=4
    ),
    probes=st.lists(st.integers(0, 260), max_size=40),
)
def test_layered_lookup_equals_a_dict_of_every_layer(layers, probes):
    tables = [PackedTable.build(*_packed([key_of(i) for i in layer])) for layer in layers]
    truth = {key_of(i): value_of(key_of(i)) for layer in layers for i in layer}
    layered = LayeredTable(tables)
    queries = [key_of(i) for i in probes]
    values, found = layered.lookup(b"".join(queries))
    assert found.tolist() == [q in truth for q in queries]
    for q, v, f in zip(queries, values, found, strict=True):
        if f:
            assert bytes(v) == truth[q]
    assert len(layered) == sum(len(t) for t in tables)
    joined = joined_tables(tables)
    assert joined.contains(b"".join(queries)).tolist() == found.tolist()


def _packed(keys: list[bytes]) -> tuple[bytes, int, bytes, int]:
    return b"".join(keys), 32, b"".join(value_of(k) for k in keys), POINT_BYTES


def test_layers_of_other_sizes_are_refused():
    a = PackedTable.build(*_packed([key_of(1)]))
    b = PackedTable.build(key_of(2), 32)
    with pytest.raises(ValueError, match="same key and value sizes"):
        LayeredTable([a, b])


# -- the store -------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    with EpochStore(tmp_path / CACHE_FILE, epoch=WEEK) as s:
        yield s


def test_a_repeat_rounds_new_rows_are_a_part_and_load_with_the_rest(store, tmp_path):
    key = store.current("lab-b", T0)
    first = [key_of(i) for i in range(100)]
    assert store.save(key, update(first, None, 0), T0)  # no cache before: written whole
    assert parts(tmp_path / CACHE_FILE) == 0
    gone, added = first[:3], [key_of(i, b"new") for i in range(3)]
    second = first[3:] + added
    assert store.save(key, update(second, added, known=97), T0)
    assert parts(tmp_path / CACHE_FILE) == 1
    loaded = store.load(key).own
    assert isinstance(loaded, LayeredTable) and len(loaded) == 103
    values, found = loaded.lookup(b"".join(second))
    assert found.all() and [bytes(v) for v in values] == [value_of(k) for k in second]
    # The rows of what left stay until the next rewrite (bounded by the rule).
    assert set(gone) <= stored_keys(store, key)


def test_past_a_tenth_of_stale_rows_the_table_is_rewritten_without_them(store, tmp_path):
    key = store.current("lab-b", T0)
    live = [key_of(i) for i in range(100)]
    store.save(key, update(live, None, 0), T0)
    gone_all: set[bytes] = set()
    for r in range(20):  # 3 % churn a round: a rewrite comes within a few rounds
        gone, added = live[:3], [key_of(i, b"r%d" % r) for i in range(3)]
        gone_all |= set(gone)
        live = live[3:] + added
        store.save(key, update(live, added, known=97), T0)
        held = stored_keys(store, key)
        assert set(live) <= held
        stale = held - set(live)
        assert len(stale) * 10 <= len(live)  # never more than a tenth
        if not stale:
            break
    else:
        pytest.fail("the table was never rewritten")
    assert parts(tmp_path / CACHE_FILE) == 0 and not (gone_all & held)


def test_parts_are_capped(store, tmp_path):
    key = store.current("lab-b", T0)
    live = [key_of(i) for i in range(1000)]
    store.save(key, update(live, None, 0), T0)
    for r in range(MAX_PARTS):
        added = [key_of(r, b"add")]
        live = live + added
        store.save(key, update(live, added, known=len(live) - 1), T0)
    assert parts(tmp_path / CACHE_FILE) == MAX_PARTS
    added = [key_of(99, b"add")]
    live = live + added
    store.save(key, update(live, added, known=len(live) - 1), T0)
    assert parts(tmp_path / CACHE_FILE) == 0
    assert stored_keys(store, key) == set(live)


def test_a_cache_another_process_changed_since_the_round_loaded_it_is_rewritten(store, tmp_path):
    key = store.current("lab-b", T0)
    live = [key_of(i) for i in range(100)]
    store.save(key, update(live, None, 0), T0)
    # Another process's round appended meanwhile: this round's counts describe 100 rows.
    store.save(key, update(live + [key_of(0, b"o")], [key_of(0, b"o")], known=100), T0)
    assert parts(tmp_path / CACHE_FILE) == 1
    ours = replace(update(live, [], known=100), own_loaded=100)
    store.save(key, ours, T0)
    assert parts(tmp_path / CACHE_FILE) == 0 and stored_keys(store, key) == set(live)
    assert append_as_part(100, 0, 100, 0, loaded_rows=100)
    assert not append_as_part(101, 1, 100, 0, loaded_rows=100)


def test_a_round_without_a_mask_or_a_table_cache_is_written_whole(store, tmp_path):
    key = store.current("lab-b", T0)
    store.save(key, update([key_of(i) for i in range(10)], None, 0), T0)
    store.save(key, update([key_of(i) for i in range(5)], None, 0), T0)  # no mask
    assert parts(tmp_path / CACHE_FILE) == 0 and len(stored_keys(store, key)) == 5
    store.save(key, RoundCache(own=PackedTable.build(*_packed([key_of(7)]))), T0)
    assert stored_keys(store, key) == {key_of(7)}


def test_parts_go_with_their_key(store, tmp_path):
    key = store.current("lab-b", T0)
    live = [key_of(i) for i in range(50)]
    store.save(key, update(live, None, 0), T0)
    store.save(key, update(live + [key_of(1, b"x")], [key_of(1, b"x")], known=50), T0)
    assert parts(tmp_path / CACHE_FILE) == 1
    assert store.forget("lab-b")
    assert parts(tmp_path / CACHE_FILE) == 0


def test_a_damaged_part_drops_that_cache_not_the_round(store, tmp_path):
    key = store.current("lab-b", T0)
    live = [key_of(i) for i in range(50)]
    store.save(key, update(live, None, 0), T0)
    store.save(key, update(live + [key_of(1, b"x")], [key_of(1, b"x")], known=50), T0)
    db = sqlite3.connect(tmp_path / CACHE_FILE)
    db.execute("UPDATE epoch_cache_parts SET data = x'00'")
    db.commit()
    db.close()
    assert store.load(key).own is None  # computed afresh, and rewritten whole after
    store.save(key, update(live, None, 0), T0)
    assert parts(tmp_path / CACHE_FILE) == 0 and stored_keys(store, key) == set(live)


def test_a_version_3_file_gains_parts_and_keeps_its_caches(tmp_path):
    path = tmp_path / CACHE_FILE
    live = [key_of(i) for i in range(20)]
    with EpochStore(path, epoch=WEEK) as s:
        key = s.current("lab-b", T0)
        s.save(key, update(live, None, 0), T0)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE epoch_cache_parts")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with EpochStore(path, epoch=WEEK) as s:
        assert stored_keys(s, key) == set(live)
        s.save(key, update(live + [key_of(0, b"n")], [key_of(0, b"n")], known=20), T0)
        assert parts(path) == 1
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    db.close()


# -- a round's update ------------------------------------------------------------------


def test_a_repeat_rounds_new_rows_are_exactly_what_the_cache_did_not_know():
    rng = random.Random(5)
    a1 = [fp(f"a{i}") for i in range(120)]
    b1 = [fp(f"b{i}") for i in range(90)] + a1[:10]
    ka, kb = new_key(), new_key()
    first = run(ka, kb, a1, b1)
    up = first["a"][1].next_cache()
    assert up.own_new is None and up.peer_new is None  # no cache: everything is new
    cache_a, cache_b = up.tables(), first["b"][1].next_cache().tables()
    a2, added_a = churn(a1, 4, "a", rng)
    b2, added_b = churn(b1, 3, "b", rng)
    repeat = run(ka, kb, a2, b2, cache_a=cache_a, cache_b=cache_b)
    up = repeat["a"][1].next_cache()
    assert up.own_new is not None and up.peer_new is not None
    own_new = {bytes(r) for r in np.asarray(up.own_new.keys).reshape(-1, 32)}
    assert own_new == set(added_a) and up.own_known == len(a2) - len(added_a)
    assert len(up.peer_new) == len(added_b) and up.peer_known == len(b2) - len(added_b)
    assert (up.own_loaded, up.peer_loaded) == (len(cache_a.own), len(cache_a.peer))
    # The new rows hold the same values as the round's full table.
    full = up.tables().own
    values, found = full.lookup(b"".join(sorted(own_new)))
    new_table = up.own_new.build()
    new_values, new_found = new_table.lookup(b"".join(sorted(own_new)))
    assert found.all() and new_found.all() and (values == new_values).all()
