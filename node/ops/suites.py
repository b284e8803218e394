"""Making a PSI suite usable in this process: library load, temp-dir check, self-test.

``rbcl`` (the ristretto255 suite) writes its embedded libsodium to a temporary
file and loads it from there when first imported, so it needs a writable
temporary directory on a filesystem that allows executing mapped files. That is
checked first, so a node on a ``noexec`` /tmp gets one line that says so instead
of an ``OSError`` from the dynamic loader. Then the suite's known-answer test
runs; only a suite that passed is offered to a round.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from protocol.errors import ConfigError
from protocol.rules import Rule
from protocol.suites import Suite, get_suite
from protocol.suites import ristretto255 as r255


def check_temp_dir(directory: Path | None = None) -> Path:
    """The temporary directory, if a library can be written there and executed from it."""
    where = Path(directory or tempfile.gettempdir())
    hint = "set TMPDIR to a writable directory on a filesystem mounted without noexec"
    if not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(
            f"suite {r255.NAME} needs a writable temporary directory; {where} is not ({hint})",
            rule=Rule.SUITE_UNAVAILABLE,
        )
    if os.statvfs(where).f_flag & os.ST_NOEXEC:
        raise ConfigError(
            f"suite {r255.NAME} needs an executable temporary directory; {where} is on a "
            f"noexec filesystem ({hint})",
            rule=Rule.SUITE_UNAVAILABLE,
        )
    return where


def drop_library_copy() -> None:
    # rbcl never deletes the copy it loaded (about 2.7 MB per process); once mapped it is
    # no longer needed on Linux, so remove it rather than fill the temp dir run by run.
    # rbcl's ``_sodium`` is the ctypes handle; ``_name`` is the path ctypes loaded it from.
    copy = getattr(getattr(r255.sodium(), "_sodium", None), "_name", None)
    if isinstance(copy, str) and os.path.basename(copy).startswith("tmp"):
        try:
            os.unlink(copy)
        except OSError:
            pass


@functools.cache
def ensure_suite(name: str) -> Suite:
    """The suite ``name``, loaded and self-tested (once per process); ConfigError otherwise."""
    suite = get_suite(name)
    if name == r255.NAME:
        check_temp_dir()
        r255.load()
        drop_library_copy()
    suite.self_test()
    return suite
