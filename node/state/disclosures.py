"""Sealed round records for disputes (protocol/disclosure.py): one file per round and role
under ``NODE_DIR/disclosures/``, mode 0600 from its first byte (they hold the round key and
the committed set), kept for the policy's retention and purged after it.

Records are ``<round id>-<role>.rec`` (format v2, binary); those sealed before v2 are
``.json`` (format v1) and are found, read and purged the same way until they expire."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from node.state.files import write_secret
from protocol.disclosure import Disclosure
from protocol.errors import ConfigError

log = logging.getLogger("crossmatch.disclosures")

DIRECTORY = "disclosures"
_ROUND_ID = re.compile(r"^[0-9a-f]{32}$")
SUFFIX = ".rec"
SUFFIXES = (SUFFIX, ".json")  # the current format's files, then v1's


def _dir(node_dir: Path) -> Path:
    return Path(node_dir) / DIRECTORY


def seal(node_dir: Path, record: Disclosure) -> Path:
    folder = _dir(node_dir)
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{record.header.round_id}-{record.role}{SUFFIX}"
    write_secret(path, record.to_bytes())
    return path


def sealed_path(node_dir: Path, round_id: str) -> Path:
    """The sealed record of ``round_id`` (either role); ConfigError if there is none."""
    if not _ROUND_ID.match(round_id):
        raise ConfigError(f"{round_id[:40]!r} is not a round id (32 hex digits)")
    for role in ("initiator", "responder"):
        for suffix in SUFFIXES:
            path = _dir(node_dir) / f"{round_id}-{role}{suffix}"
            if path.exists():
                return path
    raise ConfigError(
        f"no sealed record of round {round_id} under {_dir(node_dir)} (never "
        "completed here, or purged after the policy's retention)"
    )


def purge(node_dir: Path, retention_days: int, now: float | None = None) -> int:
    """Delete records older than the retention period; returns how many."""
    folder = _dir(node_dir)
    if not folder.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    gone = 0
    for path in (p for suffix in SUFFIXES for p in folder.glob(f"*{suffix}")):
        try:
            if path.stat().st_mtime < cutoff:
                os.unlink(path)
                gone += 1
        except OSError as e:
            log.warning("could not purge %s: %s", path, e)
    return gone
