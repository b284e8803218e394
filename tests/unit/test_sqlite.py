"""The one SQLite opener: files 0600 from the start (the store and the cache alike), WAL,
foreign keys, one transaction rolled back whole."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from node.state.epochs import EpochStore
from node.state.sqlite import Database, open_sqlite
from node.state.store import Store
from protocol.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_and_cache_files_are_created_0600(tmp_path: Path) -> None:
    with Store(tmp_path / "crossmatch.db") as store:
        store.signal_counts()
        wal = tmp_path / "crossmatch.db-wal"
        assert mode(tmp_path / "crossmatch.db") == 0o600 and mode(wal) == 0o600
    with EpochStore(tmp_path / "cache.db", epoch=timedelta(days=1)):
        assert mode(tmp_path / "cache.db") == 0o600


def test_a_loosened_file_is_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "crossmatch.db"
    Store(path).close()
    path.chmod(0o644)
    Store(path).close()
    assert mode(path) == 0o600


def test_wal_and_foreign_keys(tmp_path: Path) -> None:
    db = open_sqlite(tmp_path / "x.db", what="test", timeout=1)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    db.close()


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="its directory does not exist"):
        open_sqlite(tmp_path / "no" / "x.db", what="store", timeout=1)


def test_a_transaction_is_rolled_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    database = Database(path, open_sqlite(path, what="test", timeout=1))
    with database.transaction() as db:
        db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), database.transaction() as db:
        db.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("half way")
    with database.reading() as db:
        assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    database.close()
    with pytest.raises(ConfigError, match="closed"), database.reading():
        pass
