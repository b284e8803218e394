"""`crossmatch consortium-key`: the shared fingerprint key."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from node.pki.keys import format_consortium_key
from node.state.files import write_secret
from protocol.errors import ConfigError


@click.group("consortium-key")
def consortium_key() -> None:
    """The consortium's shared fingerprint key (HMAC key of every fingerprint)."""


@consortium_key.command("new")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def new(file: Path, force: bool) -> None:
    """Create a new random 256-bit consortium key in FILE (mode 0600).

    Distribute it to member labs only, over a secure channel: anyone holding it
    can compute fingerprints and test guesses against leaked artifacts.
    """
    if file.exists() and not force:
        raise ConfigError(
            f"{file} already exists (use --force to replace it; every lab must "
            "then re-import its signals)"
        )
    write_secret(file, format_consortium_key(secrets.token_bytes(32)))
    click.echo(f"wrote consortium key {file}")


def register(group: click.Group) -> None:
    group.add_command(consortium_key)
