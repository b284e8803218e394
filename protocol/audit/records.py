"""The audit record envelope: build, sign, encode, check.

One record is one line of canonical JSON with exactly these members::

    {"v": "crossmatch-audit-record/v1",  version tag of the envelope
     "log": LOG_ID,                        crossmatch-audit/<lab>/<key fingerprint>
     "seq": N,                             0, 1, 2, ... (its leaf index in the Merkle tree)
     "time": "2025-01-31T12:00:00.000000Z",
     "event": "round_completed",
     "body": {...},                        event fields: counts and hashes, never raw data
     "prev": HEX,                          leaf hash of record N-1 (64 zeros for record 0)
     "sig": HEX}                           Ed25519 over SIGNING_TAG || canonical(rest)

The Merkle leaf of a record is SHA-256(0x00 || the line's bytes), signature
included, so the chain, the tree and the signature all cover the same bytes.
Record 0 is always ``log_created`` and names the public key whose fingerprint
is in the log id, which makes a log file self-describing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.audit.canonical import encode_canonical
from protocol.audit.events import LogCreated
from protocol.errors import InputError, VerificationError
from protocol.identity import is_valid_lab_id, key_fingerprint, public_key_bytes
from protocol.rules import Rule
from protocol.timestamps import format_utc

RECORD_VERSION = "crossmatch-audit-record/v1"
SIGNING_TAG = b"crossmatch-audit-record/v1\x00"
LOG_ID_PREFIX = "crossmatch-audit/"
GENESIS_PREV = "00" * 32
GENESIS_EVENT = "log_created"
ENVELOPE_FIELDS = ("v", "log", "seq", "time", "event", "body", "prev", "sig")

EVENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
HEX32_RE = re.compile(r"^[0-9a-f]{64}$")
HEX64_RE = re.compile(r"^[0-9a-f]{128}$")
FINGERPRINT_RE = re.compile(r"^[0-9a-f]{16}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")

# Body members each known event must carry. Extra members are allowed so the
# format can grow; missing ones are refused on append and reported by verify.
EVENT_FIELDS: dict[str, frozenset[str]] = {
    "log_created": frozenset({"log_id", "public_key", "record_format"}),
    "node_started": frozenset({"lab", "version"}),
    "node_stopped": frozenset({"lab", "version"}),
    "signals_imported": frozenset({"kind", "added", "already_held", "total", "source_sha256"}),
    "round_completed": frozenset(
        {
            "round_id",
            "role",
            "peer",
            "mode",
            "kinds",
            "own_sizes",
            "peer_sizes",
            "intersection_sizes",
            "policy_hash",
            "own_commitment",
            "peer_commitment",
            "transcript_hash",
            "own_receipt",
            "peer_receipt",
        }
    ),
    "round_aborted": frozenset({"round_id", "role", "peer", "stage", "reason"}),
    "round_refused": frozenset({"peer", "claimed_lab", "reason", "rule"}),
    "refusals_summarised": frozenset({"counts", "total", "window_seconds"}),
    "log_resumed": frozenset({"error"}),
    "matches_purged": frozenset({"before", "count"}),
    "entities_purged": frozenset({"before", "entities", "links"}),
    # The consortium round (protocol/consortium): a participant's or the hub's record.
    "consortium_completed": frozenset(
        {
            "round_id",
            "role",
            "hub",
            "participants",
            "policy_hash",
            "k",
            "reveal_count",
            "kinds",
            "sizes",
            "result_counts",
            "transcript_hash",
        }
    ),
    "consortium_aborted": frozenset({"round_id", "role", "hub", "stage", "reason", "rule"}),
    "entities_imported": frozenset({"added", "updated", "held_back", "source_sha256"}),
    "case_decision": frozenset(
        {
            "case_id",
            "decision",
            "analyst",
            "state_from",
            "state_to",
            "entities",
            "entities_digest",
            "entity_hashes",
        }
    ),
    "case_reopened": frozenset({"case_id", "state_from", "new_pairs"}),
    "warninglist_installed": frozenset({"list", "list_hash", "held_back"}),
    "opinions_sent": frozenset({"peer", "count", "case_id"}),
    "opinions_received": frozenset({"peer", "count"}),
    "opinions_refused": frozenset({"peer", "count", "reason", "rule"}),
    # What an operator installs or sets up (node/cli): the same members since they were written.
    "node_initialized": frozenset({"lab"}),
    "peer_added": frozenset({"lab", "address"}),
    "policy_installed": frozenset({"policy_id", "version", "policy_hash", "not_after"}),
    "crl_installed": frozenset({"crl_number", "revoked"}),
    "checkpoint": frozenset({"checkpoint"}),
    "recovery": frozenset({"quarantine_file", "offset", "bytes", "sha256"}),
    # node/act: enforcement hooks, exports and review-UI actions (docs/cases.md)
    "hook_delivery": frozenset(
        {"hook", "case_id", "state", "idempotency_key", "payload_sha256", "outcome", "attempts"}
    ),
    "export_written": frozenset({"format", "values", "tlp", "objects", "sha256"}),
    "ui_action": frozenset({"analyst", "action", "case_id"}),
}


def record_error(n: int, message: str, rule: Rule) -> VerificationError:
    """The failure of record ``n`` (``where="record N"``), naming the rule it broke."""
    return VerificationError(message, where=f"record {n}", rule=rule)


def make_log_id(lab: str, key: Ed25519PublicKey) -> str:
    if not is_valid_lab_id(lab):
        raise InputError(f"lab id {lab!r} is not a DNS label", rule=Rule.LOG_ID)
    return f"{LOG_ID_PREFIX}{lab}/{key_fingerprint(key)}"


def parse_log_id(log_id: str) -> tuple[str, str]:
    """(lab, key fingerprint) of a log id; VerificationError if it is not one."""
    prefix, _, rest = log_id.partition(LOG_ID_PREFIX)
    lab, _, fingerprint = rest.partition("/")
    if prefix or not is_valid_lab_id(lab) or not FINGERPRINT_RE.match(fingerprint):
        raise VerificationError(
            f"{log_id!r} is not a log id (crossmatch-audit/<lab>/<16 hex>)", rule=Rule.LOG_ID
        )
    return lab, fingerprint


def format_time(now: datetime) -> str:
    """RFC 3339 UTC with microseconds: one spelling per instant."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InputError("audit times must be timezone-aware", rule=Rule.RECORD_TIME)
    return format_utc(now)


def parse_time(text: str) -> datetime:
    if not isinstance(text, str) or not TIME_RE.match(text):
        raise ValueError(f"time {text!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def missing_body_fields(event: str, body: dict[str, Any]) -> list[str]:
    return sorted(EVENT_FIELDS.get(event, frozenset()) - body.keys())


def build_record(
    *, log_id: str, seq: int, time: datetime, event: str, body: dict[str, Any], prev: bytes
) -> dict[str, Any]:
    """An unsigned record; raises InputError on anything that could not be verified later."""
    if not EVENT_RE.match(event):
        raise InputError(f"event name {event!r} is not lowercase_with_underscores", rule=Rule.EVENT)
    if not isinstance(body, dict):
        raise InputError("a record body must be a JSON object", rule=Rule.RECORD_BODY)
    missing = missing_body_fields(event, body)
    if missing:
        raise InputError(f"{event} body lacks {', '.join(missing)}", rule=Rule.BODY_SCHEMA)
    record = {
        "v": RECORD_VERSION,
        "log": log_id,
        "seq": seq,
        "time": format_time(time),
        "event": event,
        "body": body,
        "prev": prev.hex(),
    }
    encode_canonical(record)  # refuse floats, bytes, ... now rather than at signing
    return record


def signing_input(record: dict[str, Any]) -> bytes:
    unsigned = {name: value for name, value in record.items() if name != "sig"}
    return SIGNING_TAG + encode_canonical(unsigned)


def sign_record(record: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    return {**record, "sig": key.sign(signing_input(record)).hex()}


def verify_record_signature(record: dict[str, Any], key: Ed25519PublicKey) -> None:
    sig = record.get("sig")
    if not isinstance(sig, str) or not HEX64_RE.match(sig):
        raise VerificationError("signature is not 64 bytes of hex", rule=Rule.RECORD_SIGNATURE)
    try:
        key.verify(bytes.fromhex(sig), signing_input(record))
    except InvalidSignature as e:
        raise VerificationError(
            f"signature does not verify with the log key {key_fingerprint(key)} "
            "(record altered, or signed by another key)",
            rule=Rule.RECORD_SIGNATURE,
        ) from e


def encode_record(record: dict[str, Any]) -> bytes:
    """The record's line, without the newline."""
    return encode_canonical(record)


def check_envelope(record: Any) -> None:
    """Member names and types of the envelope; VerificationError(rule=record_schema)."""
    if not isinstance(record, dict):
        raise VerificationError("a record must be a JSON object", rule=Rule.RECORD_SCHEMA)
    if tuple(sorted(record)) != tuple(sorted(ENVELOPE_FIELDS)):
        raise VerificationError(
            f"record members are {sorted(record)}, expected {sorted(ENVELOPE_FIELDS)}",
            rule=Rule.RECORD_SCHEMA,
        )
    if record["v"] != RECORD_VERSION:
        raise VerificationError(
            f"record version is {record['v']!r}, expected {RECORD_VERSION!r}",
            rule=Rule.RECORD_VERSION,
        )
    checks = (
        ("log", isinstance(record["log"], str)),
        ("seq", isinstance(record["seq"], int) and not isinstance(record["seq"], bool)),
        ("time", isinstance(record["time"], str)),
        ("event", isinstance(record["event"], str) and bool(EVENT_RE.match(record["event"]))),
        ("body", isinstance(record["body"], dict)),
        ("prev", isinstance(record["prev"], str) and bool(HEX32_RE.match(record["prev"]))),
    )
    for name, ok in checks:
        if not ok:
            raise VerificationError(
                f"record member {name!r} has the wrong type or form", rule=Rule.RECORD_SCHEMA
            )


def genesis_body(log_id: str, key: Ed25519PublicKey) -> dict[str, Any]:
    body = LogCreated(
        log_id=log_id, public_key=public_key_bytes(key).hex(), record_format=RECORD_VERSION
    )
    return body.to_body()


def public_key_from_hex(text: Any) -> Ed25519PublicKey:
    if not isinstance(text, str) or not HEX32_RE.match(text):
        raise VerificationError("public_key is not 32 bytes of hex", rule=Rule.GENESIS)
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
