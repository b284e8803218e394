"""Serde: the generated protobuf messages <-> the domain values in protocol/messages.py.

Besides the generated stubs and the servicer registration, this is the one module that
builds or reads ``crossmatch_pb2`` messages of the pairwise round, so the shape of the
wire is visible in one place. Conversions never judge: an unknown mode code becomes its
text and protocol/admission.py refuses it with the rule.
"""

from __future__ import annotations

from protocol.messages import Proposal, ProposalResponse
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb

MODE_CODES = {"reveal": pb.MODE_REVEAL, "count": pb.MODE_COUNT}
MODE_NAMES: dict[int, str] = {int(code): name for name, code in MODE_CODES.items()}


def mode_name(code: int) -> str:
    return MODE_NAMES.get(code, str(code))


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
    return ProposalResponse(
        round_id=r.round_id,
        kinds=tuple(s.kind for s in r.sizes),
        sizes=tuple(s.size for s in r.sizes),
        input_commitment=r.input_commitment,
        certificate_pem=r.certificate_pem,
        chunk_size=r.chunk_size,
        identity_proof=r.identity_proof,
    )
