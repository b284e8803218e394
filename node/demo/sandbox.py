"""A consortium on loopback: a CA, a consortium key, lab nodes and their `serve` processes.

Used by `crossmatch demo` and by the integration tests, so both exercise the
real CLI in real processes: every step runs `python -m node ...` exactly as an
operator would, and responders bind 127.0.0.1 port 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from node.config import NodePaths, load_config, save_config
from node.runtime import CLOCK_OFFSET_ENV
from protocol.errors import ConfigError, PeerUnavailableError
from protocol.policy import ALL_KINDS, format_instant
from protocol.policy_document import parse_policy_toml

START_TIMEOUT = 30.0
SANDBOX_NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
SANDBOX_NOT_AFTER = datetime(2125, 1, 1, tzinfo=UTC)


def sandbox_policy(
    *,
    policy_id: str = "sandbox",
    version: int = 1,
    min_interval: int = 1,
    retention_days: int = 90,
    max_set_size: int = 5_000_000,
    count_only: tuple[str, ...] = (),
    kinds: tuple[str, ...] = ALL_KINDS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    suite: str | None = None,
    verified_matches: bool | None = None,
) -> str:
    """A policy TOML for a loopback consortium: every kind, generous caps.

    The default validity is fixed (not relative to now) so the default policy's hash is a
    constant a hostile test client can present (``sandbox_policy_hash``).
    """
    lines = [
        f'policy_id = "{policy_id}"',
        f"version = {version}",
        'purpose = "Loopback consortium for the demo and tests."',
        f"not_before = {format_instant(not_before or SANDBOX_NOT_BEFORE)}",
        f"not_after = {format_instant(not_after or SANDBOX_NOT_AFTER)}",
        f"min_interval_seconds = {min_interval}",
        f"retention_days = {retention_days}",
    ]
    if suite is not None:  # absent: openmined-p256-v1, and the hash of earlier policies
        lines.append(f'suite = "{suite}"')
    if verified_matches is not None:
        lines.append(f"verified_matches = {str(verified_matches).lower()}")
    for kind in kinds:
        mode = "count" if kind in count_only else "reveal"
        lines += ["", f"[kinds.{kind}]", f"max_set_size = {max_set_size}", f'mode = "{mode}"']
    return "\n".join(lines) + "\n"


def sandbox_policy_hash(**options: object) -> bytes:
    return parse_policy_toml(sandbox_policy(**options)).hash()  # type: ignore[arg-type]


def cli_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "node", *[str(a) for a in args]]


def run_cli(
    *args: str | Path, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    # Its own process group, so that a timeout also ends what the command started
    # (the demo's serve processes), instead of leaving them running.
    with subprocess.Popen(
        cli_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(child.pid)
            child.communicate()
            raise
    proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    if check and proc.returncode != 0:
        raise ConfigError(
            f"`crossmatch {' '.join(map(str, args))}` failed "
            f"(exit {proc.returncode}): {proc.stderr.strip()}"
        )
    return proc


@dataclass
class Lab:
    name: str
    dir: Path
    process: subprocess.Popen[bytes] | None = None
    address: str = ""
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra environment for `serve`
    serve_command: tuple[str, ...] = ("serve",)  # ("hub", "serve") for a consortium hub

    @property
    def paths(self) -> NodePaths:
        return NodePaths(self.dir)

    def start(self) -> str:
        """Start `crossmatch serve` and wait until it publishes its address."""
        if self.process is not None and self.process.poll() is None:
            return self.address
        self.paths.address_file.unlink(missing_ok=True)
        self.log_path = NodePaths(self.dir).serve_log
        self.log_path.parent.mkdir(exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                cli_command(*self.serve_command, self.dir),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.paths.address_file.exists():
                self.address = self.paths.address_file.read_text().strip()
                if self.address:
                    return self.address
            if self.process.poll() is not None:
                raise PeerUnavailableError(
                    f"serve exited with {self.process.returncode}: {self.serve_log()[-2000:]}",
                    where=f"lab {self.name}",
                )
            time.sleep(0.05)
        raise PeerUnavailableError("serve did not start in time", where=f"lab {self.name}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def serve_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def set_clock_offset(self, seconds: float) -> None:
        """Skew this lab's node clock (test-only knob, see node.runtime.CLOCK_OFFSET_ENV)."""
        self.env[CLOCK_OFFSET_ENV] = str(seconds)

    def configure(self, **settings: object) -> None:
        """Change node.toml: ``schedule=dict(...)``, ``limits=dict(...)``, ``metrics_listen=...``,
        ``grace_seconds``."""
        cfg = load_config(self.dir)
        for name, value in settings.items():
            if name in ("schedule", "limits"):
                for key, v in dict(value).items():  # type: ignore[call-overload]
                    setattr(getattr(cfg, name), key, v)
            else:
                setattr(cfg, name, value)
        save_config(cfg)

    def schedule_peer(
        self,
        peer: str,
        *,
        interval: float | None = None,
        cron: str | None = None,
        mode: str = "reveal",
    ) -> None:
        cfg = load_config(self.dir)
        p = cfg.peer(peer)
        p.interval_seconds, p.cron, p.mode = interval, cron, mode
        save_config(cfg)

    def metrics(self) -> dict[str, float]:
        """The daemon's Prometheus samples as {"name{labels}": value}."""
        address = self.paths.metrics_address_file.read_text().strip()
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            text = response.read().decode()
        return parse_samples(text)


def parse_samples(text: str) -> dict[str, float]:
    """Prometheus text exposition as {"name{labels}": value}, labels in exposition order."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Sandbox:
    root: Path
    labs: dict[str, Lab] = field(default_factory=dict)

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def key_file(self) -> Path:
        return self.root / "consortium.key"

    def create(self, lab_names: list[str], *, policy: str | None = None) -> None:
        """CA, consortium key, labs, and a signed policy installed on every lab."""
        self.root.mkdir(parents=True, exist_ok=True)
        run_cli("ca", "init", self.ca_dir)
        run_cli("consortium-key", "new", self.key_file)
        for name in lab_names:
            self.add_lab(name)
        self.install_policy(policy or sandbox_policy())

    def sign_policy(self, toml_text: str, name: str = "policy") -> Path:
        source = self.root / f"{name}.toml"
        source.write_text(toml_text)
        signed = self.root / f"{name}.signed"
        run_cli("policy", "sign", self.ca_dir, source, "--out", signed)
        return signed

    def install_policy(self, toml_text: str, labs: Mapping[str, Lab] | None = None) -> Path:
        signed = self.sign_policy(toml_text)
        for lab in (labs or self.labs).values():
            run_cli("policy", "install", lab.dir, signed, "--force")
        return signed

    def add_lab(self, name: str) -> Lab:
        lab_dir = self.root / name
        run_cli(
            "init",
            lab_dir,
            "--lab",
            name,
            "--ca",
            self.ca_dir,
            "--listen",
            "127.0.0.1:0",
            "--consortium-key",
            self.key_file,
        )
        self.labs[name] = Lab(name, lab_dir)
        return self.labs[name]

    def add_hub(self, name: str) -> Lab:
        """A consortium hub (`crossmatch hub init`): its own certificate, no fingerprint key.
        Kept in ``labs`` so start_all/stop_all and install_policy include it."""
        hub_dir = self.root / name
        run_cli(
            "hub", "init", hub_dir, "--name", name, "--ca", self.ca_dir, "--listen", "127.0.0.1:0"
        )
        self.labs[name] = Lab(name, hub_dir, serve_command=("hub", "serve"))
        return self.labs[name]

    def start_all(self) -> None:
        for lab in self.labs.values():
            lab.start()

    def peer(self, me: str, other: str) -> None:
        """Lab ``me`` learns lab ``other``'s current address (a restarted daemon binds anew)."""
        run_cli(
            "peer", "add", self.labs[me].dir, "--lab", other, "--address", self.labs[other].address
        )

    def peer_all(self) -> None:
        """Every lab learns every other lab's current address."""
        for me in self.labs:
            for other in self.labs:
                if other != me:
                    self.peer(me, other)

    def stop_all(self) -> None:
        for lab in self.labs.values():
            lab.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def kill_group(pid: int) -> None:
    """SIGKILL a process group led by ``pid``, if it still exists."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def consortium_section(
    hub: str,
    participants: list[str],
    *,
    k: int,
    kinds: tuple[str, ...] = ("email",),
    max_set_size: int = 1_000_000,
    reveal_count: bool = False,
    join_timeout: int = 60,
    stage_timeout: int | None = None,
) -> str:
    """A ``[consortium]`` policy section, to append to :func:`sandbox_policy`."""
    names = ", ".join(f'"{p}"' for p in participants)
    kind_list = ", ".join(f'"{x}"' for x in kinds)
    stage = f"stage_timeout_seconds = {stage_timeout}\n" if stage_timeout is not None else ""
    return (
        f'\n[consortium]\nhub = "{hub}"\nparticipants = [{names}]\nk = {k}\n'
        f"kinds = [{kind_list}]\nmax_set_size = {max_set_size}\n"
        f"reveal_count = {'true' if reveal_count else 'false'}\n"
        f"join_timeout_seconds = {join_timeout}\n{stage}"
    )
