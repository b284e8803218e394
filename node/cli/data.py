"""`crossmatch import`: load flagged signals into the node's store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from node.cli.common import node_dir_argument
from node.data.entities import import_entities
from node.data.importer import import_file
from node.data.prompt_import import import_prompts
from node.data.warninglists import screen_for
from node.ops.progress import terminal_progress
from node.runtime import Node
from protocol.errors import InputError
from protocol.policy import ALL_KINDS


@click.command("import")
@node_dir_argument
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(ALL_KINDS), help="Signal kind (not with --entities).")
@click.option(
    "--entities",
    is_flag=True,
    help="FILE holds flagged accounts of ours: one row per account, identifier "
    "columns mapped to kinds (see docs/cases.md).",
)
@click.option(
    "--key",
    "key_column",
    default="account",
    show_default=True,
    help="Entities: the column or field holding our account id.",
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="KIND=COLUMN",
    help="Entities: read COLUMN as identifiers of KIND (repeatable; columns named "
    "like a kind are read without it).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "lines"]),
    help="Input format (default: by extension: .csv, .jsonl, else one value a line).",
)
@click.option("--column", help="CSV: the column holding the values.")
@click.option("--field", help="JSON lines: the field holding the values (prompts: default 'text').")
@click.option(
    "--campaign-field",
    default="campaign",
    show_default=True,
    help="Prompts: the field holding this lab's campaign label, if any.",
)
@click.option(
    "--account-field",
    default="account",
    show_default=True,
    help="Prompts: the field holding the account that sent the prompt, if any.",
)
@click.option("--campaign", help="Prompts: label every prompt of the file with this campaign.")
def import_(
    node_dir: Path,
    file: Path,
    kind: str | None,
    entities: bool,
    key_column: str,
    maps: tuple[str, ...],
    fmt: str | None,
    column: str | None,
    field: str | None,
    campaign_field: str,
    account_field: str,
    campaign: str | None,
) -> None:
    """Import FILE's values as signals of KIND: all or nothing.

    Bad lines are reported as FILE:LINE: reason and nothing is imported. A value
    already held is not an error and is not duplicated. Prompts (--kind prompt)
    are read from JSON lines; only their near-duplicate tokens take part in rounds.
    """
    if entities:
        if kind or column or field:
            raise click.UsageError(
                "--entities reads every mapped column: drop --kind, --column and --field"
            )
        _import_entities(node_dir, file, fmt, key_column, maps)
        return
    if kind is None:
        raise click.UsageError("say which --kind the values are, or give --entities")
    with Node(node_dir) as node:
        if kind == "prompt":
            if (fmt or "jsonl") != "jsonl" or column:
                raise InputError("prompts are read from JSON lines (--field, default 'text')")
            result = import_prompts(
                node.store,
                file,
                node.consortium_key,
                field=field or "text",
                campaign_field=campaign_field,
                account_field=account_field,
                campaign=campaign,
            )
            what = f"{result.received} prompts as {result.added} new tokens"
        else:
            result = import_file(
                node.store,
                file,
                kind,
                node.consortium_key,
                fmt=fmt,
                column=column,
                field=field,
                default_region=node.config.default_region,
                progress=terminal_progress(f"import {file.name}"),
                screen=screen_for(node),
            )
            what = f"{result.added} new {kind} signals"
            if result.held_back:
                what += f" ({result.held_back} held back from rounds by warninglists)"
        node.log(
            "signals_imported",
            {
                "kind": kind,
                "added": result.added,
                "already_held": result.already_held,
                "total": result.total,
                "source_sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
            },
        )
    click.echo(
        f"imported {what} from {file} "
        f"({result.already_held} already held, {result.received} read, "
        f"{result.total} held)"
    )


def _import_entities(
    node_dir: Path, file: Path, fmt: str | None, key_column: str, maps: tuple[str, ...]
) -> None:
    with Node(node_dir) as node:
        result = import_entities(
            node.store,
            file,
            node.consortium_key,
            fmt=fmt,
            key_column=key_column,
            maps=maps,
            default_region=node.config.default_region,
            screen=screen_for(node),
        )
        source = hashlib.sha256(file.read_bytes()).hexdigest()
        for kind, r in sorted(result.signals.items()):
            node.log(
                "signals_imported",
                {
                    "kind": kind,
                    "added": r.added,
                    "already_held": r.already_held,
                    "total": r.total,
                    "source_sha256": source,
                },
            )
        node.log(
            "entities_imported",
            {
                "added": result.entities_added,
                "updated": result.entities_updated,
                "held_back": result.held_back,
                "source_sha256": source,
            },
        )
    signals = ", ".join(f"{r.added} new {k}" for k, r in sorted(result.signals.items()))
    click.echo(
        f"imported {result.entities_added} new and {result.entities_updated} updated "
        f"entities from {file} ({signals or 'no signals'}); {result.held_back} "
        "identifier(s) held back by warninglists"
    )


def register(group: click.Group) -> None:
    group.add_command(import_)
