"""Pieces shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

NODE_DIR = click.Path(file_okay=False, path_type=Path)


def node_dir_argument(f):  # type: ignore[no-untyped-def]
    return click.argument("node_dir", type=NODE_DIR)(f)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned text table (empty tables print the headers and '(none)')."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if not cells:
        click.echo("(none)")


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def sizes_text(sizes: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(sizes.items())) or "-"
