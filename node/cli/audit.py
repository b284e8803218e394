"""`crossmatch audit ...`: offline checks of audit logs, for reviewers.

Every command works on copies of files, without the node running. A target is
either a log file or a node directory: for a node directory the log is
``audit.log``, the key is ``keys/audit.pub`` (if present) and ``audit.checkpoint``
(the node's latest signed checkpoint) is checked too. For a bare log file, pass
``--key`` (the lab's audit public key, PEM); without a key, signatures are checked
against the key embedded in record 0 of the log itself and the output says so.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from node.cli.common import EXISTING_DIR, EXISTING_FILE, print_json
from node.ops.csvsafe import SafeWriter
from node.ops.report import EXPORT_COLUMNS, csv_row, export_row, render_report
from node.pki import load_audit_public_key
from node.state.auditlog import checkpoint_path, read_bytes
from node.state.files import atomic_write
from protocol.audit.canonical import encode_canonical
from protocol.audit.proofs import build_consistency_proof, build_inclusion_proof, check_proof
from protocol.audit.verify import LogVerifier, check_log_bytes
from protocol.audit.verify_report import VerifyReport
from protocol.errors import ConfigError, InputError, VerificationError
from protocol.identity import is_valid_lab_id, key_fingerprint

EXISTING = click.Path(exists=True, path_type=Path)


@dataclass
class Target:
    """Where a log and the means to check it come from."""

    log: Path
    key: Ed25519PublicKey | None = None
    key_origin: str = ""
    checkpoints: list[Path] = field(default_factory=list)


def resolve_target(path: Path, key_file: Path | None, checkpoints: Sequence[Path] = ()) -> Target:
    if path.is_dir():
        log = path / "audit.log"
        if not log.exists():
            raise ConfigError(f"{path} holds no audit.log: is it a node directory?")
        target = Target(log=log, checkpoints=list(checkpoints))
        own_key = path / "keys" / "audit.pub"
        if key_file is None and own_key.exists():
            key_file = own_key
        kept = checkpoint_path(log)
        if kept.exists():
            target.checkpoints.insert(0, kept)
    else:
        target = Target(log=path, checkpoints=list(checkpoints))
    if key_file is not None:
        target.key, target.key_origin = load_audit_public_key(key_file), str(key_file)
    return target


def load_peer_keys(directory: Path | None) -> dict[str, Ed25519PublicKey]:
    """``<lab>.pub`` files (PEM) in ``directory``, by lab id."""
    if directory is None:
        return {}
    keys = {}
    for file in sorted(directory.glob("*.pub")):
        if not is_valid_lab_id(file.stem):
            raise ConfigError(f"{file.name}: the file name must be <lab id>.pub", where=str(file))
        keys[file.stem] = load_audit_public_key(file)
    if not keys:
        raise ConfigError(f"{directory} holds no <lab>.pub files")
    return keys


def _notes(paths: Sequence[Path]) -> list[tuple[str, str]]:
    return [(str(p), read_bytes(p, "checkpoint").decode("utf-8", "replace")) for p in paths]


def _relabel(error: VerificationError, log: Path, labels: set[str]) -> VerificationError:
    where = error.where if error.where in labels else f"{log}: {error.where}"
    return VerificationError(error.message, where=where, rule=error.rule)


def run_verification(
    target: Target, peer_keys: dict[str, Ed25519PublicKey] | None = None, *, keep: bool = True
) -> tuple[LogVerifier, VerifyReport | None, VerificationError | None]:
    """Verify; on failure return the verifier too, which holds the records before the failure.

    ``keep=False`` keeps only the tree (one root per size), not the parsed records.
    """
    notes = _notes(target.checkpoints)
    verifier = LogVerifier(public_key=target.key, peer_keys=peer_keys, keep=keep)
    try:
        report = check_log_bytes(verifier, read_bytes(target.log, "audit log"), notes)
    except VerificationError as e:
        return verifier, None, _relabel(e, target.log, {label for label, _ in notes})
    return verifier, report, None


def verified(
    target: Target, peer_keys: dict[str, Ed25519PublicKey] | None = None, *, keep: bool = True
) -> VerifyReport:
    _, report, failure = run_verification(target, peer_keys, keep=keep)
    if failure is not None:
        raise failure
    assert report is not None
    return report


def key_line(target: Target, report: VerifyReport) -> str:
    if target.key is None:
        return (
            f"  key: {report.key_fingerprint}, embedded in the log (pass --key to check it "
            "against a key you trust)"
        )
    return f"  key: {report.key_fingerprint}, from {target.key_origin}"


@contextmanager
def _output(out: Path | None) -> Iterator[IO[str]]:
    if out is None:
        yield sys.stdout
        return
    with open(out, "w", encoding="utf-8", newline="") as f:
        yield f


def _emit_json(doc: dict[str, Any], out: Path | None) -> None:
    if out is None:
        print_json(doc)
    else:
        atomic_write(out, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        click.echo(f"wrote {out}", err=True)


key_option = click.option(
    "--key",
    "key_file",
    type=EXISTING_FILE,
    help="The lab's audit public key (PEM). Default: keys/audit.pub of a node directory.",
)
checkpoint_option = click.option(
    "--checkpoint",
    "checkpoints",
    type=EXISTING_FILE,
    multiple=True,
    help="A checkpoint kept elsewhere (e.g. by the peer) the log must be consistent with. "
    "Repeatable.",
)
peer_keys_option = click.option(
    "--peer-keys",
    type=EXISTING_DIR,
    help="Directory of peers' audit public keys, one <lab>.pub (PEM) per peer, to check the "
    "receipts peers signed.",
)


@click.group("audit")
def audit() -> None:
    """Verify, prove, export, reconcile and report on audit logs (offline)."""


@audit.command("verify", short_help="Check a log: signatures, chain, tree, checkpoints.")
@click.argument("target", type=EXISTING)
@key_option
@peer_keys_option
@checkpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(
    target: Path,
    key_file: Path | None,
    peer_keys: Path | None,
    checkpoints: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Check every record of a log (file or node directory): signatures, hash chain, Merkle tree,
    checkpoints, and peers' receipts.

    Exit 0 when intact; exit 3 naming the first bad record and the rule it breaks.
    """
    resolved = resolve_target(target, key_file, checkpoints)
    if peer_keys is None and target.is_dir() and any((target / "peers").glob("*.pub")):
        peer_keys = target / "peers"  # peers' certified keys, kept by the node at each round
    report = verified(resolved, load_peer_keys(peer_keys), keep=False)
    if as_json:
        print_json({"ok": True, "file": str(resolved.log), **report.to_dict()})
        return
    lines = report.summary_lines()
    click.echo(lines[0])
    click.echo(key_line(resolved, report))
    for line in lines[1:]:
        click.echo(line)


@audit.command("prove", short_help="Inclusion proof of one record (JSON).")
@click.argument("target", type=EXISTING)
@click.option("--record", "index", type=click.IntRange(min=0), required=True, help="Record number.")
@click.option(
    "--size",
    type=click.IntRange(min=1),
    help="Tree size to prove against. Default: the newest signed checkpoint covering the record.",
)
@key_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def prove_command(
    target: Path, index: int, size: int | None, key_file: Path | None, out: Path | None
) -> None:
    """Emit an inclusion proof (JSON) that record N is in the log, for a third party."""
    report = verified(resolve_target(target, key_file))
    _check_size(size, report)
    _emit_json(build_inclusion_proof(report, index, size), out)


@audit.command("consistency", short_help="Consistency proof between two sizes of a log (JSON).")
@click.argument("target", type=EXISTING)
@click.option("--from", "size1", type=click.IntRange(min=0), required=True, help="Older size.")
@click.option(
    "--to",
    "size2",
    type=click.IntRange(min=1),
    help="Newer size. Default: the newest signed checkpoint.",
)
@key_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def consistency_command(
    target: Path, size1: int, size2: int | None, key_file: Path | None, out: Path | None
) -> None:
    """Emit a consistency proof (JSON): the log at --from records is a prefix of the log now."""
    report = verified(resolve_target(target, key_file))
    _check_size(size2, report)
    if size1 > (size2 or report.size):
        raise InputError(f"--from {size1} is beyond the newer size {size2 or report.size}")
    _emit_json(build_consistency_proof(report, size1, size2), out)


def _check_size(size: int | None, report: VerifyReport) -> None:
    if size is not None and size > report.size:
        raise InputError(f"size {size} is beyond the log's {report.size} records")


@audit.command("check-proof", short_help="Verify a proof made by prove / consistency.")
@click.argument("proof", type=EXISTING_FILE)
@click.option("--key", "key_file", type=EXISTING_FILE, help="The lab's audit public key (PEM).")
@click.option(
    "--checkpoint",
    type=EXISTING_FILE,
    help="A checkpoint you hold; the proof must match it.",
)
def check_proof_command(proof: Path, key_file: Path | None, checkpoint: Path | None) -> None:
    """Verify an inclusion or consistency proof made by `audit prove` / `audit consistency`."""
    try:
        doc = json.loads(read_bytes(proof, "proof"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not a JSON proof document: {e}", where=str(proof)) from e
    key = load_audit_public_key(key_file) if key_file else None
    note = read_bytes(checkpoint, "checkpoint").decode("utf-8", "replace") if checkpoint else None
    try:
        lines = check_proof(doc, key=key, checkpoint=note)
    except VerificationError as e:
        raise VerificationError(e.message, where=str(proof), rule=e.rule) from e
    click.echo(f"proof {proof}: valid")
    for line in lines:
        click.echo(f"  {line}")


@audit.command("export", short_help="One row per record, as JSON lines or CSV.")
@click.argument("target", type=EXISTING)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@key_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def export_command(target: Path, fmt: str, key_file: Path | None, out: Path | None) -> None:
    """One row per record of a verified log, as JSON lines or CSV (refuses a log that fails)."""
    report = verified(resolve_target(target, key_file))
    rows = [export_row(r, h) for r, h in zip(report.records, report.leaf_hashes, strict=True)]
    with _output(out) as stream:
        if fmt == "jsonl":
            for row in rows:
                stream.write(encode_canonical(row).decode("utf-8") + "\n")
        else:
            writer = SafeWriter(stream, lineterminator="\n")
            writer.writerow(EXPORT_COLUMNS)
            writer.writerows(csv_row(row) for row in rows)
    if out is not None:
        click.echo(f"wrote {len(rows)} rows to {out}", err=True)


@audit.command("report", short_help="Self-contained HTML report for a reviewer.")
@click.argument("target", type=EXISTING)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="HTML file."
)
@key_option
@peer_keys_option
@checkpoint_option
def report_command(
    target: Path,
    out: Path,
    key_file: Path | None,
    peer_keys: Path | None,
    checkpoints: tuple[Path, ...],
) -> None:
    """Write a self-contained HTML report of a log for a reviewer: verification status,
    rounds per peer over time, every round, refusals and aborts.

    The report is written even when verification fails (it says so at the top); the exit code
    is then 3.
    """
    resolved = resolve_target(target, key_file, checkpoints)
    verifier, report, failure = run_verification(resolved, load_peer_keys(peer_keys))
    data = read_bytes(resolved.log, "audit log")
    page = render_report(
        records=verifier.records,
        report=report,
        failure=failure,
        source=resolved.log.name,
        source_sha256=hashlib.sha256(data).hexdigest(),
        generated_at=datetime.now(UTC),
    )
    atomic_write(out, page.encode("utf-8"))
    click.echo(f"wrote {out} ({len(verifier.records)} records)")
    if failure is not None:
        raise failure
    if resolved.key is None and report is not None:
        fingerprint = key_fingerprint(report.public_key)
        click.echo(
            f"note: signatures checked with the log's own key {fingerprint}; "
            "pass --key to check against a key you trust"
        )


def register(group: click.Group) -> None:
    group.add_command(audit)
