"""node.pki: one test per rule, tamper tests that change one field and re-sign.

Files only (tmp_path); no network. The real mTLS handshakes are in
tests/integration/test_ca_cli.py.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import stat
import string
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from node import pki
from protocol.audit.records import make_log_id
from protocol.errors import ConfigError, PolicyError

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
PEM = serialization.Encoding.PEM


# --- helpers ---------------------------------------------------------------------------------


def make_ca(path: Path, *, now: datetime = NOW, **kwargs) -> Path:
    pki.init_ca(path, now=now, **kwargs)
    return path


def ca_pem(ca_dir: Path) -> bytes:
    return (ca_dir / pki.CA_CERT_FILE).read_bytes()


class Node:
    """A lab's key material and a certificate from ``ca_dir``."""

    def __init__(self, ca_dir: Path, lab: str, *, now: datetime = NOW, days: int = 365):
        self.lab = lab
        self.tls_key = pki.generate_tls_key()
        self.audit_key = ed25519.Ed25519PrivateKey.generate()
        self.csr = pki.make_csr(self.tls_key, lab, self.audit_key.public_key())
        self.cert = pki.issue_certificate(ca_dir, self.csr, now=now, valid_days=days)
        self.serial = x509.load_pem_x509_certificate(self.cert).serial_number


def raw(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def audit_ext(key: ed25519.Ed25519PublicKey) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(pki.AUDIT_KEY_EXTENSION_OID, b"\x04\x20" + raw(key))


def csr_builder(cn: str, *, sans=None, audit=True, subject_extra=()):
    """A CSR builder with chosen fields, to forge requests."""
    audit_key = ed25519.Ed25519PrivateKey.generate().public_key()
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn), *subject_extra]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if sans is None:
        sans = [
            x509.UniformResourceIdentifier(f"urn:crossmatch:lab:{cn}"),
            x509.DNSName(f"{cn}.crossmatch.invalid"),
        ]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if audit:
        builder = builder.add_extension(audit_ext(audit_key), critical=False)
    return builder


def sign_csr(builder, key=None) -> bytes:
    return builder.sign(key or pki.generate_tls_key(), hashes.SHA256()).public_bytes(PEM)


def forge_cert(ca_dir: Path, *, cn="alpha", san_lab=None, audit=True, ca=False, now=NOW) -> bytes:
    """A certificate signed by the real CA key but with chosen (bad) identity fields."""
    ca_key = pki.load_private_key(ca_dir / pki.CA_KEY_FILE)
    ca_cert = x509.load_pem_x509_certificate(ca_pem(ca_dir))
    san_lab = san_lab or cn
    key = pki.generate_tls_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(f"urn:crossmatch:lab:{san_lab}"),
                    x509.DNSName(f"{san_lab}.crossmatch.invalid"),
                ]
            ),
            critical=False,
        )
    )
    if audit:
        builder = builder.add_extension(
            audit_ext(ed25519.Ed25519PrivateKey.generate().public_key()), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(PEM)


def rule_of(excinfo: pytest.ExceptionInfo) -> str | None:
    return excinfo.value.rule


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return make_ca(tmp_path / "ca")


@pytest.fixture(scope="module")
def shared_ca(tmp_path_factory) -> Path:
    return make_ca(tmp_path_factory.mktemp("shared") / "ca")


# --- lab ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lab", ["a", "0", "alpha", "lab-2", "a" * 63, "x-y-z", "9lab"])
def test_valid_lab_ids(lab: str) -> None:
    assert pki.validate_lab_id(lab) == lab


@pytest.mark.parametrize(
    "lab",
    ["", "Alpha", "-lab", "lab-", "a" * 64, "lab\n", "la_b", "lab.x", "läb", " lab", "lab "],
)
def test_invalid_lab_ids_name_the_value(lab: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        pki.validate_lab_id(lab)
    assert repr(lab) in str(excinfo.value)
    assert rule_of(excinfo) == "lab-id-syntax"


def _reference_lab_id(s: str) -> bool:
    allowed = set(string.ascii_lowercase + string.digits + "-")
    return 1 <= len(s) <= 63 and set(s) <= allowed and s[0] != "-" and s[-1] != "-"


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.\n ", max_size=70))
def test_lab_id_syntax_matches_dns_label_definition(s: str) -> None:
    assert pki.is_valid_lab_id(s) == _reference_lab_id(s)


def test_tls_server_name() -> None:
    assert pki.tls_server_name("alpha") == "alpha.crossmatch.invalid"
    with pytest.raises(ConfigError):
        pki.tls_server_name("Alpha")


# --- key files -------------------------------------------------------------------------------


def test_private_key_is_written_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        pki.write_private_key(tmp_path / "k.pem", pki.generate_tls_key())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]  # no temp file left behind


def test_private_key_round_trip(tmp_path: Path) -> None:
    key = pki.generate_tls_key()
    pki.write_private_key(tmp_path / "k.pem", key)
    assert pki.load_private_key(tmp_path / "k.pem").public_key() == key.public_key()


def test_write_private_key_refuses_to_overwrite(tmp_path: Path) -> None:
    pki.write_private_key(tmp_path / "k.pem", pki.generate_tls_key())
    before = (tmp_path / "k.pem").read_bytes()
    with pytest.raises(ConfigError, match="overwrite"):
        pki.write_private_key(tmp_path / "k.pem", pki.generate_tls_key())
    assert (tmp_path / "k.pem").read_bytes() == before


def test_load_private_key_refuses_group_readable_file(tmp_path: Path) -> None:
    pki.write_private_key(tmp_path / "k.pem", pki.generate_tls_key())
    os.chmod(tmp_path / "k.pem", 0o640)
    with pytest.raises(ConfigError) as excinfo:
        pki.load_private_key(tmp_path / "k.pem")
    assert rule_of(excinfo) == "key-file-permissions"
    assert str(tmp_path / "k.pem") in str(excinfo.value)


@pytest.mark.parametrize("content", [None, b"", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_load_private_key_names_the_path(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "k.pem"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)
    with pytest.raises(ConfigError) as excinfo:
        pki.load_private_key(path)
    assert str(path) in str(excinfo.value)


# --- the CA ----------------------------------------------------------------------------------


def test_init_ca_writes_a_self_signed_constrained_ca(ca_dir: Path) -> None:
    assert stat.S_IMODE((ca_dir / pki.CA_KEY_FILE).stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(ca_pem(ca_dir))
    cert.verify_directly_issued_by(cert)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    crl = (ca_dir / pki.CA_CRL_FILE).read_bytes()
    assert pki.load_revoked_serials(crl, ca_pem(ca_dir)) == frozenset()


def test_init_ca_refuses_to_overwrite(ca_dir: Path) -> None:
    key_before = (ca_dir / pki.CA_KEY_FILE).read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        pki.init_ca(ca_dir, now=NOW)
    assert (ca_dir / pki.CA_KEY_FILE).read_bytes() == key_before


def test_issue_without_ca_is_a_config_error(tmp_path: Path) -> None:
    csr = sign_csr(csr_builder("alpha"))
    with pytest.raises(ConfigError, match="no CA here"):
        pki.issue_certificate(tmp_path, csr, now=NOW)


# --- issuance --------------------------------------------------------------------------------


def test_issued_certificate_has_exactly_the_vetted_fields(shared_ca: Path) -> None:
    node = Node(shared_ca, "alpha")
    cert = x509.load_pem_x509_certificate(node.cert)
    ca_cert = x509.load_pem_x509_certificate(ca_pem(shared_ca))
    cert.verify_directly_issued_by(ca_cert)
    assert cert.subject.rfc4514_string() == "O=crossmatch consortium,CN=alpha"
    assert cert.public_key() == node.tls_key.public_key()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(g.value) for g in san] == ["urn:crossmatch:lab:alpha", "alpha.crossmatch.invalid"]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    audit = cert.extensions.get_extension_for_oid(pki.AUDIT_KEY_EXTENSION_OID)
    assert not audit.critical
    assert audit.value.value == b"\x04\x20" + raw(node.audit_key.public_key())
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)


def test_issue_ignores_everything_else_the_csr_asks_for(shared_ca: Path) -> None:
    # A CSR asking to be a CA, with extra subject attributes: none of it is copied.
    builder = csr_builder(
        "alpha", subject_extra=[x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "root")]
    ).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    cert = x509.load_pem_x509_certificate(
        pki.issue_certificate(shared_ca, sign_csr(builder), now=NOW)
    )
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.subject.rfc4514_string() == "O=crossmatch consortium,CN=alpha"


def test_serials_are_unique_and_recorded(shared_ca: Path) -> None:
    serials = [Node(shared_ca, "beta").serial for _ in range(5)]
    assert len(set(serials)) == 5
    index = json.loads((shared_ca / pki.CA_INDEX_FILE).read_text())
    recorded = {entry["serial"] for entry in index["issued"]}
    assert {str(s) for s in serials} <= recorded


def test_concurrent_issuance_loses_no_index_entry(ca_dir: Path) -> None:
    csrs = [sign_csr(csr_builder(f"lab{i}")) for i in range(8)]
    threads = [
        threading.Thread(target=pki.issue_certificate, args=(ca_dir, csr), kwargs={"now": NOW})
        for csr in csrs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index = json.loads((ca_dir / pki.CA_INDEX_FILE).read_text())
    assert sorted(e["lab"] for e in index["issued"]) == [f"lab{i}" for i in range(8)]


def test_certificate_never_outlives_the_ca(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca", valid_days=10)
    node = Node(ca, "alpha", days=365)
    ca_cert = x509.load_pem_x509_certificate(ca_pem(ca))
    assert x509.load_pem_x509_certificate(node.cert).not_valid_after_utc == (
        ca_cert.not_valid_after_utc
    )


def test_issue_refused_when_ca_expired(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca", valid_days=1)
    with pytest.raises(ConfigError) as excinfo:
        pki.issue_certificate(ca, sign_csr(csr_builder("alpha")), now=NOW + timedelta(days=2))
    assert rule_of(excinfo) == "ca-certificate-expired"


@pytest.mark.parametrize(
    ("builder", "rule"),
    [
        # CN says alpha, the SAN claims beta: the forged-SAN case.
        (
            lambda: csr_builder(
                "alpha",
                sans=[
                    x509.UniformResourceIdentifier("urn:crossmatch:lab:beta"),
                    x509.DNSName("alpha.crossmatch.invalid"),
                ],
            ),
            "csr-san-mismatch",
        ),
        (
            lambda: csr_builder(
                "alpha",
                sans=[
                    x509.UniformResourceIdentifier("urn:crossmatch:lab:alpha"),
                    x509.DNSName("beta.crossmatch.invalid"),
                ],
            ),
            "csr-san-mismatch",
        ),
        # An extra name would let the holder pose as another host.
        (
            lambda: csr_builder(
                "alpha",
                sans=[
                    x509.UniformResourceIdentifier("urn:crossmatch:lab:alpha"),
                    x509.DNSName("alpha.crossmatch.invalid"),
                    x509.DNSName("beta.crossmatch.invalid"),
                ],
            ),
            "csr-san-mismatch",
        ),
        (
            lambda: csr_builder(
                "alpha",
                sans=[
                    x509.UniformResourceIdentifier("urn:crossmatch:lab:alpha"),
                    x509.DNSName("alpha.crossmatch.invalid"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ],
            ),
            "csr-san-mismatch",
        ),
        (lambda: csr_builder("alpha", sans=[]), "csr-san-mismatch"),
        (
            lambda: csr_builder(
                "alpha", subject_extra=[x509.NameAttribute(NameOID.COMMON_NAME, "beta")]
            ),
            "csr-san-mismatch",
        ),
        (lambda: csr_builder("alpha", audit=False), "csr-audit-key"),
        (lambda: csr_builder("Alpha"), "lab-id-syntax"),
        (lambda: csr_builder("alpha.evil"), "lab-id-syntax"),
    ],
)
def test_issue_rejects_bad_csr(shared_ca: Path, builder, rule: str) -> None:
    before = (shared_ca / pki.CA_INDEX_FILE).read_bytes()
    with pytest.raises(PolicyError) as excinfo:
        pki.issue_certificate(shared_ca, sign_csr(builder()), now=NOW)
    assert rule_of(excinfo) == rule
    assert (shared_ca / pki.CA_INDEX_FILE).read_bytes() == before  # nothing issued


def test_issue_rejection_names_the_bad_lab_id(shared_ca: Path) -> None:
    with pytest.raises(PolicyError, match="'Alpha'"):
        pki.issue_certificate(shared_ca, sign_csr(csr_builder("Alpha")), now=NOW)


def test_issue_rejects_truncated_audit_key(shared_ca: Path) -> None:
    ext = x509.UnrecognizedExtension(pki.AUDIT_KEY_EXTENSION_OID, b"\x04\x1f" + b"k" * 31)
    builder = csr_builder("alpha", audit=False).add_extension(ext, critical=False)
    with pytest.raises(PolicyError) as excinfo:
        pki.issue_certificate(shared_ca, sign_csr(builder), now=NOW)
    assert rule_of(excinfo) == "csr-audit-key"


def test_issue_rejects_csr_with_broken_signature(shared_ca: Path) -> None:
    csr = x509.load_pem_x509_csr(sign_csr(csr_builder("alpha")))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(PEM)
    with pytest.raises(PolicyError) as excinfo:
        pki.issue_certificate(shared_ca, tampered, now=NOW)
    assert rule_of(excinfo) == "csr-signature-invalid"


@pytest.mark.parametrize(
    "key",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
)
def test_issue_rejects_non_p256_keys(shared_ca: Path, key) -> None:
    with pytest.raises(PolicyError) as excinfo:
        pki.issue_certificate(shared_ca, sign_csr(csr_builder("alpha"), key()), now=NOW)
    assert rule_of(excinfo) == "csr-key-type"


def test_issue_rejects_garbage(shared_ca: Path) -> None:
    with pytest.raises(PolicyError) as excinfo:
        pki.issue_certificate(shared_ca, b"not a csr", now=NOW)
    assert rule_of(excinfo) == "csr-malformed"


def test_make_csr_refuses_bad_lab() -> None:
    audit = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ConfigError, match="'ALPHA'"):
        pki.make_csr(pki.generate_tls_key(), "ALPHA", audit)


# --- identity_from_certificate ----------------------------------------------------------------


def test_identity_of_a_good_certificate(shared_ca: Path) -> None:
    node = Node(shared_ca, "alpha")
    identity = pki.identity_from_certificate(node.cert, ca_pem(shared_ca), now=NOW)
    assert identity.lab == "alpha"
    assert raw(identity.audit_public_key) == raw(node.audit_key.public_key())
    assert identity.serial == node.serial
    assert identity.not_after == NOW + timedelta(days=365)
    cert = x509.load_pem_x509_certificate(node.cert)
    assert identity.fingerprint == "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


@settings(max_examples=20, deadline=None)
@given(lab=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True))
def test_csr_issue_identity_round_trip(shared_ca: Path, lab: str) -> None:
    node = Node(shared_ca, lab)
    identity = pki.identity_from_certificate(node.cert, ca_pem(shared_ca), now=NOW)
    assert identity.lab == lab
    assert raw(identity.audit_public_key) == raw(node.audit_key.public_key())


def test_certificate_from_another_ca_is_rejected(shared_ca: Path, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "other", name="some other CA")
    node = Node(other, "alpha")
    with pytest.raises(PolicyError) as excinfo:
        pki.identity_from_certificate(node.cert, ca_pem(shared_ca), now=NOW)
    assert rule_of(excinfo) == "certificate-wrong-ca"


def test_certificate_from_a_lookalike_ca_with_the_same_name_is_rejected(
    shared_ca: Path, tmp_path: Path
) -> None:
    # Same issuer name, different key: only the signature tells them apart.
    lookalike = make_ca(tmp_path / "lookalike")
    node = Node(lookalike, "alpha")
    with pytest.raises(PolicyError) as excinfo:
        pki.identity_from_certificate(node.cert, ca_pem(shared_ca), now=NOW)
    assert rule_of(excinfo) == "certificate-wrong-ca"


def test_expiry_with_skew(shared_ca: Path) -> None:
    node = Node(shared_ca, "alpha", days=30)
    not_after = NOW + timedelta(days=30)
    skew = timedelta(minutes=5)
    pki.identity_from_certificate(node.cert, ca_pem(shared_ca), now=not_after + skew)
    with pytest.raises(PolicyError) as excinfo:
        pki.identity_from_certificate(
            node.cert, ca_pem(shared_ca), now=not_after + skew + timedelta(seconds=1)
        )
    assert rule_of(excinfo) == "certificate-expired"


def test_not_yet_valid_with_skew(shared_ca: Path) -> None:
    node = Node(shared_ca, "alpha")
    # Backdated 5 minutes at issue, plus 5 minutes of tolerated skew: a verifier whose clock
    # is 10 minutes behind the CA still accepts; 10 minutes and a second does not.
    pki.identity_from_certificate(node.cert, ca_pem(shared_ca), now=NOW - timedelta(minutes=10))
    with pytest.raises(PolicyError) as excinfo:
        pki.identity_from_certificate(
            node.cert, ca_pem(shared_ca), now=NOW - timedelta(minutes=10, seconds=1)
        )
    assert rule_of(excinfo) == "certificate-not-yet-valid"


def test_revoked_certificate_is_rejected(shared_ca: Path) -> None:
    node = Node(shared_ca, "alpha")
    with pytest.raises(PolicyError) as excinfo:
        pki.identity_from_certificate(
            node.cert, ca_pem(shared_ca), now=NOW, revoked=frozenset({node.serial})
        )
    assert rule_of(excinfo) == "certificate-revoked"


@pytest.mark.parametrize(
    "forge",
    [
        lambda ca: forge_cert(ca, cn="alpha", san_lab="beta"),  # CN != SAN lab
        lambda ca: forge_cert(ca, audit=False),  # no audit key
        lambda ca: forge_cert(ca, ca=True),  # a CA certificate is no node
        lambda ca: forge_cert(ca, cn="Alpha", san_lab="alpha"),  # bad lab syntax
        lambda ca: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_malformed_certificates_are_rejected(shared_ca: Path, forge) -> None:
    with pytest.raises(PolicyError) as excinfo:
        pki.identity_from_certificate(forge(shared_ca), ca_pem(shared_ca), now=NOW)
    assert rule_of(excinfo) == "certificate-malformed"


def test_forged_good_certificate_is_accepted(shared_ca: Path) -> None:
    # Control for the test above: the forging helper itself makes acceptable certificates.
    identity = pki.identity_from_certificate(forge_cert(shared_ca), ca_pem(shared_ca), now=NOW)
    assert identity.lab == "alpha"


def test_days_until_expiry(shared_ca: Path) -> None:
    node = Node(shared_ca, "alpha", days=30)
    assert pki.days_until_expiry(node.cert, now=NOW) == 30.0
    assert pki.days_until_expiry(node.cert, now=NOW + timedelta(days=31)) == -1.0


# --- revocation ------------------------------------------------------------------------------


def test_revoke_updates_signed_crl(ca_dir: Path) -> None:
    first, second = Node(ca_dir, "alpha"), Node(ca_dir, "beta")
    pki.revoke(ca_dir, first.serial, now=NOW)
    crl_pem = (ca_dir / pki.CA_CRL_FILE).read_bytes()
    assert pki.load_revoked_serials(crl_pem, ca_pem(ca_dir)) == {first.serial}
    pki.revoke(ca_dir, second.serial, now=NOW + timedelta(hours=1))
    pki.revoke(ca_dir, second.serial, now=NOW + timedelta(hours=2))  # idempotent
    crl_pem = (ca_dir / pki.CA_CRL_FILE).read_bytes()
    assert pki.load_revoked_serials(crl_pem, ca_pem(ca_dir)) == {first.serial, second.serial}
    crl = x509.load_pem_x509_crl(crl_pem)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    entry = crl.get_revoked_certificate_by_serial_number(second.serial)
    assert entry is not None and entry.revocation_date_utc == NOW + timedelta(hours=1)


def test_revoke_unknown_serial_is_refused(ca_dir: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        pki.revoke(ca_dir, 12345, now=NOW)
    assert rule_of(excinfo) == "unknown-serial"


def test_crl_signed_by_another_ca_is_rejected(ca_dir: Path, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "other", name="some other CA")
    crl = (other / pki.CA_CRL_FILE).read_bytes()
    with pytest.raises(ConfigError) as excinfo:
        pki.load_revoked_serials(crl, ca_pem(ca_dir))
    assert rule_of(excinfo) == "crl-wrong-ca"


def test_crl_from_lookalike_ca_with_same_name_is_rejected(ca_dir: Path, tmp_path: Path) -> None:
    lookalike = make_ca(tmp_path / "lookalike")
    crl = (lookalike / pki.CA_CRL_FILE).read_bytes()
    with pytest.raises(ConfigError) as excinfo:
        pki.load_revoked_serials(crl, ca_pem(ca_dir))
    assert rule_of(excinfo) == "crl-wrong-ca"


def test_garbage_crl_is_rejected(ca_dir: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        pki.load_revoked_serials(b"garbage", ca_pem(ca_dir))
    assert rule_of(excinfo) == "crl-malformed"


# --- the node side: request and install ------------------------------------------------------


def test_request_certificate_creates_key_once(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    audit = ed25519.Ed25519PrivateKey.generate().public_key()
    csr1 = pki.request_certificate(tls, "alpha", audit)
    assert stat.S_IMODE((tls / pki.NODE_KEY_FILE).stat().st_mode) == 0o600
    assert (tls / pki.NODE_CSR_FILE).read_bytes() == csr1
    key1 = (tls / pki.NODE_KEY_FILE).read_bytes()
    pki.request_certificate(tls, "alpha", audit)
    assert (tls / pki.NODE_KEY_FILE).read_bytes() == key1  # renewal keeps the key
    pki.request_certificate(tls, "alpha", audit, new_key=True)
    assert (tls / pki.NODE_KEY_FILE).read_bytes() != key1


def _node_dir_with_request(tmp_path: Path, lab: str = "alpha"):
    tls = tmp_path / "node" / "tls"
    audit = ed25519.Ed25519PrivateKey.generate().public_key()
    csr = pki.request_certificate(tls, lab, audit)
    return tls, csr


def test_install_certificate_writes_cert_and_ca(shared_ca: Path, tmp_path: Path) -> None:
    tls, csr = _node_dir_with_request(tmp_path)
    cert = pki.issue_certificate(shared_ca, csr, now=NOW)
    pki.install_certificate(tls, cert, ca_pem(shared_ca), now=NOW)
    assert (tls / pki.NODE_CERT_FILE).read_bytes() == cert
    assert (tls / pki.NODE_CA_FILE).read_bytes() == ca_pem(shared_ca)
    key, cert_pem, ca = pki.NodeTlsFiles(tls).load_pems()
    assert cert_pem == cert and ca == ca_pem(shared_ca)


def test_install_refuses_certificate_for_another_key(shared_ca: Path, tmp_path: Path) -> None:
    tls, _ = _node_dir_with_request(tmp_path)
    stranger = Node(shared_ca, "alpha")
    with pytest.raises(ConfigError) as excinfo:
        pki.install_certificate(tls, stranger.cert, ca_pem(shared_ca), now=NOW)
    assert rule_of(excinfo) == "certificate-key-mismatch"
    assert not (tls / pki.NODE_CERT_FILE).exists()


def test_install_refuses_certificate_from_another_ca(shared_ca: Path, tmp_path: Path) -> None:
    tls, csr = _node_dir_with_request(tmp_path)
    other = make_ca(tmp_path / "other", name="some other CA")
    cert = pki.issue_certificate(other, csr, now=NOW)
    with pytest.raises(PolicyError) as excinfo:
        pki.install_certificate(tls, cert, ca_pem(shared_ca), now=NOW)
    assert rule_of(excinfo) == "certificate-wrong-ca"
    assert not (tls / pki.NODE_CERT_FILE).exists()
    assert not (tls / pki.NODE_CA_FILE).exists()


def test_install_refuses_certificate_with_another_audit_key(
    shared_ca: Path, tmp_path: Path
) -> None:
    # The CA signed a CSR for this TLS key but with someone else's audit key.
    tls, _ = _node_dir_with_request(tmp_path)
    key = pki.load_private_key(tls / pki.NODE_KEY_FILE)
    other_audit = ed25519.Ed25519PrivateKey.generate().public_key()
    cert = pki.issue_certificate(shared_ca, pki.make_csr(key, "alpha", other_audit), now=NOW)
    with pytest.raises(ConfigError) as excinfo:
        pki.install_certificate(tls, cert, ca_pem(shared_ca), now=NOW)
    assert rule_of(excinfo) == "certificate-audit-key-mismatch"


def test_install_refuses_expired_certificate(shared_ca: Path, tmp_path: Path) -> None:
    tls, csr = _node_dir_with_request(tmp_path)
    cert = pki.issue_certificate(shared_ca, csr, now=NOW, valid_days=1)
    with pytest.raises(PolicyError) as excinfo:
        pki.install_certificate(tls, cert, ca_pem(shared_ca), now=NOW + timedelta(days=2))
    assert rule_of(excinfo) == "certificate-expired"


def test_audit_key_fingerprint_is_of_raw_key_and_the_one_in_log_ids() -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    assert pki.key_fingerprint(key) == hashlib.sha256(raw(key)).hexdigest()[:16]
    assert make_log_id("lab-a", key).endswith("/" + pki.key_fingerprint(key))
