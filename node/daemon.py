"""`crossmatch serve`: the responder daemon's lifecycle.

Binds the gRPC server with mutual TLS, publishes the bound address in
NODE_DIR/run/address (tests and the demo bind port 0), logs start and stop in
the audit log, and stops cleanly on SIGTERM or SIGINT: new rounds are refused,
in-flight rounds get a grace period to finish or abort, then a final checkpoint.
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
from node.files import atomic_write
from node.initiator import MAX_MESSAGE
from node.runtime import Node
from node.service import CrossmatchService
from protocol.errors import ConfigError
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

log = logging.getLogger("crossmatch.daemon")

SERVICE_NAME = "crossmatch.v1.Crossmatch"
GRACE_SECONDS = 10.0


class Daemon:
    def __init__(self, node: Node):
        self.node = node
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=32, thread_name_prefix="rpc"),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.service = CrossmatchService(node)
        pb_grpc.add_CrossmatchServicer_to_server(self.service, self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.stopped = threading.Event()
        self.address = ""

    def start(self) -> str:
        creds = pki.server_credentials(self.node.tls_key_pem, self.node.tls_cert_pem,
                                       self.node.ca_pem)
        host, _, _ = self.node.config.listen.rpartition(":")
        try:
            port = self.server.add_secure_port(self.node.config.listen, creds)
        except RuntimeError as e:
            raise ConfigError(f"cannot listen on {self.node.config.listen}: {e}") from e
        if port == 0:
            raise ConfigError(f"cannot listen on {self.node.config.listen} (address in use?)")
        self.server.start()
        self.address = f"{host}:{port}"
        atomic_write(self.node.paths.address_file, (self.address + "\n").encode())
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.node.log("node_started", {"lab": self.node.lab, "version": _version(),
                                       "address": self.address})
        log.info("lab %s listening on %s", self.node.lab, self.address)
        return self.address

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.node.log("node_stopped", {"lab": self.node.lab, "version": _version()})
        if self.node.audit is not None:
            self.node.audit.checkpoint(now=self.node.now())
        self.node.paths.address_file.unlink(missing_ok=True)


def _version() -> str:
    from importlib.metadata import version

    return version("crossmatch")


def serve(node_dir: Path, *, ready: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    with Node(node_dir) as node:
        daemon = Daemon(node)
        address = daemon.start()
        print(f"crossmatch: lab {node.lab} serving on {address}", flush=True)
        stop = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            log.info("signal %s: shutting down", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if ready is not None:
            ready.set()
        while not stop.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
        daemon.stop()
        print(f"crossmatch: lab {node.lab} stopped", flush=True)
