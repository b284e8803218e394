"""One table from crossmatch errors to gRPC status codes, and back.

The responder names the refusing rule in trailing metadata (``crossmatch-rule``)
so the initiator can raise the same error class with the same rule.
"""

from __future__ import annotations

import grpc

from protocol.errors import (
    ConfigError,
    CrossmatchError,
    PeerUnavailableError,
    PolicyError,
    ProtocolError,
    VerificationError,
)

RULE_KEY = "crossmatch-rule"
KIND_KEY = "crossmatch-error"

# Rules about who the peer is get PERMISSION_DENIED; rate and concurrency limits
# get RESOURCE_EXHAUSTED (retry later); other policy refusals FAILED_PRECONDITION.
IDENTITY_RULES = {"identity", "unknown-peer", "lab-mismatch", "wrong-responder",
                  "certificate-expired", "certificate-not-yet-valid", "certificate-revoked",
                  "certificate-wrong-ca", "certificate-malformed"}
LIMIT_RULES = {"rate-limit", "single-flight", "busy", "min-interval", "shutting-down"}

ERROR_CLASSES: dict[str, type[CrossmatchError]] = {
    "policy": PolicyError,
    "protocol": ProtocolError,
    "verification": VerificationError,
    "config": ConfigError,
}


def status_for(error: CrossmatchError) -> grpc.StatusCode:
    if isinstance(error, PolicyError):
        if error.rule in IDENTITY_RULES:
            return grpc.StatusCode.PERMISSION_DENIED
        if error.rule in LIMIT_RULES:
            return grpc.StatusCode.RESOURCE_EXHAUSTED
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(error, ProtocolError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, VerificationError):
        return grpc.StatusCode.DATA_LOSS
    return grpc.StatusCode.INTERNAL


def error_kind(error: CrossmatchError) -> str:
    for name, cls in ERROR_CLASSES.items():
        if isinstance(error, cls):
            return name
    return "internal"


def abort_with(context: grpc.ServicerContext, error: CrossmatchError) -> None:
    """Abort an RPC with the error's status, message and rule (raises, as context.abort does)."""
    context.set_trailing_metadata(((RULE_KEY, error.rule or ""), (KIND_KEY, error_kind(error))))
    context.abort(status_for(error), error.message)


def error_from_rpc(e: grpc.RpcError, peer: str) -> CrossmatchError:
    """Turn a failed call into the error the peer meant, naming the peer."""
    code = e.code() if hasattr(e, "code") else None
    details = (e.details() if hasattr(e, "details") else None) or str(code)
    meta = dict(e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else {}
    rule = meta.get(RULE_KEY) or None
    kind = meta.get(KIND_KEY)
    where = f"peer {peer}"
    if kind in ERROR_CLASSES:
        return ERROR_CLASSES[kind](f"refused by peer: {details}", where=where, rule=rule)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED):
        return PeerUnavailableError(f"{details} ({code.name})", where=where)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return ProtocolError("peer does not speak crossmatch/v1", where=where, rule="version")
    return PeerUnavailableError(f"{details} ({code.name if code else 'error'})", where=where)
