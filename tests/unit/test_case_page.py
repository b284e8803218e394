"""A case's consortium evidence on the web UI's case page (the real template) and in exports."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from node.data.cases import CaseSummary

TEMPLATES = Path(__file__).resolve().parents[2] / "node" / "ui" / "templates"


def render(case: CaseSummary) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True)
    )
    context = {"entities": [], "matches": [], "matches_total": 0, "events": [], "campaigns": []}
    context |= {"diagram": "", "opinions": [], "peers": ["lab-b"], "done": None}
    return env.get_template("case.html").render(
        lab="lab-a", session=None, path=f"/cases/{case.case_id}", case=case, **context
    )


def a_case(**consortium: object) -> CaseSummary:
    terms = {"peers": 1, "kind_families": ["email"], "recency": 1.0}
    return CaseSummary(
        "case-0123456789abcdef0123", "new", 2, 30, ["lab-b"], ["email"], [], "", "",
        "2026-11-30T12:00:00Z", 1, 1, terms, "", "2026-11-30T12:00:00Z",
        "2026-11-30T12:00:00Z", dict(consortium),
    )  # fmt: skip


def test_the_case_page_shows_seen_by_k_labs():
    evidence = {"signals": 2, "kinds": ["device_id", "email"], "rounds": 1, "labs": None}
    page = render(a_case(**evidence, at_least=3, seen_by=">= 3 labs"))
    assert (
        '<dd id="consortium">seen by &gt;= 3 labs (2 signal(s): device_id, email; 1 round(s);'
        " beside the score, not in it)</dd>" in page
    )
    assert '<dd id="consortium">-</dd>' in render(a_case())


def test_an_exported_case_says_it_was_seen_by_k_labs():
    from node.act.casefeed import export_case
    from node.data.cases import CaseDetail

    seen = a_case(signals=1, kinds=["email"], rounds=1, labs=4, at_least=3, seen_by="4 labs")
    exported = export_case(CaseDetail(seen, [], [], [], []), key=b"k" * 32, values="hashed")
    assert exported.description.endswith("Seen by 4 labs in consortium rounds.")
    plain = export_case(CaseDetail(a_case(), [], [], [], []), key=b"k" * 32, values="hashed")
    assert "consortium" not in plain.description
