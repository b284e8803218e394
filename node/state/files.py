"""Small, careful file I/O: atomic replace, private append-only JSON-line ledgers, secrets
created 0600 from the first byte, and the one way to read a file that must exist (a clear
error naming the file, not a traceback)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from protocol.errors import ConfigError, CrossmatchError
from protocol.rules import Rule


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file is created 0600 by mkstemp and only widened to ``mode`` before any byte
    is written, so a private key is never readable by others, not even for a moment.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_private_line(path: Path, record: dict[str, object]) -> None:
    """Append ``record`` as one JSON line to a 0600 ledger file, fsynced before returning.

    One ``write`` of the whole line under O_APPEND: a crash leaves at most a torn last line,
    which readers of these ledgers skip.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_secret(path: Path, data: bytes) -> None:
    """A key file: mode 0600 before any byte is written (mkstemp creates it 0600)."""
    atomic_write(path, data, mode=0o600)


def read_or_raise(
    path: Path, what: str, *, error: type[CrossmatchError] = ConfigError, hint: str = ""
) -> bytes:
    """The bytes of ``path``; ``error`` naming the file and what it should hold otherwise."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}{hint}", where=str(path)) from e


def check_private(path: Path, what: str) -> None:
    """Refuse a secret file that group or others may read (it may already have leaked)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return
    if mode & 0o077:
        raise ConfigError(
            f"{what} is readable by group/others (mode {mode:o}); run: chmod 600 {path}",
            where=str(path),
            rule=Rule.KEY_FILE_PERMISSIONS,
        )


def read_secret(path: Path, what: str) -> bytes:
    """A secret file's bytes, after :func:`check_private`; ConfigError naming the path."""
    check_private(path, what)
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {what}: {e.strerror}", where=str(path)) from e
