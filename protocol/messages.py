"""The OpenRound messages as plain values: what a proposal and its answer say.

node/net/wire.py converts these to and from the generated protobuf classes; the
admission rules (protocol/admission.py) read only these. Field order follows the
.proto so a reader can hold the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

# Round modes, by name. The wire codes for them live in node/net/wire.py only.
MODES = ("reveal", "count")


@dataclass(frozen=True)
class Proposal:
    """OpenRoundRequest: the initiator proposes a round."""

    protocol_version: str
    round_id: str
    initiator: str  # the lab the initiator claims to be
    responder: str  # the lab it addresses
    mode: str  # one of MODES, or the text of a wire code we do not know
    kinds: tuple[str, ...]
    sizes: tuple[int, ...]
    policy_hash: bytes
    input_commitment: bytes
    prompt_params: str = ""
    chunk_size: int = 0
    nonce: bytes = b""
    suite: str = ""  # the PSI suite; empty from a node older than suites


@dataclass(frozen=True)
class ProposalResponse:
    """OpenRoundResponse: the responder accepts, with its sizes and certificate."""

    round_id: str
    kinds: tuple[str, ...]
    sizes: tuple[int, ...]
    input_commitment: bytes
    certificate_pem: bytes
    chunk_size: int = 0
    identity_proof: bytes = b""


def prompt_param_set_id() -> str:
    """Our prompt fingerprint parameter set, as named in a proposal."""
    from protocol.fingerprints.prompts import DEFAULT_PARAMS, param_set_id  # heavy; on demand

    return param_set_id(DEFAULT_PARAMS)
