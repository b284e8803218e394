"""`crossmatch serve` and `crossmatch round`: the responder daemon and a round now."""

from __future__ import annotations

from pathlib import Path

import click

from node.cli.common import node_dir_argument, print_json, sizes_text
from node.runtime import Node
from protocol.policy import ALL_KINDS


@click.command("serve")
@node_dir_argument
@click.pass_context
def serve(ctx: click.Context, node_dir: Path) -> None:
    """Run the responder daemon until SIGTERM or SIGINT (then stop cleanly)."""
    from node.config import load_config
    from node.daemon import serve as run
    from node.ops.logs import configure

    # Structured JSON logs on stderr by default ([logging] format = "text" for humans).
    cfg = load_config(node_dir)
    configure(cfg.log_format, verbose=bool(ctx.obj.get("verbose")), queue_size=cfg.limits.log_queue)
    run(node_dir)


def _kinds(value: str | None) -> list[str] | None:
    if not value:
        return None
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        raise click.BadParameter(f"unknown kind(s) {', '.join(bad)}; known: {', '.join(ALL_KINDS)}")
    return kinds


@click.command("round")
@node_dir_argument
@click.option("--peer", required=True, help="Lab id of a configured, serving peer.")
@click.option(
    "--mode",
    type=click.Choice(["reveal", "count"]),
    default="reveal",
    show_default=True,
    help="reveal: learn which signals are shared; count: only how many.",
)
@click.option("--kinds", help="Comma-separated kinds (default: every kind this node holds).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def round_(node_dir: Path, peer: str, mode: str, kinds: str | None, as_json: bool) -> None:
    """Run one round now against PEER and print a summary."""
    from node.net.initiator import run_round
    from node.ops.progress import terminal_progress

    with Node(node_dir) as node:
        summary = run_round(
            node,
            peer,
            mode=mode,
            kinds=_kinds(kinds),
            progress=terminal_progress(f"round with {peer}"),
        )
        cases_note = _refresh_cases(node)
    if as_json:
        print_json(summary.__dict__)
        return
    click.echo(f"round {summary.round_id} with {summary.peer}: {summary.status} ({summary.mode})")
    click.echo(f"  own sets:     {sizes_text(summary.own_sizes)}")
    click.echo(f"  peer sets:    {sizes_text(summary.peer_sizes)}")
    click.echo(f"  shared:       {sizes_text(summary.intersection_sizes)}")
    click.echo(f"  cases:        {cases_note}")


def _refresh_cases(node: Node) -> str:
    """A post-round step: a failure here is reported, never turned into a failed round."""
    from node.data.cases import recompute_cases

    try:
        report = recompute_cases(node)
    except Exception as e:  # noqa: BLE001 - the round is already committed
        return f"not refreshed ({type(e).__name__}: {e}); run `crossmatch case recompute`"
    return f"{report.cases} open, {len(report.reopened)} re-opened"


def register(group: click.Group) -> None:
    group.add_command(serve)
    group.add_command(round_)
