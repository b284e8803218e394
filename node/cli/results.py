"""`crossmatch matches` and `crossmatch rounds`: what rounds found, and their history."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from node.cli.common import node_dir_argument, print_json, print_table, sizes_text
from node.store import Store
from node.config import load_config


def _store(node_dir: Path) -> Store:
    return Store(load_config(node_dir).paths.db)


@click.command("matches")
@node_dir_argument
@click.option("--peer", help="Only matches found with this lab.")
@click.option("--round", "round_id", help="Only matches of this round.")
@click.option("--kind", help="Only this kind.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
def matches(node_dir: Path, peer: str | None, round_id: str | None, kind: str | None,
            fmt: str) -> None:
    """Shared signals found by completed rounds, with this lab's own values as imported."""
    with _store(node_dir) as store:
        rows = store.matches(peer=peer, round_id=round_id, kind=kind)
    records = [{"round_id": r.round_id, "peer": r.peer, "kind": r.kind, "value": r.value,
                "values": r.values, "matched_at": r.matched_at} for r in rows]
    if fmt == "json":
        print_json(records)
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["round_id", "peer", "kind", "value", "matched_at"])
        for r in records:
            w.writerow([r["round_id"], r["peer"], r["kind"], r["value"], r["matched_at"]])
    else:
        print_table(["PEER", "KIND", "VALUE", "ROUND", "MATCHED AT"],
                    [(r["peer"], r["kind"], r["value"], r["round_id"][:12], r["matched_at"])
                     for r in records])


@click.command("rounds")
@node_dir_argument
@click.option("--peer", help="Only rounds with this lab.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def rounds(node_dir: Path, peer: str | None, fmt: str) -> None:
    """Every round this node took part in: peer, mode, kinds, sizes, outcome and reason."""
    with _store(node_dir) as store:
        rows = store.rounds(peer=peer)
    if fmt == "json":
        print_json([r.__dict__ for r in rows])
        return
    print_table(
        ["STARTED", "PEER", "ROLE", "MODE", "OWN", "PEER SETS", "SHARED", "STATUS", "REASON"],
        [(r.started_at[:19], r.peer, r.role, r.mode, sizes_text(r.own_sizes),
          sizes_text(r.peer_sizes), sizes_text(r.intersection_sizes), r.status, r.reason)
         for r in rows],
    )


def register(group: click.Group) -> None:
    group.add_command(matches)
    group.add_command(rounds)
