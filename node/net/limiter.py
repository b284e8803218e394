"""Per-caller concurrency: one client certificate holds at most N of our RPC workers.

A gRPC server interceptor wraps every method handler (ours, health, reflection)
so that, before the handler runs, the caller's verified certificate takes a slot;
a caller already holding ``per_peer`` slots is answered RESOURCE_EXHAUSTED at
once (rule ``peer-busy``) instead of queueing for a worker. Together with the
server's ``maximum_concurrent_rpcs`` this keeps workers free for everyone else
however many streams one certified peer opens.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc

from node.net.grpc_status import KIND_KEY, RULE_KEY
from protocol.rules import Rule


class PeerLimiter(grpc.ServerInterceptor):
    def __init__(self, per_peer: int, on_reject: Callable[[], None] | None = None):
        self.per_peer = per_peer
        self._held: Counter[bytes] = Counter()
        self._lock = threading.Lock()
        self._on_reject = on_reject

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                streaming = kind.endswith("_stream")
                wrapped = self._wrap_stream(behaviour) if streaming else self._wrap(behaviour)
                return handler._replace(**{kind: wrapped})
        return handler

    # -- slots ---------------------------------------------------------------------------------

    def _caller(self, context: grpc.ServicerContext) -> bytes:
        certs = context.auth_context().get("x509_pem_cert") or [b""]
        return hashlib.sha256(certs[0]).digest()

    def _take(self, context: grpc.ServicerContext) -> bytes:
        caller = self._caller(context)
        with self._lock:
            if self._held[caller] >= self.per_peer:
                busy = True
            else:
                busy = False
                self._held[caller] += 1
        if busy:
            if self._on_reject is not None:
                self._on_reject()
            context.set_trailing_metadata(((RULE_KEY, Rule.PEER_BUSY.value), (KIND_KEY, "policy")))
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this caller already holds {self.per_peer} calls; retry later",
            )
        return caller

    def _give(self, caller: bytes) -> None:
        with self._lock:
            self._held[caller] -= 1
            if self._held[caller] <= 0:
                del self._held[caller]

    def _wrap(self, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            caller = self._take(context)
            try:
                return behaviour(request, context)
            finally:
                self._give(caller)

        return run

    def _wrap_stream(self, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            caller = self._take(context)
            try:
                yield from behaviour(request, context)
            finally:
                self._give(caller)

        return run
