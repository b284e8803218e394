"""`crossmatch demo`: the main job on an embedded default; `--ui` then serves lab-a's review UI."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from pathlib import Path

import click

from protocol.errors import RoundAbortedError

DEMO_ANALYST = "demo-analyst"


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Empty or new folder for the demo consortium (default: a new temp folder).",
)
@click.option(
    "--ui",
    "with_ui",
    is_flag=True,
    help="Afterwards, serve lab-a's review web UI with its case (Ctrl-C stops it).",
)
@click.option(
    "--ui-listen",
    default="127.0.0.1:8800",
    show_default=True,
    help="With --ui: the loopback address of the UI (port 0 picks a free one).",
)
def demo(workdir: Path | None, with_ui: bool, ui_listen: str) -> None:
    """Three labs on loopback: import, serve, every pairwise round, check, verify.

    Creates a CA, a consortium key and three lab nodes with realistic synthetic
    signals and known overlaps, runs every pairwise round over mutual TLS, checks
    what each lab learned against the known truth, and verifies every audit log.
    Exits 0 only if all of that holds.
    """
    from node.demo.run import run

    root = workdir or Path(tempfile.mkdtemp(prefix="crossmatch-demo-"))
    if not run(root, click.echo):
        raise RoundAbortedError("demo failed: see the lines marked MISMATCH or FAILED above")
    if with_ui:
        _serve_ui(root / "lab-a", ui_listen)


def _serve_ui(lab_dir: Path, listen: str) -> None:
    from node.demo.sandbox import cli_command
    from node.ui.server import serve

    password = secrets.token_urlsafe(12)
    subprocess.run(
        cli_command("ui-passwd", lab_dir, "--analyst", DEMO_ANALYST),
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    click.echo(f"8. lab-a's review UI: log in as {DEMO_ANALYST} with password {password}")
    click.echo("   (open the case, confirm it, then see it on the Audit page; Ctrl-C stops)")
    serve(lab_dir, listen)


def register(group: click.Group) -> None:
    group.add_command(demo)
