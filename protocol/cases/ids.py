"""Case ids and entity hashes: keyed, domain-separated, versioned, never raw values.

Both use a node-local key that never leaves the node (``NODE_DIR/cases.key``):

    case id     = "case-" + hex(HMAC-SHA256(key, b"crossmatch/v1/case-id|" + smallest key))[:20]
    entity hash = hex(HMAC-SHA256(key, b"crossmatch/v1/entity-hash|" + entity key))

A case id is stable while the cluster's smallest entity key stays in it: adding
entities or matches does not change it, and when two clusters merge the merged
case keeps the id of the one holding the smaller key. An audit reader sees entity
hashes and can check them against a list of our accounts only with our key.
"""

from __future__ import annotations

import hashlib
import hmac

CASE_ID_DOMAIN = b"crossmatch/v1/case-id|"
ENTITY_HASH_DOMAIN = b"crossmatch/v1/entity-hash|"
NOTE_HASH_DOMAIN = b"crossmatch/v1/case-note|"
CASE_ID_PREFIX = "case-"
CASE_ID_HEX = 20
MIN_KEY_BYTES = 32


def _mac(key: bytes, domain: bytes, text: str) -> str:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the case key must be at least {MIN_KEY_BYTES} bytes")
    return hmac.new(key, domain + text.encode("utf-8"), hashlib.sha256).hexdigest()


def case_id(key: bytes, smallest_entity_key: str) -> str:
    return CASE_ID_PREFIX + _mac(key, CASE_ID_DOMAIN, smallest_entity_key)[:CASE_ID_HEX]


def entity_hash(key: bytes, entity_key: str) -> str:
    return _mac(key, ENTITY_HASH_DOMAIN, entity_key)


def note_hash(key: bytes, note: str) -> str:
    """A note's keyed hash: the audit log proves a note existed without holding its text."""
    return _mac(key, NOTE_HASH_DOMAIN, note)


def entities_digest(hashes: list[str]) -> str:
    """One SHA-256 over the sorted entity hashes: commits to the whole member list."""
    joined = "\n".join(sorted(hashes)).encode("ascii")
    return hashlib.sha256(b"crossmatch/v1/case-entities|" + joined).hexdigest()
