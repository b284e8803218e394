"""gRPC mutual-TLS credentials, and the peer certificate the TLS layer verified."""

from __future__ import annotations

import grpc

from protocol.errors import PolicyError
from protocol.identity import tls_server_name
from protocol.rules import Rule


def server_credentials(key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> grpc.ServerCredentials:
    """Responder side of mutual TLS: clients must present a certificate from the CA."""
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def channel_credentials(key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> grpc.ChannelCredentials:
    """Initiator side; pair with ``channel_options(peer_lab)``."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def channel_options(peer_lab: str) -> list[tuple[str, str]]:
    """Channel options that make TLS hostname verification check the peer's lab id."""
    return [("grpc.ssl_target_name_override", tls_server_name(peer_lab))]


def peer_certificate_from_grpc_context(context: grpc.ServicerContext) -> bytes:
    """The client's leaf certificate PEM as the TLS layer verified it (gRPC auth context).

    Pass it to ``protocol.identity.identity_from_certificate``: TLS checked the chain, that
    checks the crossmatch identity fields, validity and revocation (gRPC reads no CRL).
    """
    certs = context.auth_context().get("x509_pem_cert") or []
    if len(certs) != 1:
        raise PolicyError("peer presented no client certificate", rule=Rule.CERTIFICATE_MISSING)
    return bytes(certs[0])
