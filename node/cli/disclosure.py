"""`crossmatch audit disclose` and `crossmatch audit check-disclosure`: a round's sealed
record handed over in a dispute, and the auditor's check of it (protocol/disclosure.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from node.cli.audit import EXISTING, EXISTING_DIR, EXISTING_FILE, audit, resolve_target, verified
from node.state import disclosures
from node.state.files import read_or_raise, write_secret
from protocol.disclosure import Disclosure, check_disclosure
from protocol.errors import InputError, VerificationError
from protocol.rules import Rule


@audit.command("disclose", short_help="Hand over a round's sealed record (for a dispute).")
@click.argument("node_dir", type=EXISTING_DIR)
@click.option("--round", "round_id", required=True, help="The round id (32 hex digits).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write it (mode 0600: it holds the round key and our set).",
)
def disclose_command(node_dir: Path, round_id: str, out: Path) -> None:
    """Copy the sealed record of a round: our committed set in send order, the salt, the
    round key, the dummy and shuffle seeds and the transcript's parts. Give it only to the
    auditor of a dispute: with it, anyone can recompute our streams of this round (and,
    for a verified reveal round, of the other rounds with that peer under the same epoch
    key)."""
    source = disclosures.sealed_path(node_dir, round_id)
    write_secret(out, read_or_raise(source, "sealed round record"))
    shutil.copystat(source, out)
    click.echo(f"wrote the sealed record of round {round_id} to {out}")


@audit.command("check-disclosure", short_help="Check a side's streams against its record.")
@click.argument("records", nargs=-1, required=True, type=EXISTING_FILE)
@click.option(
    "--log",
    "logs",
    multiple=True,
    required=True,
    type=EXISTING,
    help="A log (file or node directory) holding the round; give both labs'. Repeatable.",
)
def check_disclosure_command(records: tuple[Path, ...], logs: tuple[Path, ...]) -> None:
    """Recompute a side's streams of one round from its disclosed set and key, and check
    them against the transcript hash both labs' logs recorded. With both sides' records,
    also each side's re-blinding of the other's points, in order. Exit 0 if all hold;
    exit 3 naming the first check that failed."""
    if len(records) > 2:
        raise click.UsageError("give one record, or the two sides' records of one round")
    parsed = [
        Disclosure.from_bytes(read_or_raise(p, "disclosure", error=InputError), str(p))
        for p in records
    ]
    round_id = parsed[0].header.round_id
    hashes = []
    for log in logs:
        report = verified(resolve_target(log, None))
        found = [
            r["body"]["transcript_hash"]
            for r in report.records
            if r["event"] == "round_completed" and r["body"].get("round_id") == round_id
        ]
        if not found:
            raise VerificationError(
                f"{log}: no completed round {round_id} in this log", rule=Rule.DISCLOSURE_TRANSCRIPT
            )
        hashes.append(bytes.fromhex(found[0]))
    lines = check_disclosure(parsed[0], hashes, parsed[1] if len(parsed) == 2 else None)
    for line in lines:
        click.echo(f"ok  {line}")
    click.echo(f"round {round_id}: the disclosed side(s) computed their streams honestly")


def register(group: click.Group) -> None:
    """The commands join the ``audit`` group (registered by node.cli.audit)."""
