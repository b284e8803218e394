"""A mutual-TLS channel to a configured peer, from what opening one needs: our TLS identity
and the peer's lab and address (not the whole Node). Used by the pairwise initiator, to
send opinions and to join a consortium round."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from node import pki
from node.config import PeerConfig
from node.runtime import Node

MAX_MESSAGE = 16 * 1024 * 1024


def channel_options(peer_lab: str) -> list[tuple[str, object]]:
    return [
        # The responder's certificate must name this lab: TLS hostname verification
        # checks identity, whatever address the peer is reached at.
        ("grpc.ssl_target_name_override", pki.tls_server_name(peer_lab)),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]


@dataclass(frozen=True)
class TlsIdentity:
    """Our side of mutual TLS: the node's key and certificate, and the consortium CA."""

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    @classmethod
    def of(cls, node: Node) -> TlsIdentity:
        return cls(node.tls_key_pem, node.tls_cert_pem, node.ca_pem)


def open_channel(tls: TlsIdentity, peer: PeerConfig) -> grpc.Channel:
    """A channel whose TLS checks that the far end is ``peer.lab`` (hostname verification)."""
    creds = pki.channel_credentials(tls.key_pem, tls.cert_pem, tls.ca_pem)
    return grpc.secure_channel(peer.address, creds, options=channel_options(peer.lab))
