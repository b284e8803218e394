"""The policy as the consortium writes it: strict TOML, and the CA-signed document.

``parse_policy_toml`` reads the TOML the consortium writes; ``sign_policy`` wraps it in
a document signed with the consortium CA key; every node checks that document against
the CA certificate it already trusts (``verify_signed_policy``). The signature covers the
canonical encoding (protocol/signed_documents.py), not the TOML text, so what is signed
is exactly what is enforced and hashed. Pure: bytes and keys in, values out.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocol.consortium.policy import parse_consortium
from protocol.errors import ConfigError, InputError
from protocol.padding import Padding, parse_padding
from protocol.policy import ALL_KINDS, KIND_MODES, Policy, format_instant, parse_instant
from protocol.rules import Rule
from protocol.signed_documents import (
    DocumentKind,
    check_stated_hash,
    read_document,
    sign_document,
    verify_document,
)
from protocol.suites import DEFAULT_SUITE, SUITES

# A signed policy that leaves the rate limit out gets this one (an explicit 0 is refused).
DEFAULT_MIN_INTERVAL = 3600
SIGNED_POLICY = DocumentKind(
    name="policy",
    format="crossmatch-signed-policy/v1",
    signature_domain=b"crossmatch/v1/policy-signature",
    max_bytes=256 * 1024,
    syntax_rule=Rule.POLICY_SYNTAX,
    signature_rule=Rule.POLICY_SIGNATURE,
)
_POLICY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOP_KEYS = {
    "policy_id",
    "version",
    "purpose",
    "not_before",
    "not_after",
    "min_interval_seconds",
    "retention_days",
    "kinds",
    "consortium",
    "suite",
    "verified_matches",
    "peer_feedback",
    "require_crl",
    "pad_to",
    "max_churn_per_epoch",
}
_KIND_KEYS = {"max_set_size", "mode", "min_set_size"}


# --- TOML --------------------------------------------------------------------------------------


def parse_policy_toml(text: bytes | str) -> Policy:
    """The policy a TOML document states; InputError (rule ``policy-syntax``) names the problem.

    Strict: unknown keys and unknown kinds are errors, so a typo can never silently widen
    or narrow what labs agreed to exchange.
    """
    data = _load_toml(text)
    policy_id, purpose = _parse_names(data)
    not_before, not_after = _parse_window(data)
    caps, modes, floors = _parse_kinds(data["kinds"])
    suite, verified = _parse_suite(data)
    churn = data.get("max_churn_per_epoch")
    return Policy(
        policy_id=policy_id,
        version=_count(data["version"], "version", minimum=1),
        purpose=purpose,
        allowed_kinds=tuple(k for k in ALL_KINDS if k in caps),
        max_set_size=caps,
        kind_modes=modes,
        # A round per pair as often as a peer likes is probing one guess at a time: > 0.
        min_interval_seconds=_count(
            data.get("min_interval_seconds", DEFAULT_MIN_INTERVAL),
            "min_interval_seconds",
            minimum=1,
        ),
        retention_days=_count(data.get("retention_days", 90), "retention_days", minimum=1),
        not_before=not_before,
        not_after=not_after,
        consortium=parse_consortium(data.get("consortium")),
        suite=suite,
        verified_matches=verified,
        peer_feedback=_flag(data, "peer_feedback"),
        require_crl=_flag(data, "require_crl"),
        min_set_size=floors,
        padding=_parse_padding(data),
        max_churn_per_epoch=None if churn is None else _count(churn, "max_churn_per_epoch"),
    )


def _load_toml(text: bytes | str) -> dict[str, Any]:
    """The TOML table, with no unknown key and every required one."""
    try:
        data = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"policy is not valid TOML: {e}", rule=Rule.POLICY_SYNTAX) from e
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise InputError(
            f"unknown policy setting(s): {', '.join(sorted(unknown))}", rule=Rule.POLICY_SYNTAX
        )
    for key in ("policy_id", "version", "purpose", "not_before", "not_after", "kinds"):
        if key not in data:
            raise InputError(f"policy setting {key!r} is required", rule=Rule.POLICY_SYNTAX)
    return data


def _parse_names(data: Mapping[str, Any]) -> tuple[str, str]:
    policy_id = data["policy_id"]
    if not isinstance(policy_id, str) or not _POLICY_ID.match(policy_id):
        raise InputError(
            "policy_id must be 1-64 letters, digits, '.', '_' or '-'", rule=Rule.POLICY_SYNTAX
        )
    purpose = data["purpose"]
    if not isinstance(purpose, str) or not purpose.strip():
        raise InputError("purpose must be a non-empty statement", rule=Rule.POLICY_SYNTAX)
    return policy_id, purpose.strip()


def _parse_window(data: Mapping[str, Any]) -> tuple[str, str]:
    """``not_before`` and ``not_after`` as whole-second UTC text, the first before the second."""
    not_before = parse_instant(data["not_before"], "not_before")
    not_after = parse_instant(data["not_after"], "not_after")
    if not_after <= not_before:
        raise InputError("not_after must be later than not_before", rule=Rule.POLICY_SYNTAX)
    return format_instant(not_before), format_instant(not_after)


def _parse_padding(data: Mapping[str, Any]) -> Padding:
    try:
        return parse_padding(data.get("pad_to", "off"))
    except ConfigError as e:
        raise InputError(
            e.message.replace("round.pad_to", "pad_to"), rule=Rule.POLICY_SYNTAX
        ) from e


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false", rule=Rule.POLICY_SYNTAX)
    return value


def _parse_suite(data: Mapping[str, Any]) -> tuple[str, bool]:
    """``suite`` (default openmined-p256-v1) and ``verified_matches`` (default: on where the
    suite can prove its re-blinding)."""
    name = data.get("suite", DEFAULT_SUITE)
    if not isinstance(name, str) or name not in SUITES:
        raise InputError(
            f"suite must be one of {', '.join(sorted(SUITES))}, got {name!r}",
            rule=Rule.POLICY_SYNTAX,
        )
    proofs = SUITES[name].proofs
    verified = data.get("verified_matches", proofs)
    if not isinstance(verified, bool):
        raise InputError("verified_matches must be true or false", rule=Rule.POLICY_SYNTAX)
    if verified and not proofs:
        raise InputError(
            f"verified_matches needs a suite with proofs; {name} has none", rule=Rule.POLICY_SYNTAX
        )
    return name, verified


def _parse_kinds(table: Any) -> tuple[dict[str, int], dict[str, str], dict[str, int]]:
    if not isinstance(table, dict) or not table:
        raise InputError("[kinds] must list at least one kind", rule=Rule.POLICY_SYNTAX)
    caps: dict[str, int] = {}
    modes: dict[str, str] = {}
    floors: dict[str, int] = {}
    for kind, rules in table.items():
        if kind not in ALL_KINDS:
            raise InputError(
                f"unknown kind {kind!r} (known: {', '.join(ALL_KINDS)})", rule=Rule.POLICY_SYNTAX
            )
        if not isinstance(rules, dict) or set(rules) - _KIND_KEYS or "max_set_size" not in rules:
            raise InputError(
                f"[kinds.{kind}] takes max_set_size (required), min_set_size and mode",
                rule=Rule.POLICY_SYNTAX,
            )
        caps[kind] = _count(rules["max_set_size"], f"kinds.{kind}.max_set_size")
        mode = rules.get("mode", "reveal")
        if mode not in KIND_MODES:
            raise InputError(
                f"kinds.{kind}.mode must be 'reveal' or 'count', got {mode!r}",
                rule=Rule.POLICY_SYNTAX,
            )
        if mode == "count":
            modes[kind] = "count"
        if "min_set_size" in rules:
            floors[kind] = _count(rules["min_set_size"], f"kinds.{kind}.min_set_size")
            if floors[kind] > caps[kind]:
                raise InputError(
                    f"kinds.{kind}.min_set_size exceeds its max_set_size", rule=Rule.POLICY_SYNTAX
                )
    return caps, modes, floors


def _count(value: Any, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(
            f"{what} must be an integer >= {minimum}, got {value!r}", rule=Rule.POLICY_SYNTAX
        )
    return value


# --- signing -----------------------------------------------------------------------------------


def sign_policy(toml_text: bytes, ca_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The signed policy document: the TOML as written, its hash, the CA's ECDSA signature."""
    policy = parse_policy_toml(toml_text)
    return sign_document(SIGNED_POLICY, toml_text, policy.canonical_bytes(), policy.hash(), ca_key)


@dataclass(frozen=True)
class SignedPolicy:
    policy: Policy
    toml_text: str
    signer_key: str


def read_signed_policy(data: bytes) -> tuple[SignedPolicy, bytes]:
    """Parse a signed document without checking its signature (for ``policy show``).

    Returns the content and the raw signature bytes.
    """
    doc = read_document(SIGNED_POLICY, data)
    policy = parse_policy_toml(doc.toml_text)
    check_stated_hash(SIGNED_POLICY, doc, policy.hash())
    return SignedPolicy(policy, doc.toml_text, doc.signer_key), doc.signature


def verify_signed_policy(data: bytes, ca_public_key: ec.EllipticCurvePublicKey) -> SignedPolicy:
    """Parse and verify a signed policy against the consortium CA's public key.

    VerificationError (rule ``policy-signature``) if another key signed it or the content
    was changed; the validity window is checked separately (``Policy.check_time``).
    """
    doc = read_document(SIGNED_POLICY, data)
    policy = parse_policy_toml(doc.toml_text)
    check_stated_hash(SIGNED_POLICY, doc, policy.hash())
    verify_document(SIGNED_POLICY, doc, policy.canonical_bytes(), ca_public_key)
    return SignedPolicy(policy, doc.toml_text, doc.signer_key)
