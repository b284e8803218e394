"""Pure rules for exports to a lab's own systems: keyed value hashes, STIX patterns, TLP, CSV.

- A hashed export value is HMAC-SHA256 under the node's local export key (never the
  consortium key: a peer holding that could test guesses against an export), domain
  separated by a version tag and the kind, over the normalized value. The same value
  exported twice gives the same hash, so a lab's SIEM can correlate exports without
  holding the identifiers.
- STIX patterns quote values with the patterning grammar's two escapes (``\\\\`` and
  ``\\'``), so no value can close the string and add a comparison.
- TLP 2.0 markings are the OASIS marking-definition objects, by their fixed ids.
- A CSV cell that a spreadsheet would run as a formula is defused with a leading quote.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from protocol.errors import InputError
from protocol.rules import Rule

VALUE_HASH_PREFIX = "hmac-sha256-v1:"
_VALUE_DOMAIN = b"crossmatch-export-value-v1\x00"
EXPORT_KEY_BYTES = 32
VALUE_MODES = ("hashed", "raw")
EXPORT_FORMATS = ("stix", "misp", "csv")

# The OASIS TLP 2.0 marking definitions (cti-stix-common-objects, extension-definition
# 60a3c5c5...); their ids and creation time are part of the published objects.
TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_CREATED = "2022-10-01T00:00:00.000Z"
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
DEFAULT_TLP = "amber+strict"
PAP_LEVELS = ("clear", "green", "amber", "red")
DEFAULT_PAP = "amber"

# Kinds with a standard STIX cyber-observable; the rest use our custom object type.
STIX_OBSERVABLE_PATHS = {
    "email": "email-addr:value",
    "org_domain": "domain-name:value",
    "account_id": "user-account:user_id",
}
CUSTOM_SIGNAL_TYPE = "x-crossmatch-signal"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def check_export_key(key: bytes) -> bytes:
    if len(key) != EXPORT_KEY_BYTES:
        raise InputError(
            f"export key must be {EXPORT_KEY_BYTES} bytes, got {len(key)}", rule=Rule.EXPORT_KEY
        )
    return key


def hashed_value(key: bytes, kind: str, normalized: str) -> str:
    """``hmac-sha256-v1:<hex>`` of one normalized value of ``kind`` under the export key."""
    mac = hmac.new(
        check_export_key(key),
        _VALUE_DOMAIN + kind.encode("utf-8") + b"\x00" + normalized.encode("utf-8"),
        hashlib.sha256,
    )
    return VALUE_HASH_PREFIX + mac.hexdigest()


def check_tlp(level: str) -> str:
    wanted = level.lower().removeprefix("tlp:")
    if wanted not in TLP2_IDS:
        raise InputError(
            f"unknown TLP level {level!r} (one of: {', '.join(TLP2_IDS)})", rule=Rule.EXPORT_TLP
        )
    return wanted


def check_pap(level: str) -> str:
    wanted = level.lower().removeprefix("pap:")
    if wanted not in PAP_LEVELS:
        raise InputError(
            f"unknown PAP level {level!r} (one of: {', '.join(PAP_LEVELS)})", rule=Rule.EXPORT_PAP
        )
    return wanted


def tlp_marking(level: str) -> dict[str, Any]:
    """The OASIS TLP 2.0 marking-definition object for ``level`` (a plain dict)."""
    level = check_tlp(level)
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP2_IDS[level],
        "created": TLP2_CREATED,
        "name": f"TLP:{level.upper()}",
        "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    }


def pattern_literal(text: str) -> str:
    """A STIX patterning string literal: quotes and backslashes escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def signal_pattern(kind: str, value: str, *, hashed: bool) -> str:
    """The STIX pattern of one signal: a standard observable when its raw value is exported
    and one exists, else our custom object with ``kind`` and ``value`` or ``value_hmac``."""
    if not hashed and kind in ("ip", "ip_prefix"):
        family = "ipv6-addr" if ":" in value else "ipv4-addr"
        return f"[{family}:value = {pattern_literal(value)}]"
    if not hashed and kind in STIX_OBSERVABLE_PATHS:
        return f"[{STIX_OBSERVABLE_PATHS[kind]} = {pattern_literal(value)}]"
    field = "value_hmac" if hashed else "value"
    return (
        f"[{CUSTOM_SIGNAL_TYPE}:kind = {pattern_literal(kind)} AND "
        f"{CUSTOM_SIGNAL_TYPE}:{field} = {pattern_literal(value)}]"
    )


def safe_cell(text: str) -> str:
    """A CSV cell no spreadsheet will evaluate: a leading ``= + - @`` or control is quoted."""
    return "'" + text if text[:1] in _FORMULA_STARTS else text
