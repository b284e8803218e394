"""Admission rules, one test per rule: a valid proposal with one field changed is refused
with that rule; the unchanged one is accepted. Pure functions, no network, no clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import PROTOCOL_VERSION
from protocol.admission import Flight, admit_proposal, admit_response
from protocol.errors import CrossmatchError, PolicyError
from protocol.identity import PeerIdentity
from protocol.messages import Proposal, ProposalResponse
from protocol.policy import DEFAULT_POLICY, Policy
from protocol.rules import Rule

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(
    policy_id="test",
    allowed_kinds=("email", "phone", "prompt"),
    max_set_size={"*": 1000},
    kind_modes={"phone": "count"},
    min_interval_seconds=600,
)
PARAMS = "minhash-v1-test"
USED = "f" * 32
VALID = Proposal(
    protocol_version=PROTOCOL_VERSION,
    round_id="a" * 32,
    initiator="lab-a",
    responder="lab-b",
    mode="reveal",
    kinds=("email", "prompt"),
    sizes=(10, 20),
    policy_hash=POLICY.hash(),
    input_commitment=b"\x00" * 32,
    prompt_params=PARAMS,
    chunk_size=1000,
    nonce=b"\x01" * 32,
)


def admit(
    p: Proposal = VALID,
    *,
    flight: Flight | None = None,
    now: datetime = NOW,
    last_round: datetime | None = None,
    shutting_down: bool = False,
    **kw,
):
    return admit_proposal(
        p,
        me="lab-b",
        peer=kw.get("peer", "lab-a"),
        policy=kw.get("policy", lambda: POLICY),
        prompt_params=PARAMS,
        round_known=lambda rid: rid == USED,
        flight=flight or Flight(),
        now=now,
        last_round=lambda: last_round,
        shutting_down=shutting_down,
    )


def refused(change: dict | None = None, **kw) -> Rule | None:
    with pytest.raises(CrossmatchError) as caught:
        admit(dataclasses.replace(VALID, **(change or {})), **kw)
    return caught.value.rule


def test_a_valid_proposal_is_admitted_with_its_header_parts():
    header = admit().header((5, 6), b"\x02" * 32)
    assert (header.round_id, header.initiator, header.responder) == ("a" * 32, "lab-a", "lab-b")
    assert (header.initiator_sizes, header.responder_sizes) == ((10, 20), (5, 6))
    assert header.initiator_commitment == b"\x00" * 32 and header.prompt_params == PARAMS


@pytest.mark.parametrize(("change", "rule"), [
    ({"protocol_version": "crossmatch/v0"}, Rule.VERSION),
    ({"nonce": b"\x01" * 31}, Rule.NONCE),
    ({"initiator": "lab-c"}, Rule.LAB_MISMATCH),
    ({"responder": "lab-z"}, Rule.WRONG_RESPONDER),
    ({"round_id": "A" * 32}, Rule.ROUND_ID),
    ({"round_id": USED}, Rule.ROUND_ID),
    ({"mode": "7"}, Rule.MODE),
    ({"kinds": ("email", "email")}, Rule.KINDS),
    ({"policy_hash": DEFAULT_POLICY.hash()}, Rule.POLICY_UNSIGNED),
    ({"policy_hash": b"\x09" * 32}, Rule.POLICY_MISMATCH),
    ({"kinds": (), "sizes": ()}, Rule.KINDS_EMPTY),
    ({"kinds": ("email", "ip")}, Rule.KIND_ALLOWED),
    ({"sizes": (10, 1001)}, Rule.MAX_SET_SIZE),
    ({"kinds": ("email", "phone")}, Rule.KIND_MODE),
    ({"prompt_params": "minhash-v0"}, Rule.PROMPT_PARAMS),
    ({"suite": "ristretto255-v1"}, Rule.SUITE_POLICY),
])  # fmt: skip
def test_one_changed_field_is_refused_with_its_rule(change, rule):
    assert refused(change) == rule


def test_prompt_parameters_matter_only_for_prompt_rounds():
    admit(dataclasses.replace(VALID, kinds=("email",), sizes=(10,), prompt_params=""))


def test_shutting_down():
    assert refused(shutting_down=True) == Rule.SHUTTING_DOWN


def test_the_policy_in_force_refuses_when_it_cannot_be_had():
    def unsigned() -> Policy:
        raise PolicyError("no signed consortium policy installed", rule=Rule.POLICY_UNSIGNED)

    assert refused(policy=unsigned) == Rule.POLICY_UNSIGNED


def test_single_flight_until_released():
    flight = Flight()
    admit(flight=flight)
    second = dataclasses.replace(VALID, round_id="b" * 32)
    with pytest.raises(PolicyError) as caught:
        admit(second, flight=flight, now=NOW + timedelta(hours=1))
    assert caught.value.rule == Rule.SINGLE_FLIGHT
    flight.release("lab-a")
    admit(second, flight=flight, now=NOW + timedelta(hours=1))


def test_min_interval_since_the_last_stored_round():
    assert refused(last_round=NOW - timedelta(seconds=60)) == Rule.MIN_INTERVAL
    admit(last_round=NOW - timedelta(seconds=600))


def test_min_interval_since_the_last_accepted_round_and_its_slack():
    flight = Flight()
    admit(flight=flight)
    flight.release("lab-a")
    again = dataclasses.replace(VALID, round_id="c" * 32)
    with pytest.raises(PolicyError) as caught:  # slack: at most 30 s (a tenth would be 60)
        admit(again, flight=flight, now=NOW + timedelta(seconds=569))
    assert caught.value.rule == Rule.MIN_INTERVAL
    admit(again, flight=flight, now=NOW + timedelta(seconds=571))


def test_a_refused_proposal_takes_no_flight_slot():
    flight = Flight()
    with pytest.raises(CrossmatchError):
        admit(dataclasses.replace(VALID, mode="7"), flight=flight)
    admit(flight=flight)


# -- the initiator's check of the response ----------------------------------------------------

AUDIT_KEY = Ed25519PrivateKey.generate().public_key()
RESPONSE = ProposalResponse(
    round_id=VALID.round_id,
    kinds=VALID.kinds,
    sizes=(3, 4),
    input_commitment=b"\x03" * 32,
    certificate_pem=b"PEM lab-b",
)


def identify(pem: bytes) -> PeerIdentity:
    return PeerIdentity(
        lab=pem.decode().split()[-1],
        audit_public_key=AUDIT_KEY,
        serial=7,
        not_after=NOW + timedelta(days=30),
        fingerprint="ab" * 16,
    )


def answer(change: dict | None = None) -> PeerIdentity:
    return admit_response(
        dataclasses.replace(RESPONSE, **(change or {})), proposal=VALID, identify=identify
    )


def test_a_valid_response_gives_the_responders_identity():
    assert answer().lab == "lab-b"


@pytest.mark.parametrize(("change", "rule"), [
    ({"round_id": "b" * 32}, Rule.ROUND_ID),
    ({"kinds": ("prompt", "email")}, Rule.KINDS),
    ({"kinds": ("email",)}, Rule.KINDS),
    ({"certificate_pem": b"PEM lab-c"}, Rule.LAB_MISMATCH),
])  # fmt: skip
def test_one_changed_response_field_is_refused_with_its_rule(change, rule):
    with pytest.raises(CrossmatchError) as caught:
        answer(change)
    assert caught.value.rule == rule
