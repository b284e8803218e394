"""Pieces shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

NODE_DIR = click.Path(file_okay=False, path_type=Path)


def node_dir_argument(f):  # type: ignore[no-untyped-def]
    return click.argument("node_dir", type=NODE_DIR)(f)


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A plain aligned text table: the header line, then one line per row."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [list(headers), *cells]
    ]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """``table_lines`` on stdout (empty tables print the headers and '(none)')."""
    for line in table_lines(headers, rows):
        click.echo(line)
    if not rows:
        click.echo("(none)")


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def sizes_text(sizes: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(sizes.items())) or "-"
