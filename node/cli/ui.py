"""`crossmatch ui` (the review web UI) and `crossmatch ui-passwd` (an analyst's login)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from node.cli.common import node_dir_argument
from node.config import load_config, save_config
from protocol.cases.lifecycle import check_analyst


@click.command("ui")
@node_dir_argument
@click.option(
    "--listen",
    help="HOST:PORT on loopback (default: [ui] listen in node.toml, "
    "else 127.0.0.1:8800; port 0 picks a free one).",
)
def ui(node_dir: Path, listen: str | None) -> None:
    """Serve the review web UI: dashboard, cases, case decisions, audit (loopback only).

    Prints the address it listens on and writes it to NODE_DIR/run/ui-address.
    Log in as an analyst added with `crossmatch ui-passwd`. SIGINT or SIGTERM stops it.
    """
    from node.ui.server import serve  # starlette and uvicorn load only for this command

    serve(node_dir, listen)


@click.command("ui-passwd")
@node_dir_argument
@click.option("--analyst", required=True, help="The analyst's name (shown in the audit log).")
def ui_passwd(node_dir: Path, analyst: str) -> None:
    """Set an analyst's UI password (scrypt hash in node.toml's [ui] table).

    The password is read from the terminal, or from standard input when it is not one.
    """
    from node.ui.auth import hash_password

    check_analyst(analyst)
    if sys.stdin.isatty():
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 10:
        raise click.UsageError("use a password of at least 10 characters")
    cfg = load_config(node_dir)
    table = dict(cfg.extra.get("ui", {}))  # type: ignore[call-overload]
    users = [u for u in table.get("users", []) if u.get("name") != analyst]
    users.append({"name": analyst, "password_scrypt": hash_password(password)})
    table["users"] = users
    cfg.extra["ui"] = table
    save_config(cfg)
    click.echo(f"analyst {analyst} can log in to `crossmatch ui {node_dir}`")


def register(group: click.Group) -> None:
    group.add_command(ui)
    group.add_command(ui_passwd)
