"""What a round may contain: the consortium policy and the checks a responder runs before
doing any cryptographic work.

The policy is a plain value. Its hash (SHA-256 over a versioned canonical
encoding) travels in OpenRound and into every audit record, so a reviewer can
tell which rules a round ran under. Both sides must present the same hash.

The consortium writes the policy as TOML and signs it with the consortium CA key;
both live in ``protocol/policy_document.py``. Pure: values in, values out; time is
always a parameter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from protocol.consortium.policy import ConsortiumPolicy
from protocol.errors import InputError, PolicyError
from protocol.fingerprints.identifiers import IDENTIFIER_KIND_ORDER
from protocol.messages import MODES
from protocol.padding import OFF, Padding
from protocol.rules import Rule
from protocol.suites import DEFAULT_SUITE
from protocol.timestamps import format_utc

POLICY_DOMAIN = b"crossmatch/v1/policy"

ALL_KINDS: tuple[str, ...] = (*IDENTIFIER_KIND_ORDER, "prompt")
KIND_MODES = MODES  # a kind's mode in the policy: "count" allows count rounds only


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
