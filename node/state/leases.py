"""Which processes that opened this node are still alive: one flock'ed lease file each.

A round's start row names the lease of the process running it. Recovery at start-up
(``node.state.recovery``) may close a round only if that process is gone, and a
``flock`` answers that without trusting pids (which are reused) or clocks: the kernel
drops the lock when the process dies, however it dies (SIGKILL included), and a
second ``flock`` on the file, from any process, fails while the holder lives.

Files live in ``NODE_DIR/run/leases/<token>.lease``. A lease is created under a
temporary name, locked, then renamed into place, so a sweeper never sees a
``.lease`` file that is not yet locked by its owner.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

SUFFIX = ".lease"


class ProcessLease:
    """This process's lease; held (locked) until :meth:`release` or the process ends."""

    def __init__(self, directory: Path):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.token = secrets.token_hex(8)
        self.path = directory / f"{self.token}{SUFFIX}"
        temporary = directory / f"{self.token}.tmp"
        self._fd: int | None = os.open(
            temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temporary, self.path)
        except BaseException:
            os.close(self._fd)
            temporary.unlink(missing_ok=True)
            raise

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # the lock goes with the last descriptor
            self._fd = None


def lease_held(directory: Path, token: str) -> bool:
    """Whether the process that took lease ``token`` is still alive."""
    if not token or not token.isalnum():
        return False
    try:
        fd = os.open(directory / f"{token}{SUFFIX}", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def sweep_leases(directory: Path) -> int:
    """Delete the lease files of processes that died without releasing them."""
    removed = 0
    if not directory.is_dir():
        return removed
    for path in directory.glob(f"*{SUFFIX}"):
        token = path.name.removesuffix(SUFFIX)
        if not lease_held(directory, token):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
