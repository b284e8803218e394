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
from node.state.store import ImportResult
from protocol.audit.events import EntitiesImported, SignalsImported
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
            fields = (field or "text", campaign_field, account_field)
            result = _import_prompts(node, file, *fields, campaign)
            what = f"{result.received} prompts as {result.added} new tokens"
        else:
            result = _import_signals(node, file, kind, fmt, column, field)
            what = f"{result.added} new {kind} signals"
            if result.held_back:
                what += f" ({result.held_back} held back from rounds by warninglists)"
        _log_signals(node, kind, result, file_sha256(file))
    click.echo(
        f"imported {what} from {file} "
        f"({result.already_held} already held, {result.received} read, "
        f"{result.total} held)"
    )


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read in blocks (an import file may be gigabytes)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _import_prompts(
    node: Node, file: Path, field: str, campaign_field: str, account: str, campaign: str | None
) -> ImportResult:
    return import_prompts(
        node.store,
        file,
        node.consortium_key,
        field=field,
        campaign_field=campaign_field,
        account_field=account,
        campaign=campaign,
    )


def _import_signals(
    node: Node, file: Path, kind: str, fmt: str | None, column: str | None, field: str | None
) -> ImportResult:
    where = {"fmt": fmt, "column": column, "field": field}
    progress = terminal_progress(f"import {file.name}")
    region = node.config.default_region
    return import_file(
        node.store,
        file,
        kind,
        node.consortium_key,
        **where,
        default_region=region,
        progress=progress,
        screen=screen_for(node),
    )


def _log_signals(node: Node, kind: str, result: ImportResult, source: str) -> None:
    node.record(
        SignalsImported(
            kind=kind,
            added=result.added,
            already_held=result.already_held,
            total=result.total,
            source_sha256=source,
        )
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
        source = file_sha256(file)
        for kind, r in sorted(result.signals.items()):
            _log_signals(node, kind, r, source)
        node.record(
            EntitiesImported(
                added=result.entities_added,
                updated=result.entities_updated,
                held_back=result.held_back,
                source_sha256=source,
            )
        )
    signals = ", ".join(f"{r.added} new {k}" for k, r in sorted(result.signals.items()))
    click.echo(
        f"imported {result.entities_added} new and {result.entities_updated} updated "
        f"entities from {file} ({signals or 'no signals'}); {result.held_back} "
        "identifier(s) held back by warninglists"
    )


def register(group: click.Group) -> None:
    group.add_command(import_)
