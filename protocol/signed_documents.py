"""Documents the consortium CA signs: the policy and the warninglists.

Each is JSON wrapping the TOML as written, the hash of its canonical encoding, the
signer's key fingerprint and an ECDSA P-256 signature over a domain tag and the canonical
encoding (not the TOML text: what is signed is exactly what is enforced and hashed). The
kinds differ only in their names and domain tags (``DocumentKind``); the reading and
verifying rules are the same, so they live here once. Pure: bytes and keys in.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.errors import InputError, VerificationError
from protocol.rules import Rule


@dataclass(frozen=True)
class DocumentKind:
    """One kind of CA-signed document: ``name`` is its fields' prefix (``policy_toml``)."""

    name: str
    format: str
    signature_domain: bytes
    max_bytes: int
    syntax_rule: Rule
    signature_rule: Rule

    def signed_message(self, canonical: bytes) -> bytes:
        return self.signature_domain + b"\n" + canonical

    def fields(self) -> tuple[str, ...]:
        return (f"{self.name}_toml", f"{self.name}_hash", "signer_key", "signature")

    def syntax(self, message: str) -> InputError:
        return InputError(f"{self.name}: {message}", rule=self.syntax_rule)


@dataclass(frozen=True)
class SignedDocument:
    """A signed document read but not yet verified."""

    toml_text: str
    stated_hash: str
    signer_key: str
    signature: bytes


def ca_key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """``sha256:`` and the hex SHA-256 of the CA key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign_document(
    kind: DocumentKind,
    toml_text: bytes,
    canonical: bytes,
    digest: bytes,
    ca_key: ec.EllipticCurvePrivateKey,
) -> bytes:
    """The signed document of ``toml_text``, whose canonical encoding is ``canonical``."""
    signature = ca_key.sign(kind.signed_message(canonical), ec.ECDSA(hashes.SHA256()))
    text_field, hash_field, _, _ = kind.fields()
    document = {
        "format": kind.format,
        text_field: toml_text.decode("utf-8"),
        hash_field: digest.hex(),
        "signer_key": ca_key_fingerprint(ca_key.public_key()),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_document(kind: DocumentKind, data: bytes) -> SignedDocument:
    """The fields of a signed document, its signature not checked (InputError if malformed)."""
    if len(data) > kind.max_bytes:
        raise kind.syntax("signed document is too large")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise kind.syntax(f"not a signed {kind.name} document: {e}") from e
    names = kind.fields()
    if (
        not isinstance(doc, dict)
        or doc.get("format") != kind.format
        or not all(isinstance(doc.get(n), str) for n in names)
    ):
        raise kind.syntax(f"not a {kind.format} document with {', '.join(names)}")
    try:
        signature = base64.b64decode(doc[names[3]], validate=True)
    except ValueError as e:
        raise kind.syntax("signature is not base64") from e
    return SignedDocument(doc[names[0]], doc[names[1]], doc["signer_key"], signature)


def check_stated_hash(kind: DocumentKind, doc: SignedDocument, digest: bytes) -> None:
    """The hash the document states is the hash of the content it carries."""
    if doc.stated_hash != digest.hex():
        raise VerificationError(
            f"the stated {kind.name} hash is not the hash of the {kind.name}",
            rule=kind.signature_rule,
        )


def verify_document(
    kind: DocumentKind,
    doc: SignedDocument,
    canonical: bytes,
    ca_public_key: ec.EllipticCurvePublicKey,
) -> None:
    """VerificationError (``kind.signature_rule``) unless the consortium CA signed ``canonical``."""
    expected = ca_key_fingerprint(ca_public_key)
    if doc.signer_key != expected:
        raise VerificationError(
            f"{kind.name} was not signed by the consortium CA ({expected[:23]}…) but by key "
            f"{doc.signer_key[:23]}…",
            rule=kind.signature_rule,
        )
    try:
        ca_public_key.verify(
            doc.signature, kind.signed_message(canonical), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as e:
        raise VerificationError(
            f"{kind.name} signature does not verify with the consortium CA key",
            rule=kind.signature_rule,
        ) from e
