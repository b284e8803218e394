"""`crossmatch import`: load flagged signals into the node's store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from node.cli.common import node_dir_argument
from node.data.importer import import_file
from node.data.prompt_import import import_prompts
from node.ops.progress import terminal_progress
from node.runtime import Node
from protocol.errors import InputError
from protocol.policy import ALL_KINDS


@click.command("import")
@node_dir_argument
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", required=True, type=click.Choice(ALL_KINDS), help="Signal kind.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "lines"]),
              help="Input format (default: by extension: .csv, .jsonl, else one value a line).")
@click.option("--column", help="CSV: the column holding the values.")
@click.option("--field", help="JSON lines: the field holding the values (prompts: default "
                              "'text').")
@click.option("--campaign-field", default="campaign", show_default=True,
              help="Prompts: the field holding this lab's campaign label, if any.")
@click.option("--account-field", default="account", show_default=True,
              help="Prompts: the field holding the account that sent the prompt, if any.")
@click.option("--campaign", help="Prompts: label every prompt of the file with this campaign.")
def import_(node_dir: Path, file: Path, kind: str, fmt: str | None, column: str | None,
            field: str | None, campaign_field: str, account_field: str,
            campaign: str | None) -> None:
    """Import FILE's values as signals of KIND: all or nothing.

    Bad lines are reported as FILE:LINE: reason and nothing is imported. A value
    already held is not an error and is not duplicated. Prompts (--kind prompt)
    are read from JSON lines; only their near-duplicate tokens take part in rounds.
    """
    with Node(node_dir) as node:
        if kind == "prompt":
            if (fmt or "jsonl") != "jsonl" or column:
                raise InputError("prompts are read from JSON lines (--field, default 'text')")
            result = import_prompts(node.store, file, node.consortium_key,
                                    field=field or "text", campaign_field=campaign_field,
                                    account_field=account_field, campaign=campaign)
            what = f"{result.received} prompts as {result.added} new tokens"
        else:
            result = import_file(node.store, file, kind, node.consortium_key, fmt=fmt,
                                 column=column, field=field,
                                 default_region=node.config.default_region,
                                 progress=terminal_progress(f"import {file.name}"))
            what = f"{result.added} new {kind} signals"
        node.log("signals_imported", {
            "kind": kind, "added": result.added, "already_held": result.already_held,
            "total": result.total,
            "source_sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
        })
    click.echo(f"imported {what} from {file} "
               f"({result.already_held} already held, {result.received} read, "
               f"{result.total} held)")


def register(group: click.Group) -> None:
    group.add_command(import_)
