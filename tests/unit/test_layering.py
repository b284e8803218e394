"""protocol/ stays pure: it never imports node/, grpc, sqlite3 or sockets, and never opens
files or reads the clock."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_MODULES = {"node", "grpc", "sqlite3", "socket", "socketserver", "http", "urllib",
                     "requests", "subprocess", "asyncio", "tempfile", "shutil", "pathlib"}
FORBIDDEN_CALLS = {"open", "time.time", "time.monotonic", "datetime.now", "datetime.utcnow",
                   "os.urandom", "secrets.token_bytes", "random.random", "date.today"}


def protocol_sources() -> list[Path]:
    # protocol/wire holds generated gRPC stubs (they import grpc by construction).
    return [p for p in (ROOT / "protocol").rglob("*.py") if "wire" not in p.parts]


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def test_protocol_imports_nothing_with_io():
    offenders = []
    for path in protocol_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_protocol_calls_no_clock_files_or_randomness():
    offenders = []
    for path in protocol_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = dotted(node.func)
                if name in FORBIDDEN_CALLS or any(name.endswith("." + c) for c in FORBIDDEN_CALLS
                                                  if "." in c):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}")
    assert not offenders, "\n".join(offenders)


def test_the_scanner_would_catch_an_offender(tmp_path):
    # Guard against a test that cannot fail: the same walk flags a bad module.
    bad = ast.parse("import grpc\nfrom node.store import Store\nx = time.time()\n")
    imported = [n for n in ast.walk(bad) if isinstance(n, ast.Import | ast.ImportFrom)]
    calls = [dotted(n.func) for n in ast.walk(bad) if isinstance(n, ast.Call)]
    assert len(imported) == 2 and "time.time" in calls
