"""`crossmatch init` and `crossmatch peer`: create a node directory, manage its peers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import pki
from node.cli.common import enrolment_options, node_dir_argument, print_table
from node.config import (
    NodeConfig,
    NodePaths,
    PeerConfig,
    check_address,
    check_lab,
    load_config,
    save_config,
)
from node.pki.keys import format_consortium_key, read_consortium_key
from node.runtime import Node, audit_log_id, utc_now
from node.state.auditlog import AuditLog
from node.state.files import atomic_write, write_secret
from node.state.store import Store
from protocol.audit.events import NodeInitialized, PeerAdded
from protocol.errors import ConfigError


@click.command("init")
@node_dir_argument
@click.option("--lab", required=True, help="This lab's id (lowercase DNS label, e.g. lab-a).")
@enrolment_options(
    ca_help="Consortium CA directory: issue the certificate now. Without it, a CSR is "
    "written to tls/node.csr for the CA to sign (`crossmatch ca issue`).",
    listen_default="127.0.0.1:7443",
    listen_help="HOST:PORT the responder binds (port 0 picks a free port).",
)
@click.option(
    "--consortium-key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The consortium fingerprint key file (`crossmatch consortium-key new`).",
)
@click.option(
    "--region",
    default="US",
    show_default=True,
    help="Default region for phone numbers written without a country code.",
)
def init(
    node_dir: Path,
    lab: str,
    ca_dir: Path | None,
    ca_cert: Path | None,
    listen: str,
    key_file: Path,
    region: str,
) -> None:
    """Create a node directory: config, TLS key and certificate, audit key, database, audit log.

    All or nothing: the directory is assembled aside and moved into place at the end.
    """
    create_node_dir(node_dir, lab, read_consortium_key(key_file), ca_dir, ca_cert, listen, region)
    click.echo(f"initialized node {lab} in {node_dir}")
    if not (NodePaths(node_dir).tls_cert).exists():
        csr = NodePaths(node_dir).tls_csr
        click.echo(
            f"certificate request: {csr}\n"
            f"  have the consortium CA run: crossmatch ca issue CA_DIR {csr}\n"
            f"  then: crossmatch cert install {node_dir} CERT_FILE"
        )


def create_node_dir(
    node_dir: Path,
    lab: str,
    key: bytes | None,
    ca_dir: Path | None,
    ca_cert: Path | None,
    listen: str,
    region: str = "US",
) -> None:
    """Assemble a node directory aside and move it into place (all or nothing).

    ``key`` None makes a consortium hub's directory: no fingerprint key at all."""
    check_lab(lab)
    check_address(listen)
    if node_dir.exists() and any(node_dir.iterdir()):
        raise ConfigError(f"{node_dir} exists and is not empty")
    node_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{node_dir.name}.init-", dir=node_dir.parent))
    try:
        _populate(NodePaths(staging), lab, key, ca_dir, ca_cert)
        cfg = NodeConfig(root=staging, lab=lab, listen=listen, default_region=region)
        save_config(cfg)
        if node_dir.exists():
            node_dir.rmdir()
        staging.rename(node_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _populate(
    paths: NodePaths, lab: str, key: bytes | None, ca_dir: Path | None, ca_cert: Path | None
) -> bool:
    now = utc_now()
    tls_key = pki.generate_tls_key()
    audit_key = Ed25519PrivateKey.generate()
    for d in (paths.root / "tls", paths.root / "keys", paths.root / "run"):
        d.mkdir(mode=0o700)
    pki.write_private_key(paths.tls_key, tls_key)
    pki.write_private_key(paths.audit_key, audit_key)
    atomic_write(
        paths.audit_pub,
        audit_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    if key is not None:
        write_secret(paths.consortium_key, format_consortium_key(key))
    csr = pki.make_csr(tls_key, lab, audit_key.public_key())
    atomic_write(paths.tls_csr, csr)
    issued = False
    if ca_dir is not None:
        cert = pki.issue_certificate(ca_dir, csr, now=now)
        ca_pem = (ca_dir / "ca.crt").read_bytes()
        pki.install_certificate(paths.root / "tls", cert, ca_pem, now=now)
        issued = True
    elif ca_cert is not None:
        atomic_write(paths.ca_cert, ca_cert.read_bytes())
    Store(paths.db).close()
    log = AuditLog.open(
        paths.audit_log, audit_key, log_id=audit_log_id(lab, audit_key.public_key()), now=now
    )
    log.append(NodeInitialized.EVENT, NodeInitialized(lab=lab).to_body(), now=now)
    log.checkpoint(now=now)
    log.close()
    return issued


@click.group("peer")
def peer() -> None:
    """The labs this node runs rounds with (the responder's allowlist)."""


@peer.command("add")
@node_dir_argument
@click.option("--lab", required=True, help="The peer's lab id, as in its certificate.")
@click.option("--address", required=True, help="HOST:PORT of the peer's responder.")
def peer_add(node_dir: Path, lab: str, address: str) -> None:
    """Add a peer, or update its address. Its audit key comes from its CA-issued certificate."""
    cfg = load_config(node_dir)
    check_lab(lab)
    check_address(address)
    if lab == cfg.lab:
        raise ConfigError(f"{lab} is this node itself")
    existing = [p for p in cfg.peers if p.lab == lab]
    if existing:
        existing[0].address = address
    else:
        cfg.peers.append(PeerConfig(lab, address))
    save_config(cfg)
    with Node(node_dir) as node:
        node.record(PeerAdded(lab=lab, address=address))
    click.echo(f"{'updated' if existing else 'added'} peer {lab} at {address}")


@peer.command("list")
@node_dir_argument
def peer_list(node_dir: Path) -> None:
    """List configured peers."""
    cfg = load_config(node_dir)
    print_table(["LAB", "ADDRESS"], [(p.lab, p.address) for p in cfg.peers])


def register(group: click.Group) -> None:
    group.add_command(init)
    group.add_command(peer)
