"""Serde: the generated protobuf messages <-> the domain values of a pairwise round.

Besides the generated stubs and the servicer registration, this is the one module of
node/net that builds or reads ``crossmatch_pb2`` messages (tests/unit/test_layering.py
fails on any other), so the shape of the wire is visible in one place. Every decoder
checks the size of every field (limits in protocol/limits.py) before anything else
reads it: a failure is a ProtocolError with rule ``field-size`` naming the field and
its size, never its content. Conversions never judge otherwise: an unknown mode code
becomes its text and protocol/admission.py refuses it with the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.feedback import Opinion
from protocol.limits import (
    COMMITMENT_BYTES,
    MAX_ABORT_REASON,
    MAX_ABORT_RULE,
    MAX_CERTIFICATE_PEM,
    MAX_CHUNK_SIZE,
    MAX_DIGEST,
    MAX_IDENTITY_PROOF,
    MAX_KIND,
    MAX_KINDS,
    MAX_LAB,
    MAX_NONCE,
    MAX_PROMPT_PARAMS,
    MAX_PROTOCOL_VERSION,
    MAX_RECEIPT_BYTES,
    MAX_ROUND_ID,
    POLICY_HASH_BYTES,
    check_bytes,
    check_count,
    check_text,
)
from protocol.messages import Proposal, ProposalResponse
from protocol.responder_proof import Field
from protocol.rules import Rule
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb

# The message types the transport passes around (annotations elsewhere name these).
ExchangeMessage = pb.ExchangeMessage
OpenRoundRequest = pb.OpenRoundRequest
OpenRoundResponse = pb.OpenRoundResponse
OpinionBatch = pb.OpinionBatch
OpinionAck = pb.OpinionAck

MODE_CODES = {"reveal": pb.MODE_REVEAL, "count": pb.MODE_COUNT}
MODE_NAMES: dict[int, str] = {int(code): name for name, code in MODE_CODES.items()}
VERDICT_CODES = {"confirmed": pb.VERDICT_CONFIRMED, "false_positive": pb.VERDICT_FALSE_POSITIVE}
VERDICT_NAMES: dict[int, str] = {int(code): name for name, code in VERDICT_CODES.items()}
# Chunk streams: the message's body name is the stream's name (protocol/round.py's Send).
POINT_STREAMS = ("own_blinded", "peer_reblinded")


def mode_name(code: int) -> str:
    return MODE_NAMES.get(code, str(code))


# -- size checks: before any field is quoted, stored or used ---------------------------------
def check_sizes_list(name: str, sizes: Sequence[pb.KindSize]) -> None:
    items = list(sizes)
    check_count(name, len(items), MAX_KINDS)
    for s in items:
        check_text(f"{name}.kind", s.kind, MAX_KIND)


def check_chunk_size(n: int) -> None:
    if n > MAX_CHUNK_SIZE:
        raise ProtocolError(f"chunk_size {n} is over {MAX_CHUNK_SIZE}", rule=Rule.FIELD_SIZE)


def check_open_request(r: pb.OpenRoundRequest) -> None:
    check_text("protocol_version", r.protocol_version, MAX_PROTOCOL_VERSION)
    check_text("round_id", r.round_id, MAX_ROUND_ID)
    check_text("initiator_lab", r.initiator_lab, MAX_LAB)
    check_text("responder_lab", r.responder_lab, MAX_LAB)
    check_sizes_list("sizes", r.sizes)
    check_bytes("policy_hash", r.policy_hash, POLICY_HASH_BYTES)
    check_bytes("input_commitment", r.input_commitment, COMMITMENT_BYTES, exact=True)
    check_text("prompt_params", r.prompt_params, MAX_PROMPT_PARAMS)
    check_bytes("nonce", r.nonce, MAX_NONCE)
    check_chunk_size(r.chunk_size)


def check_open_response(r: pb.OpenRoundResponse) -> None:
    check_text("round_id", r.round_id, MAX_ROUND_ID)
    check_sizes_list("sizes", r.sizes)
    check_bytes("input_commitment", r.input_commitment, COMMITMENT_BYTES, exact=True)
    check_bytes("certificate_pem", r.certificate_pem, MAX_CERTIFICATE_PEM)
    check_bytes("identity_proof", r.identity_proof, MAX_IDENTITY_PROOF)
    check_chunk_size(r.chunk_size)


def check_exchange_message(m: pb.ExchangeMessage) -> None:
    """Fields other than chunk points (bounded by the message size and the round's sizes,
    and counted as whole points by protocol/round.py)."""
    body = m.WhichOneof("body")
    if body == "start":
        check_text("start.round_id", m.start.round_id, MAX_ROUND_ID)
    elif body == "reblind_commitment":
        check_bytes("reblind_commitment.digest", m.reblind_commitment.digest, MAX_DIGEST)
    elif body == "receipt":
        check_bytes("receipt.signed_receipt", m.receipt.signed_receipt, MAX_RECEIPT_BYTES)
    elif body == "abort":
        check_text("abort.reason", m.abort.reason, MAX_ABORT_REASON)
        check_text("abort.rule", m.abort.rule, MAX_ABORT_RULE)
    elif body == "public_key":
        check_bytes("public_key.key", m.public_key.key, MAX_DIGEST)


# -- OpenRound ----------------------------------------------------------------------------------


def _sizes(kinds: tuple[str, ...], sizes: tuple[int, ...]) -> list[pb.KindSize]:
    return [pb.KindSize(kind=k, size=n) for k, n in zip(kinds, sizes, strict=True)]


def proposal_to_pb(p: Proposal) -> pb.OpenRoundRequest:
    return pb.OpenRoundRequest(
        protocol_version=p.protocol_version,
        round_id=p.round_id,
        initiator_lab=p.initiator,
        responder_lab=p.responder,
        mode=MODE_CODES[p.mode],
        sizes=_sizes(p.kinds, p.sizes),
        policy_hash=p.policy_hash,
        input_commitment=p.input_commitment,
        prompt_params=p.prompt_params,
        chunk_size=p.chunk_size,
        nonce=p.nonce,
        suite=p.suite,
    )


def proposal_from_pb(r: pb.OpenRoundRequest) -> Proposal:
    check_open_request(r)
    return Proposal(
        protocol_version=r.protocol_version,
        round_id=r.round_id,
        initiator=r.initiator_lab,
        responder=r.responder_lab,
        mode=mode_name(r.mode),
        kinds=tuple(s.kind for s in r.sizes),
        sizes=tuple(s.size for s in r.sizes),
        policy_hash=r.policy_hash,
        input_commitment=r.input_commitment,
        prompt_params=r.prompt_params,
        chunk_size=r.chunk_size,
        nonce=r.nonce,
        suite=r.suite,
    )


def response_to_pb(r: ProposalResponse) -> pb.OpenRoundResponse:
    return pb.OpenRoundResponse(
        round_id=r.round_id,
        sizes=_sizes(r.kinds, r.sizes),
        input_commitment=r.input_commitment,
        certificate_pem=r.certificate_pem,
        chunk_size=r.chunk_size,
        identity_proof=r.identity_proof,
    )


def response_from_pb(r: pb.OpenRoundResponse) -> ProposalResponse:
    check_open_response(r)
    return ProposalResponse(
        round_id=r.round_id,
        kinds=tuple(s.kind for s in r.sizes),
        sizes=tuple(s.size for s in r.sizes),
        input_commitment=r.input_commitment,
        certificate_pem=r.certificate_pem,
        chunk_size=r.chunk_size,
        identity_proof=r.identity_proof,
    )


def refused_proposal(r: pb.OpenRoundRequest) -> Proposal:
    """What a refusal record may say of a proposal that may not pass the size checks:
    every field cut to its bound, nothing else judged (the record quotes it further)."""
    n = MAX_KINDS
    return Proposal(
        protocol_version=r.protocol_version[:MAX_PROTOCOL_VERSION],
        round_id=r.round_id[: MAX_ROUND_ID * 2],
        initiator=r.initiator_lab[: MAX_LAB + 1],
        responder=r.responder_lab[: MAX_LAB + 1],
        mode=mode_name(r.mode),
        kinds=tuple(s.kind[:MAX_KIND] for s in r.sizes[:n]),
        sizes=tuple(s.size for s in r.sizes[:n]),
        policy_hash=r.policy_hash[:POLICY_HASH_BYTES],
        input_commitment=r.input_commitment[:COMMITMENT_BYTES],
        prompt_params=r.prompt_params[:MAX_PROMPT_PARAMS],
        chunk_size=r.chunk_size,
        nonce=r.nonce[:MAX_NONCE],
        suite=r.suite[:MAX_KIND],
    )


# -- what the responder's identity proof covers (protocol/responder_proof.py) ----------------


def _size_fields(sizes: Sequence[pb.KindSize]) -> list[Field]:
    out: list[Field] = [len(sizes)]
    for s in sizes:
        out += [s.kind, s.size]
    return out


def request_fields(r: pb.OpenRoundRequest) -> list[Field]:
    return [
        r.protocol_version,
        r.round_id,
        r.initiator_lab,
        r.responder_lab,
        int(r.mode),
        *_size_fields(r.sizes),
        r.policy_hash,
        r.input_commitment,
        r.prompt_params,
        r.chunk_size,
        r.nonce,
    ]


def response_fields(r: pb.OpenRoundResponse) -> list[Field]:
    return [r.round_id, *_size_fields(r.sizes), r.input_commitment, r.certificate_pem, r.chunk_size]


# -- the Exchange stream ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One decoded ExchangeMessage: its body's name and its one value.

    ``value`` is the bytes of a chunk, commitment, key, proof request, proof or receipt,
    the round id of a Start, ``(reason, rule)`` of an Abort, None for a Commit.
    """

    body: str
    value: object = None

    @property
    def data(self) -> bytes:
        assert isinstance(self.value, bytes)
        return self.value


def decode_exchange(m: pb.ExchangeMessage) -> Received:
    """Size checks first, then the body (ProtocolError on an empty message)."""
    check_exchange_message(m)
    body = m.WhichOneof("body")
    if body is None:
        raise ProtocolError("empty exchange message", rule=Rule.MESSAGE_ORDER)
    if body in POINT_STREAMS:
        return Received(body, getattr(m, body).points)
    return Received(body, _VALUES[body](m))


_VALUES = {
    "start": lambda m: m.start.round_id,
    "reblind_commitment": lambda m: m.reblind_commitment.digest,
    "public_key": lambda m: m.public_key.key,
    "proof_request": lambda m: m.proof_request.positions,
    "match_proof": lambda m: m.match_proof.proof,
    "receipt": lambda m: m.receipt.signed_receipt,
    "commit": lambda m: None,
    "abort": lambda m: (m.abort.reason, m.abort.rule),
}


def points_in(m: pb.ExchangeMessage) -> int:
    """Bytes of points a chunk message carries (0 for any other message), for progress."""
    body = m.WhichOneof("body")
    return len(getattr(m, body).points) if body in POINT_STREAMS else 0


def start(round_id: str) -> pb.ExchangeMessage:
    return pb.ExchangeMessage(start=pb.Start(round_id=round_id))


def outgoing(kind: str, seq: int, payload: bytes) -> pb.ExchangeMessage:
    """What protocol/round.py sends (its Send callback): a chunk, our re-blinding
    commitment or our public key."""
    if kind == "reblind_commitment":
        return pb.ExchangeMessage(reblind_commitment=pb.ReblindCommitment(digest=payload))
    if kind == "public_key":
        return pb.ExchangeMessage(public_key=pb.PublicKey(key=payload))
    if kind in POINT_STREAMS:
        return pb.ExchangeMessage(**{kind: pb.Chunk(seq=seq, points=payload)})
    raise ValueError(f"no message for {kind!r}")


def proof_request(positions: bytes) -> pb.ExchangeMessage:
    return pb.ExchangeMessage(proof_request=pb.ProofRequest(positions=positions))


def match_proof(proof: bytes) -> pb.ExchangeMessage:
    return pb.ExchangeMessage(match_proof=pb.MatchProof(proof=proof))


def receipt(signed: bytes) -> pb.ExchangeMessage:
    return pb.ExchangeMessage(receipt=pb.Receipt(signed_receipt=signed))


def commit() -> pb.ExchangeMessage:
    return pb.ExchangeMessage(commit=pb.Commit())


def abort(reason: str, rule: str) -> pb.ExchangeMessage:
    return pb.ExchangeMessage(abort=pb.Abort(reason=reason, rule=rule))


# -- peer feedback (SendOpinions) --------------------------------------------------------------


def opinions_to_pb(opinions: Sequence[Opinion]) -> pb.OpinionBatch:
    return pb.OpinionBatch(
        opinions=[
            pb.Opinion(
                round_id=o.round_id,
                kind=o.kind,
                fingerprint=o.fingerprint,
                verdict=VERDICT_CODES[o.verdict],
            )
            for o in opinions
        ]
    )


def opinions_from_pb(batch: pb.OpinionBatch, limit: int) -> tuple[list[Opinion], int]:
    """At most ``limit`` opinions, each field cut to a bound protocol/feedback.py then
    checks exactly (a cut value never matches a stored one), and how many were sent."""
    opinions = [
        Opinion(
            o.round_id[:64],
            o.kind[:32],
            bytes(o.fingerprint[:64]),
            VERDICT_NAMES.get(o.verdict, ""),
        )
        for o in batch.opinions[:limit]
    ]
    return opinions, len(batch.opinions)


def opinion_ack(accepted: int) -> pb.OpinionAck:
    return pb.OpinionAck(accepted=accepted)
