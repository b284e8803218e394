"""The pure identity rules: one lab-id validator, one audit-key fingerprint, and the update
rules for the signed policy and the CRL (one test per rule, changing one thing)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from node.config import check_lab
from node.ops.report import _key_name
from protocol.audit.records import make_log_id, parse_log_id
from protocol.errors import ConfigError, InputError, PolicyError, VerificationError
from protocol.identity import is_valid_lab_id, key_fingerprint, validate_lab_id
from protocol.policy_document import parse_policy_toml
from protocol.rollback import check_crl_update, check_policy_update, crl_number
from tests.audit_simulator import fixed_key

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICY = parse_policy_toml(
    b'policy_id = "p"\nversion = 3\npurpose = "x"\nnot_before = 2026-01-01T00:00:00Z\n'
    b"not_after = 2027-01-01T00:00:00Z\n[kinds.email]\nmax_set_size = 10\n"
)


# --- lab ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lab", ["a", "lab-a", "0", "a" * 63, "x1-2-3"])
def test_lab_ids_every_module_accepts(lab: str) -> None:
    assert validate_lab_id(lab) == lab == check_lab(lab)
    assert parse_log_id(make_log_id(lab, fixed_key("k").public_key()))[0] == lab


@pytest.mark.parametrize(
    "lab", ["", "-a", "a-", "A", "a_b", "a" * 64, "a.b", "lab-a\n", " lab", "lab\x00", None, 7]
)
def test_lab_ids_every_module_refuses(lab: object) -> None:
    with pytest.raises(ConfigError) as err:
        validate_lab_id(lab)
    assert err.value.rule == "lab-id-syntax"
    with pytest.raises(ConfigError):
        check_lab(lab)  # type: ignore[arg-type]
    if isinstance(lab, str):
        with pytest.raises(InputError):
            make_log_id(lab, fixed_key("k").public_key())


def test_a_trailing_newline_is_not_a_lab_id() -> None:
    # The old `^...$` regexes with re.match let "lab-a\n" through.
    assert not is_valid_lab_id("lab-a\n")
    with pytest.raises(VerificationError):
        parse_log_id("crossmatch-audit/lab-a\n/" + "0" * 16)


@given(st.text(alphabet="abz09-_\n.A", max_size=70))
def test_validator_agrees_with_the_definition(s: str) -> None:
    inner = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    expected = 1 <= len(s) <= 63 and set(s) <= inner and s[0] != "-" and s[-1] != "-"
    assert is_valid_lab_id(s) == expected


# --- one fingerprint -------------------------------------------------------------------------


def test_one_audit_key_fingerprint_everywhere() -> None:
    key = fixed_key("lab-a").public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = key_fingerprint(key)
    assert name == hashlib.sha256(raw).hexdigest()[:16]
    assert make_log_id("lab-a", key) == f"crossmatch-audit/lab-a/{name}"
    assert _key_name(raw.hex()) == name  # the HTML report's name for the log's key
    assert _key_name("zz") == "(malformed key)"


# --- CRL updates -----------------------------------------------------------------------------


def crl(number: int | None, key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ca")])
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(NOW)
        .next_update(NOW + timedelta(days=1))
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_crl_update_newer_or_same_number_passes(ca_key) -> None:
    assert check_crl_update(crl(5, ca_key), None) == 5
    assert check_crl_update(crl(5, ca_key), crl(4, ca_key)) == 5
    assert check_crl_update(crl(5, ca_key), crl(5, ca_key)) == 5  # re-install is harmless


def test_crl_rollback(ca_key) -> None:
    with pytest.raises(PolicyError) as err:
        check_crl_update(crl(4, ca_key), crl(5, ca_key))
    assert err.value.rule == "crl-rollback"


def test_an_unnumbered_crl_counts_as_oldest(ca_key) -> None:
    assert crl_number(crl(None, ca_key)) == -1 and crl_number(b"not a crl") == -1
    with pytest.raises(PolicyError):
        check_crl_update(crl(None, ca_key), crl(0, ca_key))


# --- policy updates --------------------------------------------------------------------------


def test_policy_update_newer_version_passes() -> None:
    check_policy_update(POLICY, None, now=NOW)
    check_policy_update(replace(POLICY, version=4), POLICY, now=NOW)
    check_policy_update(POLICY, POLICY, now=NOW)


def test_policy_expired() -> None:
    with pytest.raises(PolicyError) as err:
        check_policy_update(POLICY, None, now=datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert err.value.rule == "policy-expired"


def test_policy_rollback() -> None:
    with pytest.raises(PolicyError) as err:
        check_policy_update(replace(POLICY, version=2), POLICY, now=NOW)
    assert err.value.rule == "policy-rollback"


def test_policy_rollback_forced_or_another_policy_passes() -> None:
    check_policy_update(replace(POLICY, version=2), POLICY, now=NOW, force=True)
    check_policy_update(replace(POLICY, version=1, policy_id="q"), POLICY, now=NOW)
