"""One table from crossmatch errors to gRPC status codes, and back.

Every rule has a category, and the category decides the status a refusal is sent
with. The responder names the refusing rule in trailing metadata (``crossmatch-rule``)
and the error class (``crossmatch-error``), so the initiator can raise the same error
class with the same rule. docs/protocol.md's rule table shows the same mapping; a
test keeps the two in step.
"""

from __future__ import annotations

from enum import Enum

import grpc

from protocol.errors import (
    ConfigError,
    CrossmatchError,
    PeerUnavailableError,
    PolicyError,
    ProtocolError,
    VerificationError,
)
from protocol.limits import peer_text
from protocol.rules import Rule, parse_rule

RULE_KEY = "crossmatch-rule"
KIND_KEY = "crossmatch-error"


class Category(Enum):
    """Why a rule refuses, as the peer needs to know it (the gRPC status)."""

    IDENTITY = grpc.StatusCode.PERMISSION_DENIED  # who the peer is
    LIMIT = grpc.StatusCode.RESOURCE_EXHAUSTED  # retry later
    REFUSED = grpc.StatusCode.FAILED_PRECONDITION  # the policy says no
    MALFORMED = grpc.StatusCode.INVALID_ARGUMENT  # the peer sent something wrong
    VERIFICATION = grpc.StatusCode.DATA_LOSS  # a signature, chain or proof failed
    LOCAL = grpc.StatusCode.INTERNAL  # our own files, input or state: not the peer's doing


_I, _L, _R, _M, _V, _X = (
    Category.IDENTITY,
    Category.LIMIT,
    Category.REFUSED,
    Category.MALFORMED,
    Category.VERIFICATION,
    Category.LOCAL,
)
_BY_CATEGORY: dict[Category, tuple[Rule, ...]] = {
    _I: (Rule.UNKNOWN_PEER, Rule.LAB_MISMATCH, Rule.WRONG_RESPONDER,
         Rule.LAB_ID_SYNTAX, Rule.CERTIFICATE_MISSING, Rule.CERTIFICATE_MALFORMED,
         Rule.CERTIFICATE_WRONG_CA, Rule.CERTIFICATE_EXPIRED, Rule.CERTIFICATE_NOT_YET_VALID,
         Rule.CERTIFICATE_REVOKED, Rule.CA_CERTIFICATE_EXPIRED, Rule.CONSORTIUM_HUB_IDENTITY,
         Rule.CONSORTIUM_NOT_PARTICIPANT),
    _L: (Rule.SINGLE_FLIGHT, Rule.MIN_INTERVAL, Rule.SHUTTING_DOWN, Rule.FEEDBACK_RATE,
         Rule.PEER_BUSY, Rule.DISK_FULL),
    _R: (Rule.KINDS_EMPTY, Rule.PROMPT_PARAMS, Rule.POLICY_UNSIGNED, Rule.POLICY_MISMATCH,
         Rule.POLICY_EXPIRED, Rule.POLICY_NOT_YET_VALID, Rule.POLICY_ROLLBACK, Rule.KIND_ALLOWED,
         Rule.KIND_MODE, Rule.MAX_SET_SIZE, Rule.SUITE_POLICY, Rule.SUITE_UNKNOWN,
         Rule.MIN_SET_SIZE, Rule.PAD_BUCKET, Rule.EPOCH_CHURN,
         Rule.CONSORTIUM_NOT_CONFIGURED, Rule.CONSORTIUM_JOINED_TWICE,
         Rule.CONSORTIUM_PARTICIPANT_LEFT, Rule.CONSORTIUM_JOIN_TIMEOUT, Rule.CONSORTIUM_ROSTER,
         Rule.CONSORTIUM_STAGE_TIMEOUT,
         Rule.CONSORTIUM_KINDS, Rule.UNKNOWN_ROUND, Rule.SHUTDOWN, Rule.NODE_RESTARTED,
         Rule.PEER_ABORT,
         Rule.CRL_ROLLBACK, Rule.CRL_STALE, Rule.CRL_MISSING, Rule.CSR_MALFORMED,
         Rule.CSR_SIGNATURE_INVALID, Rule.CSR_KEY_TYPE,
         Rule.CSR_SAN_MISMATCH, Rule.CSR_AUDIT_KEY, Rule.WARNINGLIST_ROLLBACK,
         Rule.FEEDBACK_DISABLED, Rule.FEEDBACK_UNKNOWN_MATCH),
    _M: (Rule.VERSION, Rule.ROUND_ID, Rule.MODE, Rule.KINDS, Rule.MESSAGE_ORDER,
         Rule.MALFORMED_ELEMENT, Rule.SIZE_ANNOUNCED, Rule.STREAM_ENDED, Rule.TIMEOUT,
         Rule.CLOSED, Rule.RECEIPT_FORMAT, Rule.ELEMENT_IDENTITY, Rule.ELEMENT_NONCANONICAL,
         Rule.CHUNK_SIZE, Rule.PROOF_INVALID, Rule.PROOF_REQUEST, Rule.DUPLICATE_POINT,
         Rule.REBLIND_COMMITMENT, Rule.FIELD_SIZE,
         Rule.NONCE, Rule.CONSORTIUM_SIZE, Rule.CONSORTIUM_DUPLICATE, Rule.CONSORTIUM_REBLIND,
         Rule.CONSORTIUM_RESULTS, Rule.CONSORTIUM_RECEIPT, Rule.FEEDBACK_BATCH),
    _V: (Rule.POLICY_SIGNATURE, Rule.RECEIPT_SIGNATURE, Rule.RECEIPT_SIGNER, Rule.RECEIPT_ROUND,
         Rule.RECEIPT_TRANSCRIPT, Rule.RECEIPT_LOG_ID, Rule.RECEIPT_MISMATCH, Rule.RECEIPT_BODY,
         Rule.OWN_RECEIPT_HEAD, Rule.RECORD_JSON, Rule.RECORD_SCHEMA, Rule.RECORD_VERSION,
         Rule.RECORD_SIGNATURE, Rule.RECORD_TIME, Rule.RECORD_TIME_ORDER, Rule.BODY_SCHEMA,
         Rule.SEQ, Rule.CHAIN,
         Rule.GENESIS, Rule.LOG_ID, Rule.LOG_ID_KEY, Rule.LOG_KEY, Rule.LOG_SHRANK, Rule.TORN_LINE,
         Rule.WRITE_FAILED, Rule.MERKLE_SIZE, Rule.MERKLE_INDEX, Rule.MERKLE_HASH_LENGTH,
         Rule.MERKLE_PROOF_LENGTH, Rule.MERKLE_INCLUSION, Rule.MERKLE_CONSISTENCY,
         Rule.PROOF_FORMAT, Rule.PROOF_INDEX, Rule.PROOF_LEAF, Rule.PROOF_RECORD,
         Rule.PROOF_CHECKPOINT, Rule.CHECKPOINT, Rule.CHECKPOINT_FORMAT, Rule.CHECKPOINT_ORIGIN,
         Rule.CHECKPOINT_SIGNATURE, Rule.CHECKPOINT_SIZE, Rule.CHECKPOINT_ROOT, Rule.RECONCILE,
         Rule.ROUND_ROLES, Rule.ROUND_MODE, Rule.ROUND_KINDS, Rule.ROUND_SIZES,
         Rule.ROUND_INTERSECTION, Rule.ROUND_TRANSCRIPT, Rule.ROUND_POLICY,
         Rule.ROUND_COMMITMENT, Rule.ROUND_DUPLICATE, Rule.ROUND_OUTCOME, Rule.ROUND_MISSING,
         Rule.LOG_IDENTITY, Rule.LOG_TRUNCATED, Rule.LOG_REWRITTEN, Rule.HOOK_SIGNATURE,
         Rule.HOOK_STALE, Rule.RESPONDER_PROOF, Rule.CONSORTIUM_HEADER, Rule.CONSORTIUM_COUNTS,
         Rule.CONSORTIUM_OUTCOME, Rule.CONSORTIUM_MISSING, Rule.WARNINGLIST_SIGNATURE,
         Rule.DISCLOSURE_TRANSCRIPT, Rule.DISCLOSURE_COMMITMENT, Rule.DISCLOSURE_DUMMIES,
         Rule.DISCLOSURE_STREAM),
    _X: (Rule.INTERNAL, Rule.CANONICAL_JSON, Rule.RECORD_BODY, Rule.EVENT,
         Rule.ATOMIC_ROUND, Rule.POLICY_SYNTAX, Rule.PROMPT_TYPE, Rule.PROMPT_EMPTY,
         Rule.PROMPT_BINARY, Rule.PROMPT_TOO_LARGE, Rule.PROMPT_NO_WORDS,
         Rule.CERTIFICATE_LAB_MISMATCH, Rule.CERTIFICATE_KEY_MISMATCH,
         Rule.CERTIFICATE_AUDIT_KEY_MISMATCH, Rule.CRL_MALFORMED, Rule.CRL_WRONG_CA,
         Rule.UNKNOWN_SERIAL, Rule.KEY_FILE_PERMISSIONS, Rule.SUITE_UNAVAILABLE, Rule.EXPORT_CASE,
         Rule.EXPORT_KEY, Rule.EXPORT_TLP, Rule.EXPORT_PAP, Rule.HOOK_SECRET, Rule.HOOK_RETRY,
         Rule.HOOK_STATE, Rule.CASE_UNKNOWN, Rule.CASE_TRANSITION, Rule.CASE_ANALYST,
         Rule.CASE_NOTE, Rule.WARNINGLIST_SYNTAX, Rule.DISCLOSURE_FORMAT),
}  # fmt: skip
# The table: one category per rule (a test checks every Rule is here exactly once).
CATEGORY: dict[Rule, Category] = {r: c for c, rules in _BY_CATEGORY.items() for r in rules}

ERROR_CLASSES: dict[str, type[CrossmatchError]] = {
    "policy": PolicyError,
    "protocol": ProtocolError,
    "verification": VerificationError,
    "config": ConfigError,
}
# An error without a rule: its class decides.
_CLASS_CATEGORY: tuple[tuple[type[CrossmatchError], Category], ...] = (
    (PolicyError, Category.REFUSED), (ProtocolError, Category.MALFORMED),
    (VerificationError, Category.VERIFICATION),
)  # fmt: skip


def status_for(error: CrossmatchError) -> grpc.StatusCode:
    if error.rule is not None:
        return CATEGORY[error.rule].value
    for cls, category in _CLASS_CATEGORY:
        if isinstance(error, cls):
            return category.value
    return Category.LOCAL.value


def error_kind(error: CrossmatchError) -> str:
    for name, cls in ERROR_CLASSES.items():
        if isinstance(error, cls):
            return name
    return "internal"


def abort_with(context: grpc.ServicerContext, error: CrossmatchError) -> None:
    """Abort an RPC with the error's status, message and rule (raises, as context.abort does)."""
    rule = error.rule.value if error.rule else ""
    context.set_trailing_metadata(((RULE_KEY, rule), (KIND_KEY, error_kind(error))))
    context.abort(status_for(error), error.message)


def error_from_rpc(e: grpc.RpcError, peer: str) -> CrossmatchError:
    """Turn a failed call into the error the peer meant, naming the peer."""
    code = e.code() if hasattr(e, "code") else None
    details = (e.details() if hasattr(e, "details") else None) or str(code)
    meta = dict(e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else {}
    rule = parse_rule(meta.get(RULE_KEY))  # a rule we do not know is not kept
    if len(details) > 300 or not details.isprintable():  # the peer's text, in our error
        details = peer_text(details, 300)
    kind = meta.get(KIND_KEY)
    where = f"peer {peer}"
    if kind in ERROR_CLASSES:
        return ERROR_CLASSES[kind](f"refused by peer: {details}", where=where, rule=rule)
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    ):
        return PeerUnavailableError(f"{details} ({code.name})", where=where)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return ProtocolError("peer does not speak crossmatch/v1", where=where, rule=Rule.VERSION)
    return PeerUnavailableError(f"{details} ({code.name if code else 'error'})", where=where)
