"""What a round may contain: the consortium policy and the checks a responder runs
before doing any cryptographic work.

The policy is a plain value. Its hash (SHA-256 over a versioned canonical
encoding) travels in OpenRound and into every audit record, so a reviewer can
tell which rules a round ran under. Both sides must present the same hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from protocol.errors import PolicyError

POLICY_DOMAIN = b"crossmatch/v1/policy"

ALL_KINDS = (
    "email",
    "phone",
    "ip",
    "ip_prefix",
    "account_id",
    "api_key_hash",
    "payment_fingerprint",
    "device_id",
    "org_domain",
    "prompt",
)


@dataclass(frozen=True)
class Policy:
    """Consortium rules for rounds. Defaults describe the built-in demo policy."""

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
    not_before: str = ""  # ISO 8601 UTC; empty means no bound
    not_after: str = ""

    def to_dict(self) -> dict[str, object]:
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

    def check_round(self, kinds: Sequence[str], mode: str, sizes: Sequence[int]) -> None:
        """Raise PolicyError naming the rule if a proposed round breaks this policy."""
        if not kinds:
            raise PolicyError("a round needs at least one kind", rule="kinds-empty")
        for kind, size in zip(kinds, sizes, strict=True):
            if kind not in self.allowed_kinds:
                raise PolicyError(f"kind {kind!r} is not allowed by policy", rule="kind-allowed")
            cap = self.size_cap(kind)
            if size > cap:
                raise PolicyError(
                    f"{kind} set of {size} exceeds the policy cap of {cap}", rule="max-set-size"
                )
            if mode == "reveal" and self.kind_modes.get(kind) == "count":
                raise PolicyError(
                    f"kind {kind!r} may only be matched in count mode", rule="kind-mode"
                )

    def check_time(self, now_iso: str) -> None:
        if self.not_before and now_iso < self.not_before:
            raise PolicyError(f"policy {self.policy_id} is not valid before {self.not_before}",
                              rule="policy-not-yet-valid")
        if self.not_after and now_iso > self.not_after:
            raise PolicyError(f"policy {self.policy_id} expired at {self.not_after}",
                              rule="policy-expired")


DEFAULT_POLICY = Policy()
