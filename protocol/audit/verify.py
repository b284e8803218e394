"""Whole-log verification: every record, in order, against every rule.

``LogVerifier`` is the pure state of one audit log: ``feed`` takes the next
line, checks it and advances (the node's AuditLog feeds every line it writes,
so it can never write a record that ``audit verify`` would reject).
``verify_log_bytes`` runs it over a whole file and returns a ``VerifyReport``.

The first failure raises VerificationError with ``where="record N"`` and a
``rule``. Rules, in the order they are checked for each record:

  record-json        the line is canonical JSON (RFC 8785 style)
  record-schema      exactly the envelope members, of the right types
  record-version     the envelope version tag is known
  genesis            record 0 is log_created, and only record 0
  log-id-key         the log id's fingerprint is the key's
  log-key            the embedded key is the key the verifier was given
  log-id             every record names the same log (and the expected one)
  record-signature   Ed25519 signature by the log key
  seq                seq equals the record's position (nothing removed or reordered)
  chain              prev is the leaf hash of the record before
  record-time        the time is RFC 3339 UTC
  body-schema        the event's required body members are present
  checkpoint-*       a checkpoint record covers exactly the records before it
  receipt-*, own-receipt-head
                     a completed round's receipts verify (the message says own or
                     peer) and agree with the record
  torn-line          the file ends with a newline (no half-written last record)

External checkpoints (kept by the node or held by a peer) are checked after the
last record: checkpoint-format, checkpoint-origin, checkpoint-signature,
checkpoint-size (records removed from the end), checkpoint-root (log rewritten).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.audit.canonical import parse_canonical
from protocol.audit.checkpoint import Checkpoint, verify_checkpoint
from protocol.audit.merkle import EMPTY_ROOT, TreeFrontier, leaf_hash
from protocol.audit.records import (
    GENESIS_EVENT,
    GENESIS_PREV,
    HEX32_RE,
    check_envelope,
    key_fingerprint,
    missing_body_fields,
    parse_log_id,
    parse_time,
    public_key_bytes,
    public_key_from_hex,
    verify_record_signature,
)
from protocol.audit.shapes import body_shape_problem
from protocol.errors import CrossmatchError, VerificationError
from protocol.receipts import check_receipt_claims, verify_receipt
from protocol.rules import Rule

KEY_SUPPLIED = "supplied"
KEY_EMBEDDED = "embedded"


@dataclass
class VerifyReport:
    """What a verified log holds; ``records`` and ``roots`` feed reconcile, prove and report."""

    log_id: str
    lab: str
    size: int
    root: bytes
    public_key: Ed25519PublicKey
    key_source: str
    events: dict[str, int]
    checkpoints_in_log: int
    external_checkpoints: list[Checkpoint]
    peer_receipts_verified: int
    peer_receipts_unchecked: dict[str, int]
    recoveries: list[dict[str, Any]]
    warnings: list[str]
    first_time: str | None
    last_time: str | None
    records: list[dict[str, Any]] = field(repr=False, default_factory=list)
    lines: list[bytes] = field(repr=False, default_factory=list)
    roots: list[bytes] = field(repr=False, default_factory=list)
    leaf_hashes: list[bytes] = field(repr=False, default_factory=list)

    @property
    def key_fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def root_at(self, size: int) -> bytes:
        return self.roots[size]

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "lab": self.lab,
            "records": self.size,
            "root": self.root.hex(),
            "key_fingerprint": self.key_fingerprint,
            "key_source": self.key_source,
            "events": dict(sorted(self.events.items())),
            "checkpoints_in_log": self.checkpoints_in_log,
            "external_checkpoints": [
                {"size": c.size, "root": c.root.hex(), "time": c.time}
                for c in self.external_checkpoints
            ],
            "peer_receipts_verified": self.peer_receipts_verified,
            "peer_receipts_unchecked": dict(sorted(self.peer_receipts_unchecked.items())),
            "recoveries": self.recoveries,
            "warnings": self.warnings,
            "first_time": self.first_time,
            "last_time": self.last_time,
        }

    def summary_lines(self) -> list[str]:
        key_note = (
            "the key you supplied"
            if self.key_source == KEY_SUPPLIED
            else "the key embedded in record 0 (self-asserted: compare its fingerprint "
            "with one you obtained independently, or pass --key)"
        )
        lines = [
            f"log {self.log_id}: intact",
            f"  records: {self.size}, root {self.root.hex()}",
            f"  signatures: all {self.size} verified with {key_note}, "
            f"fingerprint {self.key_fingerprint}",
            f"  hash chain and Merkle tree: consistent; "
            f"{self.checkpoints_in_log} in-log checkpoints match",
        ]
        for c in self.external_checkpoints:
            lines.append(f"  external checkpoint at size {c.size} ({c.time}): consistent")
        lines.append(f"  peer receipts verified with peer keys: {self.peer_receipts_verified}")
        for peer, n in sorted(self.peer_receipts_unchecked.items()):
            lines.append(f"  peer receipts NOT signature-checked (no key for {peer}): {n}")
        for r in self.recoveries:
            lines.append(
                f"  recovery at record {r['seq']}: {r['bytes']} torn bytes "
                f"moved to {r['quarantine_file']}"
            )
        lines.extend(f"  warning: {w}" for w in self.warnings)
        events = ", ".join(f"{name} {n}" for name, n in sorted(self.events.items()))
        lines.append(f"  events: {events}")
        if self.first_time:
            lines.append(f"  from {self.first_time} to {self.last_time}")
        return lines


def _fail(n: int, message: str, rule: Rule) -> VerificationError:
    return VerificationError(message, where=f"record {n}", rule=rule)


class LogVerifier:
    """Checks lines one by one and keeps the tree head; ``keep`` retains records for reports."""

    def __init__(
        self,
        *,
        public_key: Ed25519PublicKey | None = None,
        peer_keys: Mapping[str, Ed25519PublicKey] | None = None,
        log_id: str | None = None,
        keep: bool = True,
    ):
        self._expected_key = public_key
        self._expected_log_id = log_id
        self._peer_keys = dict(peer_keys or {})
        self._keep = keep
        self.key: Ed25519PublicKey | None = None
        self.log_id: str | None = None
        self.lab = ""
        self.frontier = TreeFrontier()
        self.roots: list[bytes] = [EMPTY_ROOT]
        self.last_leaf = bytes.fromhex(GENESIS_PREV)
        self.last_time: datetime | None = None
        self.first_time: str | None = None
        self.last_time_text: str | None = None
        self.events: Counter[str] = Counter()
        self.checkpoints = 0
        self.peer_verified = 0
        self.peer_unchecked: Counter[str] = Counter()
        self.recoveries: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.lines: list[bytes] = []
        self.leaf_hashes: list[bytes] = []
        self._outcomes: dict[str, int] = {}  # round id -> record of its outcome

    @property
    def size(self) -> int:
        return self.frontier.size

    @property
    def root(self) -> bytes:
        return self.roots[-1]

    def feed(self, line: bytes) -> dict[str, Any]:
        """Check the next record; advance only if every rule holds."""
        n = self.size
        try:
            record = parse_canonical(line)
        except CrossmatchError as e:
            raise _fail(n, f"not a canonical JSON record: {e.message}", Rule.RECORD_JSON) from e
        try:
            check_envelope(record)
        except VerificationError as e:
            raise _fail(n, e.message, e.rule or Rule.RECORD_SCHEMA) from e
        key = self._check_identity(n, record)
        try:
            verify_record_signature(record, key)
        except VerificationError as e:
            raise _fail(n, e.message, Rule.RECORD_SIGNATURE) from e
        if record["seq"] != n:
            raise _fail(
                n,
                f"seq is {record['seq']}, expected {n} "
                "(a record was removed, inserted or reordered)",
                Rule.SEQ,
            )
        if record["prev"] != self.last_leaf.hex():
            raise _fail(
                n,
                f"prev is {record['prev']}, expected {self.last_leaf.hex()} "
                f"(the leaf hash of record {n - 1})",
                Rule.CHAIN,
            )
        when = self._check_time(n, record["time"])
        if n == 0:  # the log's identity, now that record 0 passed every check
            self.key, self.log_id = key, record["log"]
            self.lab = parse_log_id(record["log"])[0]
        self._check_body(n, record)
        self._advance(line, record, when)
        checked: dict[str, Any] = record
        return checked

    def _check_identity(self, n: int, record: dict[str, Any]) -> Ed25519PublicKey:
        if n > 0:
            if record["event"] == GENESIS_EVENT:
                raise _fail(n, "log_created may only be record 0", Rule.GENESIS)
            if record["log"] != self.log_id:
                raise _fail(
                    n,
                    f"record names log {record['log']!r}, this log is {self.log_id!r}",
                    Rule.LOG_ID,
                )
            assert self.key is not None
            return self.key
        if record["event"] != GENESIS_EVENT:
            raise _fail(
                0, f"record 0 is {record['event']!r}, expected {GENESIS_EVENT!r}", Rule.GENESIS
            )
        missing = missing_body_fields(GENESIS_EVENT, record["body"])
        if missing:
            raise _fail(0, f"log_created body lacks {', '.join(missing)}", Rule.GENESIS)
        try:
            embedded = public_key_from_hex(record["body"]["public_key"])
            _, fingerprint = parse_log_id(record["log"])
        except VerificationError as e:
            raise _fail(0, e.message, e.rule or Rule.GENESIS) from e
        if record["body"]["log_id"] != record["log"]:
            raise _fail(0, "log_created names a different log id than its envelope", Rule.LOG_ID)
        if fingerprint != key_fingerprint(embedded):
            raise _fail(
                0,
                f"log id fingerprint {fingerprint} is not that of the embedded key "
                f"({key_fingerprint(embedded)})",
                Rule.LOG_ID_KEY,
            )
        expected = self._expected_key
        if expected is not None and public_key_bytes(expected) != public_key_bytes(embedded):
            raise _fail(
                0,
                f"the log is signed by key {key_fingerprint(embedded)}, "
                f"expected {key_fingerprint(expected)} "
                "(a different key: the log was replaced, or the wrong key file was given)",
                Rule.LOG_KEY,
            )
        if self._expected_log_id is not None and record["log"] != self._expected_log_id:
            raise _fail(
                0, f"this is log {record['log']!r}, expected {self._expected_log_id!r}", Rule.LOG_ID
            )
        return expected or embedded

    def _check_time(self, n: int, text: str) -> datetime:
        try:
            when = parse_time(text)
        except ValueError as e:
            raise _fail(n, str(e), Rule.RECORD_TIME) from e
        if self.last_time is not None and when < self.last_time:
            # The writer never goes back (it stamps max(clock, last time)): a record
            # earlier than the one before was reordered or inserted.
            raise _fail(
                n,
                f"time {text} is earlier than the record before ({self.last_time_text})",
                Rule.RECORD_TIME_ORDER,
            )
        return when

    def _check_body(self, n: int, record: dict[str, Any]) -> None:
        event, body = record["event"], record["body"]
        missing = missing_body_fields(event, body)
        if missing:
            raise _fail(n, f"{event} body lacks {', '.join(missing)}", Rule.BODY_SCHEMA)
        if event == "checkpoint":
            self._check_checkpoint_record(n, body)
        elif event == "round_completed":
            self._check_round(n, body)
        problem = body_shape_problem(event, body)
        if problem:
            raise _fail(n, f"{event} {problem}", Rule.BODY_SCHEMA)
        if event in ("round_completed", "round_aborted"):
            self._check_one_outcome(n, body["round_id"])

    def _check_one_outcome(self, n: int, round_id: str) -> None:
        """A round ends once: a second outcome for one round id is a desynchronised log."""
        if round_id in self._outcomes:
            raise _fail(
                n,
                f"round {round_id} already has an outcome (record {self._outcomes[round_id]})",
                Rule.ROUND_OUTCOME,
            )
        self._outcomes[round_id] = n

    def _check_checkpoint_record(self, n: int, body: dict[str, Any]) -> None:
        note = body["checkpoint"]
        if not isinstance(note, str):
            raise _fail(n, "checkpoint body is not text", Rule.CHECKPOINT_FORMAT)
        assert self.key is not None and self.log_id is not None
        try:
            checkpoint = verify_checkpoint(note, self.key, origin=self.log_id)
        except VerificationError as e:
            raise _fail(n, e.message, e.rule or Rule.CHECKPOINT) from e
        if checkpoint.size != n:
            raise _fail(
                n,
                f"checkpoint covers {checkpoint.size} records, expected the {n} before it",
                Rule.CHECKPOINT_SIZE,
            )
        if checkpoint.root != self.root:
            raise _fail(
                n,
                f"checkpoint root {checkpoint.root.hex()} is not the tree root {self.root.hex()} "
                f"of the {n} records before it",
                Rule.CHECKPOINT_ROOT,
            )

    def _check_round(self, n: int, body: dict[str, Any]) -> None:
        problem = round_body_problem(body)
        if problem:
            raise _fail(n, f"round_completed {problem}", Rule.BODY_SCHEMA)
        transcript = bytes.fromhex(body["transcript_hash"])
        round_id, peer = body["round_id"], body["peer"]
        own, theirs = body["own_receipt"], body["peer_receipt"]
        assert self.key is not None
        try:
            verify_receipt(
                own, self.key, round_id=round_id, transcript_hash=transcript, signer=self.lab
            )
        except VerificationError as e:
            raise _fail(n, f"own receipt: {e.message}", e.rule or Rule.RECEIPT_SIGNATURE) from e
        self._check_own_head(n, own)
        peer_key = self._peer_keys.get(peer)
        try:
            if peer_key is not None:
                verify_receipt(
                    theirs, peer_key, round_id=round_id, transcript_hash=transcript, signer=peer
                )
            else:
                check_receipt_claims(
                    theirs, round_id=round_id, transcript_hash=transcript, signer=peer
                )
        except VerificationError as e:
            raise _fail(
                n, f"peer receipt from {peer!r}: {e.message}", e.rule or Rule.RECEIPT_SIGNATURE
            ) from e
        for name, receipt in (("own", own), ("peer", theirs)):
            problem = receipt_disagreement(body, receipt, own_lab=self.lab)
            if problem:
                raise _fail(
                    n, f"{name} receipt disagrees with the record: {problem}", Rule.RECEIPT_BODY
                )
        if peer_key is not None:
            self.peer_verified += 1
        else:
            self.peer_unchecked[peer] += 1

    def _check_own_head(self, n: int, own: dict[str, Any]) -> None:
        head = own["log"]
        if head["id"] != self.log_id:
            raise _fail(
                n, f"own receipt names log {head['id']!r}, not this log", Rule.OWN_RECEIPT_HEAD
            )
        if head["size"] > n:
            raise _fail(
                n,
                f"own receipt names log size {head['size']}, beyond the {n} records before it",
                Rule.OWN_RECEIPT_HEAD,
            )
        if head["root"] != self.roots[head["size"]].hex():
            raise _fail(
                n,
                f"own receipt names root {head['root']} at size {head['size']}, "
                f"but this log's root there is {self.roots[head['size']].hex()}",
                Rule.OWN_RECEIPT_HEAD,
            )

    def _advance(self, line: bytes, record: dict[str, Any], when: datetime) -> None:
        leaf = leaf_hash(line)
        self.frontier.append(leaf)
        self.roots.append(self.frontier.root())
        self.last_leaf, self.last_time = leaf, when
        self.first_time = self.first_time or record["time"]
        self.last_time_text = record["time"]
        self.events[record["event"]] += 1
        self.checkpoints += record["event"] == "checkpoint"
        if record["event"] == "recovery":
            self.recoveries.append({"seq": self.size - 1, **record["body"]})
        if self._keep:
            self.records.append(record)
            self.lines.append(line)
            self.leaf_hashes.append(leaf)

    def check_external_checkpoint(self, note: str, *, label: str = "checkpoint") -> Checkpoint:
        """A checkpoint kept outside the log (by the node or a peer) must match this log."""
        assert self.key is not None and self.log_id is not None
        try:
            checkpoint = verify_checkpoint(note, self.key, origin=self.log_id)
        except VerificationError as e:
            raise VerificationError(e.message, where=label, rule=e.rule) from e
        if checkpoint.size > self.size:
            raise VerificationError(
                f"checkpoint covers {checkpoint.size} records but the log holds only {self.size}: "
                "records were removed from the end",
                where=label,
                rule=Rule.CHECKPOINT_SIZE,
            )
        if checkpoint.root != self.roots[checkpoint.size]:
            raise VerificationError(
                f"checkpoint root at size {checkpoint.size} is {checkpoint.root.hex()}, "
                "but the log's root "
                f"there is {self.roots[checkpoint.size].hex()}: the log was rewritten",
                where=label,
                rule=Rule.CHECKPOINT_ROOT,
            )
        return checkpoint

    def report(self, external: list[Checkpoint]) -> VerifyReport:
        assert self.key is not None and self.log_id is not None
        return VerifyReport(
            log_id=self.log_id,
            lab=self.lab,
            size=self.size,
            root=self.root,
            public_key=self.key,
            key_source=KEY_SUPPLIED if self._expected_key is not None else KEY_EMBEDDED,
            events=dict(self.events),
            checkpoints_in_log=self.checkpoints,
            external_checkpoints=external,
            peer_receipts_verified=self.peer_verified,
            peer_receipts_unchecked=dict(self.peer_unchecked),
            recoveries=self.recoveries,
            warnings=self.warnings,
            first_time=self.first_time,
            last_time=self.last_time_text,
            records=self.records,
            lines=self.lines,
            roots=self.roots,
            leaf_hashes=self.leaf_hashes,
        )


def _is_counts(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value.values()
    )


def round_body_problem(body: dict[str, Any]) -> str | None:
    """Types of the round_completed members that verification relies on, or None."""
    checks = (
        ("round_id", isinstance(body["round_id"], str)),
        ("peer", isinstance(body["peer"], str)),
        ("role", body["role"] in ("initiator", "responder")),
        ("mode", isinstance(body["mode"], str)),
        ("kinds", isinstance(body["kinds"], list)
            and all(isinstance(k, str) for k in body["kinds"])),
        ("own_sizes", _is_counts(body["own_sizes"])),
        ("peer_sizes", _is_counts(body["peer_sizes"])),
        ("intersection_sizes", _is_counts(body["intersection_sizes"])),
        ("transcript_hash", isinstance(body["transcript_hash"], str)
            and HEX32_RE.match(body["transcript_hash"]) is not None),
        ("own_receipt", isinstance(body["own_receipt"], dict)),
        ("peer_receipt", isinstance(body["peer_receipt"], dict)),
    )  # fmt: skip
    for name, ok in checks:
        if not ok:
            return f"member {name!r} has the wrong type or form"
    return None


def _sorted_counts(value: Any) -> Any:
    return dict(sorted(value.items())) if isinstance(value, dict) else value


def receipt_disagreement(
    body: dict[str, Any], receipt: dict[str, Any], *, own_lab: str
) -> str | None:
    """How a round_completed body and one of its receipts disagree, or None."""
    peer, role = body["peer"], body["role"]
    initiator, responder = (own_lab, peer) if role == "initiator" else (peer, own_lab)
    if (receipt["initiator"], receipt["responder"]) != (initiator, responder):
        return (
            f"receipt has initiator {receipt['initiator']!r} and responder {receipt['responder']!r}"
        )
    sizes = receipt["sizes"]
    peer_role = "responder" if role == "initiator" else "initiator"
    comparisons = (
        ("mode", body["mode"], receipt["mode"]),
        ("kinds", sorted(body["kinds"]), sorted(receipt["kinds"])),
        ("own_sizes", _sorted_counts(body["own_sizes"]), _sorted_counts(sizes.get(role))),
        ("peer_sizes", _sorted_counts(body["peer_sizes"]), _sorted_counts(sizes.get(peer_role))),
        ("intersection_sizes", _sorted_counts(body["intersection_sizes"]),
         _sorted_counts(receipt["intersection_sizes"])),
    )  # fmt: skip
    for name, in_body, in_receipt in comparisons:
        if in_body != in_receipt:
            return f"{name} is {in_body!r} in the record and {in_receipt!r} in the receipt"
    return None


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines, and the bytes after the last newline (a torn line if not empty)."""
    *lines, tail = data.split(b"\n")
    return lines, tail


def verify_log_bytes(
    data: bytes,
    *,
    public_key: Ed25519PublicKey | None = None,
    peer_keys: Mapping[str, Ed25519PublicKey] | None = None,
    checkpoints: Iterable[tuple[str, str]] = (),
    log_id: str | None = None,
) -> VerifyReport:
    """Verify a whole log file's bytes; ``checkpoints`` are (label, note text) kept elsewhere."""
    verifier = LogVerifier(public_key=public_key, peer_keys=peer_keys, log_id=log_id)
    return check_log_bytes(verifier, data, checkpoints)


def check_log_bytes(
    verifier: LogVerifier, data: bytes, checkpoints: Iterable[tuple[str, str]] = ()
) -> VerifyReport:
    """Feed a whole file to ``verifier``; after a failure it still holds the records before it."""
    if not data:
        raise VerificationError(
            "the log is empty (record 0, log_created, is missing)",
            where="record 0",
            rule=Rule.GENESIS,
        )
    lines, tail = split_lines(data)
    for line in lines:
        verifier.feed(line)
    if tail:
        raise _fail(
            verifier.size,
            f"torn last line: {len(tail)} bytes without a newline (a crash mid-write?); "
            "starting the node moves it to quarantine and logs a recovery record",
            Rule.TORN_LINE,
        )
    external = [
        verifier.check_external_checkpoint(note, label=label) for label, note in checkpoints
    ]
    return verifier.report(external)
