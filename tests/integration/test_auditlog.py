"""The audit log file: creation, fsync'd appends, torn-line recovery, damage refused, sharing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from node.state.auditlog import AuditLog, checkpoint_path, quarantine_path, verify_log
from protocol.audit.merkle import leaf_hash as merkle_leaf
from protocol.audit.merkle import root_hash
from protocol.audit.records import make_log_id
from protocol.errors import InputError, VerificationError
from tests.audit_simulator import T0, fixed_key

KEY = fixed_key("file-lab")
LOG_ID = make_log_id("file-lab", KEY.public_key())


def open_log(path: Path, minutes: int = 0, key=KEY, log_id=LOG_ID) -> AuditLog:
    return AuditLog.open(path, key, log_id=log_id, now=T0 + timedelta(minutes=minutes))


def started(n: int) -> dict:
    return {"lab": "file-lab", "version": f"0.{n}"}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def written_log(path: Path, records: int = 3) -> None:
    with open_log(path) as log:
        for n in range(records):
            log.append("node_started", started(n), now=T0 + timedelta(seconds=n))


def test_new_log_starts_with_log_created_and_appends_verify(path):
    with open_log(path) as log:
        record = log.append("node_started", started(1), now=T0)
        assert (
            record["seq"] == 1 and record["event"] == "node_started" and len(record["sig"]) == 128
        )
        size, root = log.head()
    lines = path.read_bytes().splitlines()
    assert size == 2 and root == root_hash([merkle_leaf(line) for line in lines])
    assert json.loads(lines[0])["event"] == "log_created"
    report = verify_log(path, public_key=KEY.public_key())
    assert (report.size, report.root) == (size, root)


def test_reopening_continues_the_chain(path):
    written_log(path, 2)
    with open_log(path, minutes=5) as log:
        assert log.head()[0] == 3
        log.append("node_stopped", started(9), now=T0 + timedelta(minutes=5))
    assert verify_log(path).events == {"log_created": 1, "node_started": 2, "node_stopped": 1}


def test_checkpoint_is_logged_and_kept_beside_the_log(path):
    with open_log(path) as log:
        log.append("node_started", started(1), now=T0)
        note = log.checkpoint(now=T0)
        assert log.head()[0] == 3  # the checkpoint record itself
    assert checkpoint_path(path).read_text() == note
    assert note.split("\n")[1] == "2"
    report = verify_log(path, public_key=KEY.public_key(), checkpoints=[checkpoint_path(path)])
    assert report.checkpoints_in_log == 1 and [c.size for c in report.external_checkpoints] == [2]


def test_records_removed_from_the_end_are_caught_by_the_kept_checkpoint(path):
    with open_log(path) as log:
        for n in range(3):
            log.append("node_started", started(n), now=T0)
        log.checkpoint(now=T0)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]))
    with pytest.raises(VerificationError, match="records were removed from the end") as caught:
        verify_log(path, checkpoints=[checkpoint_path(path)])
    assert caught.value.rule == "checkpoint-size"


def test_torn_last_line_is_quarantined_and_logged(path):
    written_log(path, 3)
    good = path.read_bytes()
    torn = b'{"body":{"lab":"file-lab","vers'
    with open(path, "ab") as f:
        f.write(torn)
    # verify alone reports it and changes nothing
    with pytest.raises(VerificationError, match="torn last line: 31 bytes") as caught:
        verify_log(path)
    assert caught.value.rule == "torn-line" and caught.value.where.endswith("record 4")
    assert path.read_bytes() == good + torn
    # opening recovers: the bytes move to quarantine, a signed recovery record says so
    with open_log(path, minutes=1):
        pass
    assert quarantine_path(path).read_bytes() == torn + b"\n"
    assert path.read_bytes().startswith(good)
    report = verify_log(path, public_key=KEY.public_key())
    assert report.recoveries == [
        {
            "seq": 4,
            "quarantine_file": "audit.log.quarantine",
            "offset": len(good),
            "bytes": len(torn),
            "sha256": hashlib.sha256(torn).hexdigest(),
        }
    ]


def test_a_second_crash_appends_to_the_quarantine(path):
    written_log(path, 1)
    for n, torn in enumerate((b'{"first', b'{"second')):
        with open(path, "ab") as f:
            f.write(torn)
        open_log(path, minutes=n + 1).close()
    assert quarantine_path(path).read_bytes() == b'{"first\n{"second\n'
    assert verify_log(path).events["recovery"] == 2


def test_crash_while_writing_record_zero(path):
    path.write_bytes(b'{"body":{"log_id":"crossm')
    with open_log(path):
        pass
    report = verify_log(path, public_key=KEY.public_key())
    assert report.events == {"log_created": 1, "recovery": 1}


def test_other_damage_is_refused_and_left_untouched(path):
    written_log(path, 3)
    damaged = bytearray(path.read_bytes())
    damaged[damaged.index(b'"0.1"') + 1] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(VerificationError, match="refusing to append to a damaged log") as caught:
        open_log(path)
    assert caught.value.rule == "record-signature" and "record 2" in caught.value.where
    assert path.read_bytes() == bytes(damaged) and not quarantine_path(path).exists()


def test_another_labs_log_is_refused(path):
    written_log(path, 1)
    other = fixed_key("other-lab")
    with pytest.raises(VerificationError) as caught:
        open_log(path, key=other, log_id=make_log_id("file-lab", other.public_key()))
    assert caught.value.rule == "log-key"


def test_invalid_record_is_refused_before_writing(path):
    with open_log(path) as log:
        before = path.read_bytes()
        with pytest.raises(InputError, match="round_aborted body lacks"):
            log.append("round_aborted", {"round_id": "x"}, now=T0)
        with pytest.raises(InputError, match="no canonical JSON form"):
            log.append("node_started", {"lab": "x", "version": 1.5}, now=T0)
        assert path.read_bytes() == before
        log.append("node_started", started(1), now=T0)
    verify_log(path)


def test_closed_log_refuses_appends(path):
    log = open_log(path)
    log.close()
    log.close()
    with pytest.raises(VerificationError, match="closed"):
        log.append("node_started", started(1), now=T0)


def test_threads_append_safely(path):
    with open_log(path) as log:

        def work(t: int) -> None:
            for n in range(40):
                log.append("node_started", {"lab": "file-lab", "version": f"{t}.{n}"}, now=T0)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert log.head()[0] == 161
    assert verify_log(path).size == 161


def test_two_writers_on_one_file_stay_in_one_chain(path):
    first, second = open_log(path), open_log(path)
    try:
        for n in range(5):
            first.append("node_started", started(n), now=T0)
            imported = {"kind": "email", "added": n, "already_held": 0, "total": n}
            second.append("signals_imported", {**imported, "source_sha256": "0" * 64}, now=T0)
        assert first.head() == second.head()
    finally:
        first.close()
        second.close()
    assert verify_log(path).size == 11


def test_another_process_appends_while_the_log_is_open(path):
    # `crossmatch import` appends while `serve` holds the log open.
    script = (
        "import sys; from pathlib import Path; from node.state.auditlog import AuditLog; "
        "from tests.audit_simulator import fixed_key, T0; "
        "from protocol.audit.records import make_log_id; k = fixed_key('file-lab'); "
        "log = AuditLog.open(Path(sys.argv[1]), k, log_id=make_log_id('file-lab', k.public_key()),"
        " now=T0); [log.append('node_started', {'lab': 'file-lab', 'version': str(i)}, now=T0) "
        "for i in range(20)]; log.close()"
    )
    root = Path(__file__).resolve().parents[2]
    with open_log(path) as log:
        log.append("node_started", started(0), now=T0)
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, cwd=root, env=env)
        log.append("node_stopped", started(0), now=T0)
        assert log.head()[0] == 23
    assert verify_log(path).size == 23


def test_log_file_is_not_world_writable(path):
    written_log(path, 1)
    assert path.stat().st_mode & 0o022 == 0
