"""The CA and cert commands as a consortium runs them, and real mutual TLS on loopback.

1. The CLI, as subprocesses: ca init -> cert request -> ca issue -> cert install -> cert show
   -> ca revoke, and its one-line errors.
2. gRPC with mutual TLS on 127.0.0.1 port 0 using node.pki credentials: who gets in, who
   does not, and how a servicer learns the client's lab from the verified certificate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from node import pki
from protocol.errors import PolicyError

# --- 1. the CLI ------------------------------------------------------------------------------


def crossmatch(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(*args: str | Path, cwd: Path) -> str:
    result = crossmatch(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def write_audit_key(path: Path) -> ed25519.Ed25519PrivateKey:
    key = ed25519.Ed25519PrivateKey.generate()
    pki.write_private_key(path, key)
    return key


def test_cli_enrolment_and_revocation(tmp_path: Path) -> None:
    ok("ca", "init", "ca", cwd=tmp_path)
    audit = write_audit_key(tmp_path / "audit.key")
    ok("cert", "request", "node", "--lab", "alpha", "--audit-key", "audit.key", cwd=tmp_path)
    assert (tmp_path / "node/tls/node.key").stat().st_mode & 0o777 == 0o600

    out = ok("ca", "issue", "ca", "node/tls/node.csr", "--out", "alpha.crt", cwd=tmp_path)
    assert "lab alpha" in out
    ok("cert", "install", "node", "alpha.crt", "--ca-cert", "ca/ca.crt", cwd=tmp_path)
    assert (tmp_path / "node/tls/node.crt").read_bytes() == (tmp_path / "alpha.crt").read_bytes()

    shown = json.loads(
        ok("cert", "show", "node/tls/node.crt", "--format", "json", "--ca-cert", "ca/ca.crt",
           "--crl", "ca/crl.pem", cwd=tmp_path)
    )  # fmt: skip
    assert shown["lab"] == "alpha"
    assert shown["audit_key_fingerprint"] == pki.key_fingerprint(audit.public_key())
    assert 364 < shown["days_left"] <= 365
    assert "not revoked" in shown["verified"]

    out = ok("ca", "revoke", "ca", "--cert", "alpha.crt", cwd=tmp_path)
    assert shown["serial"] in out
    result = crossmatch(
        "cert", "show", "alpha.crt", "--ca-cert", "ca/ca.crt", "--crl", "ca/crl.pem", cwd=tmp_path
    )
    assert result.returncode == 77
    assert result.stderr.count("\n") == 1
    assert "[rule: certificate-revoked]" in result.stderr


def test_cli_refusals_are_one_line_with_exit_code(tmp_path: Path) -> None:
    ok("ca", "init", "ca", cwd=tmp_path)
    result = crossmatch("ca", "init", "ca", cwd=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (78, 1)
    assert "already exists" in result.stderr

    # Not a CSR at all, and a CSR whose SAN claims another lab: neither is signed.
    audit = write_audit_key(tmp_path / "a.key").public_key()
    good = pki.make_csr(pki.generate_tls_key(), "alpha", audit)
    (tmp_path / "bad.csr").write_bytes(good.replace(b"CERTIFICATE REQUEST", b"CERTIFICATE"))
    result = crossmatch("ca", "issue", "ca", "bad.csr", cwd=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (77, 1)
    assert "csr-malformed" in result.stderr
    forged = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alpha")]))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier("urn:crossmatch:lab:beta"),
                    x509.DNSName("beta.crossmatch.invalid"),
                ]
            ),
            critical=False,
        )
        .sign(pki.generate_tls_key(), hashes.SHA256())
    )
    (tmp_path / "forged.csr").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    result = crossmatch("ca", "issue", "ca", "forged.csr", cwd=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (77, 1)
    assert "csr-san-mismatch" in result.stderr
    assert not (tmp_path / "bad.crt").exists() and not (tmp_path / "forged.crt").exists()

    result = crossmatch("ca", "revoke", "ca", "--serial", "12345", cwd=tmp_path)
    assert result.returncode == 78 and "unknown-serial" in result.stderr

    result = crossmatch("cert", "request", "node", "--lab", "Alpha", "--audit-key", "a.key",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 78 and "'Alpha'" in result.stderr


def test_cli_install_refuses_a_different_trust_anchor(tmp_path: Path) -> None:
    ok("ca", "init", "ca", cwd=tmp_path)
    ok("ca", "init", "other", cwd=tmp_path)
    write_audit_key(tmp_path / "audit.key")
    ok("cert", "request", "node", "--lab", "alpha", "--audit-key", "audit.key", cwd=tmp_path)
    ok("ca", "issue", "ca", "node/tls/node.csr", cwd=tmp_path)
    ok("cert", "install", "node", "node/tls/node.crt", "--ca-cert", "ca/ca.crt", cwd=tmp_path)
    result = crossmatch(
        "cert", "install", "node", "node/tls/node.crt", "--ca-cert", "other/ca.crt", cwd=tmp_path
    )
    assert result.returncode == 78 and "rotated its CA" in result.stderr
    assert (tmp_path / "node/tls/ca.crt").read_bytes() == (tmp_path / "ca/ca.crt").read_bytes()


@pytest.mark.parametrize(
    "command",
    [(), ("ca",), ("ca", "init"), ("ca", "issue"), ("ca", "revoke"), ("cert",),
     ("cert", "request"), ("cert", "install"), ("cert", "show")],
)  # fmt: skip
def test_every_command_has_help(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = crossmatch(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    if command:
        # The command's own docstring, not just click's boilerplate.
        assert len(result.stdout.splitlines()[2].strip()) > 10


# --- 2. mutual TLS on loopback ----------------------------------------------------------------

CHECK_TIMEOUT = 10


class Enrolled:
    """A node's PEMs as `load_pems()` returns them: key, cert, CA."""

    def __init__(self, ca_dir: Path, lab: str, *, now: datetime | None = None):
        now = now or datetime.now(UTC)
        key = pki.generate_tls_key()
        self.lab = lab
        self.audit_key = ed25519.Ed25519PrivateKey.generate()
        csr = pki.make_csr(key, lab, self.audit_key.public_key())
        self.cert = pki.issue_certificate(ca_dir, csr, now=now)
        self.key = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.ca = (ca_dir / pki.CA_CERT_FILE).read_bytes()


@pytest.fixture(scope="module")
def consortium(tmp_path_factory) -> Path:
    ca_dir = tmp_path_factory.mktemp("consortium") / "ca"
    pki.init_ca(ca_dir, now=datetime.now(UTC))
    return ca_dir


@pytest.fixture(scope="module")
def stranger_ca(tmp_path_factory) -> Path:
    ca_dir = tmp_path_factory.mktemp("stranger") / "ca"
    pki.init_ca(ca_dir, now=datetime.now(UTC))  # same default name: a lookalike CA
    return ca_dir


def whoami_handler(ca_pem: bytes, revoked: frozenset[int]) -> grpc.GenericRpcHandler:
    """How a responder learns who is calling: from the verified certificate, nothing else."""

    def whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            peer = pki.identity_from_certificate(
                pki.peer_certificate_from_grpc_context(context),
                ca_pem,
                now=datetime.now(UTC),
                revoked=revoked,
            )
        except PolicyError as e:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, e.diagnostics())
        return f"{peer.lab} {pki.key_fingerprint(peer.audit_public_key)}".encode()

    return grpc.method_handlers_generic_handler(
        "test.Identity", {"WhoAmI": grpc.unary_unary_rpc_method_handler(whoami)}
    )


@contextmanager
def serving(
    node: Enrolled,
    revoked: frozenset[int] = frozenset(),
    credentials: grpc.ServerCredentials | None = None,
) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_generic_rpc_handlers([whoami_handler(node.ca, revoked)])
    port = server.add_secure_port(
        "127.0.0.1:0", credentials or pki.server_credentials(node.key, node.cert, node.ca)
    )
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


@contextmanager
def channel_to(port: int, client: Enrolled, expected_lab: str) -> Iterator[grpc.Channel]:
    credentials = pki.channel_credentials(client.key, client.cert, client.ca)
    with grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=pki.channel_options(expected_lab)
    ) as channel:
        yield channel


def health_check(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_TIMEOUT).status


def whoami(channel: grpc.Channel) -> str:
    call = channel.unary_unary("/test.Identity/WhoAmI")
    return call(b"", timeout=CHECK_TIMEOUT).decode()


def test_correct_peers_connect_and_server_reads_client_lab(consortium: Path) -> None:
    server, client = Enrolled(consortium, "beta"), Enrolled(consortium, "alpha")
    with serving(server) as port, channel_to(port, client, expected_lab="beta") as channel:
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
        expected = f"alpha {pki.key_fingerprint(client.audit_key.public_key())}"
        assert whoami(channel) == expected


def test_a_connection_without_a_client_certificate_is_certificate_missing(
    consortium: Path,
) -> None:
    # Our servers require a client certificate at the handshake; this one does not, so the
    # servicer's own check (shared by the node and the consortium hub) is what refuses.
    server = Enrolled(consortium, "beta")
    lax = grpc.ssl_server_credentials([(server.key, server.cert)], require_client_auth=False)
    anonymous = grpc.ssl_channel_credentials(root_certificates=server.ca)
    with serving(server, credentials=lax) as port:
        with grpc.secure_channel(
            f"127.0.0.1:{port}", anonymous, options=pki.channel_options("beta")
        ) as channel:
            with pytest.raises(grpc.RpcError) as excinfo:
                whoami(channel)
    assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "[rule: certificate-missing]" in excinfo.value.details()


def test_client_with_certificate_from_another_ca_is_rejected(
    consortium: Path, stranger_ca: Path
) -> None:
    server = Enrolled(consortium, "beta")
    impostor = Enrolled(stranger_ca, "alpha")
    impostor.ca = server.ca  # it trusts the real CA, so only its own certificate is wrong
    with serving(server) as port, channel_to(port, impostor, expected_lab="beta") as channel:
        with pytest.raises(grpc.RpcError) as excinfo:
            health_check(channel)
    assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE


def test_server_with_certificate_for_another_lab_is_rejected(consortium: Path) -> None:
    server, client = Enrolled(consortium, "gamma"), Enrolled(consortium, "alpha")
    with serving(server) as port:
        with channel_to(port, client, expected_lab="beta") as channel:
            with pytest.raises(grpc.RpcError) as excinfo:
                health_check(channel)
        assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "beta.crossmatch.invalid is not in peer certificate" in excinfo.value.details()
        with channel_to(port, client, expected_lab="gamma") as channel:  # control
            assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING


def test_server_from_another_ca_is_rejected_by_client(consortium: Path, stranger_ca: Path) -> None:
    impostor, client = Enrolled(stranger_ca, "beta"), Enrolled(consortium, "alpha")
    impostor.ca = client.ca  # accepts the real consortium's clients
    with serving(impostor) as port, channel_to(port, client, expected_lab="beta") as channel:
        with pytest.raises(grpc.RpcError) as excinfo:
            health_check(channel)
    assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE


def test_expired_client_certificate_is_refused_at_the_handshake(tmp_path: Path) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=400)
    ca_dir = tmp_path / "ca"
    pki.init_ca(ca_dir, now=long_ago)
    server = Enrolled(ca_dir, "beta")
    expired = Enrolled(ca_dir, "alpha", now=long_ago)  # valid 365 days from 400 days ago
    with serving(server) as port, channel_to(port, expired, expected_lab="beta") as channel:
        with pytest.raises(grpc.RpcError) as excinfo:
            health_check(channel)
    assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE


def test_revoked_client_passes_tls_but_is_refused_by_the_servicer(consortium: Path) -> None:
    # gRPC does not read CRLs: revocation is enforced by identity_from_certificate.
    server, client = Enrolled(consortium, "beta"), Enrolled(consortium, "alpha")
    serial = pki.summarize_certificate(client.cert).serial
    with serving(server, revoked=frozenset({serial})) as port:
        with channel_to(port, client, expected_lab="beta") as channel:
            with pytest.raises(grpc.RpcError) as excinfo:
                whoami(channel)
    assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "certificate-revoked" in excinfo.value.details()
