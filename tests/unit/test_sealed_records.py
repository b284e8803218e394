"""Sealed records on disk (node/state/disclosures.py): v2 files are ``.rec``; v1 files
(``.json``, sealed before v2) are still found and purged until their retention ends."""

from __future__ import annotations

import os
import stat
import time

import pytest

from node.state import disclosures
from protocol.errors import ConfigError
from tests.unit.test_disclosure import _as_v1, play


def test_sealed_records_are_found_read_and_purged_in_both_formats(tmp_path):
    records = play("reveal")[0]
    new, old = records["initiator"], records["responder"]
    path = disclosures.seal(tmp_path, new)
    assert path.name == f"{new.header.round_id}-initiator.rec"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert disclosures.sealed_path(tmp_path, new.header.round_id) == path
    # A v1 record of another round, as an older node sealed it.
    legacy = tmp_path / "disclosures" / f"{'0' * 32}-responder.json"
    legacy.write_bytes(_as_v1(old))
    assert disclosures.sealed_path(tmp_path, "0" * 32) == legacy
    with pytest.raises(ConfigError, match="no sealed record"):
        disclosures.sealed_path(tmp_path, "1" * 32)
    now = time.time()
    assert disclosures.purge(tmp_path, 30, now) == 0
    month_ago = now - 31 * 86400
    for p in (path, legacy):
        os.utime(p, (month_ago, month_ago))
    assert disclosures.purge(tmp_path, 30, now) == 2
    assert not any((tmp_path / "disclosures").iterdir())
