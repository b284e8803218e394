"""node/net/wire.py: every conversion round-trips, every decoder checks sizes first, and
the refusal view of a proposal never raises and never keeps a field beyond its bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.net import wire
from protocol.errors import ProtocolError
from protocol.feedback import Opinion
from protocol.limits import MAX_KIND, MAX_KINDS, MAX_LAB, MAX_PROMPT_PARAMS, MAX_ROUND_ID
from protocol.messages import Proposal
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb

KINDS = ("email", "phone", "ip", "account_id")


@st.composite
def proposals(draw) -> Proposal:
    kinds = tuple(draw(st.lists(st.sampled_from(KINDS), unique=True, max_size=4)))
    return Proposal(
        protocol_version="crossmatch/v2",
        round_id=draw(st.text("0123456789abcdef", min_size=32, max_size=32)),
        initiator=draw(st.from_regex(r"lab-[a-z]{1,20}", fullmatch=True)),
        responder=draw(st.from_regex(r"lab-[a-z]{1,20}", fullmatch=True)),
        mode=draw(st.sampled_from(["reveal", "count"])),
        kinds=kinds,
        sizes=tuple(draw(st.integers(0, 2**40)) for _ in kinds),
        policy_hash=draw(st.binary(min_size=32, max_size=32)),
        input_commitment=draw(st.binary(min_size=32, max_size=32)),
        prompt_params=draw(st.text(max_size=40)),
        chunk_size=draw(st.integers(0, 100_000)),
        nonce=draw(st.binary(max_size=32)),
        suite=draw(st.sampled_from(["", "openmined-p256-v1", "ristretto255-v1"])),
    )


@settings(max_examples=60, deadline=None)
@given(proposals())
def test_a_proposal_round_trips(p):
    assert wire.proposal_from_pb(wire.proposal_to_pb(p)) == p


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["own_blinded", "peer_reblinded", "reblind_commitment", "public_key"]),
    seq=st.integers(0, 2**31),
    payload=st.binary(min_size=1, max_size=64),
)
def test_what_a_round_side_sends_decodes_to_the_same_body_and_bytes(kind, seq, payload):
    got = wire.decode_exchange(wire.outgoing(kind, seq, payload))
    assert (got.body, got.data) == (kind, payload)


@settings(max_examples=60, deadline=None)
@given(reason=st.text(max_size=1024), rule=st.text(max_size=64), data=st.binary(max_size=256))
def test_session_messages_round_trip(reason, rule, data):
    assert wire.decode_exchange(wire.abort(reason, rule)).value == (reason, rule)
    assert wire.decode_exchange(wire.receipt(data)).data == data
    assert wire.decode_exchange(wire.proof_request(data)).data == data
    assert wire.decode_exchange(wire.match_proof(data)).data == data
    assert wire.decode_exchange(wire.commit()).body == "commit"
    assert wire.decode_exchange(wire.start("ab" * 16)).value == "ab" * 16


@pytest.mark.parametrize(
    "msg",
    [
        wire.abort("r" * 1025, ""),
        wire.abort("", "r" * 65),
        wire.receipt(b"x" * 70_000),
        wire.start("a" * 33),
        wire.outgoing("reblind_commitment", 0, b"d" * 65),
        wire.outgoing("public_key", 0, b"k" * 65),
    ],
)
def test_decoding_checks_field_sizes_first(msg):
    with pytest.raises(ProtocolError) as err:
        wire.decode_exchange(msg)
    assert err.value.rule == "field-size" and len(err.value.message) < 120


def test_an_empty_exchange_message_is_out_of_order():
    with pytest.raises(ProtocolError) as err:
        wire.decode_exchange(pb.ExchangeMessage())
    assert err.value.rule == "message-order"


def test_decoding_a_proposal_checks_its_sizes():
    bad = wire.proposal_to_pb(
        Proposal("crossmatch/v2", "ab" * 16, "lab-a", "lab-b", "reveal", (), (), b"p" * 32, b"c")
    )
    with pytest.raises(ProtocolError) as err:
        wire.proposal_from_pb(bad)
    assert err.value.rule == "field-size" and "input_commitment" in err.value.message


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(min_size=0, max_size=300),
    blob=st.binary(max_size=300),
    n_kinds=st.integers(0, 40),
    mode=st.integers(0, 2**31 - 1),
)
def test_the_refusal_view_of_any_proposal_is_bounded(text, blob, n_kinds, mode):
    r = pb.OpenRoundRequest(
        protocol_version=text,
        round_id=text,
        initiator_lab=text,
        responder_lab=text,
        mode=mode,  # type: ignore[arg-type]
        sizes=[pb.KindSize(kind=text, size=i) for i in range(n_kinds)],
        policy_hash=blob,
        input_commitment=blob,
        prompt_params=text,
        nonce=blob,
        suite=text,
    )
    p = wire.refused_proposal(r)
    assert len(p.round_id) <= 2 * MAX_ROUND_ID and len(p.initiator) <= MAX_LAB + 1
    assert len(p.kinds) == len(p.sizes) <= MAX_KINDS
    assert all(len(k) <= MAX_KIND for k in p.kinds)
    assert len(p.prompt_params) <= MAX_PROMPT_PARAMS and len(p.policy_hash) <= 32


def test_opinions_round_trip_and_are_cut_to_the_limit():
    sent = [Opinion("ab" * 16, "email", b"f" * 32, v) for v in ("confirmed", "false_positive")]
    got, count = wire.opinions_from_pb(wire.opinions_to_pb(sent * 3), limit=4)
    assert got == (sent * 3)[:4] and count == 6
