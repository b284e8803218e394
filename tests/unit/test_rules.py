"""One rule vocabulary: every rule raised is a Rule, documented, and mapped to a gRPC status."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from node.net.grpc_status import CATEGORY
from protocol.audit.verify import LogVerifier
from protocol.rules import Rule, parse_rule
from tests.audit_simulator import memory_lab

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "protocol.md"
ROW = re.compile(r"^\| `([a-z0-9-]+)` \| .+ \| `([A-Z_]+)` \|$")


def _sources() -> list[Path]:
    files = [*(ROOT / "protocol").rglob("*.py"), *(ROOT / "node").rglob("*.py")]
    return [p for p in files if "wire" not in p.relative_to(ROOT).parts]


# Simulators stand in for node transports: the rules they raise are the node's.
SIMULATORS = [ROOT / "tests" / "consortium_simulator.py"]


def _rule_positions(trees: list[ast.Module]) -> dict[str, set[int]]:
    """Functions and dataclasses taking a ``rule``: name -> its positional index."""
    out: dict[str, set[int]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                if names and names[0] in ("self", "cls"):
                    names = names[1:]
            elif isinstance(node, ast.ClassDef):
                names = [
                    s.target.id
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
            else:
                continue
            if "rule" in names:
                out.setdefault(node.name, set()).add(names.index("rule"))
    return out


def literal_rules(source: str, positions: dict[str, set[int]]) -> list[tuple[int, str]]:
    """(line, text) of every string literal given as a rule, by keyword or by position."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):  # an audit body's "rule" member
            found += [
                (c.lineno, c.value)
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value == "rule"
                for c in _outcomes(v)
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value
            ]
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
        values = [k.value for k in node.keywords if k.arg == "rule"]
        values += [node.args[i] for i in positions.get(name, ()) if i < len(node.args)]
        for value in values:
            found += [
                (c.lineno, c.value)
                for c in _outcomes(value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value
            ]
    return found


def _outcomes(value: ast.expr) -> list[ast.expr]:
    """The expressions a rule argument can evaluate to (``a if test else b``, ``x or y``)."""
    if isinstance(value, ast.IfExp):
        return _outcomes(value.body) + _outcomes(value.orelse)
    if isinstance(value, ast.BoolOp):
        return [e for v in value.values for e in _outcomes(v)]
    return [value]


def test_no_rule_is_a_string_literal():
    sources = {p: p.read_text() for p in _sources()}
    positions = _rule_positions([ast.parse(s) for s in sources.values()])
    offenders = [
        f"{p.relative_to(ROOT)}:{line}: rule {text!r}"
        for p, s in sources.items()
        for line, text in literal_rules(s, positions)
    ]
    assert not offenders, "use a protocol.rules.Rule member:\n" + "\n".join(offenders)


def test_the_scanner_catches_literals_by_keyword_and_by_position():
    positions = {"_fail": {2}}
    source = (
        'raise E("x", rule="lab-mismatch")\n'
        'raise _fail(1, "msg", "seq")\n'
        'raise E("y", rule=e.rule or "genesis")\n'
        'raise E("z", rule=Rule.SEQ)\n'
        'raise E("w", rule=Rule.SEQ if kind == "seq" else "chain")\n'
        'log("round_aborted", {"round_id": rid, "rule": e.rule or "timeout"})\n'
    )
    found = [(1, "lab-mismatch"), (2, "seq"), (3, "genesis"), (5, "chain"), (6, "timeout")]
    assert literal_rules(source, positions) == found


def _documented() -> dict[str, str]:
    text = DOCS.read_text()
    section = text[text.index("\n## Rules\n") :]
    return {m[1]: m[2] for line in section.splitlines() if (m := ROW.match(line))}


def test_every_rule_is_documented_with_its_status_and_every_documented_rule_exists():
    documented = _documented()
    assert sorted(set(Rule) - set(documented)) == [], "add these to docs/protocol.md ## Rules"
    assert sorted(set(documented) - set(Rule)) == [], "documented, but not a Rule"
    wrong = {
        r: (s, CATEGORY[Rule(r)].value.name)
        for r, s in documented.items()
        if CATEGORY[Rule(r)].value.name != s
    }
    assert wrong == {}, "docs status != grpc_status category"


def test_every_rule_has_one_category():
    assert set(CATEGORY) == set(Rule)


def test_every_rule_is_used_somewhere():
    text = "\n".join(
        p.read_text()
        for p in [*_sources(), *SIMULATORS]
        if p.name not in ("rules.py", "grpc_status.py")
    )
    unused = [r.name for r in Rule if not re.search(rf"\bRule\.{r.name}\b", text)]
    assert unused == [], "rules nothing raises: drop them"


def test_old_spellings_parse_to_the_one_spelling():
    assert parse_rule("receipt_format") is Rule.RECEIPT_FORMAT
    assert parse_rule("prompt.params") is Rule.PROMPT_PARAMS
    assert parse_rule("prompt-params") is Rule.PROMPT_PARAMS
    assert parse_rule("lab-mismatch") is Rule.LAB_MISMATCH
    assert parse_rule("identity") is Rule.CERTIFICATE_MISSING  # the hub's, before it used ours
    assert parse_rule("no-such-rule") is None and parse_rule("") is None


def test_a_log_with_old_rule_spellings_still_verifies():
    lab = memory_lab("lab-a")
    for rule in ("receipt_format", "prompt.params", "no-such-rule"):
        lab.log.append(
            "round_refused",
            {"peer": "lab-b", "claimed_lab": "lab-b", "reason": "old", "rule": rule},
            now=lab.now(),
        )
    verifier = LogVerifier(public_key=lab.key.public_key(), log_id=lab.log_id, keep=False)
    for line in lab.log.lines:
        verifier.feed(line)
    assert verifier.size == len(lab.log.lines) == 4
