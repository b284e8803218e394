"""A connection opened in a process must not cancel the POSIX locks of the process's other
connections to the same file (node/state/sqlite.open_sqlite). Closing any descriptor of a
file drops all of a process's locks on it; open_sqlite used to open and close one on every
open, and with another process writing too, this corrupted the file ("database disk image
is malformed"). A daemon opens such second connections: cache.db once per round, and the
initiator's rows are staged on their own connection (node/net/early_store.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

from node.state.sqlite import open_sqlite


def test_connections_opened_while_others_write_leave_the_file_whole(tmp_path):
    path = tmp_path / "x.db"
    first = open_sqlite(path, what="test", timeout=10)
    first.execute("CREATE TABLE t (x INTEGER)")
    errors: list[str] = []
    lock = threading.Lock()

    def write_on_the_first() -> None:
        for i in range(300):
            try:
                with lock:
                    first.execute("BEGIN IMMEDIATE")
                    first.execute("INSERT INTO t VALUES (?)", (i,))
                    first.execute("COMMIT")
            except sqlite3.Error as e:
                errors.append(f"first: {e}")

    def open_write_close() -> None:
        for i in range(100):
            try:
                db = open_sqlite(path, what="test", timeout=10)
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO t VALUES (?)", (-1 - i,))
                db.execute("COMMIT")
                db.close()
            except sqlite3.Error as e:
                errors.append(f"second: {e}")

    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3\n"
            "for i in range(200):\n"
            f"    db = sqlite3.connect({str(path)!r}, timeout=10, isolation_level=None)\n"
            "    db.execute('BEGIN IMMEDIATE'); db.execute('INSERT INTO t VALUES (1000)')\n"
            "    db.execute('COMMIT'); db.close()\n",
        ]
    )
    threads = [
        threading.Thread(target=write_on_the_first),
        threading.Thread(target=open_write_close),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert other.wait(60) == 0
    try:
        assert errors == []
        assert first.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert first.execute("SELECT count(*) FROM t").fetchone()[0] == 600
    finally:
        first.close()
