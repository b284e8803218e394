from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_CONFIRMED: _ClassVar[Verdict]
    VERDICT_FALSE_POSITIVE: _ClassVar[Verdict]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_REVEAL: _ClassVar[Mode]
    MODE_COUNT: _ClassVar[Mode]
VERDICT_UNSPECIFIED: Verdict
VERDICT_CONFIRMED: Verdict
VERDICT_FALSE_POSITIVE: Verdict
MODE_UNSPECIFIED: Mode
MODE_REVEAL: Mode
MODE_COUNT: Mode

class Opinion(_message.Message):
    __slots__ = ("round_id", "kind", "fingerprint", "verdict")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    kind: str
    fingerprint: bytes
    verdict: Verdict
    def __init__(self, round_id: _Optional[str] = ..., kind: _Optional[str] = ..., fingerprint: _Optional[bytes] = ..., verdict: _Optional[_Union[Verdict, str]] = ...) -> None: ...

class OpinionBatch(_message.Message):
    __slots__ = ("opinions",)
    OPINIONS_FIELD_NUMBER: _ClassVar[int]
    opinions: _containers.RepeatedCompositeFieldContainer[Opinion]
    def __init__(self, opinions: _Optional[_Iterable[_Union[Opinion, _Mapping]]] = ...) -> None: ...

class OpinionAck(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class KindSize(_message.Message):
    __slots__ = ("kind", "size")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    size: int
    def __init__(self, kind: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class OpenRoundRequest(_message.Message):
    __slots__ = ("protocol_version", "round_id", "initiator_lab", "responder_lab", "mode", "sizes", "policy_hash", "input_commitment", "prompt_params", "chunk_size", "nonce", "suite")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_LAB_FIELD_NUMBER: _ClassVar[int]
    RESPONDER_LAB_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    INPUT_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_PARAMS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SUITE_FIELD_NUMBER: _ClassVar[int]
    protocol_version: str
    round_id: str
    initiator_lab: str
    responder_lab: str
    mode: Mode
    sizes: _containers.RepeatedCompositeFieldContainer[KindSize]
    policy_hash: bytes
    input_commitment: bytes
    prompt_params: str
    chunk_size: int
    nonce: bytes
    suite: str
    def __init__(self, protocol_version: _Optional[str] = ..., round_id: _Optional[str] = ..., initiator_lab: _Optional[str] = ..., responder_lab: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., sizes: _Optional[_Iterable[_Union[KindSize, _Mapping]]] = ..., policy_hash: _Optional[bytes] = ..., input_commitment: _Optional[bytes] = ..., prompt_params: _Optional[str] = ..., chunk_size: _Optional[int] = ..., nonce: _Optional[bytes] = ..., suite: _Optional[str] = ...) -> None: ...

class OpenRoundResponse(_message.Message):
    __slots__ = ("round_id", "sizes", "input_commitment", "certificate_pem", "chunk_size", "identity_proof")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    INPUT_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_PROOF_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    sizes: _containers.RepeatedCompositeFieldContainer[KindSize]
    input_commitment: bytes
    certificate_pem: bytes
    chunk_size: int
    identity_proof: bytes
    def __init__(self, round_id: _Optional[str] = ..., sizes: _Optional[_Iterable[_Union[KindSize, _Mapping]]] = ..., input_commitment: _Optional[bytes] = ..., certificate_pem: _Optional[bytes] = ..., chunk_size: _Optional[int] = ..., identity_proof: _Optional[bytes] = ...) -> None: ...

class ExchangeMessage(_message.Message):
    __slots__ = ("start", "own_blinded", "peer_reblinded", "receipt", "commit", "abort", "reblind_commitment", "public_key", "proof_request", "match_proof")
    START_FIELD_NUMBER: _ClassVar[int]
    OWN_BLINDED_FIELD_NUMBER: _ClassVar[int]
    PEER_REBLINDED_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    REBLIND_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PROOF_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MATCH_PROOF_FIELD_NUMBER: _ClassVar[int]
    start: Start
    own_blinded: Chunk
    peer_reblinded: Chunk
    receipt: Receipt
    commit: Commit
    abort: Abort
    reblind_commitment: ReblindCommitment
    public_key: PublicKey
    proof_request: ProofRequest
    match_proof: MatchProof
    def __init__(self, start: _Optional[_Union[Start, _Mapping]] = ..., own_blinded: _Optional[_Union[Chunk, _Mapping]] = ..., peer_reblinded: _Optional[_Union[Chunk, _Mapping]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ..., commit: _Optional[_Union[Commit, _Mapping]] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ..., reblind_commitment: _Optional[_Union[ReblindCommitment, _Mapping]] = ..., public_key: _Optional[_Union[PublicKey, _Mapping]] = ..., proof_request: _Optional[_Union[ProofRequest, _Mapping]] = ..., match_proof: _Optional[_Union[MatchProof, _Mapping]] = ...) -> None: ...

class Start(_message.Message):
    __slots__ = ("round_id",)
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    def __init__(self, round_id: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("seq", "points")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    points: bytes
    def __init__(self, seq: _Optional[int] = ..., points: _Optional[bytes] = ...) -> None: ...

class ReblindCommitment(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    def __init__(self, digest: _Optional[bytes] = ...) -> None: ...

class PublicKey(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class ProofRequest(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: bytes
    def __init__(self, positions: _Optional[bytes] = ...) -> None: ...

class MatchProof(_message.Message):
    __slots__ = ("proof",)
    PROOF_FIELD_NUMBER: _ClassVar[int]
    proof: bytes
    def __init__(self, proof: _Optional[bytes] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("signed_receipt",)
    SIGNED_RECEIPT_FIELD_NUMBER: _ClassVar[int]
    signed_receipt: bytes
    def __init__(self, signed_receipt: _Optional[bytes] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Abort(_message.Message):
    __slots__ = ("reason", "rule")
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    rule: str
    def __init__(self, reason: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class ConsortiumMessage(_message.Message):
    __slots__ = ("join", "roster", "own_blinded", "reblind", "results", "receipt", "commit", "abort")
    JOIN_FIELD_NUMBER: _ClassVar[int]
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    OWN_BLINDED_FIELD_NUMBER: _ClassVar[int]
    REBLIND_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    join: ConsortiumJoin
    roster: ConsortiumRoster
    own_blinded: Chunk
    reblind: HopChunk
    results: ResultChunk
    receipt: Receipt
    commit: Commit
    abort: Abort
    def __init__(self, join: _Optional[_Union[ConsortiumJoin, _Mapping]] = ..., roster: _Optional[_Union[ConsortiumRoster, _Mapping]] = ..., own_blinded: _Optional[_Union[Chunk, _Mapping]] = ..., reblind: _Optional[_Union[HopChunk, _Mapping]] = ..., results: _Optional[_Union[ResultChunk, _Mapping]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ..., commit: _Optional[_Union[Commit, _Mapping]] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ...) -> None: ...

class ConsortiumJoin(_message.Message):
    __slots__ = ("protocol_version", "lab", "policy_hash", "sizes")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAB_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    protocol_version: str
    lab: str
    policy_hash: bytes
    sizes: _containers.RepeatedCompositeFieldContainer[KindSize]
    def __init__(self, protocol_version: _Optional[str] = ..., lab: _Optional[str] = ..., policy_hash: _Optional[bytes] = ..., sizes: _Optional[_Iterable[_Union[KindSize, _Mapping]]] = ...) -> None: ...

class LabSizes(_message.Message):
    __slots__ = ("lab", "sizes")
    LAB_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    lab: str
    sizes: _containers.RepeatedCompositeFieldContainer[KindSize]
    def __init__(self, lab: _Optional[str] = ..., sizes: _Optional[_Iterable[_Union[KindSize, _Mapping]]] = ...) -> None: ...

class ConsortiumRoster(_message.Message):
    __slots__ = ("round_id", "hub", "participants", "policy_hash", "k", "reveal_count", "hub_certificate_pem")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    HUB_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    REVEAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    HUB_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    hub: str
    participants: _containers.RepeatedCompositeFieldContainer[LabSizes]
    policy_hash: bytes
    k: int
    reveal_count: bool
    hub_certificate_pem: bytes
    def __init__(self, round_id: _Optional[str] = ..., hub: _Optional[str] = ..., participants: _Optional[_Iterable[_Union[LabSizes, _Mapping]]] = ..., policy_hash: _Optional[bytes] = ..., k: _Optional[int] = ..., reveal_count: bool = ..., hub_certificate_pem: _Optional[bytes] = ...) -> None: ...

class HopChunk(_message.Message):
    __slots__ = ("origin", "hop", "seq", "points")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    HOP_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    origin: int
    hop: int
    seq: int
    points: bytes
    def __init__(self, origin: _Optional[int] = ..., hop: _Optional[int] = ..., seq: _Optional[int] = ..., points: _Optional[bytes] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("seq", "values")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    values: bytes
    def __init__(self, seq: _Optional[int] = ..., values: _Optional[bytes] = ...) -> None: ...
