"""The responder: the crossmatch.v1 gRPC service.

Thin by design: authenticate the peer from its verified certificate, convert the
proto request to a RoundHeader, run the policy checks (all before any
cryptographic work), then hand the stream to an ExchangeSession.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from node.net import proof, wire
from node.net.deadlines import Watchdog, first_message
from node.net.exchange import END, ExchangeSession
from node.net.feedback import receive_opinions
from node.net.grpc_status import abort_with
from node.net.prepare import PreparedSide, prepare_for
from node.net.recorder import RoundFacts, RoundRecorder
from node.net.refusals import RefusalLedger
from node.net.round_deps import SessionDeps
from node.pki import PeerIdentity, peer_certificate_from_grpc_context
from node.runtime import Node, iso
from protocol.admission import Flight, admit_proposal
from protocol.errors import (
    ConfigError,
    CrossmatchError,
    PolicyError,
    ProtocolError,
    RoundAbortedError,
)
from protocol.limits import peer_text
from protocol.messages import MODES, Proposal, ProposalResponse, prompt_param_set_id
from protocol.rules import Rule
from protocol.transcript import RoundHeader
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

log = logging.getLogger("crossmatch.service")

IDLE_TIMEOUT = 300.0  # seconds without any outgoing message before a stream is abandoned


@dataclass
class PendingRound:
    header: RoundHeader
    prepared: PreparedSide
    peer: PeerIdentity
    started_at: str
    expires: float


class CrossmatchService(pb_grpc.CrossmatchServicer):
    def __init__(self, node: Node):
        self.node = node
        self._lock = threading.Lock()
        self._pending: dict[str, PendingRound] = {}
        self._flight = Flight()  # one round in flight per peer, the policy's interval
        self.recorder = RoundRecorder.for_node(node)
        self.draining = False  # set at shutdown: new rounds are refused, running ones finish
        # Round ids accepted and not yet recorded (pending or streaming): no other round, and
        # no refusal, may store anything under them.
        self._claimed: set[str] = set()
        self.limits = node.config.limits
        self.refusals = RefusalLedger(self.limits.refusal_records_per_minute)
        self.on_suppressed: list = []  # hooks(rule) for refusals counted, not recorded
        # Signs the proof that we hold the key of the certificate we present (OpenRound).
        key = serialization.load_pem_private_key(node.tls_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError("the node's TLS key is not an ECDSA key")
        self._tls_key = key

    # -- identity --------------------------------------------------------------

    def _authenticate(self, context: grpc.ServicerContext) -> PeerIdentity:
        # The policy in force now: one just installed may require a CRL. Checked under
        # the old one, OpenRound would accept a round that Exchange then refuses, and the
        # pair's slot would stay taken until the accepted round expired.
        self.node.refresh_policy()
        identity = self.node.peer_identity(peer_certificate_from_grpc_context(context))
        if identity.lab not in {p.lab for p in self.node.config.peers}:
            self.node.reload_config()  # `peer add` may have run while we serve
        if identity.lab not in {p.lab for p in self.node.config.peers}:
            raise PolicyError(
                f"lab {identity.lab!r} is not a configured peer", rule=Rule.UNKNOWN_PEER
            )
        return identity

    # -- OpenRound ---------------------------------------------------------------

    def OpenRound(self, request: wire.OpenRoundRequest, context: grpc.ServicerContext):
        peer_lab = ""
        proposal = wire.refused_proposal(request)  # what a refusal may record of it
        try:
            peer = self._authenticate(context)
            peer_lab = peer.lab
            proposal = wire.proposal_from_pb(request)  # sizes checked before anything else
            self.node.require_audit()
            header, prepared = self._accept(proposal, peer)
        except CrossmatchError as e:
            self._refused(proposal, peer_lab, e)
            abort_with(context, e)
            raise AssertionError("unreachable") from e  # context.abort raises
        ttl, started_at = self.limits.pending_ttl_seconds, iso(self.node.now())
        try:  # durable before the answer: a restart closes the round if we die mid-way
            self.recorder.started(RoundFacts.of(header, "responder", started_at))
        except BaseException:
            self._flight.release(peer.lab)
            with self._lock:
                self._claimed.discard(header.round_id)
            raise
        with self._lock:
            self._pending[header.round_id] = PendingRound(
                header, prepared, peer, started_at, time.monotonic() + ttl
            )
        self.node.round_started(header.round_id, "responder")
        log.info("round %s accepted from %s (%s)", header.round_id, peer.lab, header.mode)
        # Expiry runs on a timer: a round opened and never streamed frees the pair's slot
        # and its prepared set on time, whether or not anyone calls again.
        timer = threading.Timer(ttl, self._expire, args=(header.round_id,))
        timer.daemon = True
        timer.start()
        response = wire.response_to_pb(
            ProposalResponse(
                round_id=header.round_id,
                kinds=header.kinds,
                sizes=tuple(prepared.sizes),
                input_commitment=prepared.commitment,
                certificate_pem=self.node.tls_cert_pem,
                chunk_size=self.node.config.chunk_size,
            )
        )
        response.identity_proof = proof.prove(self._tls_key, request, response)
        return response

    def SendOpinions(
        self, request: wire.OpinionBatch, context: grpc.ServicerContext
    ) -> wire.OpinionAck:
        """Peer feedback on matches of reveal rounds between us (node/net/feedback.py)."""
        try:
            peer = self._authenticate(context)
            return receive_opinions(
                peer.lab,
                request,
                store=self.node.store,
                now=self.node.now(),
                policy=self.node.require_policy,
                record=self.node.record,
            )
        except CrossmatchError as e:
            abort_with(context, e)
            raise AssertionError("unreachable") from e  # context.abort raises

    def _accept(self, proposal: Proposal, peer: PeerIdentity) -> tuple[RoundHeader, PreparedSide]:
        """The admission rules (protocol/admission.py), then our side of the round."""
        admitted = admit_proposal(
            proposal,
            me=self.node.lab,
            peer=peer.lab,
            policy=self.node.require_policy,
            prompt_params=prompt_param_set_id(),
            round_known=self._round_id_taken,
            flight=self._flight,
            now=self.node.now(),
            last_round=lambda: self._last_round_start(peer.lab),
            shutting_down=self.draining,
        )
        with self._lock:
            if proposal.round_id in self._claimed:  # raced with another OpenRound
                self._flight.release(peer.lab)
                raise ProtocolError("round id already used", rule=Rule.ROUND_ID)
            self._claimed.add(proposal.round_id)
        try:
            prepared = prepare_for(self.node, list(proposal.kinds), shuffle_later=True)
        except BaseException:
            self._flight.release(peer.lab)
            with self._lock:
                self._claimed.discard(proposal.round_id)
            raise
        return admitted.header(tuple(prepared.sizes), prepared.commitment), prepared

    def _round_id_taken(self, round_id: str) -> bool:
        with self._lock:
            if round_id in self._claimed:
                return True
        # Started by another process of this node (a CLI round next to serve) counts too.
        store = self.node.store
        return store.get_round(round_id) is not None or store.is_started(round_id)

    def _last_round_start(self, peer_lab: str) -> datetime | None:
        """Start of the last round with the peer that got past OpenRound (either role)."""
        for row in self.node.store.rounds(peer=peer_lab):
            if row.status in ("completed", "aborted") and row.peer_sizes:
                return datetime.fromisoformat(row.started_at)
        return None

    def _refused(self, request: Proposal, peer_lab: str, e: CrossmatchError) -> None:
        """One record (and row) per refusal, within the caller's allowance; otherwise counted."""
        caller = peer_lab or request.initiator[:64]
        if e.rule == Rule.DISK_FULL or not self.refusals.admit(peer_lab and caller, e.rule):
            for hook in self.on_suppressed:  # nothing written (or nothing can be)
                hook(str(e.rule or "-"))
            return
        log.debug("refused round from %s: %s", peer_lab or "unauthenticated peer", e.diagnostics())
        rid = request.round_id
        kinds = tuple(k[:32] for k in request.kinds[:16])
        facts = RoundFacts(
            round_id=rid,
            role="responder",
            peer=peer_lab,
            mode=request.mode if request.mode in MODES else "unknown",
            kinds=kinds,
            own_sizes={},
            peer_sizes=dict(zip(kinds, request.sizes[:16], strict=False)),
            policy_hash=request.policy_hash[:32],
            started_at=iso(self.node.now()),
        )
        keep = bool(peer_lab) and self._may_store_refusal(rid)
        self.recorder.refused(
            e,
            peer=peer_lab,
            claimed_lab=peer_text(request.initiator, 64),
            facts=facts if keep else None,
        )

    def _may_store_refusal(self, rid: str) -> bool:
        """A refusal stores a row only under a well-formed id no round owns or may own."""
        well_formed = len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)
        return well_formed and not self._round_id_taken(rid)

    def flush_refusals(self) -> None:
        """Write the refusals counted since the last flush as one record."""
        summary = self.refusals.take_summary()
        if summary is not None:
            self.node.record(summary)

    def _expire(self, round_id: str) -> None:
        """Timer: an accepted round the initiator never streamed is aborted at stage open."""
        with self._lock:
            pending = self._pending.pop(round_id, None)
        if pending is None:
            return  # its stream came
        self._flight.release(pending.peer.lab)
        try:
            self._record_expired(pending)
        finally:
            with self._lock:
                self._claimed.discard(round_id)

    def abort_pending(self) -> None:
        """At shutdown: rounds accepted and never streamed end now, logged (rule shutdown)."""
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            self._flight.release(p.peer.lab)
            try:
                self.recorder.aborted(
                    RoundFacts.of(p.header, "responder", p.started_at),
                    RoundAbortedError("this node is shutting down", rule=Rule.SHUTDOWN),
                    stage="open",
                )
            except (CrossmatchError, OSError) as e:  # its start row closes it at restart
                log.error("round %s: its abort could not be recorded: %s", p.header.round_id, e)
            finally:
                with self._lock:
                    self._claimed.discard(p.header.round_id)

    def _record_expired(self, pending: PendingRound) -> None:
        """An accepted round the initiator never streamed: aborted at stage open, logged."""
        reason = f"no Exchange stream within {self.limits.pending_ttl_seconds:g} s of OpenRound"
        self.recorder.aborted(
            RoundFacts.of(pending.header, "responder", pending.started_at),
            ProtocolError(reason, rule=Rule.TIMEOUT),
            stage="open",
        )

    # -- Exchange ----------------------------------------------------------------

    def Exchange(
        self, request_iterator: Iterator[wire.ExchangeMessage], context: grpc.ServicerContext
    ):
        try:
            peer = self._authenticate(context)
            round_id = first_message(request_iterator, context, self.limits.first_message_seconds)
            with self._lock:
                pending = self._pending.get(round_id)
                if pending is None or pending.peer.lab != peer.lab:
                    raise PolicyError(
                        "no accepted round with that id for this peer", rule=Rule.UNKNOWN_ROUND
                    )
                del self._pending[round_id]
        except CrossmatchError as e:
            abort_with(context, e)
            return
        try:
            yield from self._run(pending, request_iterator, context)
        finally:
            self._flight.release(pending.peer.lab)
            with self._lock:
                self._claimed.discard(pending.header.round_id)

    def _run(
        self,
        pending: PendingRound,
        requests: Iterator[wire.ExchangeMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[wire.ExchangeMessage]:
        session = ExchangeSession(
            SessionDeps.of(self.node),
            pending.header,
            "responder",
            pending.prepared,
            pending.peer,
            pending.started_at,
        )
        context.add_callback(
            lambda: session.side.fail(
                RoundAbortedError("this node is shutting down", rule=Rule.SHUTDOWN)
                if self.draining
                else ProtocolError("stream cancelled by peer", rule=Rule.STREAM_ENDED)
            )
        )
        silence = self.limits.peer_silence_seconds

        def on_silence() -> None:
            session.abort(
                ProtocolError(f"peer silent for {silence:g} s", rule=Rule.TIMEOUT), session.stage()
            )
            context.cancel()

        watchdog = Watchdog(silence, on_silence)
        reader = threading.Thread(
            target=_read, args=(session, requests, watchdog), name="exchange-read", daemon=True
        )
        session.start()
        reader.start()
        watchdog.start()
        try:
            # Not joining the reader: it only ends once this RPC ends, i.e. after we return.
            yield from _write(session, watchdog)
        finally:
            watchdog.stop()
            session.close()


def _read(
    session: ExchangeSession, requests: Iterator[wire.ExchangeMessage], watchdog: Watchdog
) -> None:
    """The reader thread: the initiator's messages into the session, until the round ends."""
    try:
        for msg in requests:
            watchdog.seen()
            if session.handle(msg):
                return
        session.side.settle(5.0)
        raise session.side.error or ProtocolError(
            "stream ended early: " + session.side.missing(), rule=Rule.STREAM_ENDED
        )
    except CrossmatchError as e:
        session.abort(e, session.stage())
    except grpc.RpcError as e:
        session.abort(ProtocolError(f"stream broken: {e}", rule=Rule.STREAM_ENDED), session.stage())
    except Exception as e:  # never let a peer's stream kill the server thread silently
        log.exception("round %s failed", session.header.round_id)
        session.abort(
            ProtocolError(f"internal error: {type(e).__name__}", rule=Rule.INTERNAL),
            session.stage(),
        )


def _write(session: ExchangeSession, watchdog: Watchdog) -> Iterator[wire.ExchangeMessage]:
    """The response stream: the session's outbox, until END; an unfinished round aborts."""
    while True:
        try:
            item = session.outbox.get(timeout=IDLE_TIMEOUT)
        except queue.Empty:
            session.abort(ProtocolError("peer idle too long", rule=Rule.TIMEOUT), session.stage())
            break
        if item is END:
            break
        watchdog.seen()  # our own progress counts: we may be the one working
        yield cast(wire.ExchangeMessage, item)
    if not session.recorded.is_set():
        err = session.side.error or ProtocolError("stream ended early", rule=Rule.STREAM_ENDED)
        session.abort(err, session.stage())
