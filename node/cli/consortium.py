"""`crossmatch hub` (init, serve) and `crossmatch consortium-round`: the >= k labs round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from node.cli.common import (
    EXISTING_DIR,
    enrolment_options,
    node_dir_argument,
    print_json,
    print_rows,
    sizes_text,
)
from node.runtime import HUB_MARKER, Node
from node.state.files import atomic_write


@click.group("hub")
def hub() -> None:
    """The consortium hub: counts, for a consortium round, how many labs hold each blinded
    element, and never sees an identifier (docs/protocol.md, "Consortium round")."""


@hub.command("init")
@click.argument("hub_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="The hub's id (a DNS label, as the policy names it).")
@enrolment_options(
    ca_help="Consortium CA directory: issue the certificate now (else a CSR is written).",
    listen_default="127.0.0.1:7450",
    listen_help="HOST:PORT the hub binds (port 0 picks a free port).",
)
def hub_init(
    hub_dir: Path, name: str, ca_dir: Path | None, ca_cert: Path | None, listen: str
) -> None:
    """Create a hub directory: TLS key and certificate, audit key and log; no fingerprint key."""
    from node.cli.nodes import create_node_dir

    create_node_dir(hub_dir, name, None, ca_dir, ca_cert, listen)
    atomic_write(hub_dir / HUB_MARKER, b"consortium hub\n")
    click.echo(f"initialized hub {name} in {hub_dir}")


@hub.command("serve")
@click.argument("hub_dir", type=EXISTING_DIR)
@click.pass_context
def hub_serve(ctx: click.Context, hub_dir: Path) -> None:
    """Run the hub until SIGTERM or SIGINT."""
    from node.config import load_config
    from node.consortium.hub_daemon import serve_hub
    from node.ops.logs import configure

    configure(load_config(hub_dir).log_format, verbose=bool(ctx.obj.get("verbose")))
    serve_hub(hub_dir)


@click.command("consortium-round")
@node_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def consortium_round(node_dir: Path, as_json: bool) -> None:
    """Take part in the hub's consortium round now (every participant must join in time).

    Learns, for each own element of the policy's kinds, only whether at least k labs hold
    it (or how many, if the policy reveals counts). Stored only when the hub commits."""
    from node.consortium.client import run_consortium_round

    with Node(node_dir) as node:
        summary = run_consortium_round(node)
    if as_json:
        print_json(summary.__dict__)
        return
    click.echo(
        f"consortium round {summary.round_id}: completed "
        f"({len(summary.participants)} labs, k = {summary.k})"
    )
    click.echo(f"  own sets:              {sizes_text(summary.sizes)}")
    click.echo(f"  held by >= {summary.k} labs:     {sizes_text(summary.result_counts)}")


def register(group: click.Group) -> None:
    group.add_command(hub)
    group.add_command(consortium_round)


def consortium_matches(node_dir: Path, round_id: str | None, kind: str | None, fmt: str) -> None:
    """`crossmatch matches --consortium`: own values held by >= k labs, per committed round."""
    from node.config import load_config
    from node.state.consortium_store import ConsortiumStore
    from node.state.store import Store

    db = load_config(node_dir).paths.db
    with ConsortiumStore(db) as rounds, Store(db) as store:
        k_of = {r.round_id: r.k for r in rounds.rounds()}
        found = rounds.matches(round_id=round_id, kind=kind)
        records: list[dict[str, Any]] = []
        for x in found:
            values = store.values_for(x.kind, [x.fingerprint]).get(x.fingerprint, [])
            records.append(
                {
                    "round_id": x.round_id,
                    "kind": x.kind,
                    "value": values[0] if values else "",
                    "values": values,
                    "labs": x.labs,
                    "at_least": k_of.get(x.round_id),
                }
            )
    print_rows(
        records,
        fmt,
        csv_columns=("round_id", "kind", "value", "labs", "at_least"),
        headers=("KIND", "VALUE", "LABS", "ROUND"),
        row=lambda r: (
            r["kind"],
            r["value"],
            r["labs"] or f">= {r['at_least']}",
            r["round_id"][:12],
        ),
    )
