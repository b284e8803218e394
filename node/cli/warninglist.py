"""`crossmatch warninglist sign|install|local|show`: benign values kept out of every round.

The consortium writes a list as TOML and signs it with the CA key (`sign`); each
lab verifies and installs it (`install`); a lab may add its own unsigned list
(`local`). Installing re-screens every held signal; values a list covers never
enter a round, and each round's audit record names the lists in force.
"""

from __future__ import annotations

from pathlib import Path

import click

from node import pki
from node.cli.common import (
    EXISTING_FILE,
    ca_cert_option,
    ca_dir_argument,
    node_dir_argument,
    out_option,
    print_json,
)
from node.data.warninglists import install, installed_lists, local_list_path, rescreen
from node.runtime import Node, ca_public_key
from node.state.files import atomic_write, read_or_raise
from protocol.audit.events import WarninglistInstalled
from protocol.warninglist import (
    Screen,
    Warninglist,
    parse_warninglist_toml,
    read_signed_warninglist,
    sign_warninglist,
    verify_signed_warninglist,
)


@click.group("warninglist")
def warninglist() -> None:
    """Consortium-signed and local lists of benign values that never enter a round."""


@warninglist.command("sign")
@ca_dir_argument
@click.argument("list_file", type=EXISTING_FILE)
@out_option("Where to write the signed list.", required=True)
def sign(ca_dir: Path, list_file: Path, out: Path) -> None:
    """Check LIST_FILE (TOML) and sign it with the consortium CA key in CA_DIR."""
    text = read_or_raise(list_file, "warninglist")
    wl = parse_warninglist_toml(text)
    atomic_write(out, sign_warninglist(text, pki.ca_signing_key(ca_dir)))
    click.echo(f"signed warninglist {wl.name} ({wl.hash().hex()[:16]}…) -> {out}")


@warninglist.command("install")
@node_dir_argument
@click.argument("file", type=EXISTING_FILE)
@click.option("--force", is_flag=True, help="Allow installing an older version.")
def install_cmd(node_dir: Path, file: Path, force: bool) -> None:
    """Verify a signed list against the CA, install it, re-screen every held signal."""
    with Node(node_dir) as node:
        wl, held = install(node, read_or_raise(file, "warninglist"), force=force)
        node.record(WarninglistInstalled(list=wl.name, list_hash=wl.hash().hex(), held_back=held))
    click.echo(f"installed warninglist {wl.name}; {held} held signal(s) now kept out of rounds")


@warninglist.command("local")
@node_dir_argument
@click.argument("file", type=EXISTING_FILE)
def local(node_dir: Path, file: Path) -> None:
    """Install FILE (TOML, unsigned) as this node's own list, re-screen held signals."""
    text = read_or_raise(file, "warninglist")
    wl = parse_warninglist_toml(text)
    with Node(node_dir) as node:
        atomic_write(local_list_path(node_dir), text)
        held = rescreen(node.store, Screen(installed_lists(node)))
        node.record(WarninglistInstalled(list=wl.name, list_hash=wl.hash().hex(), held_back=held))
    click.echo(
        f"installed local warninglist {wl.name}; {held} held signal(s) now kept out of rounds"
    )


@warninglist.command("show")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@ca_cert_option("Verify a signed list against this CA certificate.", "ca_cert")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(target: Path, ca_cert: Path | None, as_json: bool) -> None:
    """Print a list (signed or TOML), or with a NODE_DIR every list installed there."""
    if target.is_dir():
        with Node(target) as node:
            lists = installed_lists(node)
    else:
        data = read_or_raise(target, "warninglist")
        if not data.lstrip().startswith(b"{"):
            lists = [parse_warninglist_toml(data)]
        elif ca_cert is not None:
            lists = [verify_signed_warninglist(data, ca_public_key(ca_cert.read_bytes()))]
        else:
            lists = [read_signed_warninglist(data)[0]]
    if as_json:
        print_json([_as_dict(wl) for wl in lists])
        return
    for wl in lists:
        exact = sum(len(v) for v in wl.exact.values())
        click.echo(
            f"{wl.name} ({wl.hash().hex()[:16]}…): {len(wl.ranges)} range(s), "
            f"{len(wl.domains)} domain(s), {exact} exact value(s); {wl.description}"
        )
    if not lists:
        click.echo("(no warninglists installed)")


def _as_dict(wl: Warninglist) -> dict[str, object]:
    return {
        "list_id": wl.list_id,
        "version": wl.version,
        "description": wl.description,
        "hash": wl.hash().hex(),
        "ranges": list(wl.ranges),
        "domains": list(wl.domains),
        "exact": {k: list(v) for k, v in wl.exact.items()},
    }


def register(group: click.Group) -> None:
    group.add_command(warninglist)
