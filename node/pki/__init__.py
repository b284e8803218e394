"""Consortium PKI with files and sockets: the CA directory (``ca``), node certificates and
the enrolment flow (``certs``), private key files (``keys``), gRPC mutual-TLS credentials
(``tls``). The pure rules (lab ids, identity from a certificate, CSR vetting, fingerprints)
are in ``protocol.identity``; they are re-exported here so ``pki.X`` keeps working.
"""

from node.pki.ca import (
    CA_CERT_FILE,
    CA_CRL_FILE,
    CA_INDEX_FILE,
    CA_KEY_FILE,
    CRL_VALIDITY,
    ca_signing_key,
    init_ca,
    issue_certificate,
    revoke,
)
from node.pki.certs import (
    NODE_CA_FILE,
    NODE_CERT_FILE,
    NODE_CSR_FILE,
    NODE_KEY_FILE,
    TLS_DIR,
    NodeTlsFiles,
    install_certificate,
    make_csr,
    request_certificate,
)
from node.pki.keys import (
    generate_tls_key,
    load_audit_public_key,
    load_private_key,
    write_private_key,
)
from node.pki.tls import (
    channel_credentials,
    channel_options,
    peer_certificate_from_grpc_context,
    server_credentials,
)
from protocol.certificate_summary import CertificateSummary, summarize_certificate
from protocol.identity import (
    AUDIT_KEY_EXTENSION_OID,
    CLOCK_SKEW,
    PeerIdentity,
    certificate_fingerprint,
    days_until_expiry,
    identity_from_certificate,
    is_valid_lab_id,
    key_fingerprint,
    tls_server_name,
    validate_lab_id,
)
from protocol.revocation import load_revoked_serials

__all__ = [
    "AUDIT_KEY_EXTENSION_OID",
    "CA_CERT_FILE",
    "CA_CRL_FILE",
    "CA_INDEX_FILE",
    "CA_KEY_FILE",
    "ca_signing_key",
    "CLOCK_SKEW",
    "CRL_VALIDITY",
    "NODE_CA_FILE",
    "NODE_CERT_FILE",
    "NODE_CSR_FILE",
    "NODE_KEY_FILE",
    "TLS_DIR",
    "CertificateSummary",
    "NodeTlsFiles",
    "PeerIdentity",
    "certificate_fingerprint",
    "channel_credentials",
    "channel_options",
    "days_until_expiry",
    "generate_tls_key",
    "identity_from_certificate",
    "init_ca",
    "install_certificate",
    "is_valid_lab_id",
    "issue_certificate",
    "key_fingerprint",
    "load_audit_public_key",
    "load_private_key",
    "load_revoked_serials",
    "make_csr",
    "peer_certificate_from_grpc_context",
    "request_certificate",
    "revoke",
    "server_credentials",
    "summarize_certificate",
    "tls_server_name",
    "validate_lab_id",
    "write_private_key",
]
