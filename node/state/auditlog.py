"""The node's audit log file: append-only, fsync'd, crash-safe, shared safely between processes.

One file, ``NODE_DIR/audit.log``: one canonical-JSON record a line (format in
``protocol.audit.records``). Every line this class writes is first fed to the
same ``LogVerifier`` that ``crossmatch audit verify`` uses, so the node cannot
write a record the verifier would reject.

Crash safety. Each record is one ``write`` of the line and its newline,
followed by ``fsync``. If power fails mid-write, the file ends in a torn line
(bytes without a newline). ``AuditLog.open`` detects it, appends those bytes to
``audit.log.quarantine`` (one quarantined fragment a line, fsync'd, never
overwritten), truncates the log back to the last newline and appends a signed
``recovery`` record naming the offset, length and SHA-256 of what was moved.
Any other damage raises VerificationError and nothing is appended: a broken log
needs a person, not a repair.

Processes. ``serve`` and a CLI command (``import``) may append at the same time.
Each append takes an exclusive ``flock`` on the file, reads and verifies any
records another process appended since, and only then writes. A thread lock
serialises threads of one process.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node.state.files import atomic_write
from protocol.audit.checkpoint import make_checkpoint, sign_checkpoint
from protocol.audit.events import CheckpointRecorded, EventBody, LogResumed, Recovery
from protocol.audit.records import (
    GENESIS_EVENT,
    build_record,
    encode_record,
    genesis_body,
    sign_record,
)
from protocol.audit.verify import LogVerifier, split_lines, verify_log_bytes
from protocol.audit.verify_report import VerifyReport
from protocol.errors import InputError, VerificationError
from protocol.rules import Rule

LOG_MODE = 0o644
READ_CHUNK = 1 << 20
RESUME_SECONDS = 5.0  # how often a log whose write failed tries to resume
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def checkpoint_path(log_path: Path) -> Path:
    """Where the latest signed checkpoint is kept: audit.log -> audit.checkpoint."""
    return log_path.with_suffix(".checkpoint")


def quarantine_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".quarantine")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_from(fd: int, offset: int) -> bytes:
    chunks = []
    while chunk := os.pread(fd, READ_CHUNK, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class AuditLog:
    """An open audit log. Use ``AuditLog.open``; every method is thread-safe."""

    def __init__(self, path: Path, fd: int, key: Ed25519PrivateKey, log_id: str):
        self.path = path
        self.log_id = log_id
        self._fd: int | None = fd
        self._key = key
        self._verifier = LogVerifier(public_key=key.public_key(), log_id=log_id, keep=False)
        self._offset = 0  # bytes of the file already verified and reflected in the verifier
        self._lock = threading.Lock()
        self._broken: BaseException | None = None
        self._resume_tried = 0.0

    @classmethod
    def open(
        cls, path: Path, signing_key: Ed25519PrivateKey, *, log_id: str, now: datetime
    ) -> AuditLog:
        """Open or create the log; quarantine a torn last line; refuse any other damage."""
        path = Path(path)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)
        log = cls(path, fd, signing_key, log_id)
        try:
            if created:
                _fsync_dir(path.parent)
            with log._exclusive():
                log._catch_up(now)
                if log._verifier.size == 0:
                    body = genesis_body(log_id, signing_key.public_key())
                    log._write_record(GENESIS_EVENT, body, now)
        except BaseException:
            os.close(fd)
            log._fd = None
            raise
        return log

    # -- public API ------------------------------------------------------------

    def append(self, event: str, body: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        """Sign, verify, write, flush and fsync one record; return the signed record."""
        with self._exclusive(now):
            self._catch_up(now)
            return self._write_record(event, body, now)

    def append_outcome(
        self, event: str, body: dict[str, Any], *, now: datetime
    ) -> tuple[str, dict[str, Any] | None]:
        """Append the outcome of ``body["round_id"]`` unless the log already has one.

        Returns (the event that ends the round in the log, the record written or None).
        The check and the write happen under the file lock, after reading what other
        processes appended: two recoveries of one round write one record between them.
        """
        with self._exclusive(now):
            self._catch_up(now)
            logged = self._verifier.outcome_of(body["round_id"])
            if logged is not None:
                return logged, None
            return event, self._write_record(event, body, now)

    def head(self) -> tuple[int, bytes]:
        """(tree size, Merkle root) of the records written so far, by any process."""
        with self._exclusive():
            self._catch_up(None)
            return self._verifier.size, self._verifier.root

    def checkpoint(self, *, now: datetime) -> str:
        """Sign a checkpoint of the current head, log it, and keep it in ``audit.checkpoint``.

        The checkpoint covers the records before its own ``checkpoint`` record.
        """
        with self._exclusive():
            self._catch_up(now)
            origin = self.log_id
            state = make_checkpoint(
                origin=origin, size=self._verifier.size, root=self._verifier.root, now=now
            )
            note = sign_checkpoint(state, self._key)
            self._write_body(CheckpointRecorded(checkpoint=note), now)
            atomic_write(checkpoint_path(self.path), note.encode("utf-8"), mode=LOG_MODE)
            return note

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------

    def writable(self, now: datetime) -> bool:
        """False while an earlier write failed and the log could not yet be resumed."""
        try:
            with self._exclusive(now):
                return True
        except VerificationError:
            return False

    @contextmanager
    def _exclusive(self, now: datetime | None = None) -> Iterator[int]:
        with self._lock:
            if self._fd is None:
                raise VerificationError(
                    "audit log is closed", where=str(self.path), rule=Rule.CLOSED
                )
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if self._broken is not None:
                    self._resume(now)
                yield self._fd
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _resume(self, now: datetime | None) -> None:
        """After a failed write (a full disk, say): at most every RESUME_SECONDS, re-read
        and re-verify the file from the start (quarantining a torn line, as at open)
        and append ``log_resumed``; the log is writable again only if that succeeds."""
        broken = self._broken
        rule = Rule.DISK_FULL if getattr(broken, "errno", None) in DISK_FULL else Rule.WRITE_FAILED
        if now is None or time.monotonic() - self._resume_tried < RESUME_SECONDS:
            raise VerificationError(
                f"an earlier write failed ({broken}); appends resume once it can be written",
                where=str(self.path),
                rule=rule,
            )
        self._resume_tried = time.monotonic()
        self._verifier = LogVerifier(
            public_key=self._key.public_key(), log_id=self.log_id, keep=False
        )
        self._offset, self._broken = 0, None
        try:
            self._catch_up(now)
            self._write_body(LogResumed(error=str(broken)[:200]), now)
        except OSError as e:
            self._broken = e
            raise VerificationError(
                f"the log still cannot be written ({e})", where=str(self.path), rule=rule
            ) from e

    def _catch_up(self, now: datetime | None) -> None:
        """Verify whatever was appended since we last looked (at open: the whole file)."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size < self._offset:
            raise VerificationError(
                f"the log shrank from {self._offset} to {size} bytes while open",
                where=str(self.path),
                rule=Rule.LOG_SHRANK,
            )
        if size == self._offset:
            return
        data = _read_from(self._fd, self._offset)
        lines, tail = split_lines(data)
        try:
            for line in lines:
                self._verifier.feed(line)
                self._offset += len(line) + 1
        except VerificationError as e:
            raise VerificationError(
                f"{e.message}; refusing to append to a damaged log (inspect it with "
                "`crossmatch audit verify`)",
                where=f"{self.path}: {e.where}",
                rule=e.rule,
            ) from e
        if tail and now is not None:
            self._quarantine(tail, now)

    def _quarantine(self, tail: bytes, now: datetime) -> None:
        """Move a torn last line aside, truncate it away, and log the recovery."""
        assert self._fd is not None
        target = quarantine_path(self.path)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, tail + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.path.parent)
        os.ftruncate(self._fd, self._offset)
        os.fsync(self._fd)
        if self._verifier.size == 0:  # the crash tore record 0 itself: start the log again
            self._write_record(GENESIS_EVENT, genesis_body(self.log_id, self.public_key), now)
        self._write_body(
            Recovery(
                quarantine_file=target.name,
                offset=self._offset,
                bytes=len(tail),
                sha256=hashlib.sha256(tail).hexdigest(),
            ),
            now,
        )

    def _write_body(self, body: EventBody, now: datetime) -> dict[str, Any]:
        return self._write_record(body.EVENT, body.to_body(), now)

    def _write_record(self, event: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        assert self._fd is not None
        verifier = self._verifier
        if verifier.last_time is not None and now < verifier.last_time:
            now = verifier.last_time  # the clock stepped back: time in the log never does
        unsigned = build_record(
            log_id=self.log_id,
            seq=verifier.size,
            time=now,
            event=event,
            body=body,
            prev=verifier.last_leaf,
        )
        record = sign_record(unsigned, self._key)
        line = encode_record(record)
        verifier.feed(line)  # the verifier must accept it before a byte reaches the disk
        try:
            _write_all(self._fd, line + b"\n")
            os.fsync(self._fd)
        except OSError as e:
            # The verifier already counts this record, the file may hold part of it:
            # stop appending until _resume re-reads the file and quarantines any torn line.
            self._broken = e
            raise
        self._offset += len(line) + 1
        return record


def verify_log(
    path: Path,
    *,
    public_key: Ed25519PublicKey | None = None,
    peer_keys: Mapping[str, Ed25519PublicKey] | None = None,
    checkpoints: Sequence[Path] = (),
) -> VerifyReport:
    """Verify a log file offline; VerificationError names the file, record number and rule.

    Without ``public_key`` the signatures are checked against the key embedded in
    record 0 (self-asserted; the report says so). ``checkpoints`` are checkpoint
    files kept elsewhere (the node's audit.checkpoint, or one a peer holds).
    """
    path = Path(path)
    data = read_bytes(path, "audit log")
    notes = [(str(p), read_bytes(p, "checkpoint").decode("utf-8", "replace")) for p in checkpoints]
    try:
        return verify_log_bytes(data, public_key=public_key, peer_keys=peer_keys, checkpoints=notes)
    except VerificationError as e:
        where = e.where if e.where and e.where in {n for n, _ in notes} else f"{path}: {e.where}"
        raise VerificationError(e.message, where=where, rule=e.rule) from e


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror}", where=str(path)) from e
