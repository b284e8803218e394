"""The one vocabulary of rules: every refusal, abort and verification failure names one.

A rule is a short kebab-case name (``lab-mismatch``). It travels as its string value
in the ``crossmatch-rule`` trailing metadata, in ``Abort.rule`` and in the ``rule``
member of audit bodies, so a rule's value is part of the wire and the log format:
renaming one is a protocol change. What each rule means, and the gRPC status it is
refused with, is the rule table in docs/protocol.md; the category behind that status
is in node/net/grpc_status.py. Tests keep the three in step.

Logs and peers from before this module spelt some rules differently (``receipt_format``,
``prompt.params``, the hub's ``identity``); :func:`parse_rule` reads those too. Inside a
log body a rule is data: the verifier never requires it to be a member.
"""

from __future__ import annotations

from enum import StrEnum


class Rule(StrEnum):
    # -- who the peer is (OpenRound, before anything else) --------------------------------
    UNKNOWN_PEER = "unknown-peer"
    LAB_MISMATCH = "lab-mismatch"
    WRONG_RESPONDER = "wrong-responder"
    # -- what a proposal or response says ---------------------------------------------------
    VERSION = "version"
    ROUND_ID = "round-id"
    MODE = "mode"
    KINDS = "kinds"
    KINDS_EMPTY = "kinds-empty"
    PROMPT_PARAMS = "prompt-params"
    # -- the signed consortium policy --------------------------------------------------------
    POLICY_UNSIGNED = "policy-unsigned"
    POLICY_MISMATCH = "policy-mismatch"
    POLICY_EXPIRED = "policy-expired"
    POLICY_NOT_YET_VALID = "policy-not-yet-valid"
    POLICY_ROLLBACK = "policy-rollback"
    POLICY_SIGNATURE = "policy-signature"
    POLICY_SYNTAX = "policy-syntax"
    KIND_ALLOWED = "kind-allowed"
    KIND_MODE = "kind-mode"
    MAX_SET_SIZE = "max-set-size"
    MIN_SET_SIZE = "min-set-size"
    PAD_BUCKET = "pad-bucket"
    EPOCH_CHURN = "epoch-churn"
    SUITE_POLICY = "suite-policy"
    SUITE_UNKNOWN = "suite-unknown"
    SUITE_UNAVAILABLE = "suite-unavailable"
    # -- limits: retry later ----------------------------------------------------------------
    SINGLE_FLIGHT = "single-flight"
    MIN_INTERVAL = "min-interval"
    SHUTTING_DOWN = "shutting-down"
    PEER_BUSY = "peer-busy"
    DISK_FULL = "disk-full"
    # -- the exchange stream ----------------------------------------------------------------
    UNKNOWN_ROUND = "unknown-round"
    MESSAGE_ORDER = "message-order"
    MALFORMED_ELEMENT = "malformed-element"
    ELEMENT_IDENTITY = "element-identity"
    ELEMENT_NONCANONICAL = "element-noncanonical"
    CHUNK_SIZE = "chunk-size"
    FIELD_SIZE = "field-size"
    PROOF_INVALID = "proof-invalid"
    PROOF_REQUEST = "proof-request"
    DUPLICATE_POINT = "duplicate-point"
    REBLIND_COMMITMENT = "reblind-commitment"
    NONCE = "nonce"
    RESPONDER_PROOF = "responder-proof"
    SIZE_ANNOUNCED = "size-announced"
    STREAM_ENDED = "stream-ended"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    NODE_RESTARTED = "node-restarted"
    PEER_ABORT = "peer-abort"
    CLOSED = "closed"
    INTERNAL = "internal"
    # -- receipts ---------------------------------------------------------------------------
    RECEIPT_FORMAT = "receipt-format"
    RECEIPT_SIGNATURE = "receipt-signature"
    RECEIPT_SIGNER = "receipt-signer"
    RECEIPT_ROUND = "receipt-round"
    RECEIPT_TRANSCRIPT = "receipt-transcript"
    RECEIPT_LOG_ID = "receipt-log-id"
    RECEIPT_MISMATCH = "receipt-mismatch"
    RECEIPT_BODY = "receipt-body"
    OWN_RECEIPT_HEAD = "own-receipt-head"
    # -- consortium rounds (the hub and its participants) ----------------------------------
    CONSORTIUM_NOT_CONFIGURED = "consortium-not-configured"
    CONSORTIUM_HUB_IDENTITY = "consortium-hub-identity"
    CONSORTIUM_NOT_PARTICIPANT = "consortium-not-participant"
    CONSORTIUM_JOINED_TWICE = "consortium-joined-twice"
    CONSORTIUM_PARTICIPANT_LEFT = "consortium-participant-left"
    CONSORTIUM_JOIN_TIMEOUT = "consortium-join-timeout"
    CONSORTIUM_STAGE_TIMEOUT = "consortium-stage-timeout"
    CONSORTIUM_ROSTER = "consortium-roster"
    CONSORTIUM_KINDS = "consortium-kinds"
    CONSORTIUM_SIZE = "consortium-size"
    CONSORTIUM_DUPLICATE = "consortium-duplicate"
    CONSORTIUM_REBLIND = "consortium-reblind"
    CONSORTIUM_RESULTS = "consortium-results"
    CONSORTIUM_RECEIPT = "consortium-receipt"
    CONSORTIUM_HEADER = "consortium-header"
    CONSORTIUM_COUNTS = "consortium-counts"
    CONSORTIUM_OUTCOME = "consortium-outcome"
    CONSORTIUM_MISSING = "consortium-missing"
    # -- the audit log and its records ------------------------------------------------------
    CANONICAL_JSON = "canonical-json"
    RECORD_JSON = "record-json"
    RECORD_SCHEMA = "record-schema"
    RECORD_VERSION = "record-version"
    RECORD_SIGNATURE = "record-signature"
    RECORD_TIME = "record-time"
    RECORD_TIME_ORDER = "record-time-order"
    RECORD_BODY = "record-body"
    BODY_SCHEMA = "body-schema"
    EVENT = "event"
    SEQ = "seq"
    CHAIN = "chain"
    GENESIS = "genesis"
    LOG_ID = "log-id"
    LOG_ID_KEY = "log-id-key"
    LOG_KEY = "log-key"
    LOG_SHRANK = "log-shrank"
    TORN_LINE = "torn-line"
    WRITE_FAILED = "write-failed"
    ATOMIC_ROUND = "atomic-round"
    # -- Merkle tree, proofs and checkpoints ------------------------------------------------
    MERKLE_SIZE = "merkle-size"
    MERKLE_INDEX = "merkle-index"
    MERKLE_HASH_LENGTH = "merkle-hash-length"
    MERKLE_PROOF_LENGTH = "merkle-proof-length"
    MERKLE_INCLUSION = "merkle-inclusion"
    MERKLE_CONSISTENCY = "merkle-consistency"
    PROOF_FORMAT = "proof-format"
    PROOF_INDEX = "proof-index"
    PROOF_LEAF = "proof-leaf"
    PROOF_RECORD = "proof-record"
    PROOF_CHECKPOINT = "proof-checkpoint"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_FORMAT = "checkpoint-format"
    CHECKPOINT_ORIGIN = "checkpoint-origin"
    CHECKPOINT_SIGNATURE = "checkpoint-signature"
    CHECKPOINT_SIZE = "checkpoint-size"
    CHECKPOINT_ROOT = "checkpoint-root"
    # -- disputes: a side's sealed round record (protocol/disclosure.py) ----------------------
    DISCLOSURE_FORMAT = "disclosure-format"
    DISCLOSURE_TRANSCRIPT = "disclosure-transcript"
    DISCLOSURE_COMMITMENT = "disclosure-commitment"
    DISCLOSURE_DUMMIES = "disclosure-dummies"
    DISCLOSURE_STREAM = "disclosure-stream"
    # -- reconciling two labs' logs ---------------------------------------------------------
    RECONCILE = "reconcile"
    ROUND_ROLES = "round-roles"
    ROUND_MODE = "round-mode"
    ROUND_KINDS = "round-kinds"
    ROUND_SIZES = "round-sizes"
    ROUND_INTERSECTION = "round-intersection"
    ROUND_TRANSCRIPT = "round-transcript"
    ROUND_POLICY = "round-policy"
    ROUND_COMMITMENT = "round-commitment"
    ROUND_DUPLICATE = "round-duplicate"
    ROUND_OUTCOME = "round-outcome"
    ROUND_MISSING = "round-missing"
    LOG_IDENTITY = "log-identity"
    LOG_TRUNCATED = "log-truncated"
    LOG_REWRITTEN = "log-rewritten"
    # -- prompt input -----------------------------------------------------------------------
    PROMPT_TYPE = "prompt-type"
    PROMPT_EMPTY = "prompt-empty"
    PROMPT_BINARY = "prompt-binary"
    PROMPT_TOO_LARGE = "prompt-too-large"
    PROMPT_NO_WORDS = "prompt-no-words"
    # -- cases and warninglists (docs/cases.md) ----------------------------------------------
    CASE_UNKNOWN = "case-unknown"
    CASE_TRANSITION = "case-transition"
    CASE_ANALYST = "case-analyst"
    CASE_NOTE = "case-note"
    WARNINGLIST_SYNTAX = "warninglist-syntax"
    WARNINGLIST_SIGNATURE = "warninglist-signature"
    WARNINGLIST_ROLLBACK = "warninglist-rollback"
    FEEDBACK_DISABLED = "feedback-disabled"
    FEEDBACK_BATCH = "feedback-batch"
    FEEDBACK_RATE = "feedback-rate"
    FEEDBACK_UNKNOWN_MATCH = "feedback-unknown-match"
    # -- exports and enforcement hooks -----------------------------------------------------
    EXPORT_CASE = "export-case"
    EXPORT_KEY = "export-key"
    EXPORT_TLP = "export-tlp"
    EXPORT_PAP = "export-pap"
    HOOK_SECRET = "hook-secret"
    HOOK_SIGNATURE = "hook-signature"
    HOOK_STALE = "hook-stale"
    HOOK_RETRY = "hook-retry"
    HOOK_STATE = "hook-state"
    # -- certificates, CA, CRL and CSRs -----------------------------------------------------
    LAB_ID_SYNTAX = "lab-id-syntax"
    CERTIFICATE_MISSING = "certificate-missing"
    CERTIFICATE_MALFORMED = "certificate-malformed"
    CERTIFICATE_WRONG_CA = "certificate-wrong-ca"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_YET_VALID = "certificate-not-yet-valid"
    CERTIFICATE_REVOKED = "certificate-revoked"
    CERTIFICATE_LAB_MISMATCH = "certificate-lab-mismatch"
    CERTIFICATE_KEY_MISMATCH = "certificate-key-mismatch"
    CERTIFICATE_AUDIT_KEY_MISMATCH = "certificate-audit-key-mismatch"
    CA_CERTIFICATE_EXPIRED = "ca-certificate-expired"
    CRL_MALFORMED = "crl-malformed"
    CRL_WRONG_CA = "crl-wrong-ca"
    CRL_ROLLBACK = "crl-rollback"
    CRL_STALE = "crl-stale"
    CRL_MISSING = "crl-missing"
    CSR_MALFORMED = "csr-malformed"
    CSR_SIGNATURE_INVALID = "csr-signature-invalid"
    CSR_KEY_TYPE = "csr-key-type"
    CSR_SAN_MISMATCH = "csr-san-mismatch"
    CSR_AUDIT_KEY = "csr-audit-key"
    UNKNOWN_SERIAL = "unknown-serial"
    KEY_FILE_PERMISSIONS = "key-file-permissions"


# Spellings written before this module: snake_case verifier rules and dotted prompt rules.
_LEGACY = {r.value.replace("-", "_"): r for r in Rule} | {
    "identity": Rule.CERTIFICATE_MISSING,  # the hub's name for it until it used the node's
    "prompt.params": Rule.PROMPT_PARAMS,
    "prompt.type": Rule.PROMPT_TYPE,
    "prompt.empty": Rule.PROMPT_EMPTY,
    "prompt.binary": Rule.PROMPT_BINARY,
    "prompt.too-large": Rule.PROMPT_TOO_LARGE,
    "prompt.no-words": Rule.PROMPT_NO_WORDS,
}


def parse_rule(text: str | None) -> Rule | None:
    """The rule a peer or an old log names, in either spelling; None if it names none we know.

    A peer's text is never kept as a rule: an unknown name maps to None, so what reaches
    our logs and metric labels is always one of the members above.
    """
    if not text:
        return None
    try:
        return Rule(text)
    except ValueError:
        return _LEGACY.get(text)
