"""The receipt/commit state machine (protocol/session.py): the honest dance on both sides,
then one test per session rule, each changing one thing of an honest run."""

from __future__ import annotations

import hashlib

import pytest

from protocol.audit.records import make_log_id
from protocol.receipts import parse_receipt, receipt_bytes
from protocol.round_work import RoundOutcome
from protocol.session import (
    AbortRound,
    EndStream,
    ReceiptSession,
    SendCommit,
    SendReceipt,
    StoreAndCommit,
    our_receipt,
)
from protocol.transcript import RoundHeader
from tests.audit_simulator import fixed_key

KEYS = {"lab-a": fixed_key("session-a"), "lab-b": fixed_key("session-b")}
ROLE_LAB = {"initiator": "lab-a", "responder": "lab-b"}
HEADER = RoundHeader(
    round_id="0123456789abcdef0123456789abcdef",
    initiator="lab-a",
    responder="lab-b",
    mode="reveal",
    kinds=("email", "phone"),
    initiator_sizes=(10, 3),
    responder_sizes=(8, 0),
    policy_hash=b"p" * 32,
    initiator_commitment=b"a" * 32,
    responder_commitment=b"b" * 32,
)
OURS = RoundOutcome(hashlib.sha256(b"transcript").digest(), {"email": 2, "phone": 0})


def session(role: str, **changes) -> ReceiptSession:
    peer = ROLE_LAB["responder" if role == "initiator" else "initiator"]
    args = dict(
        role=role,
        round_id=HEADER.round_id,
        peer_lab=peer,
        peer_key=KEYS[peer].public_key(),
    )
    args.update(changes)
    return ReceiptSession(**args)  # type: ignore[arg-type]


def signed_by(role: str, *, header: RoundHeader = HEADER, ours: RoundOutcome = OURS) -> bytes:
    lab = ROLE_LAB[role]
    key = KEYS[lab]
    receipt = our_receipt(
        header,
        ours,
        signer=lab,
        log_id=make_log_id(lab, key.public_key()),
        log_head=(5, hashlib.sha256(b"root").digest()),
        key=key,
    )
    return receipt_bytes(receipt)


def receive(s: ReceiptSession, data: bytes, *, settled: bool = True, ours=OURS) -> list:
    return s.on_receipt(data, proofs_settled=settled, ours=lambda: ours)


def rule_of(actions: list) -> str:
    assert len(actions) == 1 and isinstance(actions[0], AbortRound), actions
    return str(actions[0].error.rule)


# -- the honest dance -----------------------------------------------------------------------


def test_the_responder_speaks_first_then_commits_on_the_initiators_receipt():
    s = session("responder")
    assert s.stage == "exchange"
    assert s.matched() == [SendReceipt()]
    assert s.matched() == []  # once
    assert s.stage == "receipt"
    actions = receive(s, signed_by("initiator"))
    assert isinstance(actions[0], StoreAndCommit) and actions[1:] == [SendCommit(), EndStream()]
    assert actions[0].peer_receipt["signer"] == "lab-a" and s.committed


def test_the_initiator_answers_the_receipt_then_commits_on_commit():
    s = session("initiator")
    assert s.matched() == []  # it waits for the responder's receipt
    assert receive(s, signed_by("responder")) == [SendReceipt()]
    actions = s.on_commit()
    assert isinstance(actions[0], StoreAndCommit) and actions[1:] == [EndStream()]
    assert s.committed


def test_ours_is_not_asked_for_a_receipt_out_of_order():
    s = session("responder")

    def never() -> RoundOutcome:
        raise AssertionError("asked for our result")

    assert rule_of(s.on_receipt(signed_by("initiator"), proofs_settled=True, ours=never)) == (
        "message-order"
    )


# -- one rule each ----------------------------------------------------------------------------


def test_message_order_a_second_receipt():
    s = session("initiator")
    receive(s, signed_by("responder"))
    assert rule_of(receive(s, signed_by("responder"))) == "message-order"


def test_message_order_a_receipt_before_the_match_proofs():
    s = session("initiator", proofs=True)
    assert rule_of(receive(s, signed_by("responder"), settled=False)) == "message-order"
    assert receive(s, signed_by("responder"), settled=True) == [SendReceipt()]


def test_message_order_a_receipt_before_the_responders_own():
    assert rule_of(receive(session("responder"), signed_by("initiator"))) == "message-order"


def test_message_order_a_commit_to_the_responder():
    s = session("responder")
    s.matched()
    assert rule_of(s.on_commit()) == "message-order"


def test_message_order_a_commit_before_the_initiators_receipt():
    assert rule_of(session("initiator").on_commit()) == "message-order"
    assert not session("initiator").committed


def test_receipt_format_bytes_that_are_no_receipt():
    assert rule_of(receive(session("initiator"), b"{not json")) == "receipt-format"


def test_receipt_log_id_a_receipt_from_a_log_of_another_key():
    s = session("initiator", peer_key=fixed_key("someone else").public_key())
    assert rule_of(receive(s, signed_by("responder"))) == "receipt-log-id"


def test_receipt_signature_a_receipt_whose_signature_was_changed():
    receipt = parse_receipt(signed_by("responder"))
    sig = receipt["sig"]
    receipt["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert rule_of(receive(session("initiator"), receipt_bytes(receipt))) == "receipt-signature"


def test_receipt_signer_a_receipt_of_the_wrong_lab():
    # The initiator's own receipt echoed back: signed, but not by the peer.
    s = session("initiator", peer_key=KEYS["lab-a"].public_key())
    assert rule_of(receive(s, signed_by("initiator"))) == "receipt-signer"


def test_receipt_round_a_receipt_of_another_round():
    other = RoundHeader(**{**HEADER.__dict__, "round_id": "f" * 32})
    assert rule_of(receive(session("initiator"), signed_by("responder", header=other))) == (
        "receipt-round"
    )


def test_receipt_transcript_a_receipt_over_another_transcript():
    theirs = RoundOutcome(hashlib.sha256(b"other").digest(), OURS.intersection_sizes)
    assert rule_of(receive(session("initiator"), signed_by("responder", ours=theirs))) == (
        "receipt-transcript"
    )


def test_receipt_mismatch_other_intersection_sizes():
    theirs = RoundOutcome(OURS.transcript_hash, {"email": 3, "phone": 0})
    assert rule_of(receive(session("initiator"), signed_by("responder", ours=theirs))) == (
        "receipt-mismatch"
    )


def test_a_refused_receipt_leaves_the_session_uncommitted():
    s = session("responder")
    s.matched()
    theirs = RoundOutcome(OURS.transcript_hash, {"email": 1, "phone": 0})
    rule_of(receive(s, signed_by("initiator", ours=theirs)))
    assert not s.committed and s.peer_receipt is None


def test_peer_abort_keeps_one_of_our_rules_and_bounds_the_reason():
    actions = session("initiator").on_abort("x" * 10_000, "receipt-mismatch")
    assert rule_of(actions) == "receipt-mismatch"
    assert len(actions[0].error.message) < 300


def test_peer_abort_an_unknown_rule_becomes_peer_abort():
    assert rule_of(session("responder").on_abort("bye", "rm -rf /")) == "peer-abort"


def test_a_session_has_a_role():
    with pytest.raises(ValueError):
        session("observer")
