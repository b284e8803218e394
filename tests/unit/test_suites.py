"""The PSI suites: RFC 9496 vectors, decoding rules, keys, engines vs plain set intersection."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ConfigError, PolicyError, ProtocolError
from protocol.suites import SUITES, get_suite
from protocol.suites import ristretto255 as r255
from protocol.suites.p256 import P256
from protocol.suites.ristretto255 import RISTRETTO255
from tests import ristretto_ref as ref

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ristretto255"
RFC = json.loads((VECTORS / "rfc9496.json").read_text())
INVALID = [bytes.fromhex(h) for group in RFC["invalid_encodings"].values() for h in group] + [
    bytes.fromhex(h) for h in RFC["invalid_encodings_not_in_rfc"]["high_bit_set"]
]


def test_the_bundled_libsodium_alone_would_accept_bit_255_set():
    # Why the suite screens bit 255 itself (see protocol/suites/ristretto255.py, _screen).
    alias = bytes.fromhex(RFC["invalid_encodings_not_in_rfc"]["high_bit_set"][1])
    assert r255.sodium().crypto_core_ristretto255_is_valid_point(alias)


def fp(i: int) -> bytes:
    return hashlib.sha256(b"suite test %d" % i).digest()


def test_rfc9496_generator_multiples():
    lib = r255.sodium()
    for v in RFC["generator_multiples"]:
        want = bytes.fromhex(v["element"])
        assert ref.encode(ref.mul(v["k"], ref.GENERATOR)) == want
        if v["k"]:
            assert lib.crypto_scalarmult_ristretto255_base(r255.scalar_bytes(v["k"])) == want


def test_rfc9496_one_way_map():
    lib = r255.sodium()
    for v in RFC["element_derivation"]:
        uniform = bytes.fromhex(v["uniform_bytes_sha512_of_label"])
        assert hashlib.sha512(v["label"].encode()).digest() == uniform
        assert lib.crypto_core_ristretto255_from_hash(uniform).hex() == v["element"]
        assert ref.one_way_map(uniform).hex() == v["element"]


@pytest.mark.parametrize("bad", INVALID, ids=lambda b: b.hex()[:12])
def test_rfc9496_invalid_encodings_are_refused(bad):
    assert ref.decode(bad) is None
    with pytest.raises(ProtocolError) as e:
        r255.check_point(bad)
    assert e.value.rule == "element-noncanonical"
    key = RISTRETTO255.key_from_random(bytes(64))
    with pytest.raises(ProtocolError) as e:
        r255.multiply(key, bad)
    assert e.value.rule == "element-noncanonical"


def test_identity_is_refused_with_its_own_rule():
    key = RISTRETTO255.key_from_random(bytes(64))
    for check in (r255.check_point, lambda p: r255.multiply(key, p)):
        with pytest.raises(ProtocolError) as e:
            check(r255.IDENTITY)
        assert e.value.rule == "element-identity"


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_libsodium_and_the_reference_agree_on_what_decodes(data):
    valid = ref.decode(data) is not None and data != r255.IDENTITY
    try:
        r255.check_point(data)
        accepted = True
    except ProtocolError:
        accepted = False
    assert accepted == valid


@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(min_value=1, max_value=ref.L - 1))
def test_blinding_agrees_with_the_reference(x, k):
    key = r255.scalar_bytes(k)
    h = r255.hash_to_group(x)
    assert h == ref.one_way_map(r255.hash_input(x))
    assert r255.multiply(key, h) == ref.encode(ref.mul(k, ref.decode(h)))


def test_a_wrongly_sized_point_is_malformed():
    with pytest.raises(ProtocolError) as e:
        r255.check_point(b"\x01" * 33)
    assert e.value.rule == "malformed-element"


@pytest.mark.parametrize("suite", list(SUITES.values()), ids=lambda s: s.name)
def test_engines_intersect_like_a_plain_set_intersection(suite):
    a_items = [fp(i) for i in range(300)]
    b_items = [fp(i) for i in range(200, 450)]
    ka, kb = suite.key_from_random(os.urandom(64)), suite.key_from_random(os.urandom(64))
    with suite.engine(ka) as ea, suite.engine(kb) as eb:
        a_double = eb.reblind(ea.blind(a_items))
        b_double = ea.reblind(eb.blind(b_items))
        w = suite.point_bytes
        assert len(a_double) == len(a_items) * w
        b_set = {b_double[i : i + w] for i in range(0, len(b_double), w)}
        found = {
            a_items[i // w] for i in range(0, len(a_double), w) if a_double[i : i + w] in b_set
        }
        assert found == set(a_items) & set(b_items)
        assert ea.blinded == 300 and ea.reblinded == 250


@pytest.mark.parametrize("suite", list(SUITES.values()), ids=lambda s: s.name)
def test_keys_from_random_are_valid_and_deterministic(suite):
    k = suite.key_from_random(bytes(range(64)))
    suite.check_key(k)
    assert k == suite.key_from_random(bytes(range(64)))
    assert k != suite.key_from_random(bytes(range(1, 65)))
    with pytest.raises(ValueError):
        suite.key_from_random(bytes(32))
    suite.self_test()


def test_ristretto_keys_outside_the_scalar_range_are_refused():
    for bad in (bytes(32), r255.ORDER.to_bytes(32, "little"), b"\xff" * 32, b"\x01" * 31):
        with pytest.raises(ConfigError):
            RISTRETTO255.check_key(bad)
        with pytest.raises(ConfigError):
            RISTRETTO255.engine(bad)


def test_p256_keys_are_the_scalars_cryptography_computes_with():
    # The library's key bytes are a big-endian scalar: its re-blinding of a point is
    # the ECDH of that scalar with the point (an independent implementation).
    key = P256.key_from_random(bytes(range(64)))
    with P256.engine(key, workers=1) as e, P256.engine(P256.key_from_random(bytes(64))) as other:
        point = other.blind([fp(1)])
        again = e.reblind(point)
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    priv = ec.derive_private_key(int.from_bytes(key, "big"), ec.SECP256R1())
    assert priv.exchange(ec.ECDH(), peer) == again[1:]


def test_ristretto_engine_refuses_bad_points_by_rule():
    with RISTRETTO255.engine(RISTRETTO255.key_from_random(bytes(64))) as e:
        good = e.blind([fp(1)])
        for bad, rule in (
            (r255.IDENTITY, "element-identity"),
            (INVALID[0], "element-noncanonical"),
            (good[:-1], "malformed-element"),
        ):
            with pytest.raises(ProtocolError) as err:
                e.reblind(good + bad)
            assert err.value.rule == rule


def test_unknown_suite_is_refused_by_name():
    assert get_suite("ristretto255-v1") is RISTRETTO255
    with pytest.raises(PolicyError) as e:
        get_suite("x25519-v1")
    assert e.value.rule == "suite-unknown"


def test_public_key_is_the_key_times_the_generator():
    k = RISTRETTO255.key_from_random(bytes(range(64)))
    assert RISTRETTO255.public_key(k) == ref.encode(ref.mul(r255.scalar_int(k), ref.GENERATOR))
    with pytest.raises(NotImplementedError):
        P256.public_key(P256.key_from_random(bytes(64)))
