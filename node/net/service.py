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
from datetime import datetime, timedelta
from typing import cast

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from node.net import proof
from node.net.exchange import END, ExchangeSession, PreparedSide, prepare_side
from node.net.grpc_status import abort_with
from node.pki import PeerIdentity
from node.runtime import Node, iso
from node.state.store import RoundRow
from protocol import PROTOCOL_VERSION
from protocol.errors import (
    ConfigError,
    CrossmatchError,
    PolicyError,
    ProtocolError,
    RoundAbortedError,
)
from protocol.policy import DEFAULT_POLICY, Policy
from protocol.responder_proof import check_nonce
from protocol.rules import Rule
from protocol.suites import DEFAULT_SUITE
from protocol.transcript import RoundHeader
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

log = logging.getLogger("crossmatch.service")

MODES = {pb.MODE_REVEAL: "reveal", pb.MODE_COUNT: "count"}
PENDING_TTL = 120.0  # seconds an accepted round may wait for its Exchange stream
IDLE_TIMEOUT = 300.0  # seconds without any outgoing message before a stream is abandoned
# The two sides stamp a round's start a moment apart; forgive that much of the policy's
# minimum interval (at most RATE_SLACK_MAX, at most a tenth of the interval).
RATE_SLACK_MAX = timedelta(seconds=30)


@dataclass
class PendingRound:
    header: RoundHeader
    prepared: PreparedSide
    peer: PeerIdentity
    started_at: str
    expires: float


def prompt_param_set_id() -> str:
    from protocol.fingerprints.prompts import DEFAULT_PARAMS, param_set_id

    return param_set_id(DEFAULT_PARAMS)


class CrossmatchService(pb_grpc.CrossmatchServicer):
    def __init__(self, node: Node):
        self.node = node
        self._lock = threading.Lock()
        self._pending: dict[str, PendingRound] = {}
        self._active: set[str] = set()  # peers with a round in flight (single flight)
        self._last_accepted: dict[str, datetime] = {}  # node clock, per peer (rate limit)
        self.draining = False  # set at shutdown: new rounds are refused, running ones finish
        # Signs the proof that we hold the key of the certificate we present (OpenRound).
        key = serialization.load_pem_private_key(node.tls_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError("the node's TLS key is not an ECDSA key")
        self._tls_key = key

    # -- identity --------------------------------------------------------------

    def _authenticate(self, context: grpc.ServicerContext) -> PeerIdentity:
        certs = context.auth_context().get("x509_pem_cert")
        if not certs:
            raise PolicyError("no client certificate", rule=Rule.IDENTITY)
        identity = self.node.peer_identity(certs[0])
        if identity.lab not in {p.lab for p in self.node.config.peers}:
            self.node.reload_config()  # `peer add` may have run while we serve
        if identity.lab not in {p.lab for p in self.node.config.peers}:
            raise PolicyError(f"lab {identity.lab!r} is not a configured peer",
                rule=Rule.UNKNOWN_PEER)
        return identity

    # -- OpenRound ---------------------------------------------------------------

    def OpenRound(self, request: pb.OpenRoundRequest, context: grpc.ServicerContext):
        peer_lab = ""
        try:
            peer = self._authenticate(context)
            peer_lab = peer.lab
            header, prepared = self._accept(request, peer)
        except CrossmatchError as e:
            self._refused(request, peer_lab, e)
            abort_with(context, e)
            raise AssertionError("unreachable") from e  # context.abort raises
        with self._lock:
            expired = self._expire_pending()
            self._pending[header.round_id] = PendingRound(
                header, prepared, peer, iso(self.node.now()), time.monotonic() + PENDING_TTL)
        self.node.round_started(header.round_id, "responder")
        for stale in expired:
            self._record_expired(stale)
        response = pb.OpenRoundResponse(
            round_id=header.round_id,
            sizes=[pb.KindSize(kind=k, size=n) for k, n in zip(header.kinds, prepared.sizes,
                                                                strict=True)],
            input_commitment=prepared.commitment,
            certificate_pem=self.node.tls_cert_pem,
            chunk_size=self.node.config.chunk_size,
        )
        response.identity_proof = proof.prove(self._tls_key, request, response)
        return response

    def _accept(self, request: pb.OpenRoundRequest, peer: PeerIdentity
                ) -> tuple[RoundHeader, PreparedSide]:
        if request.protocol_version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol version {request.protocol_version!r} not supported "
                f"(this node speaks {PROTOCOL_VERSION})", rule=Rule.VERSION)
        check_nonce(request.nonce)
        if request.initiator_lab != peer.lab:
            raise PolicyError(
                f"claims to be lab {request.initiator_lab!r} but its certificate is for "
                f"{peer.lab!r}", rule=Rule.LAB_MISMATCH)
        if request.responder_lab != self.node.lab:
            raise PolicyError(f"round addressed to {request.responder_lab!r}, this is "
                              f"{self.node.lab!r}", rule=Rule.WRONG_RESPONDER)
        if not (len(request.round_id) == 32 and all(c in "0123456789abcdef"
                                                    for c in request.round_id)):
            raise ProtocolError("round id must be 32 lowercase hex digits", rule=Rule.ROUND_ID)
        if self.node.store.get_round(request.round_id) is not None:
            raise ProtocolError("round id already used", rule=Rule.ROUND_ID)
        mode = MODES.get(request.mode)
        if mode is None:
            raise ProtocolError(f"unknown mode {request.mode}", rule=Rule.MODE)
        kinds = [s.kind for s in request.sizes]
        sizes = [s.size for s in request.sizes]
        if len(set(kinds)) != len(kinds):
            raise ProtocolError("a kind is listed twice", rule=Rule.KINDS)
        if self.draining:
            raise PolicyError("this node is shutting down; retry later", rule=Rule.SHUTTING_DOWN)
        policy = self.node.require_policy()  # signed, valid now (policy-unsigned, -expired)
        if request.policy_hash != policy.hash():
            unsigned = request.policy_hash == DEFAULT_POLICY.hash()
            raise PolicyError(
                "initiator runs without a signed consortium policy" if unsigned else
                f"initiator runs under a different policy ({request.policy_hash.hex()[:16]}…, "
                f"ours {policy.policy_id} v{policy.version} {policy.hash().hex()[:16]}…)",
                rule=Rule.POLICY_UNSIGNED if unsigned else Rule.POLICY_MISMATCH)
        policy.check_round(kinds, mode, sizes)
        suite = request.suite or DEFAULT_SUITE  # a node from before suites sends none
        policy.check_suite(suite)
        if "prompt" in kinds and request.prompt_params != prompt_param_set_id():
            raise PolicyError(
                f"prompt fingerprint parameters differ: peer {request.prompt_params!r}, "
                f"ours {prompt_param_set_id()!r}", rule=Rule.PROMPT_PARAMS)
        self._reserve(peer.lab, policy)
        try:
            prepared = prepare_side(self.node, kinds)
        except BaseException:
            self._release(peer.lab)
            raise
        header = RoundHeader(
            round_id=request.round_id, initiator=peer.lab, responder=self.node.lab, mode=mode,
            kinds=tuple(kinds), initiator_sizes=tuple(sizes),
            responder_sizes=tuple(prepared.sizes), policy_hash=request.policy_hash,
            initiator_commitment=request.input_commitment,
            responder_commitment=prepared.commitment, prompt_params=request.prompt_params,
            suite=suite, verified_matches=policy.verified_matches,
        )
        return header, prepared

    # -- anti-probing: single flight and rate limit, before any work ---------------------------

    def _reserve(self, peer_lab: str, policy: Policy) -> None:
        """Claim the peer's single slot, atomically, if the policy's interval has passed."""
        now = self.node.now()
        last = self._last_round_start(peer_lab)
        slack = min(RATE_SLACK_MAX, timedelta(seconds=policy.min_interval_seconds / 10))
        with self._lock:
            if peer_lab in self._active:
                raise PolicyError(f"a round with {peer_lab} is already in flight",
                                  rule=Rule.SINGLE_FLIGHT)
            accepted = self._last_accepted.get(peer_lab)
            if accepted is not None and (last is None or accepted > last):
                last = accepted
            policy.check_interval(last, now, slack)
            self._active.add(peer_lab)
            self._last_accepted[peer_lab] = now

    def _release(self, peer_lab: str) -> None:
        with self._lock:
            self._active.discard(peer_lab)

    def _last_round_start(self, peer_lab: str) -> datetime | None:
        """Start of the last round with the peer that got past OpenRound (either role)."""
        for row in self.node.store.rounds(peer=peer_lab):
            if row.status in ("completed", "aborted") and row.peer_sizes:
                return datetime.fromisoformat(row.started_at)
        return None

    def _refused(self, request: pb.OpenRoundRequest, peer_lab: str, e: CrossmatchError) -> None:
        log.debug("refused round from %s: %s", peer_lab or "unauthenticated peer",
                  e.diagnostics())
        self.node.log("round_refused", {
            "peer": peer_lab, "claimed_lab": request.initiator_lab[:64],
            "reason": e.message, "rule": e.rule or "",
        })
        rid = request.round_id
        if peer_lab and len(rid) == 32 and self.node.store.get_round(rid) is None:
            kinds = [s.kind[:32] for s in request.sizes][:16]
            self.node.store.save_round(RoundRow(
                round_id=rid, peer=peer_lab, role="responder",
                mode=MODES.get(request.mode, "unknown"), kinds=kinds, own_sizes={},
                peer_sizes={s.kind[:32]: s.size for s in request.sizes[:16]},
                intersection_sizes={}, status="refused", reason=e.diagnostics(),
                started_at=iso(self.node.now()), finished_at=iso(self.node.now()),
                policy_hash=request.policy_hash.hex(), transcript_hash=""), [])

    def _expire_pending(self) -> list[PendingRound]:
        """Forget accepted rounds whose Exchange never came (call with the lock held)."""
        now = time.monotonic()
        expired = [self._pending.pop(r) for r, p in list(self._pending.items())
                   if p.expires < now]
        for pending in expired:
            self._active.discard(pending.peer.lab)
        return expired

    def _record_expired(self, pending: PendingRound) -> None:
        """An accepted round the initiator never streamed: aborted at stage open, logged."""
        h = pending.header
        reason = f"no Exchange stream within {PENDING_TTL:.0f} s of OpenRound"
        self.node.log("round_aborted", {"round_id": h.round_id, "role": "responder",
                                        "peer": pending.peer.lab, "stage": "open",
                                        "reason": reason, "rule": Rule.TIMEOUT})
        self.node.store.save_round(RoundRow(
            round_id=h.round_id, peer=pending.peer.lab, role="responder", mode=h.mode,
            kinds=list(h.kinds), own_sizes=dict(zip(h.kinds, h.responder_sizes, strict=True)),
            peer_sizes=dict(zip(h.kinds, h.initiator_sizes, strict=True)),
            intersection_sizes={}, status="aborted", reason=f"{reason} [rule: timeout]",
            started_at=pending.started_at, finished_at=iso(self.node.now()),
            policy_hash=h.policy_hash.hex(), transcript_hash=""), [])

    # -- Exchange ----------------------------------------------------------------

    def Exchange(self, request_iterator: Iterator[pb.ExchangeMessage],
                 context: grpc.ServicerContext):
        try:
            peer = self._authenticate(context)
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("body") != "start":
                raise ProtocolError("stream must begin with Start", rule=Rule.MESSAGE_ORDER)
            with self._lock:
                pending = self._pending.get(first.start.round_id)
                if pending is None or pending.peer.lab != peer.lab:
                    raise PolicyError("no accepted round with that id for this peer",
                                      rule=Rule.UNKNOWN_ROUND)
                del self._pending[first.start.round_id]
        except CrossmatchError as e:
            abort_with(context, e)
            return
        try:
            yield from self._run(pending, request_iterator, context)
        finally:
            with self._lock:
                self._active.discard(pending.peer.lab)

    def _run(self, pending: PendingRound, requests: Iterator[pb.ExchangeMessage],
             context: grpc.ServicerContext) -> Iterator[pb.ExchangeMessage]:
        session = ExchangeSession(self.node, pending.header, "responder", pending.prepared,
                                  pending.peer, pending.started_at)
        context.add_callback(lambda: session.side.fail(
            RoundAbortedError("this node is shutting down", rule=Rule.SHUTDOWN) if self.draining
            else ProtocolError("stream cancelled by peer", rule=Rule.STREAM_ENDED)))

        def read() -> None:
            try:
                for msg in requests:
                    if session.handle(msg):
                        return
                session.side.settle(5.0)
                raise session.side.error or ProtocolError(
                    "stream ended early: " + session.side.missing(), rule=Rule.STREAM_ENDED)
            except CrossmatchError as e:
                session.abort(e, session.stage())
            except grpc.RpcError as e:
                session.abort(ProtocolError(f"stream broken: {e}", rule=Rule.STREAM_ENDED),
                              session.stage())
            except Exception as e:  # never let a peer's stream kill the server thread silently
                log.exception("round %s failed", pending.header.round_id)
                session.abort(ProtocolError(f"internal error: {type(e).__name__}",
                                            rule=Rule.INTERNAL), session.stage())

        reader = threading.Thread(target=read, name="exchange-read", daemon=True)
        session.start()
        reader.start()
        try:
            while True:
                try:
                    item = session.outbox.get(timeout=IDLE_TIMEOUT)
                except queue.Empty:
                    session.abort(ProtocolError("peer idle too long", rule=Rule.TIMEOUT),
                                  session.stage())
                    break
                if item is END:
                    break
                yield cast(pb.ExchangeMessage, item)
            # Not joining the reader: it only ends once this RPC ends, i.e. after we return.
            if not session.recorded.is_set():
                err = session.side.error or ProtocolError("stream ended early",
                                                          rule=Rule.STREAM_ENDED)
                session.abort(err, session.stage())
        finally:
            session.close()
