"""The consortium's revocation list: which certificate serials it revokes, once the CA's
signature on it checks. Pure: PEM bytes in, serials out; ConfigError naming the rule."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.errors import ConfigError
from protocol.identity import load_ca_certificate
from protocol.rules import Rule


def load_revoked_serials(crl_pem: bytes, ca_cert_pem: bytes) -> frozenset[int]:
    """Serials revoked by a CRL, after checking the consortium CA signed it (ConfigError)."""
    ca = load_ca_certificate(ca_cert_pem)
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as e:
        raise ConfigError(f"not a PEM CRL: {e}", rule=Rule.CRL_MALFORMED) from e
    public_key = ca.public_key()
    if crl.issuer != ca.subject or not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ConfigError("CRL was not issued by the consortium CA", rule=Rule.CRL_WRONG_CA)
    if not crl.is_signature_valid(public_key):
        raise ConfigError(
            "CRL signature does not verify with the consortium CA key", rule=Rule.CRL_WRONG_CA
        )
    return frozenset(entry.serial_number for entry in crl)
