"""Rollback and validity rules for installing a new signed policy or revocation list.

A node must never go back to an older policy (a peer or an operator replaying a laxer
one) or an older CRL (un-revoking a certificate) by accident. Pure: bytes and values in,
PolicyError naming the rule out; time is a parameter.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from protocol.errors import ConfigError, PolicyError
from protocol.identity import as_utc
from protocol.policy import Policy
from protocol.rules import Rule


def crl_number(crl_pem: bytes) -> int:
    """The CRL's sequence number; -1 for a list without one (older than any numbered list)."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except (ValueError, x509.ExtensionNotFound):
        return -1


def check_crl_update(new_crl_pem: bytes, installed_crl_pem: bytes | None) -> int:
    """The new list's number; PolicyError crl-rollback if it is older than the installed one."""
    number = crl_number(new_crl_pem)
    if installed_crl_pem is not None:
        installed = crl_number(installed_crl_pem)
        if number < installed:
            raise PolicyError(
                f"CRL number {number} is older than the installed {installed}",
                rule=Rule.CRL_ROLLBACK,
            )
    return number


def check_policy_update(
    new: Policy, current: Policy | None, *, now: datetime, force: bool = False
) -> None:
    """A signed policy may be installed unless it has expired (policy-expired) or goes back to
    an older version of the installed policy (policy-rollback; ``force`` allows it)."""
    expires = new.expires()
    if expires is not None and as_utc(now) > expires:
        raise PolicyError(
            f"policy {new.policy_id} expired at {new.not_after}", rule=Rule.POLICY_EXPIRED
        )
    if (
        current is not None
        and current.policy_id == new.policy_id
        and current.version > new.version
        and not force
    ):
        raise PolicyError(
            f"installed policy {current.policy_id} is version {current.version}; refusing "
            f"to go back to version {new.version} (use --force)",
            rule=Rule.POLICY_ROLLBACK,
        )


def crl_next_update(crl_pem: bytes) -> datetime | None:
    """When the CRL's issuer promised the next one (None if it names no date); a node
    refuses rounds past it (rule crl-stale): the issuer may have revoked someone since."""
    try:
        return x509.load_pem_x509_crl(crl_pem).next_update_utc
    except ValueError as e:
        raise ConfigError(f"not a PEM CRL: {e}", rule=Rule.CRL_MALFORMED) from e
