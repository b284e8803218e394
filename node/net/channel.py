"""A mutual-TLS channel to a configured peer, from what opening one needs: our TLS identity
and the peer's lab and address (not the whole Node). Used to send opinions and to join a
consortium round; the pairwise initiator has its own ``open_channel(node, peer)`` for now
(node/net/initiator.py is being reworked), with the same options."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from node import pki
from node.config import PeerConfig
from node.net.initiator import channel_options
from node.runtime import Node


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
