"""Enforcement hook payloads: what a lab's own systems receive when a case changes state.

Pure rules, shared by the sender (node/act/hooks.py) and any receiver that wants
to check what it got:

- the body is canonical JSON (one byte encoding, protocol.audit.canonical) with a
  version tag, so its SHA-256 names it in the audit log;
- the signature is HMAC-SHA256 under the hook's secret over a domain tag, the
  Unix timestamp and the body, so a receiver can refuse both forgeries and old
  replays (``verify_signature`` with a tolerance);
- the idempotency key depends only on what the event *is* (hook, case, state,
  case revision), never on the attempt, so every retry of one event carries the
  same key and a receiver acts on it once;
- retry delays grow exponentially with jitter; the random draw is a parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any

from protocol.audit.canonical import encode_canonical
from protocol.errors import InputError, VerificationError
from protocol.rules import Rule

PAYLOAD_VERSION = "crossmatch-hook-v1"
SIGNATURE_HEADER = "X-Crossmatch-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Crossmatch-Event"
_SIGNATURE_DOMAIN = b"crossmatch-hook-signature-v1\n"
_IDEMPOTENCY_DOMAIN = b"crossmatch-hook-idempotency-v1\n"
_SIGNATURE_RE = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")
MIN_SECRET_BYTES = 16
TRIGGER_STATES = ("new", "in_review", "confirmed", "false_positive", "benign")


def build_payload(
    *, lab: str, hook: str, state: str, case: Mapping[str, Any], idempotency_key: str, sent_at: str
) -> bytes:
    """The canonical JSON body delivered for one event (``case`` holds counts, hashes
    and, only when the lab configured raw values, raw identifiers)."""
    if state not in TRIGGER_STATES:
        raise InputError(f"unknown case state {state!r} for hook {hook!r}", rule=Rule.HOOK_STATE)
    return encode_canonical(
        {
            "version": PAYLOAD_VERSION,
            "lab": lab,
            "hook": hook,
            "event": f"case.{state}",
            "idempotency_key": idempotency_key,
            "sent_at": sent_at,
            "case": dict(case),
        }
    )


def idempotency_key(*, hook: str, case_id: str, state: str, revision: int | str) -> str:
    """Stable across retries and restarts: a hash of what the event is, not when it is sent."""
    material = encode_canonical([hook, case_id, state, str(revision)])
    return hashlib.sha256(_IDEMPOTENCY_DOMAIN + material).hexdigest()[:32]


def payload_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    message = _SIGNATURE_DOMAIN + str(timestamp).encode("ascii") + b"\n" + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``."""
    if len(secret) < MIN_SECRET_BYTES:
        raise InputError(
            f"hook secret must be at least {MIN_SECRET_BYTES} bytes", rule=Rule.HOOK_SECRET
        )
    if not 0 <= timestamp < 10**12:  # what verify_signature's header grammar accepts
        raise InputError("hook timestamp must be 0 .. 10**12 - 1 seconds", rule=Rule.HOOK_SIGNATURE)
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secret: bytes, header: str, body: bytes, *, now: int, tolerance_seconds: int = 300
) -> int:
    """Check a received signature; return its timestamp. Raises VerificationError naming
    the rule: malformed header, a timestamp outside the tolerance, or a wrong MAC."""
    match = _SIGNATURE_RE.match(header or "")
    if not match:
        raise VerificationError(
            "signature header is not t=<seconds>,v1=<64 hex>",
            where=SIGNATURE_HEADER,
            rule=Rule.HOOK_SIGNATURE,
        )
    timestamp, received = int(match.group(1)), match.group(2)
    if abs(now - timestamp) > tolerance_seconds:
        raise VerificationError(
            f"signature timestamp {timestamp} is {abs(now - timestamp)} s from now "
            f"(tolerance {tolerance_seconds} s)",
            where=SIGNATURE_HEADER,
            rule=Rule.HOOK_STALE,
        )
    if not hmac.compare_digest(_mac(secret, timestamp, body), received):
        raise VerificationError(
            "signature does not match the body", where=SIGNATURE_HEADER, rule=Rule.HOOK_SIGNATURE
        )
    return timestamp


def retry_delay(attempt: int, *, base: float, cap: float, draw: Callable[[], float]) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential (base * 2**(attempt-1), at most ``cap``), with "equal jitter": half
    the step is fixed, half is ``draw()`` in [0, 1) of it, so retries stay spaced
    yet many nodes hit by one outage do not retry in step.
    """
    if attempt < 1:
        raise InputError("retry attempts count from 1", rule=Rule.HOOK_RETRY)
    step = min(cap, base * 2 ** min(attempt - 1, 32))
    return step / 2 + step / 2 * min(max(draw(), 0.0), 1.0)
