"""`crossmatch audit reconcile` and `audit reconcile-consortium`: compare verified logs.

Each log is verified on its own first (a log that fails names itself); then the
logs are compared round by round (``protocol/audit/reconcile.py``,
``protocol/audit/consortium_reconcile.py``). Exit 0 when they agree, 3 otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from node.cli.audit import (
    EXISTING,
    EXISTING_FILE,
    Target,
    audit,
    key_line,
    resolve_target,
    verified,
)
from node.cli.common import print_json
from protocol.audit.consortium_reconcile import reconcile_consortium
from protocol.audit.reconcile import reconcile as reconcile_reports
from protocol.audit.verify_report import VerifyReport
from protocol.errors import VerificationError
from protocol.rules import Rule


def _verified_each(targets: Sequence[tuple[str, Target]]) -> list[VerifyReport]:
    """Each named target verified; the first that fails is named in the error."""
    reports = []
    for name, target in targets:
        try:
            reports.append(verified(target))
        except VerificationError as e:
            raise VerificationError(
                f"log {name} does not verify: {e.message}", where=e.where, rule=e.rule
            ) from e
    return reports


@audit.command("reconcile", short_help="Compare two labs' logs round by round.")
@click.argument("log_a", type=EXISTING)
@click.argument("log_b", type=EXISTING)
@click.option("--key-a", type=EXISTING_FILE, help="Audit public key of lab A (PEM).")
@click.option("--key-b", type=EXISTING_FILE, help="Audit public key of lab B (PEM).")
@click.option(
    "--checkpoint-a",
    type=EXISTING_FILE,
    multiple=True,
    help="A checkpoint of A's log kept by someone else. Repeatable.",
)
@click.option(
    "--checkpoint-b",
    type=EXISTING_FILE,
    multiple=True,
    help="A checkpoint of B's log kept by someone else. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reconcile_command(
    log_a: Path,
    log_b: Path,
    key_a: Path | None,
    key_b: Path | None,
    checkpoint_a: tuple[Path, ...],
    checkpoint_b: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Compare two labs' logs (files or node directories) round by round.

    Lists rounds present in one log only, records that disagree, receipts that do not match,
    and logs rewritten after the fact (a receipt the peer holds names another root).
    Exit 0 when they agree; exit 3 listing every discrepancy.
    """
    target_a = resolve_target(log_a, key_a, checkpoint_a)
    target_b = resolve_target(log_b, key_b, checkpoint_b)
    reports = _verified_each([("A", target_a), ("B", target_b)])
    result = reconcile_reports(reports[0], reports[1])
    if as_json:
        print_json(result.to_dict())
    else:
        for line in result.summary_lines():
            click.echo(line)
        for name, target, report in (("A", target_a, reports[0]), ("B", target_b, reports[1])):
            click.echo(key_line(target, report).replace("  key:", f"  key of {name}:", 1))
    if not result.ok:
        raise VerificationError(
            f"{len(result.discrepancies)} discrepancies between the logs of {result.lab_a} "
            f"and {result.lab_b}",
            rule=Rule.RECONCILE,
        )


@audit.command(
    "reconcile-consortium",
    short_help="Compare participants' and the hub's logs over consortium rounds.",
)
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reconcile_consortium_command(logs: tuple[Path, ...], as_json: bool) -> None:
    """Verify each log (node or hub directories, or log files), then check that they tell
    one story about every consortium round: same header, receipts that verify with each
    signer's key and match the other party's copy, result counts as the hub logged them.

    Exit 0 when they agree; exit 3 listing every discrepancy."""
    result = reconcile_consortium(
        _verified_each([(str(path), resolve_target(path, None)) for path in logs])
    )
    if as_json:
        print_json(result.to_dict())
    else:
        for line in result.summary_lines():
            click.echo(line)
    if not result.ok:
        raise VerificationError(
            f"{len(result.discrepancies)} discrepancies between the logs",
            rule=result.discrepancies[0].rule,
        )


def register(group: click.Group) -> None:
    """Both commands join the ``audit`` group (registered by node.cli.audit)."""
