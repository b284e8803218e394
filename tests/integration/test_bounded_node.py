"""Issue 11: a hostile, certified peer cannot freeze, flood, lock out or desynchronise a
served node. One test per numbered finding (test_finding_N_...), each against real
`serve` processes over mutual TLS; after each, the node still serves and its log verifies.

The node under attack (lab-b) runs with short limits ([limits] in node.toml) so the
deadlines fire in seconds; lab-a and lab-c are its configured peers, lab-d is
certified by the consortium CA but nobody's peer.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import threading
import time
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node import pki
from node.demo.sandbox import Sandbox, cli_command, run_cli, sandbox_policy
from protocol.psi import Engine
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc
from tests.integration.conftest import audit_ok, import_values, rounds_json, wait_for
from tests.integration.test_hostile_peers import open_request, pki_key, stub_as

LIMITS = dict(
    pending_ttl_seconds=3.0,
    first_message_seconds=2.0,
    peer_silence_seconds=30.0,
    rpcs_per_peer=4,
    refusal_records_per_minute=6,
)


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    root = tmp_path_factory.mktemp("bounded")
    sandbox = Sandbox(root / "consortium")
    sandbox.create(["lab-a", "lab-b", "lab-c", "lab-d"])
    sandbox.labs["lab-b"].configure(limits=LIMITS, metrics_listen="127.0.0.1:0")
    for name in ("lab-a", "lab-b", "lab-c"):
        sandbox.labs[name].start()
    b = sandbox.labs["lab-b"]
    for other in ("lab-a", "lab-c"):
        run_cli("peer", "add", b.dir, "--lab", other, "--address", sandbox.labs[other].address)
        run_cli("peer", "add", sandbox.labs[other].dir, "--lab", "lab-b", "--address", b.address)
    data = root / "data"
    data.mkdir()
    for name in ("lab-a", "lab-b", "lab-c"):
        import_values(
            sandbox.labs[name].dir, "email", [f"u{i}@mail.example" for i in range(40)], data
        )
    yield sandbox
    sandbox.stop_all()


def b_stub(trio, as_lab: str = "lab-a"):
    return stub_as(trio.labs[as_lab].dir, "lab-b", trio.labs["lab-b"].address)


def still_serving(trio, initiator: str = "lab-a") -> None:
    """An honest round with lab-b completes, and every log verifies.

    A hostile test may have left a round pending at lab-b (an OpenRound never streamed):
    that holds the pair's single-flight slot until the pending TTL (3 s here) frees it,
    so the honest round is retried while it is refused for that reason alone."""
    deadline = time.monotonic() + LIMITS["pending_ttl_seconds"] + 5
    while True:
        proc = run_cli(
            "round", trio.labs[initiator].dir, "--peer", "lab-b", "--kinds", "email", check=False
        )
        busy = any(f"[rule: {r}]" in proc.stderr for r in ("single-flight", "min-interval"))
        if proc.returncode == 0 or not busy or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert proc.returncode == 0 and "completed" in proc.stdout, proc.stderr
    for name in ("lab-a", "lab-b", "lab-c"):
        audit_ok(trio.labs[name].dir)


def health(trio, as_lab: str = "lab-c", timeout: float = 5.0) -> int:
    channel, _ = b_stub(trio, as_lab)
    with channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            .status
        )


def drain(call) -> list:
    """Every reply of a streaming call, then the error that ended it (if any)."""
    out: list = []
    try:
        out.extend(call)
    except grpc.RpcError as e:
        out.append(e)
    return out


def audit_size(trio, lab: str = "lab-b") -> int:
    return trio.labs[lab].paths.audit_log.stat().st_size


def rows_of(trio, round_id: str, lab: str = "lab-b") -> list[dict]:
    return [r for r in rounds_json(trio.labs[lab].dir) if r["round_id"] == round_id]


def test_finding_1_freeze_silent_streams_do_not_take_the_workers(trio):
    """40 Exchange streams that never send Start: health and lab-c's round still answered."""
    channel, stub = b_stub(trio)
    never = threading.Event()

    def silent():
        never.wait(30)
        yield from ()

    with channel:
        calls = [stub.Exchange(silent(), timeout=30) for _ in range(40)]
        time.sleep(0.5)
        assert health(trio) == health_pb2.HealthCheckResponse.SERVING
        still_serving(trio, initiator="lab-c")
        outcomes = []
        for call in calls:
            with pytest.raises(grpc.RpcError) as err:
                next(call)
            outcomes.append(err.value.code())
        never.set()
    # Over the per-caller share: refused at once; the rest cut at the first-message deadline
    # (or, on a loaded machine, their connection dropped): every one ends, none is served.
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in outcomes
    assert set(outcomes) <= {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAVAILABLE,
    }
    assert trio.labs["lab-b"].metrics()["crossmatch_calls_rejected_busy_total"] >= 20
    still_serving(trio)


def test_finding_2_oversized_fields_never_reach_the_log(trio):
    before = audit_size(trio)
    channel, stub = b_stub(trio)
    with channel:
        for field, value in (
            ("protocol_version", "v" * 8_000_000),
            ("prompt_params", "p" * 1_000_000),
            ("input_commitment", b"\x00" * 1_000_000),
            ("initiator_lab", "x" * 100_000),
        ):
            with pytest.raises(grpc.RpcError) as err:
                stub.OpenRound(open_request(**{field: value}), timeout=20)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert field in err.value.details() and len(err.value.details()) < 200
        # A 12 MB Abort.reason on an accepted round, and a rule not in our vocabulary.
        request = open_request(sizes=[pb.KindSize(kind="email", size=20)])
        stub.OpenRound(request, timeout=10)
        abort = pb.ExchangeMessage(abort=pb.Abort(reason="r" * 12_000_000, rule="x" * 1000))
        start = pb.ExchangeMessage(start=pb.Start(round_id=request.round_id))
        replies = drain(stub.Exchange(iter([start, abort]), timeout=20))
        assert not any(
            isinstance(m, pb.ExchangeMessage) and m.WhichOneof("body") == "commit" for m in replies
        )
    row = wait_for(lambda: rows_of(trio, request.round_id), what="the aborted round")[0]
    assert row["status"] == "aborted" and "field-size" in row["reason"]
    assert audit_size(trio) - before < 10_000
    # The peer's own rule never becomes a label: only rules from our list are exported.
    labels = [k for k in trio.labs["lab-b"].metrics() if k.startswith("crossmatch_round_aborts")]
    assert not any("xxx" in k for k in labels)
    still_serving(trio)


def test_finding_3_lock_out_pending_round_expires_on_a_timer(trio):
    channel, stub = b_stub(trio)
    with channel:
        request = open_request(sizes=[pb.KindSize(kind="email", size=20)])
        stub.OpenRound(request, timeout=10)
        # Nobody calls again: the timer alone aborts it and frees the slot.
        row = wait_for(
            lambda: rows_of(trio, request.round_id), timeout=15, what="the expired round"
        )[0]
        assert row["status"] == "aborted" and "[rule: timeout]" in row["reason"]
        again = open_request(sizes=[pb.KindSize(kind="email", size=20)])
        stub.OpenRound(again, timeout=10)  # not single-flight
        wait_for(lambda: rows_of(trio, again.round_id), timeout=15, what="the second expiry")
    assert len(rows_of(trio, request.round_id)) == 1
    still_serving(trio)


def test_finding_4_desynchronise_reused_round_id_stores_nothing(trio):
    """A second OpenRound reusing a running round's id is refused and stores no row; the
    real round completes with one trace on each side."""
    from node.net.initiator import run_round
    from node.runtime import Node

    a = trio.labs["lab-a"]
    seen: list[str] = []
    refusals: list[str] = []

    def duplicate() -> None:
        channel, stub = b_stub(trio)
        with channel:
            try:
                stub.OpenRound(open_request(round_id=seen[0]), timeout=10)
                refusals.append("accepted!")
            except grpc.RpcError as e:
                refusals.append(dict(e.trailing_metadata() or ()).get("crossmatch-rule", ""))

    threads: list[threading.Thread] = []

    def reuse_id(done: int, total: int) -> None:
        if seen and not threads:  # mid-exchange, without holding up our own side
            threads.append(threading.Thread(target=duplicate))
            threads[0].start()

    import_values(a.dir, "device_id", [f"d{i}" for i in range(30_000)], a.dir)
    import_values(
        trio.labs["lab-b"].dir,
        "device_id",
        [f"d{i}" for i in range(30_000)],
        trio.labs["lab-b"].dir,
    )
    with Node(a.dir) as node:
        node.round_hooks.append(lambda rid, role: seen.append(rid))
        summary = run_round(node, "lab-b", kinds=["device_id"], progress=reuse_id)
    threads[0].join()
    assert refusals and refusals[0] in ("single-flight", "round-id")
    assert summary.intersection_sizes == {"device_id": 30_000}
    rows = rows_of(trio, summary.round_id)
    assert [r["status"] for r in rows] == ["completed"]
    still_serving(trio)


class HugeResponder(pb_grpc.CrossmatchServicer):
    """lab-d's real certificate, answering every OpenRound with a 2^62-element set."""

    def OpenRound(self, request, context):
        from node.net import proof

        response = pb.OpenRoundResponse(
            round_id=request.round_id,
            sizes=[pb.KindSize(kind=s.kind, size=2**62) for s in request.sizes],
            input_commitment=b"\x01" * 32,
            certificate_pem=self.cert,
            chunk_size=1000,
        )
        response.identity_proof = proof.prove(self.key, request, response)  # a real proof
        return response


def test_finding_5_initiator_checks_announced_sizes_before_allocating(trio, tmp_path):
    from node.net.initiator import run_round
    from node.ops.metrics import Metrics
    from node.runtime import Node
    from protocol.errors import CrossmatchError

    d = trio.labs["lab-d"].paths
    servicer = HugeResponder()
    servicer.cert = d.tls_cert.read_bytes()
    servicer.key = serialization.load_pem_private_key(d.tls_key.read_bytes(), password=None)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_CrossmatchServicer_to_server(servicer, server)
    port = server.add_secure_port(
        "127.0.0.1:0",
        pki.server_credentials(
            d.tls_key.read_bytes(), d.tls_cert.read_bytes(), d.ca_cert.read_bytes()
        ),
    )
    server.start()
    a = trio.labs["lab-a"]
    run_cli("peer", "add", a.dir, "--lab", "lab-d", "--address", f"127.0.0.1:{port}")
    try:
        proc = run_cli("round", a.dir, "--peer", "lab-d", "--kinds", "email", check=False)
        assert proc.returncode != 0 and "[rule: max-set-size]" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        metrics = Metrics()
        with Node(a.dir) as node:
            node.observers.append(metrics.observe)
            node.round_hooks.append(metrics.round_started)
            with pytest.raises(CrossmatchError) as err:
                run_round(node, "lab-d", kinds=["email"])
        assert err.value.rule == "max-set-size"
        assert (
            metrics.registry.get_sample_value("crossmatch_rounds_in_flight", {"role": "initiator"})
            == 0
        )
    finally:
        server.stop(0)
    rows = [r for r in rounds_json(a.dir) if r["peer"] == "lab-d"]
    assert len(rows) == 2 and all(r["status"] == "aborted" for r in rows)
    assert len({r["round_id"] for r in rows}) == 2  # one row per round
    audit_ok(a.dir)
    still_serving(trio)


def serve_rss_kb(trio, lab: str = "lab-b") -> int:
    pid = trio.labs[lab].process.pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_finding_6_memory_tiny_chunks_are_refused_and_rss_stays_bounded(trio):
    channel, stub = b_stub(trio, "lab-c")
    with Engine(pki_key()) as e:
        point = e.blind([os.urandom(32)])
    before = serve_rss_kb(trio)
    with channel:
        request = open_request(initiator="lab-c", sizes=[pb.KindSize(kind="email", size=200_000)])
        stub.OpenRound(request, timeout=10)

        def tiny():
            yield pb.ExchangeMessage(start=pb.Start(round_id=request.round_id))
            for seq in range(20_000):
                yield pb.ExchangeMessage(own_blinded=pb.Chunk(seq=seq, points=point))

        messages = []
        try:
            for msg in stub.Exchange(tiny(), timeout=60):
                messages.append(msg)
        except grpc.RpcError:
            pass
    row = wait_for(lambda: rows_of(trio, request.round_id), what="the aborted round")[0]
    assert row["status"] == "aborted" and "[rule: chunk-size]" in row["reason"]
    assert serve_rss_kb(trio) - before < 50_000
    still_serving(trio, initiator="lab-c")


def test_finding_6_flow_control_window_holds_a_fast_peer_back(trio):
    """Full-size chunks (within the chunk budget) pushed as fast as the peer can: at most
    [limits] window_chunks of them wait for lab-b's workers, the reader blocks, HTTP/2
    stops the peer. lab-b's RSS stays flat however much the peer tries to push."""
    channel, stub = b_stub(trio, "lab-c")
    with Engine(pki_key()) as e:
        point = e.blind([os.urandom(32)])
    chunk = point * 256  # [limits] min_chunk_elements: no chunk-size refusal
    pushed, peak = [0], [0]
    flooding = threading.Event()
    before = serve_rss_kb(trio)
    with channel:
        size = pb.KindSize(kind="email", size=1_000_000)
        request = open_request(initiator="lab-c", sizes=[size])
        stub.OpenRound(request, timeout=10)

        def flood():
            yield pb.ExchangeMessage(start=pb.Start(round_id=request.round_id))
            for seq in range(3_900):  # 1M elements' worth of chunks; the call ends first
                pushed[0] += 1
                flooding.set()
                yield pb.ExchangeMessage(own_blinded=pb.Chunk(seq=seq, points=chunk))

        call = stub.Exchange(flood(), timeout=60)
        threading.Thread(target=drain, args=(call,), daemon=True).start()
        assert flooding.wait(10)
        for _ in range(20):  # 4 s of flooding, RSS sampled as it goes
            time.sleep(0.2)
            peak[0] = max(peak[0], serve_rss_kb(trio))
        call.cancel()
    # Unbounded, lab-b would have read (and queued the work of) everything offered;
    # bounded, the peer got only a fraction of its 32 MB through in 4 s.
    assert pushed[0] < 3_900, pushed[0]
    assert peak[0] - before < 30_000, (peak[0] - before, pushed[0])
    row = wait_for(lambda: rows_of(trio, request.round_id), what="the aborted round")[0]
    assert row["status"] == "aborted" and "[rule: stream-ended]" in row["reason"], row
    still_serving(trio, initiator="lab-c")


def test_finding_7_secret_files_are_private_and_loose_ones_refused(trio):
    b = trio.labs["lab-b"]
    p = b.paths
    for path in (
        p.tls_key,
        p.audit_key,
        p.consortium_key,
        p.db,
        p.db.with_name(p.db.name + "-wal"),
        trio.ca_dir / pki.CA_KEY_FILE,
    ):
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, path
    for path in (p.audit_key, p.consortium_key, p.tls_key):
        path.chmod(0o644)
        try:
            proc = run_cli("round", b.dir, "--peer", "lab-a", check=False)
            assert proc.returncode != 0 and "chmod 600" in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1
        finally:
            path.chmod(0o600)
    # The databases are tightened back on open (node/state/sqlite.py), not refused.
    p.db.chmod(0o644)
    run_cli("rounds", b.dir)
    assert p.db.stat().st_mode & 0o777 == 0o600


def test_finding_7_stale_crl_refuses_rounds(trio):
    a = trio.labs["lab-a"]
    serial = pki.summarize_certificate(trio.labs["lab-d"].paths.tls_cert.read_bytes()).serial
    pki.revoke(trio.ca_dir, serial, now=datetime.now(UTC) - timedelta(days=40))
    stale = trio.ca_dir / pki.CA_CRL_FILE
    run_cli("crl", "install", a.dir, stale)
    proc = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email", check=False)
    assert proc.returncode != 0 and "[rule: crl-stale]" in proc.stderr, proc.stderr
    # We refused lab-b's answer after it accepted: we withdrew the round, so lab-b has
    # recorded it and freed the pair's slot at once, not after its pending TTL.
    [withdrawn] = [r for r in rounds_json(trio.labs["lab-b"].dir)[:1] if r["status"] == "aborted"]
    assert "crl-stale" in withdrawn["reason"] and "peer aborted" in withdrawn["reason"]
    assert "due for renewal" not in withdrawn["reason"]  # the rule, not our own error text
    pki.revoke(trio.ca_dir, serial, now=datetime.now(UTC))
    run_cli("crl", "install", a.dir, trio.ca_dir / pki.CA_CRL_FILE)
    out = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email")  # no single-flight
    assert "completed" in out.stdout
    still_serving(trio)


def test_finding_7_policy_can_require_a_crl(trio):
    a = trio.labs["lab-a"]
    saved = a.paths.crl.read_bytes() if a.paths.crl.exists() else None
    a.paths.crl.unlink(missing_ok=True)
    trio.install_policy("require_crl = true\n" + sandbox_policy(version=2))
    try:
        proc = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email", check=False)
        assert proc.returncode != 0 and "[rule: crl-missing]" in proc.stderr, proc.stderr
        for lab in (a, trio.labs["lab-b"]):
            run_cli("crl", "install", lab.dir, trio.ca_dir / pki.CA_CRL_FILE)
        out = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "email")
        assert "completed" in out.stdout
    finally:
        trio.install_policy(sandbox_policy())
        if saved is not None:
            a.paths.crl.write_bytes(saved)
    still_serving(trio)


def test_finding_8_blocking_logs_a_stalled_stderr_never_blocks_requests(trio, tmp_path):
    """lab-c serves with stderr into a pipe nobody reads; a flood of refused OpenRounds
    (each one a warning line before) leaves health and real rounds answered."""
    c = trio.labs["lab-c"]
    c.stop()
    proc = subprocess.Popen(
        cli_command("serve", c.dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        address = wait_for(
            lambda: c.paths.address_file.exists() and c.paths.address_file.read_text().strip(),
            what="lab-c serving",
        )
        channel, stub = stub_as(trio.labs["lab-a"].dir, "lab-c", address)
        with channel:
            for _ in range(1500):  # lab-a is no peer of lab-c: refused, unknown-peer
                with pytest.raises(grpc.RpcError):
                    stub.OpenRound(
                        open_request(responder="lab-c", protocol_version="v" * 30), timeout=10
                    )
            status = (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                .status
            )
        assert status == health_pb2.HealthCheckResponse.SERVING
        run_cli("peer", "add", trio.labs["lab-b"].dir, "--lab", "lab-c", "--address", address)
        run_cli("peer", "add", c.dir, "--lab", "lab-b", "--address", trio.labs["lab-b"].address)
        out = run_cli("round", c.dir, "--peer", "lab-b", "--kinds", "email")
        assert "completed" in out.stdout
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    c.start()
    run_cli("peer", "add", trio.labs["lab-b"].dir, "--lab", "lab-c", "--address", c.address)
    audit_ok(c.dir)
    still_serving(trio)


def test_finding_9_csv_exports_are_formula_safe(trio, tmp_path):
    a, b = trio.labs["lab-a"], trio.labs["lab-b"]
    evil = ['=HYPERLINK("http://x.example","click")', "+cmd|' /C calc'!A0", "@SUM(A1)"]
    for lab in (a, b):
        import_values(lab.dir, "account_id", evil, tmp_path)
    run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "account_id")
    out = run_cli("matches", a.dir, "--kind", "account_id", "--format", "csv").stdout
    cells = [row[3] for row in csv.reader(io.StringIO(out))][1:]
    assert sorted(cells) == sorted("'" + v for v in evil), out
    export = run_cli("audit", "export", a.dir, "--format", "csv").stdout
    assert "\n=" not in export and ",=" not in export
    audit_ok(a.dir)


def test_refusals_from_outsiders_are_summarised_not_recorded_one_by_one(trio):
    before = audit_size(trio)
    channel, stub = b_stub(trio, "lab-d")  # certified, not a peer of lab-b
    with channel:
        for _ in range(300):
            with pytest.raises(grpc.RpcError) as err:
                stub.OpenRound(open_request(initiator="lab-d"), timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert audit_size(trio) - before < 2_000
    counted = trio.labs["lab-b"].metrics()  # unknown-peer, or certificate-revoked: lab-d is
    assert (
        sum(
            v
            for k, v in counted.items()  # revoked once the CRL tests ran
            if k.startswith("crossmatch_refusals_unrecorded_total")
        )
        >= 300
    )
    still_serving(trio)


def test_reuse_of_a_stored_round_id_is_refused(trio):
    channel, stub = b_stub(trio)
    rid = rounds_json(trio.labs["lab-b"].dir)[0]["round_id"]
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            stub.OpenRound(open_request(round_id=rid), timeout=10)
    assert dict(err.value.trailing_metadata())["crossmatch-rule"] in ("round-id", "single-flight")
    assert len(rows_of(trio, rid)) == 1


def _flood(trio, as_lab: str, attempts: int, stop_at: float) -> int:
    """Hostile calls as ``as_lab``: bad OpenRounds and Exchanges for rounds never opened."""
    channel, stub = b_stub(trio, as_lab)
    done = 0
    with channel:
        for i in range(attempts):
            if time.monotonic() > stop_at:
                break
            try:
                if i % 4 == 3:
                    start = pb.ExchangeMessage(start=pb.Start(round_id=os.urandom(16).hex()))
                    list(stub.Exchange(iter([start]), timeout=10))
                else:
                    stub.OpenRound(
                        open_request(
                            initiator=as_lab, protocol_version=f"v{i}", prompt_params="p" * 100
                        ),
                        timeout=10,
                    )
            except grpc.RpcError:
                pass
            done += 1
    return done


def test_flood_of_10000_hostile_calls_is_bounded_and_honest_round_completes(trio):
    """Done-when of issue 11: 10,000 attempts from a certified peer (lab-a) and a non-peer
    (lab-d), 4 callers at a time; audit.log grows < 100 KB, RSS < 100 MB, and lab-c's
    honest round, started mid-flood, completes."""
    log_before, rss_before = audit_size(trio), serve_rss_kb(trio)
    stop_at = time.monotonic() + 90  # bounded in time as well as in count
    with futures.ThreadPoolExecutor(5) as pool:
        floods = [
            pool.submit(_flood, trio, lab, 2500, stop_at)
            for lab in ("lab-a", "lab-a", "lab-d", "lab-d")
        ]
        time.sleep(1.0)
        honest = pool.submit(
            run_cli, "round", trio.labs["lab-c"].dir, "--peer", "lab-b", "--kinds", "email"
        )
        sent = sum(f.result() for f in floods)
        assert "completed" in honest.result().stdout
    assert sent == 10_000
    grew_log = audit_size(trio) - log_before
    grew_rss = serve_rss_kb(trio) - rss_before
    print(f"flood: {sent} calls; audit.log +{grew_log} B; RSS +{grew_rss} KB")
    assert grew_log < 100_000
    assert grew_rss < 100_000
    assert health(trio) == health_pb2.HealthCheckResponse.SERVING
    still_serving(trio)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only: skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_finding_2_disk_full_refuses_rounds_then_recovers_by_itself(trio, small_disk):
    """lab-c's audit.log lives on a small disk that fills up: its rounds fail cleanly, then
    are refused with rule disk-full, and resume once space returns, without a restart."""
    b, c = trio.labs["lab-b"], trio.labs["lab-c"]
    log = c.paths.audit_log
    c.stop()
    (small_disk / "audit.log").write_bytes(log.read_bytes())
    log.unlink()
    log.symlink_to(small_disk / "audit.log")
    try:
        c.start()
        run_cli("peer", "add", b.dir, "--lab", "lab-c", "--address", c.address)
        filler = small_disk / "filler"
        _fill(filler)
        # The log's last page may still hold a record or two; then an append fails (that
        # round is not committed by lab-c), and from then on rounds are refused.
        outcomes = []
        for _ in range(8):
            proc = run_cli("round", b.dir, "--peer", "lab-c", "--kinds", "email", check=False)
            outcomes.append(proc.returncode)
            if "[rule: disk-full]" in proc.stderr:
                break
        assert "[rule: disk-full]" in proc.stderr, (outcomes, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
        filler.unlink()
        time.sleep(6)  # RESUME_SECONDS
        out = run_cli("round", b.dir, "--peer", "lab-c", "--kinds", "email")
        assert "completed" in out.stdout
        audit_ok(c.dir)
        assert b'"log_resumed"' in log.read_bytes()
    finally:
        c.stop()
        data = (small_disk / "audit.log").read_bytes()
        log.unlink()
        log.write_bytes(data)
        c.start()
        run_cli("peer", "add", b.dir, "--lab", "lab-c", "--address", c.address)
    audit_ok(c.dir)
    still_serving(trio, initiator="lab-c")


# Last: it revokes lab-b in the CA (the CA's CRL from then on lists it).
# The abort can land while the finishing thread stores its work: an exception left to
# end that thread (seen once in CI, 0c2faf5) fails the test instead of warning.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_finding_7_revocation_is_rechecked_during_the_round(trio):
    """lab-b's certificate is revoked while the round runs: lab-a aborts before committing."""
    from node.net.initiator import run_round
    from node.runtime import Node
    from protocol.errors import CrossmatchError

    a, b = trio.labs["lab-a"], trio.labs["lab-b"]
    serial = pki.summarize_certificate(b.paths.tls_cert.read_bytes()).serial
    revoked: list[bool] = []

    def revoke_once(done: int, total: int) -> None:
        if not revoked:
            revoked.append(True)
            pki.revoke(trio.ca_dir, serial, now=datetime.now(UTC))
            a.paths.crl.write_bytes((trio.ca_dir / pki.CA_CRL_FILE).read_bytes())

    saved = a.paths.crl.read_bytes() if a.paths.crl.exists() else None
    try:
        with Node(a.dir) as node:
            with pytest.raises(CrossmatchError) as err:
                run_round(node, "lab-b", kinds=["device_id"], progress=revoke_once)
        assert err.value.rule == "certificate-revoked", err.value.diagnostics()
        rid = rounds_json(a.dir)[0]["round_id"]
        assert run_cli("matches", a.dir, "--round", rid, "--format", "json").stdout.strip() == "[]"
    finally:
        if saved is not None:
            a.paths.crl.write_bytes(saved)
        else:
            a.paths.crl.unlink()
    audit_ok(a.dir)
