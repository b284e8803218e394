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


@click.group("hooks")
def hooks() -> None:
    """Enforcement hooks: deliver case events to a webhook or a command (docs/cases.md)."""


@hooks.command("run")
@node_dir_argument
def hooks_run(node_dir: Path) -> None:
    """Deliver every case event not delivered yet, now (`serve` and `ui` also do it)."""
    from node.act.casefeed import node_dispatcher, sweep
    from node.data.cases import cases_stale, recompute_cases

    with Node(node_dir) as node:
        if cases_stale(node.store):
            recompute_cases(node)
        results = sweep(node.store, node_dispatcher(node))
    for r in results:
        detail = f" ({r.error})" if r.error else ""
        click.echo(f"{r.hook}: {r.outcome} after {r.attempts} attempt(s){detail}")
    click.echo(f"{len(results)} delivery(ies)")


@hooks.command("secret")
@node_dir_argument
@click.option("--hook", "name", required=True, help="The hook's name in node.toml.")
def hooks_secret(node_dir: Path, name: str) -> None:
    """Create a random signing secret for a hook in NODE_DIR/keys/hooks/NAME.secret (0600)."""
    import secrets

    from node.act.hooks import HOOK_NAME_RE
    from node.state.files import write_secret

    if not HOOK_NAME_RE.match(name):
        raise click.UsageError("a hook name is lowercase letters, digits and '-'")
    path = Path(node_dir) / "keys" / "hooks" / f"{name}.secret"
    if path.exists():
        raise click.UsageError(f"{path} exists; delete it first to rotate the secret")
    write_secret(path, (secrets.token_hex(32) + "\n").encode("ascii"))
    click.echo(f'wrote {path}: set secret_file = "keys/hooks/{name}.secret" in its [[hooks]]')


def register(group: click.Group) -> None:
    group.add_command(export)
    group.add_command(hooks)
