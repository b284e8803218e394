"""One side of an accepted round, over a stream of ExchangeMessages: the adapter.

Shared by the responder (service.py) and the initiator (initiator.py). The session owns
the PSI engine, the :class:`~protocol.round.RoundSide` (the element exchange) and the
:class:`~protocol.session.ReceiptSession` (receipts, then commit or abort), both pure;
it performs what they decide: the transport feeds received messages to
:meth:`ExchangeSession.handle` and sends whatever appears on the outbox queue.

A round is committed (matches stored, "round_completed" logged with both receipts)
only after the peer's receipt verifies; any failure before that logs "round_aborted"
with the stage and reason, and stores no match.
"""

from __future__ import annotations

import logging
import queue
import random
import secrets
import threading
from typing import cast

from node.net import wire
from node.net.early_store import EarlyStore
from node.net.epoch_round import RoundEpoch
from node.net.prepare import PreparedSide
from node.net.recorder import Completion, RoundFacts
from node.net.round_deps import SessionDeps
from node.ops.suites import ensure_suite
from node.pki import PeerIdentity
from node.state import disclosures
from protocol.audit.merkle import EMPTY_ROOT
from protocol.disclosure import SeededRandom
from protocol.errors import CrossmatchError, ProtocolError, VerificationError
from protocol.receipts import receipt_bytes
from protocol.round import RoundOutcome, RoundSide
from protocol.rules import Rule
from protocol.session import (
    AbortRound,
    Action,
    EndStream,
    ReceiptSession,
    SendCommit,
    SendReceipt,
    StoreAndCommit,
    our_receipt,
)
from protocol.transcript import RoundHeader
from protocol.verified import ProofExchange, proven_pairs

log = logging.getLogger("crossmatch.exchange")

__all__ = ["END", "ExchangeSession"]

END = object()  # sentinel on the outbox: close the stream


class ExchangeSession:
    def __init__(
        self,
        deps: SessionDeps,
        header: RoundHeader,
        role: str,
        prepared: PreparedSide,
        peer: PeerIdentity,
        started_at: str,
    ):
        self.deps = deps
        self.header = header
        self.role = role
        self.prepared = prepared.ready()  # the shuffle may still be running on a thread
        self.peer = peer
        self.facts = RoundFacts.of(header, role, started_at)
        self.outbox: queue.Queue[object] = queue.Queue()
        settings = deps.settings
        self.epoch = RoundEpoch.open(
            header, peer.lab, node_dir=deps.node_dir, days=settings.epoch_days, now=deps.now
        )
        prepared.fill_dummies(self.epoch.dummy_seed)
        suite = ensure_suite(header.suite)  # loaded and self-tested once per process
        self.engine = suite.engine(self.epoch.psi_key, workers=settings.workers)
        # The count shuffle is replayable from this seed, kept sealed for a dispute.
        self.shuffle_seed = secrets.token_bytes(32)
        self.side = self._round_side()
        self.receipts = ReceiptSession(
            role, header.round_id, peer.lab, peer.audit_public_key, proofs=self.side.verified
        )
        self.outcome: RoundOutcome | None = None
        self.own_receipt: dict | None = None
        self.committed = False
        self.recorded = threading.Event()
        self._record_lock = threading.Lock()
        self._receipt_lock = threading.Lock()  # the finisher and the reader both act
        self._finisher: threading.Thread | None = None
        self._matches: list[tuple[str, bytes]] | None = None
        self._matches_lock = threading.Lock()
        self._early = EarlyStore(deps.recorder)  # the initiator's rows, ahead of Commit
        # Verified matches: the proof exchange that gates the receipts (protocol/verified.py).
        self.proofs = (
            ProofExchange(
                self.engine, role, self.side.peer_role, random.SystemRandom(), self.epoch.known
            )
            if self.side.verified
            else None
        )

    def _round_side(self) -> RoundSide:
        settings, epoch, policy = self.deps.settings, self.epoch, self.deps.policy
        return RoundSide(
            self.header,
            self.role,
            self.prepared.own,
            self.engine,
            self._send_chunk,
            chunk_size=settings.chunk_size,
            peer_window=settings.window_chunks,
            min_chunk=settings.min_chunk_elements,
            rng=SeededRandom(self.shuffle_seed),
            on_error=self._tell_peer,
            cache=epoch.cache,
            keep_cache=epoch.key is not None,
            churn_check=lambda new: policy.check_churn(epoch.churn, new),
        )

    @property
    def peer_receipt(self) -> dict | None:
        return self.receipts.peer_receipt

    def work_summary(self) -> str:
        w = self.side.work
        return (
            f"blinded {w.blinded} own elements ({w.blinded_cached} from the epoch cache), "
            f"re-blinded {w.reblinded} peer elements ({w.reblinded_cached} from the cache)"
        )

    # -- sending -------------------------------------------------------------

    def _send_chunk(self, kind: str, seq: int, payload: bytes) -> None:
        self.outbox.put(wire.outgoing(kind, seq, payload))

    def _tell_peer(self, error: CrossmatchError) -> None:
        reason = (
            error.message
            if isinstance(error, ProtocolError | VerificationError)
            else ("round aborted by peer")
        )
        self.outbox.put(wire.abort(reason, error.rule or ""))
        self.outbox.put(END)

    def start(self) -> None:
        self.side.start()
        self._finisher = threading.Thread(target=self._finish, name="finish", daemon=True)
        self._finisher.start()

    def _finish(self) -> None:
        """As soon as both halves are in: match, (responder) send our receipt, then get
        ahead on the list of matches to store, the next cache and the sealed record, so
        they overlap the receipt exchange. (Deferring the responder's cache and record
        until after Commit let the initiator finish while the responder still held the
        pair's single-flight slot: a round started right after was refused.)"""
        try:
            outcome = self.side.result(self.deps.settings.round_timeout)
            if self.proofs is not None:
                positions = self.proofs.our_request(
                    self.side.proof_material(), self.side.peer_public_key, outcome.transcript_hash
                )
                self.outbox.put(wire.proof_request(positions))
            if self.role == "responder":
                self.outcome = outcome
                # Our receipt only once the initiator's proof held and we answered its
                # request: the initiator then has our proof before our receipt.
                if self.proofs is not None and not self._proofs_settle():
                    return
                with self._receipt_lock:
                    self._perform(self.receipts.matched())
        except CrossmatchError as e:
            if self.role == "responder":  # the initiator hears of its errors elsewhere
                self.side.fail(e)
            return
        try:
            self.matches()
            self.epoch.save_cache(self.side.next_cache)
            self._seal()
        except CrossmatchError:
            # The round failed meanwhile (the peer's abort, a certificate revoked during
            # the round): its error is reported where it arose; an aborted round keeps no
            # cache and no record. Not caught, it would end this thread with a traceback.
            return

    def _seal(self) -> None:
        """Keep what an auditor needs to check our streams (protocol/disclosure.py)."""
        record = self.prepared.disclosure(
            self.header,
            self.role,
            psi_key=self.epoch.psi_key,
            dummy_seed=self.epoch.dummy_seed,
            shuffle_seed=self.shuffle_seed,
            parts=self.side.transcript.parts(),
        )
        try:
            disclosures.seal(self.deps.node_dir, record)
        except OSError as e:
            log.error(
                "round %s: could not seal its record for disputes: %s", self.header.round_id, e
            )

    # -- performing what the receipt session decides ----------------------------

    def _perform(self, actions: list[Action]) -> bool:
        """Do each action in order; True once the stream is over for this side."""
        for action in actions:
            if isinstance(action, AbortRound):
                raise action.error
            if isinstance(action, SendReceipt):
                self._send_own_receipt()
                if self.role == "initiator":  # all it will store is known: write it now
                    self._early.stage(self.facts, self._completion(), self.matches())
            elif isinstance(action, StoreAndCommit):
                self.commit()
            elif isinstance(action, SendCommit):
                self.outbox.put(wire.commit())
            elif isinstance(action, EndStream):
                self.outbox.put(END)
                return True
        return False

    def _send_own_receipt(self) -> None:
        assert self.outcome is not None
        deps = self.deps
        self.own_receipt = our_receipt(
            self.header,
            self.outcome,
            signer=deps.lab,
            log_id=deps.log_id,
            log_head=deps.audit.head() if deps.audit else (0, EMPTY_ROOT),
            key=deps.audit_key,
        )
        self.outbox.put(wire.receipt(receipt_bytes(self.own_receipt)))

    def _our_outcome(self) -> RoundOutcome:
        self.outcome = self.side.result(self.deps.settings.round_timeout)
        return self.outcome

    # -- receiving -----------------------------------------------------------

    def handle(self, msg: wire.ExchangeMessage) -> bool:
        """Process one message from the peer; True when the round is over for this side."""
        got = wire.decode_exchange(msg)  # field sizes first
        body = got.body
        if body == "own_blinded":
            self.side.on_own_blinded(got.data)
        elif body == "reblind_commitment":
            self.side.on_reblind_commitment(got.data)
        elif body == "peer_reblinded":
            self.side.on_peer_reblinded(got.data)
        elif body == "public_key":
            self.side.on_public_key(got.data)
        elif body == "proof_request":
            self._on_proof_request(got.data)
        elif body == "match_proof":
            self._on_match_proof(got.data)
        elif body == "receipt":
            self.deps.still_trusted(self.peer)  # revoked since the round began?
            with self._receipt_lock:
                return self._perform(
                    self.receipts.on_receipt(
                        got.data, proofs_settled=self._proofs_settled(), ours=self._our_outcome
                    )
                )
        elif body == "commit":
            with self._receipt_lock:
                return self._perform(self.receipts.on_commit())
        elif body == "abort":
            reason, rule = cast(tuple[str, str], got.value)
            return self._perform(self.receipts.on_abort(reason, rule))
        else:
            raise ProtocolError(f"unexpected message {body!r}", rule=Rule.MESSAGE_ORDER)
        return False

    # -- verified matches ------------------------------------------------------

    def _proofs_settled(self) -> bool:
        return self.proofs is None or self.proofs.settled

    def _proofs_settle(self) -> bool:
        """Wait (finisher thread) until both proofs are done; False if the round failed."""
        assert self.proofs is not None
        while not self.proofs.wait(0.2):
            if self.side.error is not None:
                return False
        return self.side.error is None

    def _on_proof_request(self, positions: bytes) -> None:
        if self.proofs is None:
            raise ProtocolError(
                "proof request in a round without verified matches", rule=Rule.MESSAGE_ORDER
            )
        # The peer matched after all of our release: our own matching is ready too.
        outcome = self.side.result(self.deps.settings.round_timeout)
        proof = self.proofs.answer_peer(
            self.side.proof_material(), positions, outcome.transcript_hash
        )
        self.outbox.put(wire.match_proof(proof))

    def _on_match_proof(self, proof: bytes) -> None:
        if self.proofs is None:
            raise ProtocolError(
                "match proof in a round without verified matches", rule=Rule.MESSAGE_ORDER
            )
        outcome = self.side.result(self.deps.settings.round_timeout)
        self.proofs.check_peer(
            self.side.proof_material(), self.side.peer_public_key, proof, outcome.transcript_hash
        )

    # -- recording -------------------------------------------------------------

    def matches(self) -> list[tuple[str, bytes]]:
        """Our elements the peer also holds (computed once); never a dummy (one can only
        match by a 2^-256 accident, and it is no signal of ours)."""
        with self._matches_lock:
            if self._matches is None:
                self._matches = self.prepared.matched(self.side.result(0).matched_positions)
            return self._matches

    def _completion(self) -> Completion:
        h, outcome = self.header, self.outcome
        assert outcome is not None
        proofs = {}
        if self.proofs is not None:
            proofs = {
                "verified_matches": self.proofs.verified_positions,
                "proven_matches": self.proofs.proven_now,
            }
        return Completion(
            intersection_sizes=outcome.intersection_sizes,
            transcript_hash=outcome.transcript_hash,
            own_commitment=self.prepared.commitment,
            peer_commitment=(
                h.responder_commitment if self.role == "initiator" else h.initiator_commitment
            ),
            own_receipt=self.own_receipt,
            peer_receipt=self.peer_receipt,
            extra={"suite": h.suite, **proofs, "warninglists": self.prepared.warninglists},
        )

    def commit(self) -> None:
        deps = self.deps
        deps.still_trusted(self.peer)
        with self._record_lock:
            if self.recorded.is_set():
                return
            deps.recorder.completed(
                self.facts, self._completion(), self.matches(), self._early.take()
            )
            self.committed = True
            if self.proofs is not None:
                self.epoch.save_verified(
                    self.side.peer_public_key, lambda: proven_pairs(self.side.proof_material())
                )
            deps.remember_peer_key(self.peer.lab, self.peer.audit_public_key)
            self.recorded.set()
        if deps.audit is not None:
            try:  # committed already: a checkpoint that cannot be written must not undo that
                deps.audit.checkpoint(now=deps.now())
            except (CrossmatchError, OSError) as e:
                log.warning("round %s: checkpoint not written: %s", self.header.round_id, e)

    def abort(self, error: CrossmatchError, stage: str) -> None:
        """Log and store the round as aborted, once; nothing else is stored."""
        self._early.drop()  # before the abort is stored: the staged rows hold the lock
        with self._record_lock:
            if self.recorded.is_set():
                return
            self.side.fail(error)
            try:
                self.deps.recorder.aborted(
                    self.facts,
                    error,
                    stage=stage,
                    transcript_hash=self.outcome.transcript_hash if self.outcome else b"",
                    extra={"suite": self.header.suite},
                )
            except (CrossmatchError, OSError) as e:  # a full disk: nothing can be recorded
                log.error("round %s: its abort could not be logged: %s", self.header.round_id, e)
            self.recorded.set()

    def stage(self) -> str:
        return self.receipts.stage

    def close(self) -> None:
        self._early.drop()
        if not self.committed:  # stop any worker still waiting on the peer
            self.side.fail(ProtocolError("round closed", rule=Rule.CLOSED))
        self.side.join(5)
        self.epoch.record_churn(self.side.peer_new)
        self.engine.close()
        log.info(
            "round %s (%s) with %s: %s",
            self.header.round_id,
            self.role,
            self.peer.lab,
            self.work_summary(),
        )
        if self._finisher is not None:
            self._finisher.join()
        self.side.release()
