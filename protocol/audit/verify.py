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
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.audit.canonical import parse_canonical
from protocol.audit.checkpoint import Checkpoint, verify_checkpoint
from protocol.audit.events import body_shape_problem
from protocol.audit.merkle import EMPTY_ROOT, TreeFrontier, leaf_hash
from protocol.audit.records import (
    GENESIS_EVENT,
    GENESIS_PREV,
    check_envelope,
    key_fingerprint,
    missing_body_fields,
    parse_log_id,
    parse_time,
    public_key_bytes,
    public_key_from_hex,
    record_error,
    verify_record_signature,
)
from protocol.audit.round_checks import check_round_completed
from protocol.audit.verify_report import KEY_EMBEDDED, KEY_SUPPLIED, VerifyReport
from protocol.errors import CrossmatchError, VerificationError
from protocol.rules import Rule


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
        self._outcomes: dict[str, tuple[int, str]] = {}  # round id -> (record, event)

    def outcome_of(self, round_id: str) -> str | None:
        """The event that ended ``round_id`` in the records fed so far, or None."""
        found = self._outcomes.get(round_id)
        return found[1] if found else None

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
            raise record_error(
                n, f"not a canonical JSON record: {e.message}", Rule.RECORD_JSON
            ) from e
        try:
            check_envelope(record)
        except VerificationError as e:
            raise record_error(n, e.message, e.rule or Rule.RECORD_SCHEMA) from e
        key = self._check_identity(n, record)
        try:
            verify_record_signature(record, key)
        except VerificationError as e:
            raise record_error(n, e.message, Rule.RECORD_SIGNATURE) from e
        if record["seq"] != n:
            raise record_error(
                n,
                f"seq is {record['seq']}, expected {n} "
                "(a record was removed, inserted or reordered)",
                Rule.SEQ,
            )
        if record["prev"] != self.last_leaf.hex():
            raise record_error(
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
                raise record_error(n, "log_created may only be record 0", Rule.GENESIS)
            if record["log"] != self.log_id:
                raise record_error(
                    n,
                    f"record names log {record['log']!r}, this log is {self.log_id!r}",
                    Rule.LOG_ID,
                )
            assert self.key is not None
            return self.key
        if record["event"] != GENESIS_EVENT:
            raise record_error(
                0, f"record 0 is {record['event']!r}, expected {GENESIS_EVENT!r}", Rule.GENESIS
            )
        missing = missing_body_fields(GENESIS_EVENT, record["body"])
        if missing:
            raise record_error(0, f"log_created body lacks {', '.join(missing)}", Rule.GENESIS)
        try:
            embedded = public_key_from_hex(record["body"]["public_key"])
            _, fingerprint = parse_log_id(record["log"])
        except VerificationError as e:
            raise record_error(0, e.message, e.rule or Rule.GENESIS) from e
        if record["body"]["log_id"] != record["log"]:
            raise record_error(
                0, "log_created names a different log id than its envelope", Rule.LOG_ID
            )
        if fingerprint != key_fingerprint(embedded):
            raise record_error(
                0,
                f"log id fingerprint {fingerprint} is not that of the embedded key "
                f"({key_fingerprint(embedded)})",
                Rule.LOG_ID_KEY,
            )
        expected = self._expected_key
        if expected is not None and public_key_bytes(expected) != public_key_bytes(embedded):
            raise record_error(
                0,
                f"the log is signed by key {key_fingerprint(embedded)}, "
                f"expected {key_fingerprint(expected)} "
                "(a different key: the log was replaced, or the wrong key file was given)",
                Rule.LOG_KEY,
            )
        if self._expected_log_id is not None and record["log"] != self._expected_log_id:
            raise record_error(
                0, f"this is log {record['log']!r}, expected {self._expected_log_id!r}", Rule.LOG_ID
            )
        return expected or embedded

    def _check_time(self, n: int, text: str) -> datetime:
        try:
            when = parse_time(text)
        except ValueError as e:
            raise record_error(n, str(e), Rule.RECORD_TIME) from e
        if self.last_time is not None and when < self.last_time:
            # The writer never goes back (it stamps max(clock, last time)): a record
            # earlier than the one before was reordered or inserted.
            raise record_error(
                n,
                f"time {text} is earlier than the record before ({self.last_time_text})",
                Rule.RECORD_TIME_ORDER,
            )
        return when

    def _check_body(self, n: int, record: dict[str, Any]) -> None:
        event, body = record["event"], record["body"]
        missing = missing_body_fields(event, body)
        if missing:
            raise record_error(n, f"{event} body lacks {', '.join(missing)}", Rule.BODY_SCHEMA)
        if event == "checkpoint":
            self._check_checkpoint_record(n, body)
        elif event == "round_completed":
            self._check_round(n, body)
        problem = body_shape_problem(event, body)
        if problem:
            raise record_error(n, f"{event} {problem}", Rule.BODY_SCHEMA)
        if event in ("round_completed", "round_aborted"):
            self._check_one_outcome(n, body["round_id"], event)

    def _check_one_outcome(self, n: int, round_id: str, event: str) -> None:
        """A round ends once: a second outcome for one round id is a desynchronised log."""
        if round_id in self._outcomes:
            raise record_error(
                n,
                f"round {round_id} already has an outcome (record {self._outcomes[round_id][0]})",
                Rule.ROUND_OUTCOME,
            )
        self._outcomes[round_id] = (n, event)

    def _check_checkpoint_record(self, n: int, body: dict[str, Any]) -> None:
        note = body["checkpoint"]
        if not isinstance(note, str):
            raise record_error(n, "checkpoint body is not text", Rule.CHECKPOINT_FORMAT)
        assert self.key is not None and self.log_id is not None
        try:
            checkpoint = verify_checkpoint(note, self.key, origin=self.log_id)
        except VerificationError as e:
            raise record_error(n, e.message, e.rule or Rule.CHECKPOINT) from e
        if checkpoint.size != n:
            raise record_error(
                n,
                f"checkpoint covers {checkpoint.size} records, expected the {n} before it",
                Rule.CHECKPOINT_SIZE,
            )
        if checkpoint.root != self.root:
            raise record_error(
                n,
                f"checkpoint root {checkpoint.root.hex()} is not the tree root {self.root.hex()} "
                f"of the {n} records before it",
                Rule.CHECKPOINT_ROOT,
            )

    def _check_round(self, n: int, body: dict[str, Any]) -> None:
        assert self.key is not None and self.log_id is not None
        peer = body["peer"]
        peer_key = self._peer_keys.get(peer)
        check_round_completed(
            n, body, key=self.key, lab=self.lab, log_id=self.log_id, roots=self.roots,
            peer_key=peer_key,
        )  # fmt: skip
        if peer_key is not None:
            self.peer_verified += 1
        else:
            self.peer_unchecked[peer] += 1

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
        raise record_error(
            verifier.size,
            f"torn last line: {len(tail)} bytes without a newline (a crash mid-write?); "
            "starting the node moves it to quarantine and logs a recovery record",
            Rule.TORN_LINE,
        )
    external = [
        verifier.check_external_checkpoint(note, label=label) for label, note in checkpoints
    ]
    return verifier.report(external)
