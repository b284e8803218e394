"""Structure-aware fuzzing of a served node's wire, over real mutual TLS.

    python -m bench.fuzz_wire --minutes 30

One `crossmatch serve` (lab-b, short [limits] so deadlines fire in seconds) in a
loopback consortium; the fuzzer holds the real credentials of lab-a (a
configured peer: the most dangerous caller) and of lab-c (certified, not a
peer). Hypothesis strategies build every message of crossmatch.v1 from valid
seeds (a real policy hash, real blinded points, a round id the node accepted)
mixed with hostile values (huge strings, wrong lengths, unknown enums, garbage
points, tiny chunks), and every stream order (Start or not, chunks of either
kind, receipts, commits and aborts in any order, the stream cut early).

After every case: the node answers a health check, its RSS stays under the
bound, and (every ``--verify-every`` cases and at the end) `crossmatch audit
verify` passes. At the end an honest round must complete. Exit status 1 on any
failure, with the case that caused it (Hypothesis shrinks it first).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import pki
from node.config import NodePaths
from node.demo.sandbox import Sandbox, run_cli, sandbox_policy_hash
from node.net.channel import channel_options
from protocol import PROTOCOL_VERSION
from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb
from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

FUZZ_LIMITS = dict(
    pending_ttl_seconds=2.0,
    first_message_seconds=2.0,
    peer_silence_seconds=3.0,
    refusal_records_per_minute=6,
)
RSS_BOUND_KB = 300_000  # over the node's RSS after start-up
KINDS = ("email", "phone", "ip", "account_id", "device_id", "shoe_size", "")


@dataclass
class Stats:
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # OpenRound
    streams: Counter[str] = field(default_factory=Counter)  # how Exchange streams ended
    peak_rss_kb: int = 0
    verifies: int = 0


# -- strategies ---------------------------------------------------------------------------------


def hostile_text(valid: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(valid),
        st.text(max_size=64),
        st.integers(1, 3_000_000).map(lambda n: "x" * n),
        st.just(valid + "\x00\n=cmd"),
    )


def hostile_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(valid), st.binary(max_size=64), st.integers(1, 3_000_000).map(lambda n: b"\x01" * n)
    )


def kind_sizes() -> st.SearchStrategy[list[pb.KindSize]]:
    size = st.one_of(st.integers(0, 50), st.integers(0, 2**64 - 1), st.just(5_000_001))
    return st.lists(st.builds(pb.KindSize, kind=st.sampled_from(KINDS), size=size), max_size=20)


def valid_request(round_id: str) -> dict[str, object]:
    return dict(
        protocol_version=PROTOCOL_VERSION,
        round_id=round_id,
        initiator_lab="lab-a",
        responder_lab="lab-b",
        mode=pb.MODE_REVEAL,
        sizes=[pb.KindSize(kind="email", size=20)],
        policy_hash=sandbox_policy_hash(),
        input_commitment=b"\x00" * 32,
        prompt_params="",
        chunk_size=1000,
        nonce=b"\x07" * 32,
    )


def hostile_fields(round_id: str) -> dict[str, st.SearchStrategy[object]]:
    return dict(
        protocol_version=hostile_text(PROTOCOL_VERSION),
        round_id=hostile_text(round_id),
        initiator_lab=st.sampled_from(["lab-c", "", "LAB-A", "lab-a" * 30]),
        responder_lab=st.sampled_from(["lab-z", "", "lab-b\x00"]),
        mode=st.sampled_from([pb.MODE_COUNT, 0, 7]),
        sizes=kind_sizes(),
        policy_hash=hostile_bytes(sandbox_policy_hash()),
        input_commitment=hostile_bytes(b"\x00" * 32),
        prompt_params=hostile_text(""),
        chunk_size=st.sampled_from([0, 1, 2**32 - 1]),
        nonce=hostile_bytes(b"\x07" * 32),
    )


@st.composite
def open_requests(draw: st.DrawFn, round_id: str) -> pb.OpenRoundRequest:
    """A valid request with 0-3 of its fields replaced by hostile values (0 most often,
    so that the Exchange stream behind it is reached)."""
    fields = valid_request(round_id)
    hostile = hostile_fields(round_id)
    count = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    for name in draw(st.permutations(sorted(hostile)))[:count]:
        fields[name] = draw(hostile[name])
    return pb.OpenRoundRequest(**fields)


def chunks(points: bytes) -> st.SearchStrategy[pb.Chunk]:
    return st.builds(
        pb.Chunk,
        seq=st.integers(0, 2**32 - 1),
        points=st.one_of(
            st.just(points),
            st.just(points[:33]),
            st.just(b""),
            st.binary(max_size=200),
            st.integers(1, 200).map(lambda n: points[:33] * n),
        ),
    )


def exchange_messages(round_id: str, points: bytes) -> st.SearchStrategy[pb.ExchangeMessage]:
    E = pb.ExchangeMessage
    return st.one_of(
        st.builds(lambda r: E(start=pb.Start(round_id=r)), hostile_text(round_id)),
        chunks(points).map(lambda c: E(own_blinded=c)),
        chunks(points).map(lambda c: E(peer_reblinded=c)),
        hostile_bytes(b"\x02" * 32).map(
            lambda d: E(reblind_commitment=pb.ReblindCommitment(digest=d))
        ),
        hostile_bytes(b"{}").map(lambda b: E(receipt=pb.Receipt(signed_receipt=b))),
        st.just(E(commit=pb.Commit())),
        st.builds(
            lambda r, u: E(abort=pb.Abort(reason=r, rule=u)),
            hostile_text("why"),
            hostile_text("internal"),
        ),
        st.just(E()),
    )


@st.composite
def cases(draw: st.DrawFn, points: bytes) -> tuple[str, pb.OpenRoundRequest, list]:
    caller = draw(st.sampled_from(["lab-a", "lab-a", "lab-a", "lab-c"]))
    round_id = os.urandom(16).hex()
    request = draw(open_requests(round_id))
    start = pb.ExchangeMessage(start=pb.Start(round_id=request.round_id))
    rest = draw(st.lists(exchange_messages(request.round_id, points), max_size=12))
    stream = [start, *rest] if draw(st.booleans()) or not rest else rest
    return caller, request, stream


# -- the node under test ------------------------------------------------------------------------


class Target:
    def __init__(self, root: Path):
        self.sandbox = Sandbox(root / "consortium")
        self.sandbox.create(["lab-a", "lab-b", "lab-c"])
        b = self.sandbox.labs["lab-b"]
        b.configure(limits=FUZZ_LIMITS)
        b.start()
        a = self.sandbox.labs["lab-a"]
        run_cli("peer", "add", b.dir, "--lab", "lab-a", "--address", "127.0.0.1:9")
        run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", b.address)
        values = root / "emails.txt"
        values.write_text("".join(f"u{i}@mail.example\n" for i in range(40)))
        for lab in (a, b):
            run_cli("import", lab.dir, values, "--kind", "email")
        self.channels = {lab: self._channel(lab) for lab in ("lab-a", "lab-c")}
        self.base_rss = self.rss_kb()

    def _channel(self, lab: str) -> grpc.Channel:
        p = NodePaths(self.sandbox.labs[lab].dir)
        creds = pki.channel_credentials(
            p.tls_key.read_bytes(), p.tls_cert.read_bytes(), p.ca_cert.read_bytes()
        )
        return grpc.secure_channel(
            self.sandbox.labs["lab-b"].address, creds, options=channel_options("lab-b")
        )

    def rss_kb(self) -> int:
        pid = self.sandbox.labs["lab-b"].process.pid  # type: ignore[union-attr]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def run_case(self, caller: str, request: pb.OpenRoundRequest, stream: list) -> str:
        stub = pb_grpc.CrossmatchStub(self.channels[caller])
        outcome = "accepted"
        try:
            stub.OpenRound(request, timeout=10)
        except grpc.RpcError as e:
            outcome = "refused:" + dict(e.trailing_metadata() or ()).get("crossmatch-rule", "?")
        ended = "OK"
        try:
            for reply in stub.Exchange(iter(stream), timeout=10):
                if reply.WhichOneof("body") == "abort":
                    ended = "abort:" + reply.abort.rule
        except grpc.RpcError as e:
            ended = e.code().name
        return outcome + "/" + ended

    def check(self, stats: Stats) -> None:
        status = (
            health_pb2_grpc.HealthStub(self.channels["lab-c"])
            .Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            .status
        )
        assert status == health_pb2.HealthCheckResponse.SERVING, "node stopped serving"
        rss = self.rss_kb()
        stats.peak_rss_kb = max(stats.peak_rss_kb, rss)
        assert rss - self.base_rss < RSS_BOUND_KB, f"RSS grew by {rss - self.base_rss} KB"

    def verify(self, stats: Stats) -> None:
        proc = run_cli("audit", "verify", self.sandbox.labs["lab-b"].dir, check=False)
        assert proc.returncode == 0, f"audit verify failed: {proc.stdout}{proc.stderr}"
        stats.verifies += 1

    def honest_round(self) -> None:
        time.sleep(FUZZ_LIMITS["pending_ttl_seconds"] + 1)  # any fuzzed pending round expired
        out = run_cli(
            "round", self.sandbox.labs["lab-a"].dir, "--peer", "lab-b", "--kinds", "email"
        )
        assert "completed" in out.stdout, out.stdout

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.sandbox.stop_all()


def real_points() -> bytes:
    import private_set_intersection.python as psi

    from protocol.psi import Engine

    key = psi.client.CreateWithNewKey(True).GetPrivateKeyBytes()
    with Engine(key) as engine:
        return engine.blind([os.urandom(32) for _ in range(20)])


def fuzz(target: Target, minutes: float, verify_every: int) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + minutes * 60
    points = real_points()

    @settings(
        max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(cases(points))
    def one(case: tuple[str, pb.OpenRoundRequest, list]) -> None:
        if time.monotonic() > deadline:
            return
        opened, ended = target.run_case(*case).split("/", 1)
        stats.outcomes[opened] += 1
        stats.streams[ended] += 1
        stats.cases += 1
        target.check(stats)
        if stats.cases % verify_every == 0:
            target.verify(stats)

    while time.monotonic() < deadline:
        one()
    target.verify(stats)
    target.honest_round()
    target.verify(stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--verify-every", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="Keep the consortium in this directory.")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="crossmatch-fuzz-"))
    root.mkdir(parents=True, exist_ok=True)
    target = Target(root)
    started = time.monotonic()
    try:
        stats = fuzz(target, args.minutes, args.verify_every)
    except AssertionError as e:
        print(f"fuzz_wire: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        log_size = target.sandbox.labs["lab-b"].paths.audit_log.stat().st_size
        target.close()
    took = time.monotonic() - started
    print(
        f"fuzz_wire: {stats.cases} cases in {took:.0f} s, 0 crashes; audit verify passed "
        f"{stats.verifies} times; node RSS {target.base_rss} KB at start, peak "
        f"{stats.peak_rss_kb} KB; audit.log {log_size} bytes; an honest round completed"
    )
    print("OpenRound:")
    for outcome, n in stats.outcomes.most_common():
        print(f"  {n:7d}  {outcome}")
    print("Exchange streams ended:")
    for outcome, n in stats.streams.most_common():
        print(f"  {n:7d}  {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
