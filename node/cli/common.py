"""Pieces shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from node.ops.csvsafe import SafeWriter

NODE_DIR = click.Path(file_okay=False, path_type=Path)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
NEW_FILE = click.Path(dir_okay=False, path_type=Path)


def node_dir_argument(f):  # type: ignore[no-untyped-def]
    return click.argument("node_dir", type=NODE_DIR)(f)


def ca_dir_argument(f):  # type: ignore[no-untyped-def]
    """CA_DIR: an existing consortium CA directory (`crossmatch ca init`)."""
    return click.argument("ca_dir", type=EXISTING_DIR)(f)


def out_option(help: str, *, required: bool = False):  # type: ignore[no-untyped-def]
    """``--out FILE``: where a command writes what it made."""
    return click.option("--out", type=NEW_FILE, required=required, help=help)


def ca_cert_option(help: str, dest: str = "ca_cert_file"):  # type: ignore[no-untyped-def]
    """``--ca-cert FILE``: an existing consortium CA certificate to check against."""
    return click.option("--ca-cert", dest, type=EXISTING_FILE, help=help)


def enrolment_options(*, ca_help: str, listen_default: str, listen_help: str):  # type: ignore[no-untyped-def]
    """``--ca``, ``--ca-cert`` and ``--listen`` of the commands that create a node or hub
    directory: issue its certificate from a CA directory now, or trust a CA certificate."""
    options = [
        click.option("--ca", "ca_dir", type=NODE_DIR, help=ca_help),  # a directory, may be new
        click.option(
            "--ca-cert", type=NEW_FILE, help="Without --ca: the consortium CA certificate to trust."
        ),
        click.option("--listen", default=listen_default, show_default=True, help=listen_help),
    ]

    def apply(f):  # type: ignore[no-untyped-def]
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def listing_format_option(f):  # type: ignore[no-untyped-def]
    """``--format table|json|csv`` of the commands that list rows (``print_rows``)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json", "csv"]),
        default="table",
        show_default=True,
    )(f)


Record = Mapping[str, Any]


def print_rows(
    records: Sequence[Record],
    fmt: str,
    *,
    csv_columns: Sequence[str],
    headers: Sequence[str],
    row: Callable[[Record], Sequence[object]],
) -> None:
    """``records`` as JSON, as formula-safe CSV of ``csv_columns`` (lists joined by ';'),
    or as a table of ``headers`` with ``row(record)`` per record."""
    if fmt == "json":
        print_json(list(records))
    elif fmt == "csv":
        w = SafeWriter(sys.stdout)
        w.writerow(csv_columns)
        for r in records:
            w.writerow([_csv_value(r[name]) for name in csv_columns])
    else:
        print_table(headers, [row(r) for r in records])


def _csv_value(value: object) -> object:
    return ";".join(map(str, value)) if isinstance(value, list) else value


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
