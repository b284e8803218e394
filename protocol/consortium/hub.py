"""The hub's state machine: joins, routing of sets around the ring, counting, receipts.

Messages in, messages out (:class:`Send`); no sockets, no clock, no randomness
(the round id is a parameter). The hub never holds an identifier: it routes
blinded points, and only sees each set once every participant's key is on it.

Set i (lab i's elements) travels the ring i -> i+1 -> ... -> i-1 (indices mod n):
hop h of set i is re-blinded by lab (i + h) mod n. Chunks are forwarded as soon
as they arrive, so all labs work at once. After hop n-1 the chunk is final.
Once every final chunk is in, the hub counts each value's multiplicity per kind
(:mod:`protocol.consortium.counting`) and returns to each origin, position by
position, only whether the count reaches k (or the count, if the policy says so).
Labs store their results only after the hub's Commit, which follows every
participant's receipt: anyone leaving before that aborts the round for all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.consortium import counting
from protocol.consortium import messages as m
from protocol.consortium.receipts import build_receipt, parse_receipt, sign_receipt, verify_receipt
from protocol.consortium.transcript import ConsortiumHeader, LabDigest
from protocol.errors import CrossmatchError, PolicyError, ProtocolError
from protocol.policy import Policy
from protocol.psi import POINT_BYTES, count_points, rows
from protocol.rules import Rule


class HubSession:
    def __init__(self, policy: Policy, *, hub: str, round_id: str, key: Ed25519PrivateKey):
        if policy.consortium is None:
            raise PolicyError(
                "the signed policy has no [consortium] section", rule=Rule.CONSORTIUM_NOT_CONFIGURED
            )
        if policy.consortium.hub != hub:
            raise PolicyError(
                f"the policy names hub {policy.consortium.hub!r}, this is {hub!r}",
                rule=Rule.CONSORTIUM_HUB_IDENTITY,
            )
        self.policy, self.rules = policy, policy.consortium
        self.hub, self.round_id, self._key = hub, round_id, key
        self.state = "joining"
        self.header: ConsortiumHeader | None = None
        self._sizes: dict[str, tuple[int, ...]] = {}
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._chunks: list[list[int]] = []  # per origin: the point count of each own chunk
        self._pending: dict[tuple[int, int, int], int] = {}  # (origin, hop, seq) -> points
        self._final: list[dict[int, bytes]] = []
        self._digests: list[LabDigest] = []
        self._expected: dict[str, dict[str, Any]] = {}
        self._receipts: dict[str, bytes] = {}
        self.hub_receipts: dict[str, bytes] = {}
        self.result_counts: dict[str, dict[str, int]] = {}

    # -- joining -----------------------------------------------------------------------------

    def join(self, lab: str, join: m.Join, audit_key: Ed25519PublicKey) -> list[m.Send]:
        """A certified lab (``lab`` from its certificate) asks to take part."""
        self._expect("joining")
        if join.lab != lab:
            raise PolicyError(
                f"claims to be {join.lab!r} but its certificate is for {lab!r}",
                rule=Rule.LAB_MISMATCH,
            )
        self.rules.index_of(lab)
        if lab in self._sizes:
            raise PolicyError(f"{lab} joined twice", rule=Rule.CONSORTIUM_JOINED_TWICE)
        if join.policy_hash != self.policy.hash():
            raise PolicyError(f"{lab} runs another policy than the hub", rule=Rule.POLICY_MISMATCH)
        self.rules.check_sizes(lab, join.sizes)
        self._sizes[lab], self._keys[lab] = join.sizes, audit_key
        if len(self._sizes) < len(self.rules.participants):
            return []
        return self._start()

    def _start(self) -> list[m.Send]:
        labs = self.rules.participants
        self.header = ConsortiumHeader(
            round_id=self.round_id,
            hub=self.hub,
            participants=labs,
            policy_hash=self.policy.hash(),
            k=self.rules.k,
            reveal_count=self.rules.reveal_count,
            kinds=self.rules.kinds,
            sizes=tuple(self._sizes[lab] for lab in labs),
        )
        self._chunks = [[] for _ in labs]
        self._final = [{} for _ in labs]
        self._digests = [LabDigest(self.header, lab) for lab in labs]
        self.state = "running"
        rosters = [m.Send(lab, m.Roster(self.header)) for lab in labs]
        return rosters + self._finish_if_complete()  # at once when every set is empty

    # -- routing -----------------------------------------------------------------------------

    def own_chunk(self, lab: str, chunk: m.OwnChunk) -> list[m.Send]:
        header = self._expect("running")
        origin = header.index_of(lab)
        count = _checked_count(chunk.points, lab)
        sent = self._chunks[origin]
        if chunk.seq != len(sent):
            raise ProtocolError(
                f"{lab} sent chunk {chunk.seq}, expected {len(sent)}", rule=Rule.MESSAGE_ORDER
            )
        if sum(sent) + count > header.total(origin):
            raise ProtocolError(
                f"{lab} sent more elements than the {header.total(origin)} it announced",
                rule=Rule.CONSORTIUM_SIZE,
            )
        sent.append(count)
        self._digests[origin].own(chunk.points)
        return self._forward(origin, 1, chunk.seq, chunk.points)

    def _forward(self, origin: int, hop: int, seq: int, points: bytes) -> list[m.Send]:
        header = self._header()
        if hop == header.n:
            self._final[origin][seq] = points
            return self._finish_if_complete()
        self._pending[(origin, hop, seq)] = count_points(points)
        target = header.participants[(origin + hop) % header.n]
        return [m.Send(target, m.Reblind(origin, hop, seq, points))]

    def reblinded(self, lab: str, answer: m.Reblind) -> list[m.Send]:
        header = self._expect("running")
        slot = (answer.origin, answer.hop, answer.seq)
        expected = self._pending.get(slot)
        if expected is None or header.participants[(answer.origin + answer.hop) % header.n] != lab:
            raise ProtocolError(
                f"{lab} answered a re-blinding it was not asked for", rule=Rule.CONSORTIUM_REBLIND
            )
        if _checked_count(answer.points, lab) != expected:
            raise ProtocolError(
                f"{lab} returned {count_points(answer.points)} re-blinded elements for {expected}",
                rule=Rule.CONSORTIUM_REBLIND,
            )
        del self._pending[slot]
        return self._forward(answer.origin, answer.hop + 1, answer.seq, answer.points)

    # -- counting ----------------------------------------------------------------------------

    def _finish_if_complete(self) -> list[m.Send]:
        header = self._header()
        done = all(
            sum(c) == header.total(i) and len(self._final[i]) == len(c)
            for i, c in enumerate(self._chunks)
        )
        if not done or self._pending:
            return []
        finals = [b"".join(f[s] for s in range(len(f))) for f in self._final]
        self._final = []
        values = self._count(finals)
        self.state = "receipts"
        out: list[m.Send] = []
        for i, lab in enumerate(header.participants):
            out += self._results_for(i, lab, values[i])
        return out

    def _count(self, finals: list[bytes]) -> list[np.ndarray]:
        header = self._header()
        per_origin: list[list[np.ndarray]] = [[] for _ in finals]
        starts = [0] * len(finals)
        for j, _kind in enumerate(header.kinds):
            section = []
            for i, final in enumerate(finals):
                size = header.sizes[i][j]
                section.append(rows(final, POINT_BYTES)[starts[i] : starts[i] + size].tobytes())
                starts[i] += size
            counted = counting.multiplicities(section, header.participants)
            for i, counts in enumerate(counted):
                per_origin[i].append(counts)
        return [np.concatenate(c) if c else np.zeros(0, np.intp) for c in per_origin]

    def _results_for(self, origin: int, lab: str, counts: np.ndarray) -> list[m.Send]:
        header = self._header()
        values = counting.result_values(counts, header.k, header.reveal_count)
        out: list[m.Send] = []
        start = 0
        for seq, size in enumerate(self._chunks[origin]):
            chunk = values[start : start + size]
            self._digests[origin].results(chunk)
            out.append(m.Send(lab, m.Results(seq, chunk)))
            start += size
        self.result_counts[lab] = counting.kind_counts(values, header.sizes[origin], header.kinds)
        own, results = self._digests[origin].hexdigests()
        expected = build_receipt(
            round_id=header.round_id,
            hub=self.hub,
            lab=lab,
            signer=self.hub,
            transcript_hash=header.transcript_hash(),
            own_stream=own,
            results=results,
            result_counts=self.result_counts[lab],
        )
        self._expected[lab] = {**expected, "signer": lab}
        self.hub_receipts[lab] = sign_receipt(expected, self._key)
        return [*out, m.Send(lab, m.Receipt(self.hub_receipts[lab]))]

    # -- receipts and the end ----------------------------------------------------------------

    def receipt(self, lab: str, receipt: m.Receipt) -> list[m.Send]:
        header = self._expect("receipts")
        if lab in self._receipts or lab not in header.participants:
            raise ProtocolError(f"{lab} sent a second receipt", rule=Rule.MESSAGE_ORDER)
        verify_receipt(parse_receipt(receipt.signed), self._keys[lab], expected=self._expected[lab])
        self._receipts[lab] = receipt.signed
        if len(self._receipts) < header.n:
            return []
        self.state = "done"
        return [m.Send(lab, m.Commit()) for lab in header.participants]

    def abort(self, error: CrossmatchError, gone: str = "") -> list[m.Send]:
        """Abort the round for every participant still connected (all but ``gone``).

        The reason names rules and labs only, never anything a peer wrote."""
        if self.state in ("done", "aborted"):
            return []
        self.state = "aborted"
        labs = self.header.participants if self.header else tuple(self._sizes)
        return [
            m.Send(lab, m.Abort(error.rule or Rule.INTERNAL, error.message))
            for lab in labs
            if lab != gone
        ]

    def lab_receipts(self) -> dict[str, bytes]:
        return dict(self._receipts)

    def _expect(self, state: str) -> ConsortiumHeader:
        if self.state != state:
            raise ProtocolError(
                f"message out of order: the round is {self.state}", rule=Rule.MESSAGE_ORDER
            )
        return self._header() if state != "joining" else None  # type: ignore[return-value]

    def _header(self) -> ConsortiumHeader:
        if self.header is None:
            raise ProtocolError("the round has not started", rule=Rule.MESSAGE_ORDER)
        return self.header


def _checked_count(points: bytes, lab: str) -> int:
    count = count_points(points)
    if not 0 < count <= m.MAX_CHUNK_POINTS:
        raise ProtocolError(
            f"{lab} sent a chunk of {count} elements (1 to {m.MAX_CHUNK_POINTS} allowed)",
            rule=Rule.CHUNK_SIZE,
        )
    return count
