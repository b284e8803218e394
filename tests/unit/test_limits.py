"""Bounds on peer input (protocol.limits, node.net.wire), the refusal ledger, and
formula-safe CSV: what a peer sends is quoted bounded, or refused by field and size."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.net.refusals import MAX_KEYS, RefusalLedger
from node.net.wire import check_exchange_message, check_open_request, check_open_response
from node.ops.csvsafe import SafeWriter, safe_cell
from protocol.errors import ProtocolError
from protocol.limits import peer_text
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb


@given(st.text() | st.binary(), st.integers(1, 200))
def test_peer_text_is_bounded_printable_and_never_raises(value, limit):
    quoted = peer_text(value, limit)
    assert quoted.isascii() and quoted.isprintable()
    assert len(quoted) <= 4 * limit + 40  # escapes are at most \U0000xxxx... per char


def test_peer_text_names_the_length_when_cut():
    assert peer_text("v" * 8_000_000).endswith("(8000000 chars)")
    assert peer_text("ok") == "'ok'"


def good_request(**changes) -> pb.OpenRoundRequest:
    fields = dict(
        protocol_version="crossmatch/v1",
        round_id="ab" * 16,
        initiator_lab="lab-a",
        responder_lab="lab-b",
        sizes=[pb.KindSize(kind="email", size=3)],
        policy_hash=b"\x00" * 32,
        input_commitment=b"\x00" * 32,
        chunk_size=100,
    )
    fields.update(changes)
    return pb.OpenRoundRequest(**fields)


@pytest.mark.parametrize(
    "changes",
    [
        {"protocol_version": "v" * 33},
        {"round_id": "a" * 33},
        {"initiator_lab": "x" * 64},
        {"responder_lab": "x" * 64},
        {"prompt_params": "p" * 129},
        {"input_commitment": b"\x00"},
        {"input_commitment": b"\x00" * 33},
        {"policy_hash": b"\x00" * 33},
        {"sizes": [pb.KindSize(kind=f"k{i}", size=1) for i in range(17)]},
        {"sizes": [pb.KindSize(kind="k" * 33, size=1)]},
        {"chunk_size": 100_001},
    ],
)
def test_each_open_request_field_has_a_limit(changes):
    check_open_request(good_request())
    with pytest.raises(ProtocolError) as err:
        check_open_request(good_request(**changes))
    assert err.value.rule == "field-size"
    assert len(err.value.message) < 120  # names the field and size, never the content


def test_open_response_and_exchange_limits():
    ok = pb.OpenRoundResponse(
        round_id="ab" * 16, input_commitment=b"\x00" * 32, certificate_pem=b"-" * 100
    )
    check_open_response(ok)
    for bad in (
        pb.OpenRoundResponse(round_id="ab" * 16, input_commitment=b"\x00" * 31),
        pb.OpenRoundResponse(
            round_id="ab" * 16, input_commitment=b"\x00" * 32, certificate_pem=b"-" * 20_000
        ),
    ):
        with pytest.raises(ProtocolError):
            check_open_response(bad)
    for bad in (
        pb.ExchangeMessage(abort=pb.Abort(reason="r" * 2000)),
        pb.ExchangeMessage(abort=pb.Abort(rule="r" * 65)),
        pb.ExchangeMessage(receipt=pb.Receipt(signed_receipt=b"x" * 70_000)),
        pb.ExchangeMessage(start=pb.Start(round_id="a" * 40)),
    ):
        with pytest.raises(ProtocolError) as err:
            check_exchange_message(bad)
        assert err.value.rule == "field-size"


def test_ledger_records_a_peers_allowance_then_counts():
    now = [0.0]
    ledger = RefusalLedger(3, clock=lambda: now[0])
    assert [ledger.admit("lab-a", "version") for _ in range(5)] == [True] * 3 + [False] * 2
    assert not ledger.admit("", "unknown-peer")  # outsiders: always counted
    assert not ledger.admit("lab-c", "unknown-peer")
    summary = ledger.take_summary()
    assert summary is not None and summary.total == 4
    assert ledger.take_summary() is None
    now[0] = 61.0
    assert ledger.admit("lab-a", "version")  # a new minute, a new allowance


def test_ledger_summary_names_a_bounded_number_of_callers():
    ledger = RefusalLedger(1)
    for i in range(500):
        ledger.admit("", "unknown-peer") if i % 2 else ledger.admit(f"lab-{i}" * 20, "x")
    summary = ledger.take_summary()
    assert summary is not None and len(summary.counts) <= MAX_KEYS + 1


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_cells_that_a_spreadsheet_would_run_are_defused(value):
    assert safe_cell(value) == "'" + value
    out = io.StringIO()
    SafeWriter(out).writerow(["ok", value, 3])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == ["ok", "'" + value, "3"]
