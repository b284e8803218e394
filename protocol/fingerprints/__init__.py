"""Signal fingerprints: normalization and keyed, domain-separated hashing per signal kind.

``normalize(kind, raw)`` gives the canonical text of an identifier and
``fingerprint(key, kind, normalized)`` its 32-byte keyed fingerprint; the byte
layout is documented in :mod:`protocol.fingerprints.keyed`, the rules in
:mod:`protocol.fingerprints.identifiers`.
"""

from protocol.fingerprints.identifiers import IDENTIFIER_KINDS, NORMALIZATION_VERSION, normalize
from protocol.fingerprints.keyed import fingerprint, fingerprint_many

__all__ = [
    "IDENTIFIER_KINDS",
    "NORMALIZATION_VERSION",
    "fingerprint",
    "fingerprint_many",
    "normalize",
]
