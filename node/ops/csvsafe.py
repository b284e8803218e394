"""CSV that a spreadsheet cannot execute: the one writer every CSV export uses.

A cell starting with ``= + - @`` (or a tab or carriage return, which some programs
skip before looking) is read as a formula by Excel, LibreOffice and Sheets;
abusers choose their account names, so such a value is written with a leading
apostrophe (OWASP's advice), which the programs show as text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

from protocol.exports import safe_cell as formula_safe


def safe_cell(value: Any) -> str:
    """Any value as a CSV cell a spreadsheet will not evaluate (``protocol.exports``'s rule)."""
    return formula_safe("" if value is None else str(value))


class SafeWriter:
    """``csv.writer`` whose every cell goes through :func:`safe_cell`."""

    def __init__(self, stream: IO[str], **kwargs: Any):
        self._writer = csv.writer(stream, **kwargs)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
