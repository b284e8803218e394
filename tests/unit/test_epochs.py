"""Epoch keys and their caches (node/state/epochs.py), packed tables and padding (protocol/)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.state.epochs import CACHE_FILE, EpochStore
from protocol import psi, tables
from protocol.errors import ConfigError
from protocol.padding import OFF, Padding, dummy_elements, parse_padding
from protocol.psi import POINT_BYTES, PackedElements, PackedTable, TableSource
from protocol.round import CacheUpdate, RoundCache

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def table(n: int, salt: bytes = b"") -> PackedTable:
    keys = b"".join(hashlib.sha256(salt + i.to_bytes(4, "big")).digest() for i in range(n))
    values = b"".join(
        b"\x02" + hashlib.sha256(b"v" + salt + i.to_bytes(4, "big")).digest() for i in range(n)
    )
    return PackedTable.build(keys, 32, values, POINT_BYTES)


@pytest.fixture
def epochs(tmp_path):
    with EpochStore(tmp_path / CACHE_FILE, epoch=WEEK) as store:
        yield store


# -- keys --------------------------------------------------------------------------------


def test_one_key_per_peer_for_the_whole_epoch(epochs):
    k1 = epochs.current("lab-b", T0)
    assert len(k1.psi_key) == 32 and len(k1.dummy_seed) == 32
    assert k1.expires - k1.created == WEEK
    again = epochs.current("lab-b", T0 + WEEK - timedelta(seconds=1))
    assert again == k1
    other = epochs.current("lab-c", T0)
    assert other.psi_key != k1.psi_key and other.key_id != k1.key_id


def test_key_survives_reopening(tmp_path):
    with EpochStore(tmp_path / CACHE_FILE, epoch=WEEK) as s:
        k1 = s.current("lab-b", T0)
    with EpochStore(tmp_path / CACHE_FILE, epoch=WEEK) as s:
        assert s.current("lab-b", T0 + timedelta(days=1)) == k1


def test_rotation_gives_a_new_key_and_drops_the_old_caches(epochs):
    k1 = epochs.current("lab-b", T0)
    assert epochs.save(k1, RoundCache(own=table(50), peer=table(40, b"p")), T0)
    cached = epochs.load(k1)
    assert cached.own is not None and len(cached.own) == 50
    assert cached.peer is not None and len(cached.peer) == 40

    k2 = epochs.current("lab-b", T0 + WEEK)  # the epoch is over
    assert k2.key_id != k1.key_id
    assert k2.psi_key != k1.psi_key and k2.dummy_seed != k1.dummy_seed
    assert epochs.load(k2) == RoundCache(None, None)  # nothing carried over
    assert epochs.load(k1) == RoundCache(None, None)  # the old caches are gone
    # A round that began under the old key cannot write its cache any more.
    assert not epochs.save(k1, RoundCache(own=table(5)), T0 + WEEK)
    assert epochs.load(k2) == RoundCache(None, None)
    rows = epochs._db.execute("SELECT COUNT(*) FROM epoch_caches").fetchone()[0]
    assert rows == 0


def test_expired_key_and_caches_are_erased_from_the_file(tmp_path):
    path = tmp_path / CACHE_FILE
    with EpochStore(path, epoch=WEEK) as s:
        k1 = s.current("lab-b", T0)
        cache = RoundCache(own=table(30))
        assert s.save(k1, cache, T0)
        assert s.purge(T0 + WEEK) == 1
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(CACHE_FILE))
    # secure_delete and a truncated WAL: neither the scalar nor a cached value remains.
    assert k1.psi_key not in data
    assert k1.dummy_seed not in data
    assert cache.own is not None
    first_value = bytes(list(cache.own.chunks())[2])[:POINT_BYTES]
    assert first_value not in data


def test_clock_going_back_rotates_the_key(epochs):
    k1 = epochs.current("lab-b", T0)
    k2 = epochs.current("lab-b", T0 - timedelta(days=2))
    assert k2.key_id != k1.key_id


def test_cache_of_an_expired_key_is_not_saved(epochs):
    k1 = epochs.current("lab-b", T0)
    assert not epochs.save(k1, RoundCache(own=table(3)), T0 + WEEK + timedelta(seconds=1))


def test_forget_deletes_a_peer_now(epochs):
    k1 = epochs.current("lab-b", T0)
    epochs.save(k1, RoundCache(peer=table(3)), T0)
    assert epochs.forget("lab-b")
    assert epochs.current("lab-b", T0).key_id != k1.key_id


def packed(t: PackedTable) -> bytes:
    return b"".join(bytes(part) for part in t.chunks())


def test_one_store_shared_by_threads_keeps_every_write(epochs):
    # The daemon's threads share one EpochStore: without its lock a second thread's BEGIN
    # lands inside the first's transaction, or a read sees a half-written table.
    peers = [f"lab-{i}" for i in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(peers) * 2)

    def work(peer: str) -> None:
        try:
            start.wait()
            for i in range(15):
                key = epochs.current(peer, T0)
                assert epochs.save(key, RoundCache(own=table(8, salt=peer.encode())), T0)
                epochs.add_churn(key, 1)
                cached = epochs.load(key).own
                assert cached is not None and packed(cached) == packed(table(8, peer.encode()))
                assert epochs.churn(key) >= i + 1
        except BaseException as e:  # re-raised in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in peers * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for peer in peers:  # two threads per peer, 15 rounds each, share one key
        assert epochs.churn(epochs.current(peer, T0)) == 30


def test_cache_file_is_private(tmp_path):
    path = tmp_path / CACHE_FILE
    old = os.umask(0o022)
    try:
        with EpochStore(path, epoch=WEEK) as s:
            k = s.current("lab-b", T0)
            s.save(k, RoundCache(own=table(10)), T0)
            files = [p for p in tmp_path.iterdir() if p.name.startswith(CACHE_FILE)]
            assert {p.name for p in files} >= {CACHE_FILE, CACHE_FILE + "-wal"}
            for p in files:
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    finally:
        os.umask(old)
    # A loosened file is tightened again on open.
    path.chmod(0o644)
    EpochStore(path, epoch=WEEK).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_other_schema_is_refused(tmp_path):
    path = tmp_path / CACHE_FILE
    EpochStore(path, epoch=WEEK).close()
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(ConfigError, match="schema 99"):
        EpochStore(path, epoch=WEEK)


# -- packed tables ------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    keys=st.lists(st.binary(min_size=33, max_size=33), max_size=60, unique=True),
    probes=st.lists(st.binary(min_size=33, max_size=33), max_size=20),
)
def test_table_lookup_equals_a_dict(keys, probes):
    values = [hashlib.sha256(k).digest()[:5] for k in keys]
    t = PackedTable.build(b"".join(keys), 33, b"".join(values), 5)
    queries = keys[::2] + probes
    got, found = t.lookup(b"".join(queries))
    expect = dict(zip(keys, values, strict=True))
    for q, row, hit in zip(queries, got, found, strict=True):
        assert hit == (q in expect)
        if hit:
            assert row.tobytes() == expect[q]
    again = PackedTable.from_bytes(b"".join(bytes(p) for p in t.chunks()))
    assert again.lookup(b"".join(queries))[1].tolist() == found.tolist()


def test_table_tells_apart_keys_that_share_the_sort_prefix():
    tail = b"\x07" * 8
    keys = [bytes([i]) * 25 + tail for i in range(5)]  # same last 8 bytes
    t = PackedTable.build(b"".join(keys), 33, bytes(range(5)), 1)
    got, found = t.lookup(b"".join(reversed(keys)) + b"\x09" * 25 + tail)
    assert found.tolist() == [True] * 5 + [False]
    assert got[:5].ravel().tolist() == [4, 3, 2, 1, 0]
    assert t.contains(keys[3]).tolist() == [True]


def test_damaged_table_is_refused():
    data = b"".join(bytes(p) for p in table(4).chunks())
    with pytest.raises(ValueError):
        PackedTable.from_bytes(data[:-1])
    with pytest.raises(ValueError):
        PackedTable.from_bytes(b"x" + data[1:])


def test_empty_table():
    t = PackedTable.build(b"", 33)
    assert len(t) == 0
    assert t.contains(b"\x02" * 66).tolist() == [False, False]


# -- padding ------------------------------------------------------------------------------


@given(n=st.integers(0, 10**7), bucket=st.integers(1, 10**5), cap=st.integers(0, 2 * 10**7))
def test_padded_size_is_a_bucket_never_below_n_nor_above_the_cap(n, bucket, cap):
    for padding in (Padding("pow2"), Padding("bucket", bucket)):
        size = padding.size(n)
        assert size >= max(n, 1)
        if padding.mode == "pow2":
            assert size & (size - 1) == 0 and size < 2 * max(n, 1)
        else:
            assert size % bucket == 0 and size < n + bucket + (bucket if n == 0 else 0)
        capped = padding.size(n, cap)
        assert capped >= n and (capped <= cap or capped == n)
    assert OFF.size(n) == n


def test_padding_hides_sizes_within_a_bucket():
    assert {Padding("pow2").size(n) for n in range(513, 1025)} == {1024}
    assert {Padding("bucket", 1000).size(n) for n in range(1001, 2001)} == {2000}


def test_parse_padding():
    assert parse_padding("off") == OFF and parse_padding(0) == OFF
    assert parse_padding("pow2") == Padding("pow2")
    assert parse_padding(4096) == Padding("bucket", 4096)
    assert parse_padding("512") == Padding("bucket", 512)
    for bad in ("pow3", -5, 1.5, True, "0x10"):
        with pytest.raises(ConfigError, match="pad_to"):
            parse_padding(bad)


def test_dummies_are_stable_per_seed_and_distinct_across_seeds_and_kinds():
    seed, other = b"s" * 32, b"t" * 32
    d = dummy_elements(seed, "email", 50)
    assert len(set(d)) == 50 and all(len(x) == 32 for x in d)
    assert dummy_elements(seed, "email", 20) == d[:20]  # a shrinking pad keeps its prefix
    assert not set(d) & set(dummy_elements(other, "email", 50))
    assert not set(d) & set(dummy_elements(seed, "phone", 50))
    with pytest.raises(ValueError):
        dummy_elements(b"short", "email", 1)


def test_numpy_is_not_holding_python_objects():
    # The point of PackedTable: a million points cost 33 bytes each, not a bytes object each.
    t = table(1000)
    assert t._keys.dtype == np.uint8 and t._values.dtype == np.uint8


def test_table_source_is_written_sorted_in_blocks(monkeypatch, tmp_path):
    monkeypatch.setattr(tables, "BLOCK_ROWS", 7)  # several blocks, and a short last one
    keys = [hashlib.sha256(bytes([i])).digest() + b"\x01" for i in range(50)]
    values = [bytes([i]) * 4 for i in range(50)]
    source = TableSource(b"".join(keys), 33, b"".join(values), 4)
    data = b"".join(bytes(c) for c in source.chunks())
    assert len(data) == source.serialized_size() == table_size(50, 33, 4)
    t = PackedTable.from_bytes(data)  # refuses unsorted input, so the blocks were sorted
    got, found = t.lookup(b"".join(reversed(keys)))
    assert found.all() and [r.tobytes() for r in got] == list(reversed(values))
    # And through the cache file, next to a ready table.
    with EpochStore(tmp_path / CACHE_FILE, epoch=WEEK) as s:
        k = s.current("lab-b", T0)
        peer = TableSource(b"".join(keys), 33, b"".join(keys), 33)
        assert s.save(k, CacheUpdate(own=source_of(table(5)), peer=peer), T0)
        loaded = s.load(k)
        assert loaded.peer is not None and loaded.peer.contains(keys[3]).tolist() == [True]
        assert loaded.own is not None and len(loaded.own) == 5


def table_size(n: int, key_size: int, value_size: int) -> int:
    return len(psi.TABLE_DOMAIN) + 12 + n * (key_size + value_size)


def source_of(t: PackedTable) -> TableSource:
    data = b"".join(bytes(c) for c in t.chunks())[table_size(0, 0, 0) :]
    return TableSource(data[: len(t) * 32], 32, data[len(t) * 32 :], POINT_BYTES)


def test_packed_elements_behave_like_a_list():
    items = [hashlib.sha256(bytes([i])).digest() for i in range(10)]
    packed = PackedElements(b"".join(items))
    assert len(packed) == 10 and packed[3] == items[3] and packed[-1] == items[-1]
    assert packed[2:5] == items[2:5] and packed[8:20] == items[8:]
    assert list(packed) == items
    packed[4] = b"\x00" * 32
    assert packed[4] == b"\x00" * 32 and bytes(packed.packed[128:160]) == b"\x00" * 32
    with pytest.raises(ValueError):
        packed[0] = b"short"
    with pytest.raises(IndexError):
        packed[10]
    with pytest.raises(ValueError):
        PackedElements(b"x" * 33)


@given(st.lists(st.binary(min_size=16, max_size=16), max_size=40))
def test_strictly_increasing_means_sorted_and_distinct(items):
    expected = all(a < b for a, b in zip(items, items[1:], strict=False))
    assert psi.strictly_increasing(b"".join(items), 16) == expected
    distinct_sorted = sorted(set(items))
    assert psi.strictly_increasing(b"".join(distinct_sorted), 16)


def test_many_keys_sharing_the_sort_prefix_are_found_in_linear_time():
    # A peer chooses its points, so it can make them all share the bytes the table sorts
    # by; lookups must stay exact without walking the whole run for every query.
    n = 20_000
    tail = b"\x05" * 8
    keys = b"".join(i.to_bytes(25, "big") + tail for i in range(n))
    values = b"".join(i.to_bytes(4, "big") for i in range(n))
    t = PackedTable.build(keys, 33, values, 4)
    probe = b"".join(i.to_bytes(25, "big") + tail for i in range(n - 1, -1, -1))
    got, found = t.lookup(probe + (n + 1).to_bytes(25, "big") + tail)
    assert found[:n].all() and not found[n]
    assert int.from_bytes(got[0].tobytes(), "big") == n - 1
    assert int.from_bytes(got[n - 1].tobytes(), "big") == 0


def test_expired_keys_go_where_no_round_opens_the_file(tmp_path):
    """Rounds without verified matches never open cache.db (ADR 0016): the daemon's
    housekeeping (purge_expired) still deletes keys past their expiry, and creates no
    file."""
    with EpochStore(tmp_path / CACHE_FILE, epoch=WEEK) as s:
        s.current("lab-b", T0)
    assert EpochStore.purge_expired(tmp_path, T0 + timedelta(days=1)) == 0  # still current
    assert EpochStore.purge_expired(tmp_path, T0 + WEEK) == 1
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    assert EpochStore.purge_expired(empty, T0 + WEEK) == 0
    assert not (empty / CACHE_FILE).exists()


def test_a_damaged_cache_file_is_a_store_condition_for_housekeeping(tmp_path):
    """The daemon's housekeeping turns a cache.db it cannot purge into one warning line only
    for conditions of the file (node/daemon.py); a damaged file must be one of them."""
    from node.state.sqlite import store_condition  # noqa: PLC0415
    from protocol.errors import CrossmatchError  # noqa: PLC0415

    (tmp_path / CACHE_FILE).write_bytes(b"not a database, " * 512)
    with pytest.raises(Exception) as err:  # noqa: B017 - which class is what is checked
        EpochStore.purge_expired(tmp_path, T0 + WEEK)
    assert store_condition(err.value) or isinstance(err.value, CrossmatchError)
    assert CACHE_FILE in str(err.value)
