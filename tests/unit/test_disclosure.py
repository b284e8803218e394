"""Accountable commitments (attacks 2, 3 and 4 of issue 10), in memory: real rounds of the
round state machine, one side cheating in a way the round itself cannot see; the auditor's
check of the sides' sealed records catches it, and passes honest rounds."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from concurrent.futures import Future

import private_set_intersection.python as psi_lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.disclosure import Disclosure, SeededRandom, check_disclosure
from protocol.errors import InputError, VerificationError
from protocol.padding import dummy_elements
from protocol.psi import Engine, pack, unpack
from protocol.round import RoundSide
from protocol.suites import DEFAULT_SUITE
from protocol.transcript import RoundHeader, input_commitment
from tests.round_harness import deliver_to


def fp(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class Relabelling(RoundSide):
    """Attack 2: commits to, and releases, its honest re-blinding in another order."""

    def _release_stream(self) -> bytes:
        pts = unpack(super()._release_stream())
        return pack(pts[1:] + pts[:1])


class PerGuessExponent(Engine):
    """Attack 3 without duplicates: blinds each guess with its own extra exponent."""

    def __init__(self, key: bytes, extra: list[bytes]):
        super().__init__(key, workers=1)
        self._extra = [Engine(k, workers=1) for k in extra]

    def submit_blind(self, items):  # type: ignore[no-untyped-def]
        out = b"".join(
            e.reblind(self._blind_now(items[i : i + 1]))
            for i, e in zip(range(len(items)), self._extra, strict=False)
        )
        f: Future[bytes] = Future()
        f.set_result(out)
        return f

    def close(self) -> None:
        for e in self._extra:
            e.close()
        super().close()


def key() -> bytes:
    return psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes()


def play(mode: str, a_cls=RoundSide, a_engine=None, dummies_a: int = 2):
    """One round; returns both sides' sealed records."""
    own = {
        "initiator": [fp(f"a{i}") for i in range(6)],
        "responder": [fp(f"a{i}") for i in range(3)] + [fp(f"b{i}") for i in range(5)],
    }
    seeds = {r: secrets.token_bytes(32) for r in own}
    slots: dict[str, list[int]] = {"initiator": list(range(6, 6 + dummies_a)), "responder": []}
    for role in own:
        own[role] = own[role] + dummy_elements(seeds[role], "email", len(slots[role]))
    salts = {r: secrets.token_bytes(32) for r in own}
    real = {r: [x for i, x in enumerate(own[r]) if i not in slots[r]] for r in own}
    header = RoundHeader(
        round_id=secrets.token_hex(16),
        initiator="lab-a",
        responder="lab-b",
        mode=mode,
        kinds=("email",),
        initiator_sizes=(len(own["initiator"]),),
        responder_sizes=(len(own["responder"]),),
        policy_hash=b"p" * 32,
        initiator_commitment=input_commitment(salts["initiator"], {"email": real["initiator"]}),
        responder_commitment=input_commitment(salts["responder"], {"email": real["responder"]}),
    )
    keys = {r: key() for r in own}
    shuffles = {r: secrets.token_bytes(32) for r in own}
    engines = {
        "initiator": a_engine(keys["initiator"])
        if a_engine
        else Engine(keys["initiator"], workers=1),
        "responder": Engine(keys["responder"]),
    }
    sides: dict[str, RoundSide] = {}
    for role, cls, to in (("initiator", a_cls, "responder"), ("responder", RoundSide, "initiator")):
        sides[role] = cls(
            header,
            role,
            own[role],
            engines[role],
            deliver_to(sides, to),
            chunk_size=4,
            rng=SeededRandom(shuffles[role]),
        )
    for s in sides.values():
        s.start()
    outcomes = {r: s.result(30) for r, s in sides.items()}
    for s in sides.values():
        s.join(5)
    for e in engines.values():
        e.close()
    records = {
        r: Disclosure(
            header,
            r,
            DEFAULT_SUITE,
            keys[r],
            salts[r],
            seeds[r],
            shuffles[r],
            pack(own[r]),
            {"email": slots[r]} if slots[r] else {},
            sides[r].transcript.parts(),
        )
        for r in own
    }
    assert outcomes["initiator"].transcript_hash == outcomes["responder"].transcript_hash
    return records, [outcomes["initiator"].transcript_hash] * 2, outcomes


@pytest.mark.parametrize("mode", ["reveal", "count"])
def test_an_honest_round_passes_the_disclosure_check(mode):
    records, logged, _ = play(mode)
    lines = check_disclosure(records["initiator"], logged, records["responder"])
    assert len(lines) == 7
    check_disclosure(records["responder"], logged)  # one side alone: checks 1-4
    again = Disclosure.from_bytes(records["initiator"].to_bytes())
    assert again == records["initiator"]


def test_a_second_record_of_another_round_is_named_not_the_first():
    """A lab that hands in, beside an honest record, one of another round gets that one
    named: the second record's own checks come before the pairing."""
    records, logged, _ = play("reveal")
    other, _, _ = play("reveal")
    with pytest.raises(VerificationError) as err:
        check_disclosure(records["initiator"], logged, other["responder"])
    assert err.value.rule == "disclosure-transcript"
    assert f"round {other['responder'].header.round_id}, responder" in err.value.message


def test_relabelled_matches_are_caught_by_the_disclosure_check():
    records, logged, outcomes = play("reveal", a_cls=Relabelling)
    # The round completed, and lab-b attributes a match to the wrong element of its own:
    assert outcomes["responder"].matched_positions["email"] != [0, 1, 2]
    check_disclosure(records["initiator"], logged)  # its own inputs are honest...
    with pytest.raises(VerificationError) as err:  # ...its re-blinding is not
        check_disclosure(records["responder"], logged, records["initiator"])
    assert err.value.rule == "disclosure-stream" and "initiator_reblinded" in err.value.message


def test_count_mode_reveals_which_by_per_guess_exponents_is_caught():
    extra = [key() for _ in range(8)]
    records, logged, _ = play("count", a_engine=lambda k: PerGuessExponent(k, extra))
    with pytest.raises(VerificationError) as err:
        check_disclosure(records["initiator"], logged)
    assert err.value.rule == "disclosure-stream" and "initiator_blinded" in err.value.message


def test_commitments_bind_the_set_and_the_dummies():
    """Attack 4: the salt and set are kept, and a record that does not open is refused."""
    records, logged, _ = play("reveal")
    a = records["initiator"]
    other = Disclosure(
        a.header,
        a.role,
        a.suite,
        a.psi_key,
        secrets.token_bytes(32),
        a.dummy_seed,
        a.shuffle_seed,
        a.own,
        a.dummies,
        a.parts,
    )
    with pytest.raises(VerificationError) as err:
        check_disclosure(other, logged)
    assert err.value.rule == "disclosure-commitment"
    # A guess hidden in a "dummy" slot: the dummies must be the seed's.
    swapped = bytearray(a.own)
    swapped[6 * 32 : 7 * 32] = fp("b4")
    other = Disclosure(
        a.header,
        a.role,
        a.suite,
        a.psi_key,
        a.salt,
        a.dummy_seed,
        a.shuffle_seed,
        bytes(swapped),
        a.dummies,
        a.parts,
    )
    with pytest.raises(VerificationError) as err:
        check_disclosure(other, logged)
    assert err.value.rule == "disclosure-dummies"
    with pytest.raises(VerificationError) as err:
        check_disclosure(a, [b"\x00" * 32, logged[0]])
    assert err.value.rule == "disclosure-transcript"


def test_an_unreadable_record_names_itself():
    for data in (b"", b"{}", b'{"format": "crossmatch-disclosure/v1"}', b"\xff"):
        with pytest.raises(InputError) as err:
            Disclosure.from_bytes(data, "x.json")
        assert err.value.rule == "disclosure-format"


@settings(max_examples=60, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["format", "header", "role", "own", "streams", "psi_key"]),
            st.one_of(
                st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=3)
            ),
        ).map(lambda d: json.dumps({"format": "crossmatch-disclosure/v1", **d}).encode()),
    )
)
def test_any_malformed_record_is_an_input_error(data):
    with pytest.raises(InputError):
        Disclosure.from_bytes(data)


def _as_v1(record: Disclosure) -> bytes:
    """The record as sealed before format v2: one JSON document, the set in base64."""
    data = record.to_bytes()
    start = len(b"crossmatch-disclosure/v2\n") + 4
    (size,) = struct.unpack_from(">I", data, start - 4)
    doc = json.loads(data[start : start + size])
    del doc["own_bytes"]
    doc.update(format="crossmatch-disclosure/v1", own=base64.b64encode(record.own).decode())
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def test_a_record_is_binary_and_records_of_format_v1_still_read_and_check():
    records, logged, _ = play("reveal")
    record = records["initiator"]
    data = record.to_bytes()
    assert data.startswith(b"crossmatch-disclosure/v2\n") and data.endswith(record.own)
    assert len(data) < len(_as_v1(record))  # no base64
    old = {role: Disclosure.from_bytes(_as_v1(r)) for role, r in records.items()}
    assert old == records
    assert len(check_disclosure(old["initiator"], logged, old["responder"])) == 7


@pytest.fixture(scope="module")
def sealed() -> bytes:
    return play("reveal")[0]["responder"].to_bytes()


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0), extra=st.binary(min_size=1, max_size=40))
def test_a_cut_or_grown_v2_record_is_an_input_error(sealed, cut, extra):
    for bad in (sealed[: cut % len(sealed)], sealed + extra):
        with pytest.raises(InputError) as err:
            Disclosure.from_bytes(bad, "r.rec")
        assert err.value.rule == "disclosure-format"


def _v2_parts(sealed: bytes) -> tuple[dict, bytes]:
    at = len(b"crossmatch-disclosure/v2\n")
    (size,) = struct.unpack_from(">I", sealed, at)
    return json.loads(sealed[at + 4 : at + 4 + size]), sealed[at + 4 + size :]


def _v2_frame(doc: dict, own: bytes) -> bytes:
    body = json.dumps(doc).encode()
    return b"crossmatch-disclosure/v2\n" + struct.pack(">I", len(body)) + body + own


def _field_paths(doc: object, path: tuple = ()) -> list[tuple]:
    if not isinstance(doc, dict):
        return []
    return [p for k, v in doc.items() for p in [(*path, k), *_field_paths(v, (*path, k))]]


@settings(max_examples=120, deadline=None)
@given(
    pick=st.integers(min_value=0),
    value=st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=8),
        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers()),
    ),
)  # fmt: skip
def test_any_field_of_a_v2_record_bent_reads_or_is_a_format_error(sealed, pick, value):
    """Inside a well-framed v2 record, one metadata field set to a hostile value: the
    record reads (a value it accepts), or it is refused as disclosure-format, never as
    another rule or a raw error (an unknown mode used to surface as the round's 'mode')."""
    doc, own = _v2_parts(sealed)
    path = _field_paths(doc)[pick % len(_field_paths(doc))]
    holder = doc
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    try:
        Disclosure.from_bytes(_v2_frame(doc, own), "r.rec")
    except InputError as err:
        assert err.rule == "disclosure-format"
        assert err.where == "r.rec"


@pytest.mark.parametrize(
    "path,value", [(("header", "mode"), "x"), (("header", "initiator_sizes"), "")]
)
def test_a_header_the_round_refuses_is_a_format_error_of_the_record(sealed, path, value):
    doc, own = _v2_parts(sealed)
    doc[path[0]][path[1]] = value
    with pytest.raises(InputError) as err:
        Disclosure.from_bytes(_v2_frame(doc, own), "r.rec")
    assert err.value.rule == "disclosure-format" and "r.rec" in str(err.value)
