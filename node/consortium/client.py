"""`crossmatch consortium-round`: this lab's side of a consortium round, through the hub.

One Join stream to the hub over mutual TLS. Our elements go out in a fresh random
order, blinded by a fresh round key (never reused, never stored); we re-blind the
runs of other labs' sets the hub routes to us, as the ring says; we take one
value per own element back. Only after the hub's Commit is anything stored: the
round and our elements held by >= k labs (node/state/consortium_store.py), and
one ``consortium_completed`` audit record. Anything else logs
``consortium_aborted`` with the stage and rule, and stores nothing.
"""

from __future__ import annotations

import functools
import queue
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from node.consortium import records, wire
from node.net.channel import TlsIdentity, open_channel
from node.net.grpc_status import error_from_rpc
from node.runtime import Node, iso
from node.state.cases_store import round_fingerprints
from node.state.consortium_store import ConsortiumMatch, ConsortiumRound, ConsortiumStore
from node.state.epochs import new_psi_key
from protocol.consortium import messages as m
from protocol.consortium.participant import Outcome, ParticipantSession
from protocol.consortium.receipts import parse_receipt
from protocol.errors import CrossmatchError, PolicyError, ProtocolError, RoundAbortedError
from protocol.psi import ELEMENT_BYTES, Engine, PackedElements, random_permutation, rows
from protocol.rules import Rule
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

END = object()


@dataclass
class OwnSet:
    kinds: tuple[str, ...]
    elements: PackedElements  # kind sections back to back, each in a random order
    sizes: tuple[int, ...]


def prepare_own(node: Node, kinds: tuple[str, ...]) -> OwnSet:
    """Our fingerprints of the policy's kinds, each section in a fresh random order (so the
    hub cannot link positions across rounds, nor learn import order)."""
    rng = random.SystemRandom()
    parts, sizes = [], []
    for kind in kinds:
        packed = b"".join(round_fingerprints(node.store, kind))  # warninglists applied
        section = rows(packed, ELEMENT_BYTES)
        parts.append(section[random_permutation(len(section), rng)].tobytes())
        sizes.append(len(section))
    return OwnSet(kinds, PackedElements(b"".join(parts)), tuple(sizes))


@dataclass
class ConsortiumSummary:
    round_id: str
    participants: list[str]
    k: int
    sizes: dict[str, int]
    result_counts: dict[str, int]


def run_consortium_round(node: Node) -> ConsortiumSummary:
    """Take part in the hub's next round; the summary, or RoundAbortedError (logged)."""
    policy = node.require_policy()
    rules = policy.consortium
    if rules is None:
        raise PolicyError(
            "the signed policy has no [consortium] section", rule=Rule.CONSORTIUM_NOT_CONFIGURED
        )
    node.config.peer(rules.hub)  # the hub's address: `crossmatch peer add --lab HUB`
    own = prepare_own(node, rules.kinds)
    session = ParticipantSession(policy, lab=node.lab, sizes=own.sizes, key=node.audit_key)
    started = iso(node.now())
    client = _Client(node, session, own)
    try:
        outcome = client.run()
    except CrossmatchError as e:
        stage = session.state
        node.record(
            records.aborted(
                e,
                round_id=session.header.round_id if session.header else "",
                role="participant",
                hub=rules.hub,
                stage=stage,
            )
        )
        raise RoundAbortedError(
            f"consortium round aborted at stage {stage}: {e.message}", rule=e.rule
        ) from e
    _record(node, own, outcome, started)
    return ConsortiumSummary(
        outcome.header.round_id,
        list(outcome.header.participants),
        outcome.header.k,
        dict(zip(own.kinds, own.sizes, strict=True)),
        outcome.result_counts,
    )


class _Client:
    def __init__(self, node: Node, session: ParticipantSession, own: OwnSet):
        self.node, self.session, self.own = node, session, own
        self.outbox: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()  # the session is used by the reader and the workers
        self.error: CrossmatchError | None = None
        self.engine: Engine | None = None
        self.hub_key: Any = None

    def run(self) -> Outcome:
        rules = self.session.rules
        assert rules is not None
        self.outbox.put(wire.join_to_pb(self.session.join(), rules.kinds))
        hub = self.node.config.peer(rules.hub)
        with open_channel(TlsIdentity.of(self.node), hub) as channel:
            stub = pb_grpc.ConsortiumStub(channel)
            responses = stub.Join(self._requests(), timeout=self.node.config.round_timeout)
            try:
                for msg in responses:
                    outcome = self._handle(wire.from_pb(msg))
                    if outcome is not None:
                        return outcome
                    if self.error is not None:
                        raise self.error
                raise self.error or ProtocolError(
                    "the hub closed the stream", rule=Rule.STREAM_ENDED
                )
            except grpc.RpcError as e:
                raise self.error or error_from_rpc(e, rules.hub) from None
            except CrossmatchError as e:
                if not isinstance(e, RoundAbortedError):
                    self.outbox.put(wire.to_pb(m.Abort(e.rule or Rule.INTERNAL, e.message)))
                raise
            finally:
                self.outbox.put(END)
                if self.engine is not None:
                    self.engine.close()
                responses.cancel()

    def _requests(self) -> Iterator[Any]:
        while True:
            item = self.outbox.get()
            if item is END:
                return
            yield item

    def _handle(self, message: m.Message) -> Outcome | None:
        s = self.session
        if isinstance(message, m.Roster):
            hub = self.node.peer_identity(message.hub_certificate_pem)
            if hub.lab != s.rules.hub:  # type: ignore[union-attr]
                raise PolicyError(
                    f"the roster came with {hub.lab!r}'s certificate",
                    rule=Rule.CONSORTIUM_HUB_IDENTITY,
                )
            self.hub_key = hub.audit_public_key
            with self._lock:
                s.roster(message)
            self.node.remember_peer_key(hub.lab, hub.audit_public_key)
            self.engine = Engine(new_psi_key(), workers=self.node.config.workers)
            threading.Thread(target=self._send_own, name="consortium-blind", daemon=True).start()
        elif isinstance(message, m.Reblind):
            with self._lock:
                s.reblind_request(message)
            assert self.engine is not None
            future = self.engine.submit_reblind(message.points)
            future.add_done_callback(functools.partial(self._answer, message))
        elif isinstance(message, m.Results):
            with self._lock:
                s.results(message)
        elif isinstance(message, m.Receipt):
            with self._lock:
                self.outbox.put(wire.to_pb(s.hub_receipt(message, self.hub_key)))
        elif isinstance(message, m.Commit):
            with self._lock:
                return s.commit()
        elif isinstance(message, m.Abort):
            raise s.aborted(message)
        else:
            raise ProtocolError("unexpected message from the hub", rule=Rule.MESSAGE_ORDER)
        return None

    def _send_own(self) -> None:
        """Blind our elements chunk by chunk; send the chunks in order as they are ready."""
        assert self.engine is not None
        chunk = min(self.node.config.chunk_size, m.MAX_CHUNK_POINTS)
        elements = self.own.elements
        futures = [
            self.engine.submit_blind(elements[i : i + chunk])
            for i in range(0, len(elements), chunk)
        ]
        try:
            for future in futures:
                points = future.result()
                with self._lock:
                    self.outbox.put(wire.to_pb(self.session.sending(points)))
        except CrossmatchError as e:
            self._fail_async(e)
        except Exception:  # noqa: BLE001 - the engine was closed under us: the round ended
            pass

    def _fail_async(self, error: CrossmatchError) -> None:
        """A worker's failure: tell the hub (which aborts the round for all) and remember it."""
        if self.error is None:
            self.error = error
            self.outbox.put(wire.to_pb(m.Abort(error.rule or Rule.INTERNAL, error.message)))

    def _answer(self, request: m.Reblind, future: Any) -> None:
        try:
            points = future.result()
        except CrossmatchError as e:  # a point that does not decode
            self._fail_async(e)
            return
        except Exception:  # noqa: BLE001 - cancelled at the end of the round
            return
        self.outbox.put(wire.to_pb(m.Reblind(request.origin, request.hop, request.seq, points)))


def _record(node: Node, own: OwnSet, outcome: Outcome, started: str) -> None:
    """Store the committed round and log it: counts and hashes, never an identifier."""
    h = outcome.header
    values = np.frombuffer(outcome.values, np.uint8)
    matches, start = [], 0
    for kind, size in zip(own.kinds, own.sizes, strict=True):
        for i in np.flatnonzero(values[start : start + size]).tolist():
            labs = int(values[start + i]) if h.reveal_count else None
            matches.append(ConsortiumMatch(h.round_id, kind, own.elements[start + i], labs))
        start += size
    node.record(
        records.completed(
            h,
            role="participant",
            result_counts=outcome.result_counts,
            own_receipt=parse_receipt(outcome.own_receipt),
            hub_receipt=parse_receipt(outcome.hub_receipt),
        )
    )
    with ConsortiumStore(node.paths.db) as store:
        store.save_round(
            ConsortiumRound(
                h.round_id,
                h.hub,
                list(h.participants),
                h.k,
                h.reveal_count,
                list(h.kinds),
                h.all_sizes(),
                outcome.result_counts,
                h.policy_hash.hex(),
                h.transcript_hash().hex(),
                started,
                iso(node.now()),
            ),
            matches,
        )
    if node.audit is not None:
        node.audit.checkpoint(now=node.now())
