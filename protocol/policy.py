"""What a round may contain: the consortium policy, its signed form, and the checks a
responder runs before doing any cryptographic work.

The policy is a plain value. Its hash (SHA-256 over a versioned canonical
encoding) travels in OpenRound and into every audit record, so a reviewer can
tell which rules a round ran under. Both sides must present the same hash.

The consortium writes the policy as TOML (``parse_policy_toml``) and signs it
with the consortium CA key (``sign_policy``); every node verifies the signed
document against the CA certificate it already trusts (``verify_signed_policy``).
The signature covers the canonical encoding, not the TOML text, so what is
signed is exactly what is enforced and hashed. Pure: bytes and keys in, values
out; time is always a parameter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.consortium.policy import ConsortiumPolicy, parse_consortium
from protocol.errors import ConfigError, InputError, PolicyError, VerificationError
from protocol.fingerprints.identifiers import IDENTIFIER_KIND_ORDER
from protocol.messages import MODES
from protocol.padding import OFF, Padding, parse_padding
from protocol.rules import Rule
from protocol.suites import DEFAULT_SUITE, SUITES
from protocol.timestamps import format_utc

POLICY_DOMAIN = b"crossmatch/v1/policy"
SIGNATURE_DOMAIN = b"crossmatch/v1/policy-signature"
SIGNED_FORMAT = "crossmatch-signed-policy/v1"
MAX_DOCUMENT_BYTES = 256 * 1024
# A signed policy that leaves the rate limit out gets this one (an explicit 0 is refused).
DEFAULT_MIN_INTERVAL = 3600

ALL_KINDS: tuple[str, ...] = (*IDENTIFIER_KIND_ORDER, "prompt")
KIND_MODES = MODES  # a kind's mode in the policy: "count" allows count rounds only
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


@dataclass(frozen=True)
class Policy:
    """Consortium rules for rounds. Defaults describe the built-in (unsigned) policy."""

    policy_id: str = "crossmatch-default"
    version: int = 1
    purpose: str = (
        "Detect, attribute and block adversarial distillation campaigns shared by member labs."
    )
    allowed_kinds: tuple[str, ...] = ALL_KINDS
    # Largest set one side may bring, per kind; "*" is the default for unlisted kinds.
    max_set_size: Mapping[str, int] = field(default_factory=lambda: {"*": 5_000_000})
    # "reveal" allows reveal or count; "count" forces count-only for that kind.
    kind_modes: Mapping[str, str] = field(default_factory=dict)
    min_interval_seconds: int = 0
    retention_days: int = 90
    not_before: str = ""  # ISO 8601 UTC, "YYYY-MM-DDTHH:MM:SSZ"; empty means no bound
    not_after: str = ""
    # The >= k consortium round (protocol/consortium/policy.py); None: no such round.
    consortium: ConsortiumPolicy | None = None
    # The PSI suite every round of the consortium runs on (protocol/suites), and whether a
    # reveal round stores a match only behind the peer's DLEQ proof (suites with proofs).
    suite: str = DEFAULT_SUITE
    verified_matches: bool = False
    # Labs may tell a peer "confirmed" / "false positive" about signals both learned in a
    # reveal round (protocol/feedback.py). Off unless the policy says so.
    peer_feedback: bool = False
    # Without a fresh CRL installed, refuse rounds (rule crl-missing) instead of trusting
    # every certificate. Hashed only when set, so existing policies keep their hash.
    require_crl: bool = False
    # Anti-probing (docs/threat-model.md, "Probing"): the smallest set a side may bring per
    # kind, the padding every side must apply (announced sizes are bucket sizes), and how
    # many new elements a peer's set may bring within one epoch of cached blindings.
    min_set_size: Mapping[str, int] = field(default_factory=dict)
    padding: Padding = OFF
    max_churn_per_epoch: int | None = None

    def to_dict(self) -> dict[str, object]:
        body = self._base_dict()
        if self.consortium is not None:  # absent section, unchanged hash
            body["consortium"] = self.consortium.to_dict()
        if self.suite != DEFAULT_SUITE or self.verified_matches:  # likewise
            body["suite"] = self.suite
            body["verified_matches"] = self.verified_matches
        if self.peer_feedback:  # absent when off: existing policies keep their hash
            body["peer_feedback"] = True
        if self.require_crl:  # likewise
            body["require_crl"] = True
        if self.min_set_size:  # likewise
            body["min_set_size"] = dict(sorted(self.min_set_size.items()))
        if self.padding != OFF:
            body["pad_to"] = self.padding.spec()
        if self.max_churn_per_epoch is not None:
            body["max_churn_per_epoch"] = self.max_churn_per_epoch
        return body

    def _base_dict(self) -> dict[str, object]:
        return {
            "policy_id": self.policy_id,
            "version": self.version,
            "purpose": self.purpose,
            "allowed_kinds": list(self.allowed_kinds),
            "max_set_size": dict(sorted(self.max_set_size.items())),
            "kind_modes": dict(sorted(self.kind_modes.items())),
            "min_interval_seconds": self.min_interval_seconds,
            "retention_days": self.retention_days,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    def canonical_bytes(self) -> bytes:
        body = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return POLICY_DOMAIN + b"\n" + body.encode("utf-8")

    def hash(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()

    def size_cap(self, kind: str) -> int:
        return int(self.max_set_size.get(kind, self.max_set_size.get("*", 0)))

    def mode_allowed(self, kind: str, mode: str) -> bool:
        return not (mode == "reveal" and self.kind_modes.get(kind) == "count")

    def check_round(self, kinds: Sequence[str], mode: str, sizes: Sequence[int]) -> None:
        """Raise PolicyError naming the rule if a proposed round breaks this policy."""
        if not kinds:
            raise PolicyError("a round needs at least one kind", rule=Rule.KINDS_EMPTY)
        for kind, size in zip(kinds, sizes, strict=True):
            if kind not in self.allowed_kinds:
                raise PolicyError(f"kind {kind!r} is not allowed by policy", rule=Rule.KIND_ALLOWED)
            cap = self.size_cap(kind)
            if size > cap:
                raise PolicyError(
                    f"{kind} set of {size} exceeds the policy cap of {cap}", rule=Rule.MAX_SET_SIZE
                )
            if not self.mode_allowed(kind, mode):
                raise PolicyError(
                    f"kind {kind!r} may only be matched in count mode", rule=Rule.KIND_MODE
                )

    def check_sizes(self, kinds: Sequence[str], sizes: Sequence[int]) -> None:
        """Anti-probing on announced (padded) sizes: at least the kind's ``min_set_size``
        (``min-set-size``) and a bucket size of the policy's padding (``pad-bucket``).
        A peer with a tiny set could otherwise test a handful of guesses per round."""
        for kind, size in zip(kinds, sizes, strict=True):
            floor = self.min_set_size.get(kind, 0)
            if size < floor:
                raise PolicyError(
                    f"{kind} set of {size} is under the policy minimum of {floor}",
                    rule=Rule.MIN_SET_SIZE,
                )
            if self.padding.size(size, self.size_cap(kind)) != size:
                raise PolicyError(
                    f"{kind} set of {size} is not padded to a bucket of pad_to = "
                    f"{self.padding.spec()}",
                    rule=Rule.PAD_BUCKET,
                )

    def check_churn(self, used: int, new: int) -> None:
        """Refuse (``epoch-churn``) a peer bringing ``new`` elements not seen in this
        epoch's cache when ``used`` were already brought earlier in the epoch."""
        cap = self.max_churn_per_epoch
        if cap is not None and used + new > cap:
            raise PolicyError(
                f"peer's set changed by {used + new} elements within this epoch; policy "
                f"{self.policy_id} allows {cap}",
                rule=Rule.EPOCH_CHURN,
            )

    def check_suite(self, suite: str) -> None:
        """Raise PolicyError (rule ``suite-policy``) unless rounds may run on ``suite``."""
        if suite != self.suite:
            raise PolicyError(
                f"round proposes suite {suite[:64]!r}; policy {self.policy_id} names "
                f"{self.suite!r}",
                rule=Rule.SUITE_POLICY,
            )

    def check_time(self, now: datetime) -> None:
        """Raise PolicyError unless ``now`` lies in the policy's validity window."""
        if self.not_before and now < parse_instant(self.not_before, "not_before"):
            raise PolicyError(
                f"policy {self.policy_id} is not valid before {self.not_before}",
                rule=Rule.POLICY_NOT_YET_VALID,
            )
        if self.not_after and now > parse_instant(self.not_after, "not_after"):
            raise PolicyError(
                f"policy {self.policy_id} expired at {self.not_after}", rule=Rule.POLICY_EXPIRED
            )

    def check_interval(
        self, last_round: datetime | None, now: datetime, slack: timedelta = timedelta(0)
    ) -> None:
        """Rate limit per pair: refuse a round sooner than ``min_interval_seconds`` after the
        last one. ``slack`` forgives the few seconds between the two sides' start stamps."""
        if last_round is None or self.min_interval_seconds <= 0:  # only the unsigned default
            return
        wait = timedelta(seconds=self.min_interval_seconds) - slack - (now - last_round)
        if wait > timedelta(0):
            raise PolicyError(
                f"the last round with this peer started {(now - last_round).total_seconds():.0f}"
                f" s ago; policy {self.policy_id} requires {self.min_interval_seconds} s between "
                f"rounds (retry in {wait.total_seconds():.0f} s)",
                rule=Rule.MIN_INTERVAL,
            )

    def expires(self) -> datetime | None:
        return parse_instant(self.not_after, "not_after") if self.not_after else None


DEFAULT_POLICY = Policy()


# --- time --------------------------------------------------------------------------------------


def parse_instant(value: object, what: str) -> datetime:
    """A timezone-aware instant from a TOML datetime or ISO 8601 text; InputError otherwise."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as e:
            raise InputError(
                f"{what} is not an ISO 8601 time: {value!r}", rule=Rule.POLICY_SYNTAX
            ) from e
    else:
        raise InputError(
            f"{what} must be a date-time, got {type(value).__name__}", rule=Rule.POLICY_SYNTAX
        )
    if moment.tzinfo is None:
        raise InputError(
            f"{what} needs a timezone (e.g. 2026-01-01T00:00:00Z)", rule=Rule.POLICY_SYNTAX
        )
    return moment.astimezone(UTC)


def format_instant(moment: datetime) -> str:
    return format_utc(moment, timespec="seconds")


# --- TOML --------------------------------------------------------------------------------------


def parse_policy_toml(text: bytes | str) -> Policy:
    """The policy a TOML document states; InputError (rule ``policy-syntax``) names the problem.

    Strict: unknown keys and unknown kinds are errors, so a typo can never silently widen
    or narrow what labs agreed to exchange.
    """
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
    policy_id = data["policy_id"]
    if not isinstance(policy_id, str) or not _POLICY_ID.match(policy_id):
        raise InputError(
            "policy_id must be 1-64 letters, digits, '.', '_' or '-'", rule=Rule.POLICY_SYNTAX
        )
    purpose = data["purpose"]
    if not isinstance(purpose, str) or not purpose.strip():
        raise InputError("purpose must be a non-empty statement", rule=Rule.POLICY_SYNTAX)
    not_before = parse_instant(data["not_before"], "not_before")
    not_after = parse_instant(data["not_after"], "not_after")
    if not_after <= not_before:
        raise InputError("not_after must be later than not_before", rule=Rule.POLICY_SYNTAX)
    caps, modes, floors = _parse_kinds(data["kinds"])
    suite, verified = _parse_suite(data)
    try:
        padding = parse_padding(data.get("pad_to", "off"))
    except ConfigError as e:
        raise InputError(
            e.message.replace("round.pad_to", "pad_to"), rule=Rule.POLICY_SYNTAX
        ) from e
    churn = data.get("max_churn_per_epoch")
    return Policy(
        policy_id=policy_id,
        version=_count(data["version"], "version", minimum=1),
        purpose=purpose.strip(),
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
        not_before=format_instant(not_before),
        not_after=format_instant(not_after),
        consortium=parse_consortium(data.get("consortium")),
        suite=suite,
        verified_matches=verified,
        peer_feedback=_flag(data, "peer_feedback"),
        require_crl=_flag(data, "require_crl"),
        min_set_size=floors,
        padding=padding,
        max_churn_per_epoch=None if churn is None else _count(churn, "max_churn_per_epoch"),
    )


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


def _signed_message(policy: Policy) -> bytes:
    return SIGNATURE_DOMAIN + b"\n" + policy.canonical_bytes()


def key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign_policy(toml_text: bytes, ca_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The signed policy document: the TOML as written, its hash, the CA's ECDSA signature."""
    policy = parse_policy_toml(toml_text)
    signature = ca_key.sign(_signed_message(policy), ec.ECDSA(hashes.SHA256()))
    document = {
        "format": SIGNED_FORMAT,
        "policy_toml": toml_text.decode("utf-8"),
        "policy_hash": policy.hash().hex(),
        "signer_key": key_fingerprint(ca_key.public_key()),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


@dataclass(frozen=True)
class SignedPolicy:
    policy: Policy
    toml_text: str
    signer_key: str


def read_signed_policy(data: bytes) -> tuple[SignedPolicy, bytes]:
    """Parse a signed document without checking its signature (for ``policy show``).

    Returns the content and the raw signature bytes.
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError("signed policy is too large", rule=Rule.POLICY_SYNTAX)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"not a signed policy document: {e}", rule=Rule.POLICY_SYNTAX) from e
    if not isinstance(doc, dict) or doc.get("format") != SIGNED_FORMAT:
        raise InputError(f"not a {SIGNED_FORMAT} document", rule=Rule.POLICY_SYNTAX)
    fields = ("policy_toml", "policy_hash", "signer_key", "signature")
    if not all(isinstance(doc.get(f), str) for f in fields):
        raise InputError(
            f"signed policy needs text fields {', '.join(fields)}", rule=Rule.POLICY_SYNTAX
        )
    policy = parse_policy_toml(doc["policy_toml"])
    if doc["policy_hash"] != policy.hash().hex():
        raise VerificationError(
            "the stated policy hash is not the hash of the policy", rule=Rule.POLICY_SIGNATURE
        )
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
    except ValueError as e:
        raise InputError("signature is not base64", rule=Rule.POLICY_SYNTAX) from e
    return SignedPolicy(policy, doc["policy_toml"], doc["signer_key"]), signature


def verify_signed_policy(data: bytes, ca_public_key: ec.EllipticCurvePublicKey) -> SignedPolicy:
    """Parse and verify a signed policy against the consortium CA's public key.

    VerificationError (rule ``policy-signature``) if another key signed it or the content
    was changed; the validity window is checked separately (``Policy.check_time``).
    """
    signed, signature = read_signed_policy(data)
    expected = key_fingerprint(ca_public_key)
    if signed.signer_key != expected:
        raise VerificationError(
            f"policy was signed by key {signed.signer_key[:23]}…, not by the consortium CA "
            f"({expected[:23]}…)",
            rule=Rule.POLICY_SIGNATURE,
        )
    try:
        ca_public_key.verify(signature, _signed_message(signed.policy), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise VerificationError(
            "policy signature does not verify with the consortium CA key",
            rule=Rule.POLICY_SIGNATURE,
        ) from e
    return signed
