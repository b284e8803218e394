"""`crossmatch matches` and `crossmatch rounds`: what rounds found, and their history."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from node.cli.common import (
    listing_format_option,
    node_dir_argument,
    print_json,
    print_rows,
    print_table,
    sizes_text,
)
from node.config import load_config
from node.data.campaigns import group_campaigns
from node.ops.csvsafe import SafeWriter
from node.state.store import Store


def _store(node_dir: Path) -> Store:
    return Store(load_config(node_dir).paths.db)


@click.command("matches")
@node_dir_argument
@click.option("--peer", help="Only matches found with this lab.")
@click.option("--round", "round_id", help="Only matches of this round.")
@click.option("--kind", help="Only this kind.")
@click.option(
    "--consortium",
    is_flag=True,
    help="Own signals that committed consortium rounds found held by >= k labs.",
)
@listing_format_option
def matches(
    node_dir: Path,
    peer: str | None,
    round_id: str | None,
    kind: str | None,
    consortium: bool,
    fmt: str,
) -> None:
    """Shared signals found by completed rounds, with this lab's own values as imported.

    With --kind prompt: shared campaigns, each with how many of this lab's own
    prompts and accounts it touches and a few of this lab's own example prompts.
    """
    if consortium:
        from node.cli.consortium import consortium_matches

        consortium_matches(node_dir, round_id, kind, fmt)
        return
    if kind == "prompt":
        _prompt_campaigns(node_dir, peer, round_id, fmt)
        return
    with _store(node_dir) as store:
        rows = [
            r for r in store.matches(peer=peer, round_id=round_id, kind=kind) if r.kind != "prompt"
        ]
    records = [
        {
            "round_id": r.round_id,
            "peer": r.peer,
            "kind": r.kind,
            "value": r.value,
            "values": r.values,
            "matched_at": r.matched_at,
        }
        for r in rows
    ]
    print_rows(
        records,
        fmt,
        csv_columns=("round_id", "peer", "kind", "value", "matched_at"),
        headers=("PEER", "KIND", "VALUE", "ROUND", "MATCHED AT"),
        row=lambda r: (r["peer"], r["kind"], r["value"], r["round_id"][:12], r["matched_at"]),
    )


def _prompt_campaigns(node_dir: Path, peer: str | None, round_id: str | None, fmt: str) -> None:
    with _store(node_dir) as store:
        report = group_campaigns(store.prompt_hits(peer=peer, round_id=round_id))
    if fmt == "json":
        print_json(
            {
                "campaigns": [c.to_dict() for c in report.campaigns],
                "weak_prompts": report.weak_prompts,
            }
        )
        return
    if fmt == "csv":
        w = SafeWriter(sys.stdout)
        w.writerow(["round_id", "peer", "labels", "prompts", "accounts", "matched_tokens"])
        for c in report.campaigns:
            w.writerow(
                [c.round_id, c.peer, ";".join(c.labels), c.prompts, c.accounts, c.matched_tokens]
            )
        return
    click.echo(
        f"{len(report.campaigns)} shared campaign(s); {report.weak_prompts} prompt(s) "
        "with a single matched token not counted (weak)"
    )
    for c in report.campaigns:
        label = ", ".join(c.labels) or "(unlabelled)"
        click.echo(
            f"- with {c.peer}, round {c.round_id[:12]}: {label}: {c.prompts} of our "
            f"prompts, {c.accounts} accounts, {c.matched_tokens} matched tokens"
        )
        for example in c.examples:
            click.echo(f"    e.g. {example}")


@click.command("rounds")
@node_dir_argument
@click.option("--peer", help="Only rounds with this lab.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def rounds(node_dir: Path, peer: str | None, fmt: str) -> None:
    """Every round this node took part in: peer, mode, kinds, sizes, outcome and reason."""
    with _store(node_dir) as store:
        rows = store.rounds(peer=peer)
    if fmt == "json":
        print_json([r.__dict__ for r in rows])
        return
    print_table(
        ["STARTED", "PEER", "ROLE", "MODE", "OWN", "PEER SETS", "SHARED", "STATUS", "REASON"],
        [
            (
                r.started_at[:19],
                r.peer,
                r.role,
                r.mode,
                sizes_text(r.own_sizes),
                sizes_text(r.peer_sizes),
                sizes_text(r.intersection_sizes),
                r.status,
                r.reason,
            )
            for r in rows
        ],
    )


def register(group: click.Group) -> None:
    group.add_command(matches)
    group.add_command(rounds)
