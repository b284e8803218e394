"""File import: formats, error reports with file:line, all-or-nothing into a real file store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from node.data.importer import import_file, prepare_signals, read_values
from node.state.cases_store import held_back_fingerprints
from node.state.staging import CHUNK_ROWS
from node.state.store import ImportResult, Store
from protocol.errors import ConfigError, InputError
from protocol.fingerprints import fingerprint, normalize

KEY = bytes(range(32))
NOW = "2025-03-01T10:00:00Z"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "node.sqlite") as opened:
        yield opened


# -- reading each format --------------------------------------------------------------------


def test_lines_format_by_default(tmp_path):
    path = write(tmp_path, "flagged.txt", "a@x.com\r\n  b@x.com \nc@x.com")
    assert list(read_values(path)) == [(1, "a@x.com"), (2, "  b@x.com "), (3, "c@x.com")]


def test_csv_format_reads_the_named_column(tmp_path):
    path = write(
        tmp_path,
        "flagged.CSV",
        'id,email,note\n1,a@x.com,"first, with comma"\n2,"b@x.com","multi\nline"\n3,c@x.com,\n',
    )
    assert list(read_values(path, column="email")) == [
        (2, "a@x.com"),
        (3, "b@x.com"),
        (5, "c@x.com"),
    ]


def test_csv_header_names_are_trimmed(tmp_path):
    path = write(tmp_path, "f.csv", "id , email \n1, a@x.com\n")
    assert list(read_values(path, column="email")) == [(2, " a@x.com")]


def test_jsonl_format_reads_the_named_field(tmp_path):
    lines = [json.dumps({"email": "a@x.com", "n": 1}), json.dumps({"email": "b@x.com"})]
    path = write(tmp_path, "f.jsonl", "\n".join(lines) + "\n")
    assert list(read_values(path, field="email")) == [(1, "a@x.com"), (2, "b@x.com")]


def test_format_option_overrides_the_extension(tmp_path):
    path = write(tmp_path, "export.txt", "email\na@x.com\n")
    assert list(read_values(path, fmt="csv", column="email")) == [(2, "a@x.com")]
    assert list(read_values(write(tmp_path, "x.csv", "email\n"), fmt="lines")) == [(1, "email")]


def test_byte_order_mark_is_tolerated(tmp_path):
    path = write(tmp_path, "f.csv", b"\xef\xbb\xbfemail\na@x.com\n")
    assert list(read_values(path, column="email")) == [(2, "a@x.com")]
    path = write(tmp_path, "f.txt", b"\xef\xbb\xbfa@x.com\n")
    assert list(read_values(path)) == [(1, "a@x.com")]


def test_empty_file_has_no_values(tmp_path):
    assert list(read_values(write(tmp_path, "f.txt", ""))) == []
    assert list(read_values(write(tmp_path, "f.jsonl", ""), field="email")) == []
    assert list(read_values(write(tmp_path, "h.csv", "email\n"), column="email")) == []


# -- errors ---------------------------------------------------------------------------------


def test_empty_csv_needs_a_header(tmp_path):
    path = write(tmp_path, "f.csv", "")
    with pytest.raises(InputError, match="needs a header row"):
        list(read_values(path, column="email"))


def test_missing_column_names_the_file_and_the_header(tmp_path):
    path = write(tmp_path, "f.csv", "id,mail\n1,a@x.com\n")
    with pytest.raises(InputError) as raised:
        list(read_values(path, column="email"))
    text = raised.value.diagnostics()
    assert "'email' not in the header" in text
    assert str(path) in text
    assert "'id', 'mail'" in text


def test_duplicate_column_is_ambiguous(tmp_path):
    path = write(tmp_path, "f.csv", "email,email\na,b\n")
    with pytest.raises(InputError, match="appears 2 times"):
        list(read_values(path, column="email"))


def test_format_needs_its_option(tmp_path):
    with pytest.raises(InputError, match="--column"):
        list(read_values(write(tmp_path, "f.csv", "email\n")))
    with pytest.raises(InputError, match="--field"):
        list(read_values(write(tmp_path, "f.jsonl", "{}\n")))
    with pytest.raises(InputError, match="applies to CSV only"):
        list(read_values(write(tmp_path, "f.txt", "a\n"), column="email"))
    with pytest.raises(InputError, match="unknown format"):
        list(read_values(write(tmp_path, "g.txt", "a\n"), fmt="xml"))


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        list(read_values(tmp_path / "absent.txt"))


@pytest.mark.parametrize(
    ("name", "content", "options", "line", "reason"),
    [
        ("f.txt", "a\n\nb\n", {}, 2, "empty line"),
        ("f.txt", "a\n   \t\n", {}, 2, "empty line"),
        ("f.txt", b"a\nb\xff\xfec\n", {}, 2, "invalid UTF-8 at byte 2"),
        ("f.csv", b"email\na\n\xc3(\n", {"column": "email"}, 3, "invalid UTF-8"),
        ("f.csv", "id,email\n1,a\n2\n", {"column": "email"}, 3, "row has 1 fields"),
        ("f.csv", "id,email\n1,a\n2,  \n", {"column": "email"}, 3, "empty value"),
        ("f.csv", "email\na\n\n", {"column": "email"}, 3, "empty line"),
        ("f.csv", 'email\na\n"b\n', {"column": "email"}, 3, "malformed CSV"),
        ("f.jsonl", '{"e": "a"}\n[1]\n', {"field": "e"}, 2, "not a JSON object but an array"),
        ("f.jsonl", '{"e": "a"}\n{"f": "b"}\n', {"field": "e"}, 2, "field 'e' missing"),
        ("f.jsonl", '{"e": "a"}\n{"e": 5}\n', {"field": "e"}, 2, "is a number, expected a string"),
        ("f.jsonl", '{"e": "a"}\n{"e": null}\n', {"field": "e"}, 2, "is null"),
        ("f.jsonl", '{"e": "a"}\n{"e": \n', {"field": "e"}, 2, "not valid JSON"),
        ("f.jsonl", '{"e": "a"}\n\n', {"field": "e"}, 2, "empty line"),
        ("f.jsonl", '{"e": "a"}\n{"e": "\\ud800"}\n', {"field": "e"}, 2, "surrogate"),
    ],
)
def test_bad_line_is_reported_with_file_and_line(tmp_path, name, content, options, line, reason):
    path = write(tmp_path, name, content)
    with pytest.raises(InputError) as raised:
        list(read_values(path, **options))
    assert raised.value.where == f"{path}:{line}"
    assert reason in raised.value.message


# -- prepare_signals ------------------------------------------------------------------------


def test_prepare_normalizes_and_fingerprints(tmp_path):
    path = write(tmp_path, "phones.txt", "(201) 555-0123\n+44 121 234 5678\n")
    signals = prepare_signals(path, "phone", KEY)
    assert [(s.value, s.normalized, s.source) for s in signals] == [
        ("(201) 555-0123", "+12015550123", f"{path}:1"),
        ("+44 121 234 5678", "+441212345678", f"{path}:2"),
    ]
    assert signals[0].fingerprint == fingerprint(KEY, "phone", "+12015550123")


def test_default_region_reaches_normalization(tmp_path):
    path = write(tmp_path, "phones.txt", "030 123456\n")
    assert prepare_signals(path, "phone", KEY, default_region="DE")[0].normalized == "+4930123456"


def test_bad_phone_at_line_three(tmp_path):
    path = write(tmp_path, "phones.txt", "(201) 555-0123\n201-555-0124\nnot a phone\n")
    with pytest.raises(InputError) as raised:
        prepare_signals(path, "phone", KEY)
    assert f"{path}:3" in raised.value.diagnostics()
    assert raised.value.where == f"{path}:3"
    assert "no phone number found" in raised.value.message
    assert "not a phone\n" not in raised.value.message  # reasons, never the values


def test_all_bad_lines_are_listed_up_to_twenty(tmp_path):
    lines = ["a@x.com" if i % 2 else f"bad{i}" for i in range(60)]  # 30 bad, from line 1
    path = write(tmp_path, "emails.txt", "\n".join(lines) + "\n")
    with pytest.raises(InputError) as raised:
        prepare_signals(path, "email", KEY)
    message = raised.value.message
    assert message.startswith("30 bad lines for kind email; nothing was imported")
    assert message.count(f"{path}:") == 20
    assert f"{path}:39: email must contain exactly one '@'" in message
    assert f"{path}:41:" not in message
    assert message.endswith("... and 10 more")
    assert raised.value.where == f"{path}:1"


def test_format_errors_and_value_errors_are_collected_together(tmp_path):
    path = write(tmp_path, "ids.txt", b"ok-1\n\nok\x003\n\xff\n")
    with pytest.raises(InputError) as raised:
        prepare_signals(path, "account_id", KEY)
    message = raised.value.message
    assert message.startswith("3 bad lines")
    assert f"{path}:2: empty line" in message
    assert f"{path}:3: account_id contains control" in message
    assert f"{path}:4: invalid UTF-8" in message


def test_unknown_kind_and_short_key_fail_before_reading(tmp_path):
    missing = tmp_path / "absent.txt"
    with pytest.raises(InputError, match="unknown identifier kind"):
        prepare_signals(missing, "prompt", KEY)
    with pytest.raises(ConfigError, match="key"):
        prepare_signals(missing, "email", b"short")


# -- import_file into a real file database ---------------------------------------------------


def test_import_file_stores_everything(tmp_path, store):
    path = write(tmp_path, "f.csv", "email\nAlice.Smith@gmail.com\nbob@x.com\n")
    result = import_file(store, path, "email", KEY, column="email", now=NOW)
    assert result == ImportResult("email", added=2, already_held=0, total=2, received=2)
    held = fingerprint(KEY, "email", "alicesmith@gmail.com")
    assert store.values_for("email", [held]) == {held: ["Alice.Smith@gmail.com"]}


def test_one_bad_line_imports_nothing(tmp_path, store):
    good = write(tmp_path, "good.txt", "a@x.com\n")
    import_file(store, good, "email", KEY, now=NOW)
    bad = write(tmp_path, "bad.txt", "b@x.com\nc@x.com\nnot-an-email\nd@x.com\n")
    with pytest.raises(InputError, match=r"bad\.txt:3"):
        import_file(store, bad, "email", KEY, now=NOW)
    assert store.signal_counts() == {"email": 1}
    store.close()
    with Store(tmp_path / "node.sqlite") as reopened:  # nothing half-written on disk either
        assert reopened.signal_counts() == {"email": 1}


def test_duplicates_within_a_file_and_across_imports(tmp_path, store):
    first = write(
        tmp_path,
        "first.txt",
        "alice.smith@gmail.com\nalicesmith@gmail.com\nALICE.SMITH@gmail.com\n",
    )
    result = import_file(store, first, "email", KEY, now=NOW)
    assert result == ImportResult("email", added=1, already_held=0, total=1, received=3)
    second = write(
        tmp_path, "second.jsonl", '{"e": "alice.smith+x@googlemail.com"}\n{"e": "z@x.com"}\n'
    )
    result = import_file(store, second, "email", KEY, field="e", now=NOW)
    assert result == ImportResult("email", added=1, already_held=1, total=2, received=2)
    held = fingerprint(KEY, "email", normalize("email", "alicesmith@gmail.com"))
    assert store.values_for("email", [held])[held] == [
        "alice.smith@gmail.com",
        "alicesmith@gmail.com",
        "ALICE.SMITH@gmail.com",
        "alice.smith+x@googlemail.com",
    ]
    again = import_file(store, first, "email", KEY, now=NOW)
    assert again == ImportResult("email", added=0, already_held=1, total=2, received=3)


def test_importing_an_empty_file_changes_nothing(tmp_path, store):
    import_file(store, write(tmp_path, "a.txt", "192.0.2.1\n"), "ip", KEY, now=NOW)
    result = import_file(store, write(tmp_path, "empty.txt", ""), "ip", KEY, now=NOW)
    assert result == ImportResult("ip", added=0, already_held=0, total=1, received=0)


def test_progress_is_reported_while_reading_and_at_the_end(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"acct-{i}\n" for i in range(12_001)))
    calls: list[tuple[int, int]] = []
    signals = prepare_signals(
        path, "account_id", b"k" * 32, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(5000, 0), (10000, 0), (12_001, 12_001)]
    assert len(signals) == 12_001


def test_a_file_of_many_chunks_is_stored_whole_or_not_at_all(tmp_path, store):
    # Three chunks of staged rows; a value repeated in the first and last chunk is one signal.
    lines = [f"acct-{i}" for i in range(2 * CHUNK_ROWS + 10)] + ["acct-0"]
    bad = write(tmp_path, "bad.txt", "\n".join([*lines, "", "acct-x"]) + "\n")
    with pytest.raises(
        InputError, match=rf"(?s)1 bad line for kind account_id.*bad\.txt:{len(lines) + 1}"
    ):
        import_file(store, bad, "account_id", KEY, now=NOW)
    assert store.signal_counts() == {}
    good = write(tmp_path, "good.txt", "\n".join(lines) + "\n")
    result = import_file(store, good, "account_id", KEY, now=NOW)
    distinct = len(lines) - 1
    assert result == ImportResult("account_id", distinct, 0, distinct, received=len(lines))
    held = fingerprint(KEY, "account_id", "acct-0")
    assert store.values_for("account_id", [held]) == {held: ["acct-0"]}
    with store.reading() as db:  # the first spelling's line is the signal's first source
        source = db.execute("SELECT first_source FROM signals WHERE fingerprint = ?", (held,))
        assert source.fetchone()[0] == f"{good}:1"
        assert db.execute("SELECT name FROM temp.sqlite_master").fetchall() == []


def test_staging_holds_no_lock_on_the_store_and_restores_the_connection(tmp_path, store):
    # Staged chunks share one transaction on the temporary database only: another process
    # can still write the store meanwhile, and the connection is given back as it was.
    with store.reading() as db:
        caches = _cache_sizes(db)
    writes = []

    def write_elsewhere(lines: int, _total: int) -> None:
        other = sqlite3.connect(store.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute(f"CREATE TABLE other_{len(writes)} (x)")
            other.execute("COMMIT")
            writes.append(lines)
        finally:
            other.close()

    lines = [f"acct-{i}" for i in range(2 * CHUNK_ROWS + 10)]
    bad = write(tmp_path, "bad.txt", "\n".join([*lines, ""]) + "\n")
    with pytest.raises(InputError):
        import_file(store, bad, "account_id", KEY, now=NOW, progress=write_elsewhere)
    good = write(tmp_path, "good.txt", "\n".join(lines) + "\n")
    import_file(store, good, "account_id", KEY, now=NOW, progress=write_elsewhere)
    assert writes == [5000, 10000, 5000, 10000, len(lines)]
    with store.reading() as db:
        assert not db.in_transaction
        assert _cache_sizes(db) == caches
    with store.transaction() as db:
        assert db.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == len(lines)


def _cache_sizes(db: sqlite3.Connection) -> list[int]:
    return [db.execute(f"PRAGMA {name}.cache_size").fetchone()[0] for name in ("main", "temp")]


def test_a_screened_import_into_a_fresh_store_holds_values_back(tmp_path, store):
    # The case tables are created between staging and the move (their own transaction).
    path = write(tmp_path, "ips.txt", "10.0.0.1\n192.0.2.7\n")
    result = import_file(
        store, path, "ip", KEY, now=NOW, screen=lambda _k, v: "nat" if v == "10.0.0.1" else None
    )
    assert (result.added, result.held_back) == (2, 1)
    assert held_back_fingerprints(store, "ip") == {fingerprint(KEY, "ip", "10.0.0.1")}


def test_an_import_pauses_the_cyclic_collector_and_restores_it(tmp_path):
    import gc

    from node.state.staging import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("an import that fails")
    assert gc.isenabled()
