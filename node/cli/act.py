"""`crossmatch export` (STIX 2.1, MISP, CSV) for the lab's own systems."""

from __future__ import annotations

from pathlib import Path

import click

from node.cli.common import node_dir_argument
from node.runtime import Node
from node.state.files import atomic_write
from protocol import exports


@click.command("export")
@node_dir_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(exports.EXPORT_FORMATS),
    required=True,
    help="stix: a STIX 2.1 bundle; misp: a MISP event (JSON); csv: formula-safe CSV.",
)
@click.option(
    "--values",
    type=click.Choice(exports.VALUE_MODES),
    default="hashed",
    show_default=True,
    help="hashed: keyed hashes under this node's export key; raw: this lab's own values.",
)
@click.option(
    "--tlp",
    default=exports.DEFAULT_TLP,
    show_default=True,
    help="TLP 2.0 level: clear, green, amber, amber+strict, red.",
)
@click.option(
    "--pap",
    default=exports.DEFAULT_PAP,
    show_default=True,
    help="PAP level: clear, green, amber, red.",
)
@click.option("--peer", help="Only signals matched with this lab.")
@click.option("--case", "case_id", help="Only this case (with its grouping).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (mode 0600) instead of standard output.",
)
def export(
    node_dir: Path,
    fmt: str,
    values: str,
    tlp: str,
    pap: str,
    peer: str | None,
    case_id: str | None,
    out: Path | None,
) -> None:
    """Export matched signals (and cases) for this lab's threat-intel and enforcement systems.

    Hashed values by default; every export is recorded in the audit log with its SHA-256.
    """
    from node.act.export import ExportRequest, run_export  # stix2 and pymisp load slowly

    request = ExportRequest(fmt=fmt, values=values, tlp=tlp, pap=pap, peer=peer, case_id=case_id)
    with Node(node_dir) as node:
        text = run_export(node, request)
    if out is None:
        click.echo(text, nl=False)
    else:
        atomic_write(out, text.encode("utf-8"), mode=0o600)
        click.echo(f"wrote {out}", err=True)


def register(group: click.Group) -> None:
    group.add_command(export)
