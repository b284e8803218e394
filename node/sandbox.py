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
from dataclasses import dataclass, field
from pathlib import Path

from node.config import NodePaths
from protocol.errors import ConfigError, PeerUnavailableError

START_TIMEOUT = 30.0


def cli_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "node", *[str(a) for a in args]]


def run_cli(*args: str | Path, check: bool = True, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise ConfigError(f"`crossmatch {' '.join(map(str, args))}` failed "
                          f"(exit {proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class Lab:
    name: str
    dir: Path
    process: subprocess.Popen[bytes] | None = None
    address: str = ""
    log_path: Path | None = None

    @property
    def paths(self) -> NodePaths:
        return NodePaths(self.dir)

    def start(self) -> str:
        """Start `crossmatch serve` and wait until it publishes its address."""
        if self.process is not None and self.process.poll() is None:
            return self.address
        self.paths.address_file.unlink(missing_ok=True)
        self.log_path = self.dir / "run" / "serve.log"
        self.log_path.parent.mkdir(exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(cli_command("serve", self.dir), stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.paths.address_file.exists():
                self.address = self.paths.address_file.read_text().strip()
                if self.address:
                    return self.address
            if self.process.poll() is not None:
                raise PeerUnavailableError(
                    f"serve exited with {self.process.returncode}: {self.serve_log()[-2000:]}",
                    where=f"lab {self.name}")
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

    def create(self, lab_names: list[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        run_cli("ca", "init", self.ca_dir)
        run_cli("consortium-key", "new", self.key_file)
        for name in lab_names:
            self.add_lab(name)

    def add_lab(self, name: str) -> Lab:
        lab_dir = self.root / name
        run_cli("init", lab_dir, "--lab", name, "--ca", self.ca_dir, "--listen", "127.0.0.1:0",
                "--consortium-key", self.key_file)
        self.labs[name] = Lab(name, lab_dir)
        return self.labs[name]

    def start_all(self) -> None:
        for lab in self.labs.values():
            lab.start()

    def peer_all(self) -> None:
        """Every lab learns every other lab's current address."""
        for lab in self.labs.values():
            for other in self.labs.values():
                if other is not lab:
                    run_cli("peer", "add", lab.dir, "--lab", other.name, "--address",
                            other.address)

    def stop_all(self) -> None:
        for lab in self.labs.values():
            lab.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
