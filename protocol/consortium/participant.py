"""A participant's state machine: check the roster, answer re-blindings, take the results.

Pure: the caller blinds and re-blinds (protocol.psi.Engine) and moves messages;
this class decides what is acceptable. It refuses a roster that is not exactly
the signed policy's round (participants and ring order, hub, k, kinds, caps, our
own sizes), re-blinding requests that do not follow the ring or exceed what the
origin announced (a hub cannot use us as an oracle beyond the round), and
results that are not one well-formed value per own position. Results count only
after the hub's Commit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.consortium import counting
from protocol.consortium import messages as m
from protocol.consortium.receipts import build_receipt, parse_receipt, sign_receipt, verify_receipt
from protocol.consortium.transcript import ConsortiumHeader, LabDigest
from protocol.errors import PolicyError, ProtocolError, RoundAbortedError
from protocol.policy import Policy
from protocol.psi import count_points
from protocol.rules import Rule, parse_rule


@dataclass(frozen=True)
class Outcome:
    header: ConsortiumHeader
    values: bytes  # one per own position, in the order we sent
    result_counts: dict[str, int]
    own_receipt: bytes
    hub_receipt: bytes


class ParticipantSession:
    def __init__(self, policy: Policy, *, lab: str, sizes: tuple[int, ...], key: Ed25519PrivateKey):
        if policy.consortium is None:
            raise PolicyError(
                "the signed policy has no [consortium] section", rule=Rule.CONSORTIUM_NOT_CONFIGURED
            )
        self.policy, self.rules = policy, policy.consortium
        self.index = self.rules.index_of(lab)
        self.rules.check_sizes(lab, sizes)
        self.lab, self.sizes, self._key = lab, sizes, key
        self.state = "joining"
        self.header: ConsortiumHeader | None = None
        self._digest: LabDigest | None = None
        self._sent = 0
        self._chunks: list[int] = []
        self._asked: dict[tuple[int, int], int] = {}  # (origin, hop) -> points re-blinded
        self._seen: set[tuple[int, int, int]] = set()
        self._values: list[bytes] = []
        self._receipts: tuple[bytes, bytes] | None = None

    def join(self) -> m.Join:
        return m.Join(self.lab, self.policy.hash(), self.sizes)

    def roster(self, roster: m.Roster) -> ConsortiumHeader:
        self._expect("joining")
        h, r = roster.header, self.rules
        wanted = (r.hub, r.participants, self.policy.hash(), r.k, r.reveal_count, r.kinds)
        if (h.hub, h.participants, h.policy_hash, h.k, h.reveal_count, h.kinds) != wanted:
            raise PolicyError(
                "the hub announced a round that is not the signed policy's",
                rule=Rule.CONSORTIUM_ROSTER,
            )
        if h.sizes[self.index] != self.sizes:
            raise PolicyError(
                "the hub announced other sizes for us than we sent", rule=Rule.CONSORTIUM_ROSTER
            )
        for lab, sizes in zip(h.participants, h.sizes, strict=True):
            r.check_sizes(lab, sizes)
        self.header, self._digest = h, LabDigest(h, self.lab)
        self.state = "running"
        return h

    def sending(self, points: bytes) -> m.OwnChunk:
        """Our next chunk of H(x)^k, in order."""
        header = self._expect("running")
        count = count_points(points)
        if self._sent + count > header.total(self.index):
            raise ProtocolError("sending more elements than announced", rule=Rule.INTERNAL)
        self._sent += count
        self._chunks.append(count)
        assert self._digest is not None
        self._digest.own(points)
        return m.OwnChunk(len(self._chunks) - 1, points)

    def reblind_request(self, request: m.Reblind) -> None:
        """Raise unless the hub may ask us to re-blind this run of points."""
        header = self._expect("running")
        n, origin, hop = header.n, request.origin, request.hop
        if not (0 <= origin < n and 1 <= hop < n and (origin + hop) % n == self.index):
            raise ProtocolError(
                f"re-blinding of set {origin} at hop {hop} is not ours",
                rule=Rule.CONSORTIUM_REBLIND,
            )
        slot = (origin, hop, request.seq)
        done = self._asked.get((origin, hop), 0) + count_points(request.points)
        if slot in self._seen or done > header.total(origin):
            raise ProtocolError(
                f"the hub asked to re-blind more of set {origin} than it holds",
                rule=Rule.CONSORTIUM_REBLIND,
            )
        self._seen.add(slot)
        self._asked[(origin, hop)] = done

    def results(self, results: m.Results) -> None:
        header = self._expect("running")
        seq = len(self._values)
        if (
            results.seq != seq
            or seq >= len(self._chunks)
            or self._sent != header.total(self.index)
            or len(results.values) != self._chunks[seq]
        ):
            raise ProtocolError(
                "results out of order or of the wrong length", rule=Rule.CONSORTIUM_RESULTS
            )
        values = np.frombuffer(results.values, np.uint8)
        ok = (
            (values <= 1)
            if not header.reveal_count
            else ((values == 0) | ((values >= header.k) & (values <= header.n)))
        )
        if not bool(np.all(ok)):
            raise ProtocolError(
                "results hold values the policy does not allow", rule=Rule.CONSORTIUM_RESULTS
            )
        assert self._digest is not None
        self._digest.results(results.values)
        self._values.append(results.values)

    def hub_receipt(self, receipt: m.Receipt, hub_key: Ed25519PublicKey) -> m.Receipt:
        """Verify the hub's receipt over everything we sent and got; answer with ours."""
        header = self._expect("running")
        if sum(len(v) for v in self._values) != header.total(self.index):
            raise ProtocolError("receipt before all results", rule=Rule.MESSAGE_ORDER)
        values = b"".join(self._values)
        assert self._digest is not None
        own, results = self._digest.hexdigests()
        expected = build_receipt(
            round_id=header.round_id,
            hub=header.hub,
            lab=self.lab,
            signer=header.hub,
            transcript_hash=header.transcript_hash(),
            own_stream=own,
            results=results,
            result_counts=counting.kind_counts(values, self.sizes, header.kinds),
        )
        verify_receipt(parse_receipt(receipt.signed), hub_key, expected=expected)
        mine = sign_receipt({**expected, "signer": self.lab}, self._key)
        self._receipts = (mine, receipt.signed)
        self.state = "receipted"
        return m.Receipt(mine)

    def commit(self) -> Outcome:
        header = self._expect("receipted")
        assert self._receipts is not None
        values = b"".join(self._values)
        self.state = "done"
        return Outcome(
            header, values, counting.kind_counts(values, self.sizes, header.kinds), *self._receipts
        )

    def aborted(self, abort: m.Abort) -> RoundAbortedError:
        self.state = "aborted"
        return RoundAbortedError(
            f"the hub aborted the consortium round: {abort.reason}",
            rule=parse_rule(abort.rule) or Rule.INTERNAL,
        )

    def _expect(self, state: str) -> ConsortiumHeader:
        if self.state != state:
            raise ProtocolError(
                f"message out of order: the round is {self.state}", rule=Rule.MESSAGE_ORDER
            )
        return self.header  # type: ignore[return-value]
