"""The consortium round with 5 real lab processes and a real hub on loopback (mutual TLS).

Elements are held by exactly 1, 2, 3, 4 and 5 labs; with k = 3 every lab learns
exactly its own elements held by >= 3 labs, and nothing about the others
appears in any result, audit log, process output or hub file.
"""

from __future__ import annotations

import itertools
import json
import queue
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from node.demo.sandbox import Sandbox, cli_command, consortium_section, run_cli, sandbox_policy
from tests.integration.conftest import audit_ok, import_values

LABS = ["lab-a", "lab-b", "lab-c", "lab-d", "lab-e"]
HUB = "isac"
K = 3
STAGE_TIMEOUT = 20  # seconds the hub waits without progress (a honest round needs far less)


def holdings() -> dict[str, list[str]]:
    """For every h in 1..5, one email per h-subset of the labs (31 elements, 80 holdings)."""
    held: dict[str, list[str]] = {lab: [] for lab in LABS}
    for h in range(1, 6):
        for subset in itertools.combinations(LABS, h):
            email = f"held{h}-{''.join(x[-1] for x in subset)}@example.com"
            for lab in subset:
                held[lab].append(email)
    return held


def count(email: str) -> int:
    return int(email[4])


def holders(email: str) -> str:
    """The last letters of the labs holding it: "abd" for lab-a, lab-b and lab-d."""
    return email.split("-")[1].split("@")[0]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    root = tmp_path_factory.mktemp("consortium")
    sandbox = Sandbox(root / "c")
    section = consortium_section(HUB, LABS, k=K, max_set_size=40, stage_timeout=STAGE_TIMEOUT)
    policy = sandbox_policy() + section
    sandbox.create(LABS, policy=policy)
    sandbox.add_hub(HUB)
    sandbox.install_policy(policy, {HUB: sandbox.labs[HUB]})
    address = sandbox.labs[HUB].start()
    tmp = root / "data"
    tmp.mkdir()
    for lab, emails in holdings().items():
        import_values(sandbox.labs[lab].dir, "email", emails, tmp)
        run_cli("peer", "add", sandbox.labs[lab].dir, "--lab", HUB, "--address", address)
    yield sandbox
    sandbox.stop_all()


def run_round(sandbox: Sandbox, labs: list[str]) -> dict[str, subprocess.CompletedProcess]:
    procs = {
        lab: subprocess.Popen(
            cli_command("consortium-round", sandbox.labs[lab].dir, "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lab in labs
    }
    out = {}
    for lab, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[lab] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


def consortium_rows(lab_dir: Path) -> tuple[int, int]:
    """(rounds, matches) stored; the tables appear with a lab's first committed round."""
    with sqlite3.connect(lab_dir / "crossmatch.db") as db:
        try:
            return (
                db.execute("SELECT count(*) FROM consortium_rounds").fetchone()[0],
                db.execute("SELECT count(*) FROM consortium_matches").fetchone()[0],
            )
        except sqlite3.OperationalError:
            return (0, 0)


@pytest.fixture(scope="module")
def completed(consortium):
    results = run_round(consortium, LABS)
    for lab, proc in results.items():
        assert proc.returncode == 0, f"{lab}: {proc.stderr}"
    return results


def test_every_lab_learns_exactly_its_elements_held_by_k_labs(consortium, completed):
    for lab, emails in holdings().items():
        summary = json.loads(completed[lab].stdout)
        want = sorted(e for e in emails if count(e) >= K)
        assert summary["result_counts"] == {"email": len(want)}
        got = json.loads(
            run_cli("matches", consortium.labs[lab].dir, "--consortium", "--format", "json").stdout
        )
        assert sorted(r["value"] for r in got) == want
        assert {r["at_least"] for r in got} == {K} and {r["labs"] for r in got} == {None}


def _fingerprints(lab_dir: Path) -> dict[str, bytes]:
    with sqlite3.connect(lab_dir / "crossmatch.db") as db:
        return {
            value: bytes(fp)
            for value, fp in db.execute(
                "SELECT v.value, s.fingerprint FROM signals s JOIN signal_values v"
                " ON v.signal_id = s.id"
            )
        }


def test_nothing_about_rarer_elements_appears_anywhere(consortium, completed):
    fps: dict[str, bytes] = {}
    for lab in LABS:
        fps.update(_fingerprints(consortium.labs[lab].dir))
    rare = [e for e in fps if count(e) < K]
    every = list(fps)
    texts = {f"{lab} output": completed[lab].stdout + completed[lab].stderr for lab in LABS}
    for lab in [*LABS, HUB]:
        d = consortium.labs[lab].dir
        texts[f"{lab} audit log"] = (d / "audit.log").read_text()
        texts[f"{lab} serve log"] = consortium.labs[lab].serve_log()
    for path in consortium.labs[HUB].dir.rglob("*"):  # the hub holds no identifier at all
        if path.is_file():
            texts[f"hub file {path.name}"] = path.read_bytes().decode("latin-1")
    for where, text in texts.items():
        hub_side = "hub" in where or where.startswith(HUB)
        for e in every if hub_side else rare:
            assert e not in text, f"{e} in {where}"
            assert fps[e].hex() not in text, f"fingerprint of {e} in {where}"
    for lab in LABS:
        with sqlite3.connect(consortium.labs[lab].dir / "crossmatch.db") as db:
            stored = {bytes(r[0]) for r in db.execute("SELECT fingerprint FROM consortium_matches")}
        assert stored == {fps[e] for e in holdings()[lab] if count(e) >= K}


def test_every_log_verifies_and_the_logs_reconcile(consortium, completed):
    for lab in [*LABS, HUB]:
        audit_ok(consortium.labs[lab].dir)
    dirs = [consortium.labs[lab].dir for lab in [*LABS, HUB]]
    proc = run_cli("audit", "reconcile-consortium", *dirs, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AGREE" in proc.stdout


def test_cases_show_the_consortium_evidence_of_their_accounts(consortium, completed, tmp_path):
    """lab-a's accounts of one email held by 3 labs and one held by 2, both also matched
    pairwise with lab-b: only the first case is "seen by >= 3 labs"."""
    a, b = consortium.labs["lab-a"], consortium.labs["lab-b"]
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(
        "account,email\nacct-k,held3-abc@example.com\nacct-2,held2-ab@example.com\n"
    )
    run_cli("import", a.dir, accounts, "--entities")
    run_cli("peer", "add", b.dir, "--lab", "lab-a", "--address", "127.0.0.1:9")  # never dialled
    b.start()
    try:
        run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", b.address)
        run_cli("round", a.dir, "--peer", "lab-b")
    finally:
        b.stop()
    cases = json.loads(run_cli("cases", a.dir, "--format", "json").stdout)["cases"]
    evidence = {}
    for c in cases:
        shown = json.loads(run_cli("case", "show", a.dir, c["case_id"], "--format", "json").stdout)
        (entity,) = shown["entities"]
        evidence[entity["key"]] = c["consortium"]
        text = run_cli("case", "show", a.dir, c["case_id"]).stdout
        assert ("consortium: seen by >= 3 labs" in text) == (entity["key"] == "acct-k")
    assert evidence == {
        "acct-k": {
            "signals": 1,
            "kinds": ["email"],
            "rounds": 1,
            "labs": None,
            "at_least": K,
            "seen_by": f">= {K} labs",
        },
        "acct-2": {},
    }
    table = run_cli("cases", a.dir).stdout
    assert table.count("seen by >= 3 labs") == 1
    csv_out = run_cli("cases", a.dir, "--format", "csv").stdout.splitlines()
    assert csv_out[0].endswith(",consortium")
    assert sorted(row.split(",")[-1] for row in csv_out[1:]) == ["", f">= {K} labs"]


# -- hostile participants, built from the generated stubs ------------------------------------


class HostileLab:
    """lab-e as a hostile participant: a hand-made Join stream with lab-e's real certificate."""

    def __init__(self, sandbox: Sandbox, lab: str = "lab-e"):
        from node import pki
        from protocol.psi import Engine
        from tests.consortium_simulator import new_psi_key

        paths = sandbox.labs[lab].paths
        self.lab, self.sandbox = lab, sandbox
        self.creds = pki.channel_credentials(
            paths.tls_key.read_bytes(), paths.tls_cert.read_bytes(), paths.ca_cert.read_bytes()
        )
        self.engine = Engine(new_psi_key(), workers=1)
        self.outbox: queue.Queue = queue.Queue()
        self.received: list[str] = []
        self.error: grpc.RpcError | None = None

    def run(self, sizes: int, points: bytes, leave_at: str = "") -> None:
        from protocol import PROTOCOL_VERSION
        from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb
        from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc as pb_grpc

        policy = json.loads(self.sandbox.labs[HUB].paths.policy.read_text())
        from protocol.policy_document import parse_policy_toml

        policy_hash = parse_policy_toml(policy["policy_toml"]).hash()
        self.outbox.put(
            pb.ConsortiumMessage(
                join=pb.ConsortiumJoin(
                    protocol_version=PROTOCOL_VERSION,
                    lab=self.lab,
                    policy_hash=policy_hash,
                    sizes=[pb.KindSize(kind="email", size=sizes)],
                )
            )
        )
        address = self.sandbox.labs[HUB].address
        options = [("grpc.ssl_target_name_override", f"{HUB}.crossmatch.invalid")]
        with grpc.secure_channel(address, self.creds, options=options) as channel:
            responses = pb_grpc.ConsortiumStub(channel).Join(
                iter(self.outbox.get, None), timeout=120
            )
            try:
                for msg in responses:
                    body = msg.WhichOneof("body")
                    self.received.append(body)
                    if body == leave_at:
                        responses.cancel()
                        return
                    if body == "roster":
                        for i in range(0, len(points), 33 * 8):
                            self.outbox.put(
                                pb.ConsortiumMessage(
                                    own_blinded=pb.Chunk(
                                        seq=i // (33 * 8), points=points[i : i + 33 * 8]
                                    )
                                )
                            )
                    elif body == "reblind":
                        r = msg.reblind
                        self.outbox.put(
                            pb.ConsortiumMessage(
                                reblind=pb.HopChunk(
                                    origin=r.origin,
                                    hop=r.hop,
                                    seq=r.seq,
                                    points=self.engine.reblind(r.points),
                                )
                            )
                        )
                    elif body in ("abort", "commit"):
                        return
            except grpc.RpcError as e:
                self.error = e
            finally:
                self.outbox.put(None)
                self.engine.close()


def hub_log_joins(sandbox: Sandbox) -> int:
    return sandbox.labs[HUB].serve_log().count("joined consortium round")


def hostile_round(
    sandbox: Sandbox, hostile: HostileLab, sizes: int, points: bytes, leave_at: str = ""
) -> dict[str, subprocess.CompletedProcess]:
    """The four honest labs join first (seen in the hub's log), then the hostile one."""
    return honest_labs_then(sandbox, lambda: hostile.run(sizes, points, leave_at))


def honest_labs_then(
    sandbox: Sandbox, act: Callable[[], object]
) -> dict[str, subprocess.CompletedProcess]:
    before = hub_log_joins(sandbox)
    result: dict[str, dict] = {}
    runner = threading.Thread(target=lambda: result.update(out=run_round(sandbox, LABS[:4])))
    runner.start()
    deadline = time.monotonic() + 60
    while hub_log_joins(sandbox) < before + 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    act()
    runner.join(300)
    return result["out"]


def blinded_own_set(sandbox: Sandbox, hostile: HostileLab) -> bytes:
    return hostile.engine.blind(list(_fingerprints(sandbox.labs[hostile.lab].dir).values()))


def assert_aborted_everywhere(sandbox: Sandbox, out: dict, rule: str) -> None:
    for lab, proc in out.items():
        assert proc.returncode == 4, f"{lab}: {proc.stdout} {proc.stderr}"
        assert f"[rule: {rule}]" in proc.stderr, proc.stderr
    for lab in [*LABS, HUB]:
        d = sandbox.labs[lab].dir
        if lab != HUB:  # still only the first, honest round: nothing stored since
            assert consortium_rows(d) == (1, len([e for e in holdings()[lab] if count(e) >= K])), (
                lab
            )
        records = [json.loads(line) for line in (d / "audit.log").read_text().splitlines()]
        aborts = [r for r in records if r["event"] == "consortium_aborted"]
        if lab in out or lab == HUB:
            assert aborts and aborts[-1]["body"]["rule"] == rule, lab
        audit_ok(d)


def test_an_oversized_set_aborts_the_round_for_everyone(consortium, completed):
    hostile = HostileLab(consortium)
    out = hostile_round(consortium, hostile, 41, b"")
    assert hostile.received == ["abort"]
    assert_aborted_everywhere(consortium, out, "max-set-size")


def test_a_duplicated_element_aborts_the_round_for_everyone(consortium, completed):
    hostile = HostileLab(consortium)
    points = blinded_own_set(consortium, hostile)
    points += points[:33]
    out = hostile_round(consortium, hostile, len(points) // 33, points)
    assert hostile.received[-1] == "abort"
    assert_aborted_everywhere(consortium, out, "consortium-duplicate")


def test_a_participant_leaving_mid_round_aborts_it_for_everyone(consortium, completed):
    hostile = HostileLab(consortium)
    points = blinded_own_set(consortium, hostile)
    out = hostile_round(consortium, hostile, len(points) // 33, points, leave_at="reblind")
    assert hostile.received[0] == "roster"
    assert_aborted_everywhere(consortium, out, "consortium-participant-left")


def test_a_lab_sending_less_than_it_announced_is_cut_off_by_the_stage_timeout(
    consortium, completed
):
    hostile = HostileLab(consortium)
    points = blinded_own_set(consortium, hostile)
    started = time.monotonic()
    out = hostile_round(consortium, hostile, len(points) // 33 + 3, points)  # 3 never sent
    assert hostile.received[0] == "roster" and hostile.received[-1] == "abort"
    assert time.monotonic() - started < 10 * STAGE_TIMEOUT  # not the hour of the round timeout
    assert_aborted_everywhere(consortium, out, "consortium-stage-timeout")


def rekeying_participant(sandbox: Sandbox, lab: str = "lab-e") -> object:
    """``lab`` as a real participant (its own node, session and receipts) that re-blinds
    every other lab's points under a key of its own making instead of its round key."""
    import functools

    from node.consortium import client
    from node.runtime import Node
    from protocol.consortium import messages as m
    from protocol.consortium.participant import ParticipantSession
    from protocol.psi import Engine
    from tests.consortium_simulator import new_psi_key

    class Rekeying(client._Client):
        def _handle(self, message):  # type: ignore[no-untyped-def]
            if not isinstance(message, m.Reblind):
                return super()._handle(message)
            with self._lock:
                self.session.reblind_request(message)
            future = other_key.submit_reblind(message.points)
            future.add_done_callback(functools.partial(self._answer, message))
            return None

    other_key = Engine(new_psi_key(), workers=1)
    with Node(sandbox.labs[lab].dir) as node:
        policy = node.require_policy()
        assert policy.consortium is not None
        own = client.prepare_own(node, policy.consortium.kinds)
        session = ParticipantSession(policy, lab=node.lab, sizes=own.sizes, key=node.audit_key)
        try:
            return Rekeying(node, session, own).run()
        finally:
            other_key.close()


def test_a_rekeying_participant_only_hides_the_matches_it_takes_part_in(consortium, completed):
    # Re-keyed points are still valid points: nothing can tell them apart (ADR 0011). Every
    # other lab's set passes it under the same wrong key, so their elements still meet each
    # other; only its own copies match nothing. No lab learns a false positive.
    out = honest_labs_then(consortium, lambda: rekeying_participant(consortium))
    for lab, proc in out.items():
        assert proc.returncode == 0, f"{lab}: {proc.stderr}"
        honest = [e for e in holdings()[lab] if len(holders(e).replace("e", "")) >= K]
        assert json.loads(proc.stdout)["result_counts"] == {"email": len(honest)}, lab
        assert consortium_rows(consortium.labs[lab].dir)[0] == 2
    for lab in [*LABS[:4], HUB]:
        audit_ok(consortium.labs[lab].dir)


def test_serve_runs_scheduled_consortium_rounds(tmp_path):
    """Three serving labs join the hub at each multiple of the policy's interval."""
    labs = LABS[:3]
    sandbox = Sandbox(tmp_path / "s")
    section = consortium_section(HUB, labs, k=2, max_set_size=40).replace(
        "join_timeout_seconds", "interval_seconds = 10\njoin_timeout_seconds"
    )
    policy = sandbox_policy() + section
    sandbox.create(labs, policy=policy)
    sandbox.add_hub(HUB)
    sandbox.install_policy(policy, {HUB: sandbox.labs[HUB]})
    try:
        address = sandbox.labs[HUB].start()
        for i, lab in enumerate(labs):
            import_values(
                sandbox.labs[lab].dir,
                "email",
                ["shared@example.com", f"own{i}@example.com"],
                tmp_path,
            )
            run_cli("peer", "add", sandbox.labs[lab].dir, "--lab", HUB, "--address", address)
            sandbox.labs[lab].start()
        deadline = time.monotonic() + 600  # a loaded machine; normally one or two intervals
        while time.monotonic() < deadline and not all(
            consortium_rows(sandbox.labs[lab].dir)[0] for lab in labs
        ):
            time.sleep(1)
    finally:
        sandbox.stop_all()
    for lab in labs:
        rounds, matches = consortium_rows(sandbox.labs[lab].dir)
        assert rounds >= 1 and matches == rounds, lab  # "shared" each round, never "own"
        got = json.loads(
            run_cli("matches", sandbox.labs[lab].dir, "--consortium", "--format", "json").stdout
        )
        assert {r["value"] for r in got} == {"shared@example.com"}
        audit_ok(sandbox.labs[lab].dir)


def test_a_hub_directory_refuses_to_serve_as_a_lab(consortium):
    proc = run_cli("serve", consortium.labs[HUB].dir, check=False, timeout=120)
    assert proc.returncode == 78 and "hub serve" in proc.stderr
    assert not (consortium.labs[HUB].dir / "keys" / "consortium.key").exists()
