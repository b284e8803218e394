"""The review web UI as a real `crossmatch ui` process on 127.0.0.1 port 0, over a node that ran a
real round: driven by headless Chromium (Playwright with Debian's chromium) and by plain HTTP.

Log in, open a case, confirm it, see the state change, the audit record and the enforcement
hook fire; hostile values show escaped; actions without the CSRF token, a wrong login, a foreign
Host header and a non-loopback address are refused. With CROSSMATCH_SCREENSHOTS=DIR the browser
test saves screenshots of the main pages there (docs/img/ holds the committed ones).
"""

from __future__ import annotations

import http.cookiejar
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from node.config import load_config, save_config
from node.demo.sandbox import Sandbox, cli_command, run_cli
from node.state.files import write_secret
from protocol import hooks as rules

PASSWORD = "correct horse battery"
HOSTILE_REASON = "<script>alert(1)</script>"
HOSTILE_CAMPAIGN = "=cmd|' /C calc'!A0"
HOOK_SECRET = b"ui-test-hook-secret-0123456789"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class HookSink:
    """A real webhook receiver on 127.0.0.1 port 0 that records what it gets."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, bytes]] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"


def entities_csv(path: Path) -> Path:
    rows = ["account,email,payment_fingerprint,ip,reason,severity,campaign"]
    for i in range(6):
        rows.append(
            f"acct-{i},user{i}@example.com,card-777,198.51.100.{i},{HOSTILE_REASON},high,"
            f'"{HOSTILE_CAMPAIGN}"'
        )
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    sandbox = Sandbox(root / "consortium")
    sandbox.create(["lab-a", "lab-b"])
    a, b = sandbox.labs["lab-a"], sandbox.labs["lab-b"]
    run_cli("import", a.dir, entities_csv(root / "accounts.csv"), "--entities")
    (root / "b.txt").write_text("user1@example.com\nuser2@example.com\n")
    run_cli("import", b.dir, root / "b.txt", "--kind", "email")
    b.start()
    run_cli("peer", "add", a.dir, "--lab", "lab-b", "--address", b.address)
    run_cli("peer", "add", b.dir, "--lab", "lab-a", "--address", "127.0.0.1:1")
    run_cli("round", a.dir, "--peer", "lab-b")
    b.stop()
    [case] = json.loads(run_cli("cases", a.dir, "--format", "json").stdout)["cases"]
    subprocess.run(
        cli_command("ui-passwd", a.dir, "--analyst", "alice"),
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    sink = HookSink()
    write_secret(a.dir / "keys" / "soc.secret", HOOK_SECRET)
    cfg = load_config(a.dir)
    cfg.extra["hooks"] = [
        {
            "name": "soc",
            "on": ["confirmed"],
            "url": sink.url,
            "secret_file": "keys/soc.secret",
            "max_attempts": 2,
            "backoff_seconds": 0.1,
            "timeout_seconds": 5.0,
        }
    ]
    save_config(cfg)
    proc = subprocess.Popen(
        cli_command("ui", a.dir, "--listen", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://(127\.0\.0\.1:\d+)/", line)
    assert match, line
    yield {
        "base": f"http://{match.group(1)}",
        "case": case["case_id"],
        "dir": a.dir,
        "sink": sink,
        "peer_dir": b.dir,
    }
    proc.terminate()
    proc.wait(timeout=10)
    sink.httpd.shutdown()


def audit_events(lab_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (lab_dir / "audit.log").read_text().splitlines()]


class Client:
    """A cookie-keeping HTTP client that never follows redirects."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def request(
        self, path: str, form: dict | None = None, headers: dict | None = None
    ) -> tuple[int, dict, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def login(self, analyst: str = "alice", password: str = PASSWORD) -> int:
        _, _, page = self.request("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        status, headers, _ = self.request(
            "/login", {"csrf": token, "analyst": analyst, "password": password}
        )
        return 0 if headers.get("location") != "/" else status

    def csrf(self, path: str) -> str:
        _, _, page = self.request(path)
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def test_every_response_carries_the_security_headers(ui):
    status, headers, _ = Client(ui["base"]).request("/login")
    assert status == 200
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert "httponly" in headers["set-cookie"].lower()
    assert "samesite=strict" in headers["set-cookie"].lower()


def test_pages_need_a_login(ui):
    client = Client(ui["base"])
    for path in ("/", "/cases", f"/cases/{ui['case']}", "/audit", "/audit/report"):
        status, headers, _ = client.request(path)
        assert status == 303 and headers["location"] == "/login", path


def test_a_foreign_host_header_is_refused(ui):
    status, _, _ = Client(ui["base"]).request("/login", headers={"Host": "evil.example"})
    assert status == 400


def test_a_decision_without_or_with_a_wrong_csrf_token_is_refused(ui):
    client = Client(ui["base"])
    client.login()
    path = f"/cases/{ui['case']}/decide"
    for form in ({"decision": "benign"}, {"decision": "benign", "csrf": "forged"}):
        status, _, body = client.request(path, form)
        assert status == 403 and "CSRF" in body
    _, _, page = client.request(f"/cases/{ui['case']}")
    assert 'id="case-state">new<' in page, "a refused action changes nothing"
    assert not [r for r in audit_events(ui["dir"]) if r["event"] == "case_decision"]


def test_the_audit_page_verifies_our_log_and_reconciles_a_peer_log(ui):
    folder = ui["dir"] / "peer-logs"
    folder.mkdir(exist_ok=True)
    shutil.copy(ui["peer_dir"] / "audit.log", folder / "lab-b.log")
    (folder / "forged.log").write_text('{"not": "a log"}\n')
    client = Client(ui["base"])
    client.login()
    status, _, page = client.request("/audit")
    assert status == 200 and "The audit log verifies" in page
    lab_b = page[page.index("<strong>lab-b.log</strong>") :][:400]
    assert "(lab-b)" in lab_b and "agrees" in lab_b and "does not" not in lab_b
    forged = page[page.index("<strong>forged.log</strong>") :][:400]
    assert "does not agree" in forged
    assert "sandbox version 1" in page, "the installed policy"
    status, headers, report = client.request("/audit/report")
    assert status == 200 and "style-src 'sha256-" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]


def test_a_login_without_the_login_csrf_token_is_refused(ui):
    status, _, _ = Client(ui["base"]).request("/login", {"analyst": "alice", "password": PASSWORD})
    assert status == 403


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium binary: install Debian's chromium (scripts/test.sh does as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def new_page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, problems


def log_in(page, base: str, password: str = PASSWORD) -> None:
    page.goto(base + "/")
    page.fill("#analyst-name", "alice")
    page.fill("#password", password)
    page.click("#login-submit")


def test_wrong_login_is_refused_in_the_browser(ui, browser):
    page, _ = new_page(browser)
    log_in(page, ui["base"], password="not the password")
    assert page.locator("#login-error").is_visible()
    assert "/login" in page.url and page.locator("nav").count() == 0
    page.close()
    assert any(
        r["event"] == "ui_action" and r["body"]["action"] == "login_failed"
        for r in audit_events(ui["dir"])
    )


def test_hostile_values_show_as_text(ui, browser):
    page, problems = new_page(browser)
    log_in(page, ui["base"])
    page.goto(f"{ui['base']}/cases/{ui['case']}")
    reasons = page.locator("#entities td.value").all_inner_texts()
    assert HOSTILE_REASON in reasons
    assert HOSTILE_CAMPAIGN in page.locator("#entities").inner_text()
    assert page.evaluate("document.scripts.length") == 0, "no markup from the data ran"
    assert page.evaluate("typeof window.alert") == "function" and not problems, problems
    page.close()


def test_log_in_open_a_case_confirm_it_and_see_state_audit_and_hook(ui, browser):
    page, problems = new_page(browser)
    shots = os.environ.get("CROSSMATCH_SCREENSHOTS")
    log_in(page, ui["base"])
    page.wait_for_url(ui["base"] + "/")
    assert page.locator("#rounds-chart").count() == 1 and page.locator("#cases-chart").count()
    if shots:
        page.screenshot(path=str(Path(shots) / "ui-dashboard.png"), full_page=True)
    page.click("a.case-link")
    assert page.locator("#case-state").inner_text() == "new"
    assert page.locator("#cluster circle.account").count() == 6
    page.click("#btn-confirm")
    page.wait_for_selector("#done")
    assert page.locator("#case-state").inner_text() == "confirmed"
    assert "alice" in page.locator("#history tr.event").first.inner_text()
    if shots:
        page.screenshot(path=str(Path(shots) / "ui-case.png"), full_page=True)
        page.goto(ui["base"] + "/cases")
        page.screenshot(path=str(Path(shots) / "ui-cases.png"), full_page=True)
    page.goto(ui["base"] + "/audit")
    assert "verifies" in page.locator("#verify-status").inner_text()
    records = page.locator("#records").inner_text()
    assert "case_decision" in records and "action=confirm" in records
    if shots:
        page.screenshot(path=str(Path(shots) / "ui-audit.png"), full_page=True)
    page.click("#report-link")
    assert page.locator("#lab").inner_text() == "lab-a"
    assert not problems, problems  # no CSP violation, no missing asset, no script error
    page.close()
    events = audit_events(ui["dir"])
    decision = [r for r in events if r["event"] == "case_decision"][-1]["body"]
    assert decision["case_id"] == ui["case"] and decision["analyst"] == "alice"
    assert any(
        r["event"] == "ui_action"
        and r["body"]["action"] == "confirm"
        and r["body"]["case_id"] == ui["case"]
        for r in events
    )
    deadline = time.monotonic() + 20
    while not ui["sink"].received and time.monotonic() < deadline:
        time.sleep(0.1)
    [(headers, body)] = ui["sink"].received
    rules.verify_signature(HOOK_SECRET, headers[rules.SIGNATURE_HEADER], body, now=int(time.time()))
    payload = json.loads(body)
    assert payload["event"] == "case.confirmed" and payload["case"]["case_id"] == ui["case"]
    assert "acct-1" not in body.decode(), "hashed by default"
    while not any(r["event"] == "hook_delivery" for r in audit_events(ui["dir"])):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_the_ui_refuses_a_non_loopback_address(ui):
    proc = run_cli("ui", ui["dir"], "--listen", "0.0.0.0:0", check=False)
    assert proc.returncode == 78 and "not loopback" in proc.stderr


def test_hooks_run_sends_nothing_twice(ui):
    """The UI's sweep delivered case.confirmed; a later sweep finds it in the ledger."""
    out = run_cli("hooks", "run", ui["dir"]).stdout
    assert out.strip().endswith("0 delivery(ies)")
    assert len(ui["sink"].received) == 1
