"""`crossmatch policy ...` (the consortium signs, every lab installs) and `crossmatch crl install`.

The consortium writes the policy as TOML, signs it with the CA key
(`policy sign`), and publishes the signed file; each lab checks it against the CA
certificate it already trusts and installs it (`policy install`). A running
daemon picks up a newly installed policy or revocation list by itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from node import pki
from node.cli.common import (
    EXISTING_FILE,
    ca_cert_option,
    ca_dir_argument,
    node_dir_argument,
    out_option,
)
from node.config import NodePaths
from node.runtime import Node, ca_public_key, node_clock
from node.state.files import atomic_write, read_or_raise
from protocol.audit.events import CrlInstalled, PolicyInstalled
from protocol.errors import InputError, PolicyError
from protocol.policy import Policy, format_instant
from protocol.policy_document import (
    parse_policy_toml,
    read_signed_policy,
    sign_policy,
    verify_signed_policy,
)
from protocol.revocation import load_revoked_serials
from protocol.rollback import check_crl_update, check_policy_update
from protocol.rules import Rule

_TEMPLATE = """\
# crossmatch consortium policy. Sign it with `crossmatch policy sign CA_DIR THIS_FILE`.
# Safe defaults: every anti-probing setting is on (docs/threat-model.md, "Probing").
policy_id = "example-consortium"
version = 1
purpose = "Detect, attribute and block adversarial distillation campaigns shared by member labs."
not_before = {not_before}
not_after = {not_after}     # a year from today: re-sign before then
min_interval_seconds = 3600     # at most one round per pair per hour (must be > 0)
retention_days = 90             # matches older than this are purged (and the purge audited)
suite = "ristretto255-v1"       # the PSI suite (or "openmined-p256-v1"); every node must have it
verified_matches = true         # store a reveal match only behind the peer's DLEQ proof
pad_to = 1024                   # every side pads each kind to a multiple of 1024 (or "pow2")
max_churn_per_epoch = 10000     # new elements a peer may bring per epoch key (verified rounds)

# One table per kind labs may exchange; a kind not listed is refused.
# mode = "reveal": both learn which signals are shared (count also allowed);
# mode = "count": only how many. min_set_size: smaller sets are refused.
[kinds.email]
max_set_size = 1000000
min_set_size = 1000
mode = "reveal"

[kinds.phone]
max_set_size = 1000000
min_set_size = 1000

[kinds.account_id]
max_set_size = 5000000
min_set_size = 1000

[kinds.prompt]
max_set_size = 2000000
min_set_size = 1000
mode = "count"
"""


def template(now: datetime) -> str:
    """The example policy, valid from the start of ``now``'s day for 365 days."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return _TEMPLATE.format(
        not_before=format_instant(today), not_after=format_instant(today + timedelta(days=365))
    )


def _read(path: Path, what: str) -> bytes:
    return read_or_raise(path, what, error=InputError)


def describe(policy: Policy) -> list[str]:
    lines = [
        f"policy:        {policy.policy_id} version {policy.version}",
        f"hash:          {policy.hash().hex()}",
        f"purpose:       {policy.purpose}",
        f"valid:         {policy.not_before or '-'} .. {policy.not_after or '-'}",
        f"min interval:  {policy.min_interval_seconds} s between rounds of a pair",
        f"retention:     {policy.retention_days} days",
        f"suite:         {policy.suite}"
        + (" (matches verified by DLEQ proofs)" if policy.verified_matches else ""),
        "kinds:",
    ]
    for kind in policy.allowed_kinds:
        mode = "count only" if policy.kind_modes.get(kind) == "count" else "reveal or count"
        lines.append(f"  {kind:<20} max {policy.size_cap(kind):>12,}   {mode}")
    return lines


@click.group("policy")
def policy_group() -> None:
    """The consortium policy: what rounds may contain, signed by the consortium CA."""


@policy_group.command("template")
def policy_template() -> None:
    """Print an example policy TOML to start from (valid from today for a year)."""
    click.echo(template(datetime.now(UTC)), nl=False)


@policy_group.command("sign")
@ca_dir_argument
@click.argument("policy_file", type=EXISTING_FILE)
@out_option("Where to write the signed policy (e.g. policy.signed).", required=True)
def policy_sign(ca_dir: Path, policy_file: Path, out: Path) -> None:
    """Check POLICY_FILE (TOML) and sign it with the consortium CA key in CA_DIR."""
    text = _read(policy_file, "policy")
    policy = parse_policy_toml(text)
    atomic_write(out, sign_policy(text, pki.ca_signing_key(ca_dir)))
    click.echo(
        f"signed policy {policy.policy_id} v{policy.version} "
        f"({policy.hash().hex()[:16]}…) -> {out}; publish it to every lab"
    )


@policy_group.command("show")
@click.argument("file", type=EXISTING_FILE)
@ca_cert_option("Also verify the signature against this CA certificate.", "ca_cert")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def policy_show(file: Path, ca_cert: Path | None, as_json: bool) -> None:
    """Print a policy (signed, or plain TOML) and, with --ca-cert, verify its signature."""
    data = _read(file, "policy")
    signed = data.lstrip().startswith(b"{")
    if signed:
        policy = read_signed_policy(data)[0].policy
    else:
        policy = parse_policy_toml(data)
    verified = ""
    if ca_cert is not None:
        if not signed:
            raise PolicyError("this is an unsigned policy", rule=Rule.POLICY_UNSIGNED)
        verify_signed_policy(data, ca_public_key(_read(ca_cert, "CA certificate")))
        verified = "signature verifies with the given CA"
    if as_json:
        out = dict(policy.to_dict(), hash=policy.hash().hex(), signed=signed)
        if verified:
            out["verified"] = verified
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    for line in describe(policy):
        click.echo(line)
    unchecked = "present, not checked (give --ca-cert)" if signed else "NONE (unsigned TOML)"
    click.echo(f"signature:     {verified or unchecked}")


@policy_group.command("install")
@node_dir_argument
@click.argument("file", type=EXISTING_FILE)
@click.option("--force", is_flag=True, help="Allow an older version of the installed policy.")
def policy_install(node_dir: Path, file: Path, force: bool) -> None:
    """Verify FILE against NODE_DIR/tls/ca.crt and install it; a running daemon picks it up."""
    paths = NodePaths(node_dir)
    data = _read(file, "signed policy")
    policy = verify_signed_policy(data, ca_public_key(_read(paths.ca_cert, "CA certificate")))
    check_policy_update(policy.policy, None, now=node_clock()())
    with Node(node_dir) as node:
        current = node.policy if not node.policy_problem else None
        check_policy_update(policy.policy, current, now=node_clock()(), force=force)
        atomic_write(paths.policy, data)
        node.record(
            PolicyInstalled(
                policy_id=policy.policy.policy_id,
                version=policy.policy.version,
                policy_hash=policy.policy.hash().hex(),
                not_after=policy.policy.not_after,
            )
        )
    click.echo(
        f"installed policy {policy.policy.policy_id} v{policy.policy.version} "
        f"({policy.policy.hash().hex()[:16]}…) in {paths.policy}"
    )


# --- revocation list ---------------------------------------------------------------------------


@click.group("crl")
def crl_group() -> None:
    """The consortium's certificate revocation list, as honoured by this node."""


@crl_group.command("install")
@node_dir_argument
@click.argument("crl_file", type=EXISTING_FILE)
def crl_install(node_dir: Path, crl_file: Path) -> None:
    """Verify CRL_FILE against NODE_DIR/tls/ca.crt and install it as tls/crl.pem.

    Refuses a list older than the installed one (a lower CRL number). A running
    daemon reloads it at the next handshake.
    """
    paths = NodePaths(node_dir)
    data = _read(crl_file, "CRL")
    serials = load_revoked_serials(data, _read(paths.ca_cert, "CA certificate"))
    installed = read_or_raise(paths.crl, "installed CRL") if paths.crl.exists() else None
    number = check_crl_update(data, installed)
    atomic_write(paths.crl, data)
    with Node(node_dir) as node:
        node.record(CrlInstalled(crl_number=number, revoked=len(serials)))
    click.echo(f"installed CRL number {number} ({len(serials)} revoked) in {paths.crl}")


def register(group: click.Group) -> None:
    group.add_command(policy_group)
    group.add_command(crl_group)
