"""protocol/ stays pure: it never imports node/, grpc, sqlite3 or sockets, and never opens
files or reads the clock."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_MODULES = {
    "node",
    "grpc",
    "sqlite3",
    "socket",
    "socketserver",
    "http",
    "urllib",
    "requests",
    "subprocess",
    "asyncio",
    "tempfile",
    "shutil",
    "pathlib",
}
FORBIDDEN_CALLS = {
    "open",
    "time.time",
    "time.monotonic",
    "datetime.now",
    "datetime.utcnow",
    "os.urandom",
    "secrets.token_bytes",
    "random.random",
    "date.today",
}


def protocol_sources() -> list[Path]:
    # protocol/wire holds generated gRPC stubs (they import grpc by construction).
    return [p for p in (ROOT / "protocol").rglob("*.py") if "wire" not in p.parts]


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def scan_imports(paths: list[Path]) -> list[str]:
    offenders = []
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    offenders.append(f"{path}:{node.lineno} imports {name}")
    return offenders


def scan_calls(paths: list[Path]) -> list[str]:
    offenders = []
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = dotted(node.func)
                if name in FORBIDDEN_CALLS or any(
                    name.endswith("." + c) for c in FORBIDDEN_CALLS if "." in c
                ):
                    offenders.append(f"{path}:{node.lineno} calls {name}")
    return offenders


def test_protocol_imports_nothing_with_io():
    offenders = scan_imports(protocol_sources())
    assert not offenders, "\n".join(offenders)


def test_protocol_calls_no_clock_files_or_randomness():
    offenders = scan_calls(protocol_sources())
    assert not offenders, "\n".join(offenders)


def test_the_scanner_would_catch_an_offender(tmp_path):
    # Guard against a test that cannot fail: run both scanners on a bad module.
    bad = tmp_path / "bad.py"
    bad.write_text("import grpc\nfrom node.state.store import Store\nx = time.time()\n")
    assert len(scan_imports([bad])) == 2 and len(scan_calls([bad])) == 1


# Inside node/, each group may import only groups of a lower or equal rank: storage, PKI,
# operations and schedule at the bottom, the CLI and the demo on top (docs/architecture.md).
NODE_RANKS = {
    "node.state": 0,
    "node.pki": 0,
    "node.ops": 0,
    "node.schedule": 0,
    "node.config": 1,
    "node.runtime": 2,
    "node.net": 3,
    "node.data": 3,
    "node.consortium": 3,
    "node.daemon": 4,
    "node.act": 4,
    "node.ui": 4,
    "node.cli": 5,
    "node.demo": 5,
}


def node_group(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in NODE_RANKS else None


def layering_offenders(path: Path, source: str, module: str) -> list[str]:
    own = node_group(module)
    if own is None:
        return []
    out = []
    for lineno, names in imported_names(path, source):
        higher = {g for g in map(node_group, names) if g and NODE_RANKS[g] > NODE_RANKS[own]}
        out += [f"{path}:{lineno} ({own}) imports {g}" for g in sorted(higher)]
    return out


def imported_names(path: Path, source: str) -> list[tuple[int, list[str]]]:
    """(line, names) of each absolute import: ``import a.b`` names a.b; ``from a import
    b`` names a and a.b (b may be a module or a name in one)."""
    out = []
    for n in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(n, ast.Import):
            out.append((n.lineno, [a.name for a in n.names]))
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.append((n.lineno, [n.module] + [f"{n.module}.{a.name}" for a in n.names]))
    return out


def node_sources() -> list[tuple[Path, str]]:
    out = []
    for p in (ROOT / "node").rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out.append((p, ".".join(parts)))
    return out


def test_node_groups_never_import_higher_ones():
    offenders = []
    for path, module in node_sources():
        offenders += layering_offenders(path.relative_to(ROOT), path.read_text(), module)
    assert not offenders, "\n".join(offenders)


def test_every_node_module_belongs_to_a_group():
    loose = [
        m for _, m in node_sources() if m not in ("node", "node.__main__") and node_group(m) is None
    ]
    assert not loose, f"modules outside any layer group: {loose}"


def test_the_node_scanner_flags_an_upward_import():
    bad = "from node.cli.common import run\nimport node.net.service\n"
    found = layering_offenders(Path("node/state/x.py"), bad, "node.state.x")
    assert len(found) == 2 and "node.cli" in found[0]


# Inside node/net, only the serde module reads or builds the generated messages (the
# generated stubs, crossmatch_pb2_grpc, are the transport itself and may be used anywhere).
PB_MODULE = "protocol.wire.crossmatch.v1.crossmatch_pb2"
PB_ALLOWED = {"node.net.wire"}


def pb_offenders(path: Path, source: str, module: str) -> list[str]:
    if not module.startswith("node.net") or module in PB_ALLOWED:
        return []
    return [
        f"{path}:{lineno} imports {PB_MODULE}"
        for lineno, names in imported_names(path, source)
        if PB_MODULE in names
    ]


def test_only_the_wire_module_of_node_net_touches_the_generated_messages():
    offenders = [
        line
        for path, module in node_sources()
        for line in pb_offenders(path.relative_to(ROOT), path.read_text(), module)
    ]
    assert not offenders, "\n".join(offenders)


def test_the_pb_scanner_flags_both_import_forms():
    bad = (
        "from protocol.wire.crossmatch.v1 import crossmatch_pb2 as pb\n"
        "import protocol.wire.crossmatch.v1.crossmatch_pb2\n"
        "from protocol.wire.crossmatch.v1 import crossmatch_pb2_grpc\n"
    )
    assert len(pb_offenders(Path("node/net/x.py"), bad, "node.net.x")) == 2
    assert pb_offenders(Path("node/net/wire.py"), bad, "node.net.wire") == []
