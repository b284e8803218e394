"""The one way crossmatch opens an SQLite file, and the base of every table module.

``open_sqlite`` creates the file 0600 before SQLite writes a byte (its -wal and -shm
files inherit that mode), turns on foreign keys and the WAL journal, and names the file
in every error. ``Database`` holds one connection behind a lock for every thread, with
``transaction()`` (BEGIN IMMEDIATE ... COMMIT, rolled back on any error), ``reading()``
and ``snapshot()`` (a private connection in one read transaction, for long reads).

Table modules (``signals``, ``rounds``, ``prompts``) subclass ``Database`` and declare
their DDL in a ``SCHEMA`` tuple; ``Store`` combines them. A module that adds tables later
(e.g. cases) keeps its own schema version and creates its tables in one
``store.transaction()``, so the core ``PRAGMA user_version`` is untouched.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from protocol.errors import ConfigError
from protocol.timestamps import format_utc, parse_utc

MEMORY = ":memory:"


def open_sqlite(
    path: str | Path,
    *,
    what: str,
    timeout: float,
    page_size: int | None = None,
    pragmas: Sequence[str] = (),
    prepare: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """A connection with explicit transactions (isolation_level=None), WAL and foreign keys.

    ``prepare(db)`` (e.g. a schema check) runs before it is returned; any error closes it.
    """
    name = str(path)
    if name != MEMORY:
        if not Path(name).parent.is_dir():
            raise ConfigError(f"cannot open {what} {name}: its directory does not exist")
        # Created 0600 before SQLite writes a byte; tightened if someone loosened it. Only
        # a file that does not exist yet is opened here: closing a descriptor of a file
        # drops every POSIX lock this process holds on it, so opening and closing one that
        # another connection of this process has open would cancel that connection's
        # locks (SQLite then fails with "disk I/O error", or worse; sqlite.org/howtocorrupt).
        try:
            os.close(os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        os.chmod(name, 0o600)
    try:
        db = sqlite3.connect(name, check_same_thread=False, isolation_level=None, timeout=timeout)
    except sqlite3.Error as e:
        raise ConfigError(f"cannot open {what} {name}: {e}") from e
    try:
        if page_size is not None:  # only takes effect when the file is created
            db.execute(f"PRAGMA page_size = {int(page_size)}")
        db.execute("PRAGMA foreign_keys = ON")
        if name != MEMORY:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise ConfigError(f"{what} {name}: could not switch to WAL journal (got {mode})")
        for pragma in pragmas:
            db.execute(f"PRAGMA {pragma}")
        if prepare is not None:
            prepare(db)
    except sqlite3.DatabaseError as e:
        db.close()
        raise ConfigError(f"cannot open {what} {name}: {e}") from e
    except BaseException:
        db.close()
        raise
    return db


# SQLite errors that say something about the file or its other users, not about the code
# (a wrong query is an OperationalError too, "no such column", and keeps its traceback).
_STORE_CONDITIONS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_READONLY",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
)


def store_condition(error: BaseException) -> bool:
    """Whether ``error`` is a condition of a store or its file (worth one warning line in a
    background loop) rather than a bug (worth its traceback)."""
    if isinstance(error, ConfigError | OSError):
        return True
    name = getattr(error, "sqlite_errorname", "") or ""
    return isinstance(error, sqlite3.Error) and name.startswith(_STORE_CONDITIONS)


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Database:
    """One SQLite connection shared by every thread behind a lock."""

    def __init__(self, path: str | Path, connection: sqlite3.Connection):
        self.path = str(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = connection
        self._identity = _identity(self.path) if self.path != MEMORY else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError(f"store {self.path} is closed")
        return self._conn

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, for queries."""
        with self._lock:
            yield self._db

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A private connection in one read transaction, for long reads (a case rebuild):
        one consistent view of the file that holds neither this object's lock nor SQLite's
        write lock (under WAL a reader never blocks a writer), so rounds and imports go on
        meanwhile. TEMP tables made on it are its own. An in-memory database has no second
        connection: there it is the shared one, under the lock."""
        if self.path == MEMORY:
            with self._lock:
                yield self._db
            return
        db = self._open_again()
        try:
            db.execute("BEGIN")  # deferred: the snapshot is taken at the first read
            yield db
        finally:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            finally:
                db.close()

    def _open_again(self) -> sqlite3.Connection:
        """A second connection to this very file: never created (``mode=rw``), and
        refused if the path now names another file than the one this store opened."""
        if self._identity is None or _identity(self.path) != self._identity:
            raise ConfigError(
                f"store {self.path} was moved or replaced while open: put it back, or"
                " restart this process to use the file now at that path"
            )
        uri = Path(self.path).resolve().as_uri() + "?mode=rw"
        try:
            db = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None, timeout=10.0
            )
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open store {self.path} again: {e}") from e
        try:
            db.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back on any error."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def stored_time(text: str | None, what: str) -> str:
    """A caller's timestamp, checked and kept as given, or now (whole seconds, 'Z')."""
    if text is None:
        return format_utc(datetime.now(UTC), timespec="seconds")
    parse_utc(text, what)
    return text


def where_equal(*pairs: tuple[str, object]) -> tuple[list[str], list[object]]:
    """``column = ?`` conditions and their parameters for the pairs whose value is not None."""
    conditions = [f"{column} = ?" for column, wanted in pairs if wanted is not None]
    return conditions, [wanted for _, wanted in pairs if wanted is not None]
