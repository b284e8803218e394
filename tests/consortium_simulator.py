"""An in-memory consortium round: real blinding (protocol.psi.Engine), no network.

Drives a HubSession and n ParticipantSessions by delivering their messages in
order, the way node/consortium does over gRPC. A test may replace one lab's
behaviour (``tamper``) to play a hostile participant.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import private_set_intersection.python as psi_lib
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.consortium import messages as m
from protocol.consortium.hub import HubSession
from protocol.consortium.participant import Outcome, ParticipantSession
from protocol.errors import CrossmatchError
from protocol.policy import Policy
from protocol.psi import Engine
from protocol.rules import Rule

ROUND_ID = "ab" * 16
# tamper(lab, message) -> the message that lab actually sends (or None to send nothing)
Tamper = Callable[[str, m.Message], m.Message | None]


def new_psi_key() -> bytes:
    key: bytes = psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes()
    return key


@dataclass
class SimLab:
    name: str
    elements: list[list[bytes]]  # per kind, in the order sent
    session: ParticipantSession
    engine: Engine
    outcome: Outcome | None = None
    error: CrossmatchError | None = None


@dataclass
class Simulation:
    policy: Policy
    labs: dict[str, SimLab]
    hub: HubSession
    hub_key: Ed25519PrivateKey
    chunk: int = 7
    tamper: Tamper | None = None
    hub_error: CrossmatchError | None = None
    sent: list[tuple[str, str, m.Message]] = field(default_factory=list)  # (from, to, msg)

    @classmethod
    def build(cls, policy: Policy, sets: dict[str, list[list[bytes]]], **kw: object) -> Simulation:
        hub_key = Ed25519PrivateKey.generate()
        assert policy.consortium is not None
        hub = HubSession(policy, hub=policy.consortium.hub, round_id=ROUND_ID, key=hub_key)
        labs = {}
        for name, elements in sets.items():
            sizes = tuple(len(e) for e in elements)
            session = ParticipantSession(
                policy, lab=name, sizes=sizes, key=Ed25519PrivateKey.generate()
            )
            labs[name] = SimLab(name, elements, session, Engine(new_psi_key(), workers=1))
        return cls(policy, labs, hub, hub_key, **kw)  # type: ignore[arg-type]

    def run(self) -> None:
        queue: deque[tuple[str, str, m.Message]] = deque()
        for lab in self.labs.values():
            queue.append((lab.name, "hub", lab.session.join()))
        while queue:
            source, target, message = queue.popleft()
            self.sent.append((source, target, message))
            if target == "hub":
                replies = self._to_hub(source, message)
            else:
                replies = self._to_lab(self.labs[target], message)
            queue.extend(replies)
        for lab in self.labs.values():
            lab.engine.close()

    def _to_hub(self, source: str, message: m.Message) -> list[tuple[str, str, m.Message]]:
        lab_key = self.labs[source].session._key.public_key()
        try:
            if isinstance(message, m.Join):
                sends = self.hub.join(source, message, lab_key)
            elif isinstance(message, m.OwnChunk):
                sends = self.hub.own_chunk(source, message)
            elif isinstance(message, m.Reblind):
                sends = self.hub.reblinded(source, message)
            elif isinstance(message, m.Receipt):
                sends = self.hub.receipt(source, message)
            else:
                sends = self.hub.abort(
                    CrossmatchError(
                        f"{source} left the round", rule=Rule.CONSORTIUM_PARTICIPANT_LEFT
                    ),
                    gone=source,
                )
        except CrossmatchError as e:
            self.hub_error = self.hub_error or e
            sends = self.hub.abort(e)
        return [("hub", s.lab, s.message) for s in sends]

    def _to_lab(self, lab: SimLab, message: m.Message) -> list[tuple[str, str, m.Message]]:
        if lab.error is not None or lab.outcome is not None:
            return []
        try:
            out = self._handle(lab, message)
        except CrossmatchError as e:
            lab.error = e
            return [(lab.name, "hub", m.Abort(e.rule or "internal", e.message))]
        sent = []
        for reply in out:
            if self.tamper is not None:
                reply = self.tamper(lab.name, reply)
            if reply is not None:
                sent.append((lab.name, "hub", reply))
        return sent

    def _handle(self, lab: SimLab, message: m.Message) -> list[m.Message]:
        s = lab.session
        if isinstance(message, m.Roster):
            s.roster(message)
            own = [e for kind in lab.elements for e in kind]
            blinded = lab.engine.blind(own) if own else b""
            step = self.chunk * 33
            return [s.sending(blinded[i : i + step]) for i in range(0, len(blinded), step)]
        if isinstance(message, m.Reblind):
            s.reblind_request(message)
            points = lab.engine.reblind(message.points)
            return [m.Reblind(message.origin, message.hop, message.seq, points)]
        if isinstance(message, m.Results):
            s.results(message)
            return []
        if isinstance(message, m.Receipt):
            return [s.hub_receipt(message, self.hub_key.public_key())]
        if isinstance(message, m.Commit):
            lab.outcome = s.commit()
            return []
        if isinstance(message, m.Abort):
            lab.error = s.aborted(message)
            return []
        raise AssertionError(f"unexpected {message!r}")
