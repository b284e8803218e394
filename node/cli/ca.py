"""`crossmatch ca ...` (the consortium's side) and `crossmatch cert ...` (a lab's side).

The consortium keeps CA_DIR (and its key) to itself; a lab sends a CSR and gets a
certificate back. Errors are CrossmatchErrors; the main CLI prints them as one line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from node import pki
from node.cli.common import EXISTING_DIR, EXISTING_FILE, ca_cert_option, ca_dir_argument, out_option
from node.state.files import read_or_raise
from protocol.errors import ConfigError, InputError
from protocol.timestamps import format_utc


def _now() -> datetime:
    return datetime.now(UTC)


def _read(path: Path, what: str) -> bytes:
    return read_or_raise(path, what, error=InputError)


def _parse_serial(text: str) -> int:
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError as e:
        raise InputError(f"serial must be a decimal or 0x-hex integer, got {text!r}") from e


# --- crossmatch ca ---------------------------------------------------------------------------


@click.group("ca")
def ca_group() -> None:
    """Run the consortium certificate authority (the CA key never leaves CA_DIR)."""


@ca_group.command("init")
@click.argument("ca_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="crossmatch consortium CA", show_default=True, help="CA name.")
@click.option("--days", default=3650, show_default=True, help="CA validity in days.")
def ca_init(ca_dir: Path, name: str, days: int) -> None:
    """Create a consortium CA in CA_DIR (ca.key mode 0600, ca.crt, index.json, crl.pem).

    Refuses to touch a directory that already holds a CA.
    """
    pki.init_ca(ca_dir, now=_now(), name=name, valid_days=days)
    click.echo(f"created CA in {ca_dir}; give {ca_dir / pki.CA_CERT_FILE} to every lab")


@ca_group.command("issue")
@ca_dir_argument
@click.argument("csr_file", type=EXISTING_FILE)
@out_option("Where to write the certificate [default: CSR_FILE with suffix .crt].")
@click.option("--days", default=365, show_default=True, help="Certificate validity in days.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def ca_issue(ca_dir: Path, csr_file: Path, out: Path | None, days: int, force: bool) -> None:
    """Check a lab's CSR and sign it: lab id, TLS key and audit key, nothing else is copied."""
    out = out or csr_file.with_suffix(".crt")
    if out.exists() and not force:
        raise ConfigError("refusing to overwrite (use --force or another --out)", where=str(out))
    cert_pem = pki.issue_certificate(ca_dir, _read(csr_file, "CSR"), now=_now(), valid_days=days)
    try:
        out.write_bytes(cert_pem)
    except OSError as e:
        raise ConfigError(f"cannot write certificate: {e.strerror}", where=str(out)) from e
    summary = pki.summarize_certificate(cert_pem)
    click.echo(
        f"issued certificate for lab {summary.lab}: serial {summary.serial}, "
        f"valid until {format_utc(summary.not_after, timespec='seconds')} -> {out}"
    )


@ca_group.command("revoke")
@ca_dir_argument
@click.option("--serial", help="Serial to revoke (decimal, or hex with 0x).")
@click.option("--cert", "cert_file", type=EXISTING_FILE, help="Certificate file to revoke.")
def ca_revoke(ca_dir: Path, serial: str | None, cert_file: Path | None) -> None:
    """Revoke a node certificate and re-sign CA_DIR/crl.pem; publish it to every node.

    Give exactly one of --serial or --cert.
    """
    if (serial is None) == (cert_file is None):
        raise click.UsageError("give exactly one of --serial or --cert")
    if cert_file is not None:
        number = pki.summarize_certificate(_read(cert_file, "certificate")).serial
    else:
        number = _parse_serial(str(serial))
    pki.revoke(ca_dir, number, now=_now())
    click.echo(f"revoked serial {number}; publish {ca_dir / pki.CA_CRL_FILE} to every node")


# --- crossmatch cert -------------------------------------------------------------------------


@click.group("cert")
def cert_group() -> None:
    """A node's TLS certificate: request, install, show."""


@cert_group.command("request")
@click.argument("node_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--lab", required=True, help="This node's lab id (a lowercase DNS label).")
@click.option(
    "--audit-key",
    "audit_key_file",
    type=EXISTING_FILE,
    required=True,
    help="The node's Ed25519 audit key (PEM, private or public).",
)
@click.option("--new-key", is_flag=True, help="Replace tls/node.key with a fresh key.")
def cert_request(node_dir: Path, lab: str, audit_key_file: Path, new_key: bool) -> None:
    """Write NODE_DIR/tls/node.csr (creating tls/node.key if absent) to send to the CA.

    Also the way to renew: run it again, send the CSR, install the new certificate.
    """
    files = pki.NodeTlsFiles.of_node(node_dir)
    audit_key = pki.load_audit_public_key(audit_key_file)
    pki.request_certificate(files.directory, lab, audit_key, new_key=new_key)
    click.echo(f"wrote {files.csr}; send it to the consortium CA (`crossmatch ca issue`)")


@cert_group.command("install")
@click.argument("node_dir", type=EXISTING_DIR)
@click.argument("cert_file", type=EXISTING_FILE)
@ca_cert_option("Consortium CA certificate [default: NODE_DIR/tls/ca.crt].")
def cert_install(node_dir: Path, cert_file: Path, ca_cert_file: Path | None) -> None:
    """Install CERT_FILE as NODE_DIR/tls/node.crt after checking it.

    It must be signed by the consortium CA, match tls/node.key, match tls/node.csr if present
    (lab and audit key) and be currently valid.
    """
    files = pki.NodeTlsFiles.of_node(node_dir)
    ca_pem = _ca_pem_for_install(files, ca_cert_file)
    cert_pem = _read(cert_file, "certificate")
    pki.install_certificate(files.directory, cert_pem, ca_pem, now=_now())
    summary = pki.summarize_certificate(cert_pem)
    click.echo(
        f"installed certificate for lab {summary.lab} (serial {summary.serial}, "
        f"valid until {format_utc(summary.not_after, timespec='seconds')}) in {files.directory}"
    )


def _ca_pem_for_install(files: pki.NodeTlsFiles, ca_cert_file: Path | None) -> bytes:
    installed = files.ca_cert.read_bytes() if files.ca_cert.exists() else None
    if ca_cert_file is None:
        if installed is None:
            raise ConfigError(
                "no consortium CA certificate here; pass --ca-cert", where=str(files.ca_cert)
            )
        return installed
    given = _read(ca_cert_file, "CA certificate")
    if installed is not None and installed != given:
        # Replacing the trust anchor is a consortium CA rotation, never a side effect.
        raise ConfigError(
            f"differs from --ca-cert {ca_cert_file}; remove it first if the consortium "
            "rotated its CA",
            where=str(files.ca_cert),
        )
    return given


@cert_group.command("show")
@click.argument("cert_file", type=EXISTING_FILE)
@ca_cert_option("Also verify against this CA certificate (and --crl) now.")
@click.option("--crl", "crl_file", type=EXISTING_FILE, help="Revocation list to check against.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def cert_show(cert_file: Path, ca_cert_file: Path | None, crl_file: Path | None, fmt: str) -> None:
    """Print a node certificate's lab, serial, validity and audit key fingerprint."""
    if crl_file is not None and ca_cert_file is None:
        raise click.UsageError("--crl needs --ca-cert (the CRL's signature is checked)")
    cert_pem = _read(cert_file, "certificate")
    summary = pki.summarize_certificate(cert_pem)
    now = _now()
    fields: dict[str, object] = {
        "lab": summary.lab,
        "serial": str(summary.serial),
        "issuer": summary.issuer,
        "not_before": format_utc(summary.not_before, timespec="seconds"),
        "not_after": format_utc(summary.not_after, timespec="seconds"),
        "days_left": round(pki.days_until_expiry(cert_pem, now=now), 1),
        "fingerprint": summary.fingerprint,
        "audit_key_fingerprint": summary.audit_key_fingerprint,
    }
    if ca_cert_file is not None:
        ca_pem = _read(ca_cert_file, "CA certificate")
        revoked = (
            pki.load_revoked_serials(_read(crl_file, "CRL"), ca_pem) if crl_file else frozenset()
        )
        pki.identity_from_certificate(cert_pem, ca_pem, now=now, revoked=revoked)
        fields["verified"] = "valid now, signed by the given CA" + (
            ", not revoked" if crl_file else ""
        )
    if fmt == "json":
        click.echo(json.dumps(fields, indent=2))
    else:
        for name, value in fields.items():
            click.echo(f"{name + ':':<23}{value}")


def register(group: click.Group) -> None:
    group.add_command(ca_group)
    group.add_command(cert_group)
