"""`crossmatch hub serve`: the consortium hub's daemon.

A gRPC server with mutual TLS offering the Consortium service (and standard
health checks), on the same stack as a lab's node: the hub's own CA-issued
certificate, its own signed audit log, the signed policy (whose [consortium]
section names this hub). It holds no fingerprint key and no signals.
Publishes its address in HUB_DIR/run/address; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from node import pki
from node.consortium.hub_service import ConsortiumService
from node.net.channel import MAX_MESSAGE
from node.runtime import Node
from node.state.files import atomic_write
from protocol.audit.events import NodeStarted, NodeStopped
from protocol.errors import ConfigError
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

log = logging.getLogger("crossmatch.hub")
SERVICE_NAME = "crossmatch.v1.Consortium"


def open_hub(hub_dir: Path) -> Node:
    node = Node(hub_dir)
    if not node.is_hub:
        node.close()
        raise ConfigError(
            f"{hub_dir} is a lab's node directory, not a hub's "
            "(create one with `crossmatch hub init`)"
        )
    return node


def start_hub(node: Node) -> tuple[grpc.Server, str]:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="hub-rpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ],
    )
    pb_grpc.add_ConsortiumServicer_to_server(ConsortiumService(node), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    creds = pki.server_credentials(node.tls_key_pem, node.tls_cert_pem, node.ca_pem)
    host, _, _ = node.config.listen.rpartition(":")
    try:
        port = server.add_secure_port(node.config.listen, creds)
    except RuntimeError as e:
        raise ConfigError(f"cannot listen on {node.config.listen}: {e}") from e
    if port == 0:
        raise ConfigError(f"cannot listen on {node.config.listen} (address in use?)")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, f"{host}:{port}"


def serve_hub(hub_dir: Path) -> None:
    """Run the hub until SIGTERM/SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with open_hub(hub_dir) as node:
        server, address = start_hub(node)
        node.record(NodeStarted(lab=node.lab, version=_version(), address=address, role="hub"))
        atomic_write(node.paths.address_file, (address + "\n").encode())
        print(f"crossmatch: hub {node.lab} serving on {address}", flush=True)
        if node.policy_problem:
            log.warning("rounds will be refused: %s", node.policy_problem)
        while not stop.wait(0.5):
            pass
        server.stop(node.config.grace_seconds).wait()
        node.record(NodeStopped(lab=node.lab, version=_version(), role="hub"))
        if node.audit is not None:
            node.audit.checkpoint(now=node.now())
        node.paths.address_file.unlink(missing_ok=True)
        print(f"crossmatch: hub {node.lab} stopped", flush=True)


def _version() -> str:
    from importlib.metadata import version

    return version("crossmatch")
