"""Size checks of every wire message, before any field is quoted, stored or used.

The limits are in ``protocol.limits``; these functions apply them to the
generated messages. A failure is a ProtocolError with rule ``field-size`` whose
message names the field and its size, never its content.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.errors import ProtocolError
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
from protocol.rules import Rule
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb


def check_sizes_list(name: str, sizes: Sequence[pb.KindSize]) -> None:
    items = list(sizes)
    check_count(name, len(items), MAX_KINDS)
    for s in items:
        check_text(f"{name}.kind", s.kind, MAX_KIND)


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
    if r.chunk_size > MAX_CHUNK_SIZE:
        raise ProtocolError(
            f"chunk_size {r.chunk_size} is over {MAX_CHUNK_SIZE}", rule=Rule.FIELD_SIZE
        )


def check_open_response(r: pb.OpenRoundResponse) -> None:
    check_text("round_id", r.round_id, MAX_ROUND_ID)
    check_sizes_list("sizes", r.sizes)
    check_bytes("input_commitment", r.input_commitment, COMMITMENT_BYTES, exact=True)
    check_bytes("certificate_pem", r.certificate_pem, MAX_CERTIFICATE_PEM)
    check_bytes("identity_proof", r.identity_proof, MAX_IDENTITY_PROOF)
    if r.chunk_size > MAX_CHUNK_SIZE:
        raise ProtocolError(
            f"chunk_size {r.chunk_size} is over {MAX_CHUNK_SIZE}", rule=Rule.FIELD_SIZE
        )


def check_exchange_message(m: pb.ExchangeMessage) -> None:
    """Fields other than chunk points (bounded by the message size and the round's sizes)."""
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
