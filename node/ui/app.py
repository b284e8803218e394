"""The review web UI: a small server-rendered Starlette app over one node directory.

Security posture (docs/cases.md, "Review UI"): loopback only; a login (scrypt
password hash or a token file, node/ui/auth.py); an HttpOnly SameSite=Strict
session cookie; a CSRF token on every state-changing form (and a double-submit
token on the login form); a Host allow-list against DNS rebinding; and on every
response a Content-Security-Policy without scripts or inline styles, frame-ancestors
'none', X-Frame-Options DENY, nosniff and no-referrer. Jinja2 escapes every value.
Every action is a ``ui_action`` audit record (analyst, action, case id); decisions
also write the cases layer's ``case_decision`` record, and then enforcement hooks
are swept in the background.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.act.casefeed import node_dispatcher, sweep
from node.data.cases import decide
from node.runtime import Node
from node.ui import views
from node.ui.auth import Session, Sessions, load_ui_config
from protocol.audit.case_events import UiAction
from protocol.cases.lifecycle import DECISIONS, check_analyst
from protocol.errors import CrossmatchError

HERE = Path(__file__).parent
COOKIE, LOGIN_COOKIE = "crossmatch_ui", "crossmatch_login"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
STYLE_RE = re.compile(r"<style>(.*?)</style>", re.S)
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
MAX_BODY = 64 * 1024  # the largest form is a note of at most 4000 characters


def report_csp(page: str) -> str:
    """The report is the offline file a reviewer gets, with its styles inline: allow exactly
    those style blocks by hash, and still nothing else."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
        for m in STYLE_RE.findall(page)
    )
    styles = hashes or "'none'"
    return f"default-src 'none'; style-src {styles}; frame-ancestors 'none'"


class SecurityHeaders:
    """Headers every response carries; a route may set its own stricter CSP first."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": CSP.encode(),
                    b"x-frame-options": b"DENY",
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"no-referrer",
                    b"cache-control": b"no-store",
                    b"cross-origin-opener-policy": b"same-origin",
                }
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UiState:
    def __init__(self, node_dir: Path):
        self.node = Node(node_dir)
        self.config = load_ui_config(self.node.paths.root, self.node.config.extra)
        self.sessions = Sessions(self.config)
        loader = ChoiceLoader(
            [FileSystemLoader(HERE / "templates"), PackageLoader("node.ops", "templates")]
        )  # the second for the rounds chart the audit report draws too
        self.templates = Environment(loader=loader, autoescape=select_autoescape(default=True))
        self._sweeping = threading.Lock()

    def audit(self, analyst: str, action: str, case_id: str = "", **extra: object) -> None:
        self.node.record(
            UiAction(analyst=analyst, action=action, case_id=case_id, via="web-ui", extra=extra)
        )

    def sweep_hooks_later(self) -> None:
        def run() -> None:
            if not self._sweeping.acquire(blocking=False):
                return  # one sweep at a time; the next decision starts another
            try:
                sweep(self.node.store, node_dispatcher(self.node))
            except CrossmatchError:
                pass  # a broken hook config is shown on the audit page, not here
            finally:
                self._sweeping.release()

        threading.Thread(target=run, name="hooks-sweep", daemon=True).start()

    def page(
        self,
        name: str,
        request: Request,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            lab=self.node.lab, session=session, path=request.url.path, **context
        )
        return HTMLResponse(html, status_code=status)


def _session(state: UiState, request: Request) -> Session | None:
    return state.sessions.get(request.cookies.get(COOKIE))


def _csrf_ok(session: Session, form: Any) -> bool:
    return hmac.compare_digest(str(form.get("csrf", "")).encode(), session.csrf.encode())


def _ui(request: Request) -> UiState:
    state: UiState = request.app.state.ui
    return state


def authed(handler: Any) -> Any:
    """The handler gets the request's session; without one the browser goes to /login."""

    async def wrapper(request: Request) -> Response:
        session = _session(_ui(request), request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return await handler(request, session)

    return wrapper


async def login_form(request: Request) -> Response:
    state = _ui(request)
    token = secrets.token_urlsafe(24)
    response = state.page(
        "login.html",
        request,
        None,
        login_csrf=token,
        error=request.query_params.get("error", ""),
    )
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/login")
    return response


async def login(request: Request) -> Response:
    state = _ui(request)
    form = await request.form()
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(str(form.get("csrf", "")).encode(), cookie.encode()):
        return HTMLResponse("refused: missing or wrong CSRF token", status_code=403)
    analyst, secret = str(form.get("analyst", "")).strip(), str(form.get("password", ""))
    try:
        check_analyst(analyst)
    except CrossmatchError:
        return RedirectResponse("/login?error=name", status_code=303)
    sid = await run_in_threadpool(state.sessions.login, analyst, secret)
    if sid is None:
        known = analyst in state.config.users
        state.audit(analyst if known else "(unknown)", "login_failed")
        return RedirectResponse("/login?error=denied", status_code=303)
    state.audit(analyst, "login")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@authed
async def logout(request: Request, session: Session) -> Response:
    state = _ui(request)
    form = await request.form()
    if not _csrf_ok(session, form):
        return HTMLResponse("refused: missing or wrong CSRF token", status_code=403)
    state.audit(session.analyst, "logout")
    state.sessions.logout(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _node_page(template: str, view: Callable[[Node], dict[str, Any]]) -> Any:
    """A page that shows ``view(node)`` and takes no parameters."""

    @authed
    async def handler(request: Request, session: Session) -> Response:
        state = _ui(request)
        data = await run_in_threadpool(view, state.node)
        return state.page(template, request, session, **data)

    return handler


dashboard = _node_page("dashboard.html", views.dashboard)
audit = _node_page("audit.html", views.audit_page)


@authed
async def cases(request: Request, session: Session) -> Response:
    state = _ui(request)
    q = request.query_params
    page = int(q["page"]) if q.get("page", "").isdigit() and int(q["page"]) > 0 else 1
    data = await run_in_threadpool(
        lambda: views.cases_page(
            state.node,
            state=q.get("state") or None,
            peer=q.get("peer") or None,
            sort=q.get("sort", "score"),
            page=page,
        )
    )
    return state.page("cases.html", request, session, **data)


@authed
async def case(request: Request, session: Session) -> Response:
    state = _ui(request)
    case_id = request.path_params["case_id"]
    try:
        data = await run_in_threadpool(views.case_page, state.node, case_id)
    except CrossmatchError as e:
        return state.page("error.html", request, session, 404, message=e.message)
    return state.page(
        "case.html",
        request,
        session,
        done=request.query_params.get("done"),
        error=request.query_params.get("error"),
        decisions=DECISIONS,
        **data,
    )


@authed
async def case_decide(request: Request, session: Session) -> Response:
    state = _ui(request)
    case_id = request.path_params["case_id"]
    form = await request.form()
    if not _csrf_ok(session, form):
        return HTMLResponse("refused: missing or wrong CSRF token", status_code=403)
    decision, note = str(form.get("decision", "")), str(form.get("note", ""))
    try:
        await run_in_threadpool(decide, state.node, case_id, decision, session.analyst, note)
    except CrossmatchError as e:
        return state.page(
            "error.html", request, session, 400, message=e.message, back=f"/cases/{case_id}"
        )
    state.audit(session.analyst, decision, case_id)
    state.sweep_hooks_later()
    return RedirectResponse(f"/cases/{case_id}?done={decision}", status_code=303)


@authed
async def audit_report(request: Request, session: Session) -> Response:
    state = _ui(request)
    page = await run_in_threadpool(views.report_html, state.node)
    return HTMLResponse(page, headers={"Content-Security-Policy": report_csp(page)})


async def stylesheet(request: Request) -> Response:
    return FileResponse(HERE / "static" / "ui.css", media_type="text/css")


ROUTES = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/", dashboard),
    Route("/cases", cases),
    Route("/cases/{case_id}", case),
    Route("/cases/{case_id}/decide", case_decide, methods=["POST"]),
    Route("/audit", audit),
    Route("/audit/report", audit_report),
    Route("/static/ui.css", stylesheet),
    Route("/favicon.ico", lambda request: Response(status_code=204)),
]


def build_app(node_dir: Path) -> Starlette:
    state = UiState(node_dir)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.node.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=ALLOWED_HOSTS),
        ],
        lifespan=lifespan,
        max_body_size=MAX_BODY,
    )
    app.state.ui = state
    return app
