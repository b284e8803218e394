"""The hub's gRPC service: one Join stream per participant, one round at a time.

Thin: the stream's lab comes from its verified client certificate; every message
goes through one lock into the pure HubSession, whose answers are queued on the
receivers' streams. A participant that leaves, errs or stalls aborts the round
for everyone (each stream gets an Abort naming the rule, then ends); the round
is logged in the hub's audit log when it completes or aborts. The hub never
holds an identifier, only blinded points, and keeps none of them once a round ends.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc

from node.consortium import records, wire
from node.net.grpc_status import abort_with
from node.pki import PeerIdentity, peer_certificate_from_grpc_context
from node.runtime import Node
from protocol.consortium import messages as m
from protocol.consortium.hub import HubSession
from protocol.consortium.receipts import parse_receipt
from protocol.errors import CrossmatchError, PolicyError, ProtocolError
from protocol.rules import Rule
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

log = logging.getLogger("crossmatch.hub")

END = object()
IDLE_TIMEOUT = 600.0  # seconds a stream may go without a message to send before it is cut


class HubCoordinator:
    """The current round and the participants' outgoing queues, behind one lock."""

    def __init__(self, node: Node, new_round_id: Callable[[], str] = lambda: secrets.token_hex(16)):
        self.node, self._new_round_id = node, new_round_id
        self._lock = threading.Lock()
        self.session: HubSession | None = None
        self._outboxes: dict[str, queue.Queue[Any]] = {}
        self._timers: list[threading.Timer] = []
        self._last_progress = 0.0  # time.monotonic() of the last message that moved it on
        self._watching: HubSession | None = None  # the session the stall watch is armed for

    def join(self, peer: PeerIdentity, msg: pb.ConsortiumMessage) -> queue.Queue[Any]:
        """Admit a participant's stream. An outsider or a second stream of a lab is refused
        alone (raises): it must not be able to abort a round it is not part of. Anything
        else wrong with a participant's join aborts the round for all."""
        with self._lock:
            if self.session is None or self.session.state in ("done", "aborted"):
                self._new_session()
            session = self.session
            assert session is not None and session.rules is not None
            if msg.WhichOneof("body") != "join":
                raise ProtocolError("stream must begin with join", rule=Rule.MESSAGE_ORDER)
            session.rules.index_of(peer.lab)  # an outsider is refused here, the round goes on
            if peer.lab in self._outboxes:
                raise PolicyError(f"{peer.lab} joined twice", rule=Rule.CONSORTIUM_JOINED_TWICE)
            outbox: queue.Queue[Any] = queue.Queue()
            self._outboxes[peer.lab] = outbox
            self._apply(
                session,
                lambda: session.join(
                    peer.lab,
                    wire.join_from_pb(msg.join, session.rules.kinds),
                    peer.audit_public_key,
                ),
            )
            log.info(
                "%s joined consortium round %s (%d of %d)",
                peer.lab,
                session.round_id,
                len(self._outboxes),
                len(session.rules.participants),
            )
            return outbox

    def _new_session(self) -> None:
        policy = self.node.require_policy()
        self.session = HubSession(
            policy, hub=self.node.lab, round_id=self._new_round_id(), key=self.node.audit_key
        )
        self._outboxes = {}
        rules = policy.consortium
        assert rules is not None
        session = self.session
        for seconds, rule, text in (
            (
                rules.join_timeout_seconds,
                Rule.CONSORTIUM_JOIN_TIMEOUT,
                "not every participant joined within {} s",
            ),
            (self.node.config.round_timeout, "timeout", "the round took longer than {} s"),
        ):
            timer = threading.Timer(seconds, self._expire, (session, rule, text.format(seconds)))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)

    def _expire(self, session: HubSession, rule: Rule, reason: str) -> None:
        with self._lock:
            if self.session is session and (rule == "timeout" or session.state == "joining"):
                self._fail(session, PolicyError(reason, rule=rule))

    def handle(self, lab: str, msg: pb.ConsortiumMessage) -> bool:
        """One message from ``lab``; False once the round is over for it."""
        with self._lock:
            session = self.session
            if session is None or session.state in ("done", "aborted"):
                return False
            message = _decoded(msg)
            if isinstance(message, m.Abort):
                self._fail(
                    session,
                    PolicyError(
                        f"{lab} left the round ({message.rule})",
                        rule=Rule.CONSORTIUM_PARTICIPANT_LEFT,
                    ),
                    gone=lab,
                )
                return False
            handler = {
                m.OwnChunk: session.own_chunk,
                m.Reblind: session.reblinded,
                m.Receipt: session.receipt,
            }.get(type(message))
            if handler is None:
                self._fail(
                    session,
                    ProtocolError(f"{lab} sent an unexpected message", rule=Rule.MESSAGE_ORDER),
                )
                return False
            self._apply(session, lambda: handler(lab, message))  # type: ignore[operator]
            return session.state not in ("done", "aborted")

    def left(self, lab: str) -> None:
        """``lab``'s stream ended or broke."""
        with self._lock:
            session = self.session
            if (
                session is not None
                and session.state not in ("done", "aborted")
                and lab in self._outboxes
            ):
                self._fail(
                    session,
                    PolicyError(f"{lab} left the round", rule=Rule.CONSORTIUM_PARTICIPANT_LEFT),
                    gone=lab,
                )

    # -- with the lock held --------------------------------------------------------------

    def _apply(self, session: HubSession, step: Callable[[], list[m.Send]]) -> None:
        try:
            sends = step()
        except CrossmatchError as e:
            self._fail(session, e)
            return
        self._deliver(sends)
        self._last_progress = time.monotonic()
        if session.state == "done":
            self._completed(session)
        elif session.state != "joining" and self._watching is not session:
            self._watching = session
            self._watch(session, self._stage_timeout())

    def _stage_timeout(self) -> float:
        rules = self.node.require_policy().consortium
        assert rules is not None
        return float(rules.stage_timeout_seconds)

    def _watch(self, session: HubSession, seconds: float) -> None:
        timer = threading.Timer(seconds, self._check_stall, (session,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _check_stall(self, session: HubSession) -> None:
        """Abort a round no message moved on for the policy's stage timeout; else watch on."""
        with self._lock:
            if self.session is not session or session.state in ("done", "aborted"):
                return
            limit = self._stage_timeout()
            idle = time.monotonic() - self._last_progress
            if idle < limit:
                self._watch(session, limit - idle)
                return
            reason = f"no participant moved the {session.state} stage on for {limit:g} s"
            self._fail(session, PolicyError(reason, rule=Rule.CONSORTIUM_STAGE_TIMEOUT))

    def _deliver(self, sends: list[m.Send]) -> None:
        for send in sends:
            message = send.message
            if isinstance(message, m.Roster):
                message = replace(message, hub_certificate_pem=self.node.tls_cert_pem)
            outbox = self._outboxes.get(send.lab)
            if outbox is not None:
                outbox.put(wire.to_pb(message))

    def _fail(self, session: HubSession, error: CrossmatchError, gone: str = "") -> None:
        stage = session.state
        session.abort(error, gone=gone)
        abort = wire.to_pb(m.Abort(error.rule or Rule.INTERNAL, error.message))
        for lab, outbox in self._outboxes.items():  # joined or not yet admitted
            if lab != gone:
                outbox.put(abort)
        self._close_streams()
        self.node.record(
            records.aborted(
                error,
                round_id=session.round_id,
                role="hub",
                hub=session.hub,
                stage=stage,
                participants=sorted(self._joined(session)),
            )
        )
        log.warning("consortium round %s aborted: %s", session.round_id, error.diagnostics())

    def _completed(self, session: HubSession) -> None:
        h = session.header
        assert h is not None
        self._close_streams()
        self.node.record(
            records.completed(
                h,
                role="hub",
                result_counts=session.result_counts,
                lab_receipts={lab: parse_receipt(r) for lab, r in session.lab_receipts().items()},
                hub_receipts={lab: parse_receipt(r) for lab, r in session.hub_receipts.items()},
            )
        )
        if self.node.audit is not None:
            self.node.audit.checkpoint(now=self.node.now())
        log.info("consortium round %s completed", h.round_id)

    def _joined(self, session: HubSession) -> list[str]:
        return list(session.header.participants) if session.header else list(self._outboxes)

    def _close_streams(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        for outbox in self._outboxes.values():
            outbox.put(END)


def _decoded(msg: pb.ConsortiumMessage) -> m.Message:
    try:
        return wire.from_pb(msg)
    except CrossmatchError as e:
        return m.Abort(e.rule or Rule.MESSAGE_ORDER, e.message)


class ConsortiumService(pb_grpc.ConsortiumServicer):
    def __init__(self, node: Node):
        self.node = node
        self.coordinator = HubCoordinator(node)

    def Join(
        self, request_iterator: Iterator[pb.ConsortiumMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.ConsortiumMessage]:
        try:
            peer = self.node.peer_identity(peer_certificate_from_grpc_context(context))
            first = next(request_iterator, None)
            if first is None:
                raise ProtocolError("stream ended before join", rule=Rule.MESSAGE_ORDER)
            outbox = self.coordinator.join(peer, first)
        except CrossmatchError as e:
            log.info("consortium join refused: %s", e.diagnostics())
            abort_with(context, e)
            return
        context.add_callback(lambda: self.coordinator.left(peer.lab))
        reader = threading.Thread(
            target=self._read,
            args=(peer.lab, request_iterator),
            name=f"hub-read-{peer.lab}",
            daemon=True,
        )
        reader.start()
        while True:
            try:
                item = outbox.get(timeout=IDLE_TIMEOUT)
            except queue.Empty:
                self.coordinator.left(peer.lab)
                return
            if item is END:
                return
            yield item

    def _read(self, lab: str, requests: Iterator[pb.ConsortiumMessage]) -> None:
        try:
            for msg in requests:
                if not self.coordinator.handle(lab, msg):
                    return
        except grpc.RpcError:
            pass
        except Exception:  # a bug must abort the round, not leave it hanging
            log.exception("consortium stream of %s failed", lab)
        self.coordinator.left(lab)
