"""The initiator: open a round with a peer and run our side of the exchange."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from node.net import proof, wire
from node.net.channel import TlsIdentity, open_channel
from node.net.deadlines import Watchdog
from node.net.exchange import END, ExchangeSession
from node.net.grpc_status import error_from_rpc
from node.net.prepare import PreparedSide, prepare_for
from node.net.recorder import RoundFacts, RoundRecorder
from node.net.round_deps import SessionDeps
from node.runtime import Node, iso
from protocol import PROTOCOL_VERSION
from protocol.admission import admit_response
from protocol.errors import CrossmatchError, PolicyError, ProtocolError, RoundAbortedError
from protocol.identity import PeerIdentity
from protocol.messages import MODES, Proposal, ProposalResponse, prompt_param_set_id
from protocol.policy import Policy
from protocol.responder_proof import NONCE_BYTES
from protocol.rules import Rule
from protocol.transcript import RoundHeader
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

log = logging.getLogger("crossmatch.initiator")

OPEN_TIMEOUT = 30.0

# progress(done, total): elements the peer has sent us so far, of all it will send.
Progress = Callable[[int, int], None]


@dataclass
class RoundSummary:
    round_id: str
    peer: str
    mode: str
    kinds: list[str]
    own_sizes: dict[str, int]
    peer_sizes: dict[str, int]
    intersection_sizes: dict[str, int]
    status: str


def run_round(
    node: Node,
    peer_lab: str,
    *,
    mode: str = "reveal",
    kinds: list[str] | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> RoundSummary:
    """Run one round now; returns its summary or raises (the abort is already logged).

    Setting ``cancel`` (graceful shutdown) aborts the round cleanly: logged as aborted
    with rule ``shutdown``, nothing stored.
    """
    policy, prepared, proposal, started = _propose(node, peer_lab, mode, kinds)
    RoundRecorder.for_node(node).started(_proposal_facts(proposal, started))  # before OpenRound
    node.round_started(proposal.round_id, "initiator")
    with open_channel(TlsIdentity.of(node), node.config.peer(peer_lab)) as channel:
        stub = pb_grpc.CrossmatchStub(channel)
        answer, peer = _open(node, stub, proposal, policy, started)
        header = _agreed(proposal, answer, policy)
        session = ExchangeSession(
            SessionDeps.of(node), header, "initiator", prepared, peer, started
        )
        try:
            _exchange(node, stub, session, cancel, progress)
        except CrossmatchError as e:
            if not session.recorded.is_set():  # refused before the exchange began
                _abort(session, e)
            raise
        finally:
            session.close()
    return _summary(header, session)


def _agreed(proposal: Proposal, answer: ProposalResponse, policy: Policy) -> RoundHeader:
    """The round both sides agreed on: our proposal and the responder's admitted answer."""
    return RoundHeader(
        round_id=proposal.round_id,
        initiator=proposal.initiator,
        responder=proposal.responder,
        mode=proposal.mode,
        kinds=proposal.kinds,
        initiator_sizes=proposal.sizes,
        responder_sizes=answer.sizes,
        policy_hash=proposal.policy_hash,
        initiator_commitment=proposal.input_commitment,
        responder_commitment=answer.input_commitment,
        prompt_params=proposal.prompt_params,
        suite=policy.suite,
        verified_matches=policy.verified_matches,
    )


def _summary(header: RoundHeader, session: ExchangeSession) -> RoundSummary:
    return RoundSummary(
        round_id=header.round_id,
        peer=header.responder,
        mode=header.mode,
        kinds=list(header.kinds),
        own_sizes=dict(zip(header.kinds, header.initiator_sizes, strict=True)),
        peer_sizes=dict(zip(header.kinds, header.responder_sizes, strict=True)),
        intersection_sizes=session.outcome.intersection_sizes if session.outcome else {},
        status="completed",
    )


def _propose(
    node: Node, peer_lab: str, mode: str, kinds: list[str] | None
) -> tuple[Policy, PreparedSide, Proposal, str]:
    """Our side of a round and the proposal for it, checked against our own policy first."""
    node.config.peer(peer_lab)  # unknown peer -> ConfigError before anything else
    policy = node.require_policy()  # signed and valid now, or PolicyError naming the rule
    kinds = kinds or sorted(k for k, n in node.store.signal_counts().items() if n > 0)
    if not kinds:
        raise PolicyError("this node holds no signals; import some first", rule=Rule.KINDS_EMPTY)
    if mode not in MODES:
        raise ProtocolError(f"unknown mode {mode!r}", rule=Rule.MODE)
    policy.check_round(kinds, mode, [0] * len(kinds))
    prepared = prepare_for(node, kinds, shuffle_later=True)  # ready before the exchange
    policy.check_round(kinds, mode, prepared.sizes)
    round_id = secrets.token_hex(16)
    started = iso(node.now())
    proposal = Proposal(
        protocol_version=PROTOCOL_VERSION,
        round_id=round_id,
        initiator=node.lab,
        responder=peer_lab,
        mode=mode,
        kinds=tuple(kinds),
        sizes=tuple(prepared.sizes),
        policy_hash=policy.hash(),
        input_commitment=prepared.commitment,
        prompt_params=prompt_param_set_id() if "prompt" in kinds else "",
        chunk_size=node.config.chunk_size,
        nonce=secrets.token_bytes(NONCE_BYTES),
        suite=policy.suite,
    )
    return policy, prepared, proposal, started


def _open(
    node: Node, stub: pb_grpc.CrossmatchStub, proposal: Proposal, policy: Policy, started: str
) -> tuple[ProposalResponse, PeerIdentity]:
    """OpenRound, and our check of the answer; a round that does not open is recorded."""
    request = wire.proposal_to_pb(proposal)
    response, authenticated = None, False
    try:
        response = stub.OpenRound(request, timeout=OPEN_TIMEOUT)
        answer = wire.response_from_pb(response)  # field sizes, before any field is used
        # TLS checked that the responder's certificate names the peer, but not the CRL,
        # and the certificate TLS saw is out of our reach. So the responder presents
        # one (chain, lab, validity, revocation checked here) and proves it holds its
        # key (signed over our fresh nonce). All before any element leaves. It also
        # carries the CA-certified audit key, which must verify the receipt.
        peer = admit_response(answer, proposal=proposal, identify=node.peer_identity)
        proof.check(request, response, proposal.responder)
        authenticated = True
        # The responder's sizes are a claim: checked against policy before anything is
        # allocated by them (a claim of 2^62 elements is a refusal, not a crash).
        policy.check_round(list(answer.kinds), proposal.mode, list(answer.sizes))
    except grpc.RpcError as e:
        error = error_from_rpc(e, proposal.responder)
        _record_unopened(node, proposal, started, error)
        raise error from None
    except CrossmatchError as e:
        _record_unopened(node, proposal, started, e)
        # The responder accepted: tell it the round is off, unless it is the one we
        # refuse (revoked, impostor, a bad answer), which hears nothing more from us.
        if response is not None and (authenticated or e.rule in OUR_OWN_STATE):
            _withdraw(stub, proposal.round_id, e)
        raise
    return answer, peer


WITHDRAW_TIMEOUT = 5.0
# Refusals for the state of our own CRL: they say nothing against the responder.
OUR_OWN_STATE = frozenset({Rule.CRL_STALE, Rule.CRL_MISSING})


def _withdraw(stub: pb_grpc.CrossmatchStub, round_id: str, error: CrossmatchError) -> None:
    """Abort a round we refused after the responder accepted it (for its sizes, or for our
    own CRL's state), so the responder records it and frees the pair's slot now, not when
    the accepted round expires (``pending_ttl_seconds``, 120 s by default): a retry right
    after, once the cause is mended, is not refused ``single-flight``. Nothing of ours is
    sent, only the round id and the rule; any failure here is the responder's to time out."""
    # The rule, not our message: that names our own files (a CRL's path) to a rival.
    reason = f"the initiator withdrew the round (rule {error.rule or 'unknown'})"
    messages = iter([wire.start(round_id), wire.abort(reason, error.rule or "")])
    try:
        for _ in stub.Exchange(messages, timeout=WITHDRAW_TIMEOUT):
            pass  # whatever it sent before it read our abort; the stream ends after it
    except grpc.RpcError:
        pass


def _proposal_facts(p: Proposal, started: str) -> RoundFacts:
    """What the initiator knows of a round before the responder answers."""
    return RoundFacts(
        round_id=p.round_id,
        role="initiator",
        peer=p.responder,
        mode=p.mode,
        kinds=p.kinds,
        own_sizes=dict(zip(p.kinds, p.sizes, strict=True)),
        policy_hash=p.policy_hash,
        started_at=started,
    )


def _record_unopened(node: Node, proposal: Proposal, started: str, error: CrossmatchError) -> None:
    """A round that never opened (refused, unreachable, a bad answer): aborted at open."""
    RoundRecorder.for_node(node).aborted(_proposal_facts(proposal, started), error, stage="open")


def _exchange(
    node: Node,
    stub: pb_grpc.CrossmatchStub,
    session: ExchangeSession,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> None:
    def requests() -> Iterator[wire.ExchangeMessage]:
        yield wire.start(session.header.round_id)
        while True:
            item = session.outbox.get()
            if item is END:
                return
            watchdog.seen()
            yield item  # type: ignore[misc]

    responses = stub.Exchange(requests(), timeout=node.config.round_timeout)
    silence = node.config.limits.peer_silence_seconds

    def on_silence() -> None:
        session.side.fail(ProtocolError(f"peer silent for {silence:g} s", rule=Rule.TIMEOUT))
        responses.cancel()

    watchdog = Watchdog(silence, on_silence).start()
    finished = threading.Event()
    if cancel is not None:
        threading.Thread(
            target=_cancel_on,
            args=(cancel, finished, session, responses),
            name="round-cancel",
            daemon=True,
        ).start()
    session.start()
    try:
        _receive(session, responses, watchdog, progress)
    except grpc.RpcError as e:
        _abort(session, session.side.error or error_from_rpc(e, session.header.responder))
    except CrossmatchError as e:
        _abort(session, e)
    finally:
        finished.set()
        watchdog.stop()
        session.outbox.put(END)
        responses.cancel()


def _receive(
    session: ExchangeSession,
    responses: Iterator[wire.ExchangeMessage],
    watchdog: Watchdog,
    progress: Progress | None,
) -> None:
    """The responder's messages into the session until the round is over; raises the
    round's error when the stream ends before that."""
    h = session.header
    total = sum(h.responder_sizes) + sum(h.initiator_sizes)
    width = session.engine.point_bytes
    received = 0
    for msg in responses:
        watchdog.seen()
        points = wire.points_in(msg) // width if progress is not None else 0
        if points and progress is not None:
            received += points
            progress(min(received, total), total)
        if session.handle(msg):
            return
        if session.side.error is not None:
            break
    session.side.settle(5.0)
    raise session.side.error or ProtocolError(
        "stream ended early: " + session.side.missing(), rule=Rule.STREAM_ENDED
    )


def _cancel_on(
    cancel: threading.Event,
    finished: threading.Event,
    session: ExchangeSession,
    responses: grpc.Future,
) -> None:
    """Graceful shutdown: fail the round with a named rule, then cut the stream."""
    while not finished.is_set():
        if cancel.wait(0.2):
            if not finished.is_set():
                session.side.fail(
                    RoundAbortedError("this node is shutting down", rule=Rule.SHUTDOWN)
                )
                responses.cancel()
            return


def _abort(session: ExchangeSession, error: CrossmatchError) -> None:
    session.abort(error, session.stage())
    raise RoundAbortedError(
        f"round {session.header.round_id} with {session.header.responder} "
        f"aborted: {error.diagnostics()}",
        rule=error.rule,
    ) from error
