"""The HTML report, rendered by jinja2 with autoescape, shows what the hand-written f-string
renderer it replaced showed: the same elements, attributes and text, for a fixed log
(tests/vectors/report/before-jinja2*.html were written by the old renderer from this log)."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from node.ops.report import render_report
from protocol.audit.verify import verify_log_bytes
from protocol.errors import VerificationError
from tests.audit_simulator import memory_lab, populate

VECTORS = Path(__file__).parents[1] / "vectors" / "report"
GOLDEN = {False: VECTORS / "before-jinja2.html", True: VECTORS / "before-jinja2-failed.html"}
GENERATED = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def sample_page(*, failed: bool = False) -> str:
    a, b = memory_lab("lab-a"), memory_lab("lab-b")
    populate(a, b, rounds=4)
    a.log.append(
        "round_aborted",
        {"round_id": "9" * 32, "role": "responder", "peer": "lab-b", "stage": "exchange",
         "reason": "<script>alert('x')</script> & more", "rule": "timeout"},
        now=a.now(),
    )  # fmt: skip
    a.log.checkpoint(now=a.now())
    data = a.log.data()  # type: ignore[attr-defined]
    report = verify_log_bytes(data, public_key=a.key.public_key())
    failure = VerificationError("record 5: seq is 6, expected 5", rule="seq") if failed else None
    return render_report(
        records=report.records[:5] if failed else report.records,
        report=None if failed else report,
        failure=failure,
        source="lab-a/audit.log",
        source_sha256="ab" * 32,
        generated_at=GENERATED,
    )


class _Tokens(HTMLParser):
    """Elements, attributes and text, whitespace between tags ignored, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[tuple[str, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tokens.append(("start", tag, *sorted(f"{k}={v}" for k, v in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.tokens.append(("end", tag))

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text:
            self.tokens.append(("text", text))

    def handle_decl(self, decl: str) -> None:
        self.tokens.append(("decl", decl))


def tokens(page: str) -> list[tuple[str, ...]]:
    parser = _Tokens()
    parser.feed(page)
    parser.close()
    return parser.tokens


@pytest.mark.parametrize("failed", [False, True])
def test_same_page_as_the_renderer_it_replaced(failed: bool) -> None:
    assert tokens(sample_page(failed=failed)) == tokens(GOLDEN[failed].read_text())


def test_values_from_the_log_are_escaped_and_there_are_no_scripts() -> None:
    page = sample_page()
    assert "<script" not in page
    assert "&lt;script&gt;alert(" in page and "&amp; more" in page
