"""Enforcement hooks: tell the lab's own systems when a case reaches a state.

Configured in node.toml, one table per hook::

    [[hooks]]
    name = "soc"                       # lowercase, digits, '-'
    on = ["new", "confirmed"]          # case states that trigger it
    url = "https://soc.example/hook"   # a webhook ...
    # command = ["/usr/local/bin/block-accounts", "--from", "crossmatch"]   # ... or a command
    secret_file = "keys/hooks/soc.secret"   # relative to NODE_DIR, mode 0600
    values = "hashed"                  # "raw" sends this lab's own identifiers
    max_attempts = 5
    backoff_seconds = 2.0              # first retry delay; doubles, with jitter
    backoff_max_seconds = 300.0
    timeout_seconds = 10.0

A webhook gets a POST of the canonical JSON payload (protocol/hooks.py) with an
HMAC-SHA256 signature header over timestamp and body and an idempotency key that
is the same on every retry. 2xx is delivered; 408, 429, 5xx, timeouts and refused
connections are retried; any other 4xx is final. A command gets the payload on
standard input and the same two values in its environment; exit 0 is delivered.
After ``max_attempts`` failures the payload goes to NODE_DIR/hooks/dead-letter.jsonl
(0600). Every outcome is one ``hook_delivery`` audit record carrying the payload's
SHA-256, never the payload.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from node.state.files import append_private_line
from protocol import hooks as rules
from protocol.audit.case_events import HookDelivery
from protocol.errors import ConfigError
from protocol.timestamps import format_utc

HOOK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEAD_LETTER = Path("hooks") / "dead-letter.jsonl"
ERROR_TEXT_MAX = 160  # what a remote error may put in our audit log and dead letter
RETRIABLE_HTTP = frozenset({408, 425, 429})

Audit = Callable[[str, dict[str, Any]], object]


@dataclass(frozen=True)
class HookConfig:
    name: str
    on: tuple[str, ...]
    secret_file: Path
    url: str | None = None
    command: tuple[str, ...] | None = None
    values: str = "hashed"
    max_attempts: int = 5
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    timeout_seconds: float = 10.0

    @property
    def transport(self) -> str:
        return "webhook" if self.url else "command"


@dataclass(frozen=True)
class CaseEvent:
    """A case reaching ``state``: ``hashed`` and ``raw`` are the two views of it a hook
    may send (counts and keyed hashes; or the same with this lab's own values)."""

    case_id: str
    state: str
    revision: int | str  # what makes a second event on one (case, state) a new one
    hashed: Mapping[str, Any]
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    retry: bool
    status: int  # HTTP status or exit code; 0 when there was none
    error: str = ""


@dataclass(frozen=True)
class DeliveryResult:
    hook: str
    idempotency_key: str
    payload_sha256: str
    outcome: str  # "delivered" | "dead_letter"
    attempts: int
    status: int
    error: str = ""


def load_hooks(root: Path, extra: Mapping[str, object]) -> list[HookConfig]:
    """The [[hooks]] tables of node.toml (``NodeConfig.extra``); ConfigError names the hook."""
    tables = extra.get("hooks", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{root / 'node.toml'}: hooks must be an array of tables ([[hooks]])")
    hooks = [_load_hook(root, t) for t in tables]
    names = [h.name for h in hooks]
    if len(set(names)) != len(names):
        raise ConfigError(f"{root / 'node.toml'}: two hooks share a name")
    return hooks


def _load_hook(root: Path, t: object) -> HookConfig:
    where = f"{root / 'node.toml'}: hook"
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: each [[hooks]] entry must be a table")
    name = str(t.get("name", ""))
    if not HOOK_NAME_RE.match(name):
        raise ConfigError(f"{where} {name!r}: name must be lowercase letters, digits and '-'")
    where = f"{where} {name}"
    try:
        hook = HookConfig(
            name=name,
            on=tuple(str(s) for s in t.get("on", ["confirmed"])),
            secret_file=root / str(t["secret_file"]),
            url=str(t["url"]) if "url" in t else None,
            command=tuple(str(a) for a in t["command"]) if "command" in t else None,
            values=str(t.get("values", "hashed")),
            max_attempts=int(t.get("max_attempts", 5)),
            backoff_seconds=float(t.get("backoff_seconds", 2.0)),
            backoff_max_seconds=float(t.get("backoff_max_seconds", 300.0)),
            timeout_seconds=float(t.get("timeout_seconds", 10.0)),
        )
    except KeyError as e:
        raise ConfigError(f"{where}: missing setting {e.args[0]!r}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e
    _check_hook(hook, where)
    return hook


def _check_hook(hook: HookConfig, where: str) -> None:
    problems = []
    if (hook.url is None) == (hook.command is None):
        problems.append("set exactly one of url and command")
    if hook.url is not None and not re.match(r"^https?://[^\s/]+", hook.url):
        problems.append("url must be http:// or https://")
    if hook.command is not None and not hook.command:
        problems.append("command must not be empty")
    if bad := [s for s in hook.on if s not in rules.TRIGGER_STATES]:
        problems.append(f"unknown states in on: {bad} (use {', '.join(rules.TRIGGER_STATES)})")
    if hook.values not in ("hashed", "raw"):
        problems.append("values must be 'hashed' or 'raw'")
    if not 1 <= hook.max_attempts <= 100:
        problems.append("max_attempts must be 1..100")
    if hook.backoff_seconds < 0 or hook.backoff_max_seconds < hook.backoff_seconds:
        problems.append("need 0 <= backoff_seconds <= backoff_max_seconds")
    if not 0 < hook.timeout_seconds <= 600:
        problems.append("timeout_seconds must be in (0, 600]")
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)}")


def read_secret(path: Path) -> bytes:
    """A hook secret: a file of mode 0600 (no group or other access), at least 16 bytes."""
    try:
        mode = path.stat().st_mode
        secret = path.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"cannot read hook secret {path}: {e.strerror}") from e
    if mode & 0o077:
        raise ConfigError(
            f"hook secret {path} is readable by group/others (mode {mode & 0o777:o}); chmod 600 it"
        )
    if len(secret) < rules.MIN_SECRET_BYTES:
        raise ConfigError(f"hook secret {path} is shorter than {rules.MIN_SECRET_BYTES} bytes")
    return secret


def bounded(text: str) -> str:
    """Remote text reaches our files only printable and short."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean[:ERROR_TEXT_MAX]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A hook goes where the lab configured it, not where a response points.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies from the environment either: the payload goes straight to the configured host.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def post_webhook(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Attempt:
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = int(response.status)
            response.read(4096)
    except urllib.error.HTTPError as e:
        status = int(e.code)
        return Attempt(False, status >= 500 or status in RETRIABLE_HTTP, status, f"http {status}")
    except TimeoutError:
        return Attempt(False, True, 0, "timeout")
    except urllib.error.URLError as e:
        reason = "timeout" if isinstance(e.reason, TimeoutError) else str(e.reason)
        return Attempt(False, True, 0, bounded(reason))
    except OSError as e:  # reset mid-response and the like
        return Attempt(False, True, 0, bounded(f"{type(e).__name__}: {e}"))
    if 200 <= status < 300:
        return Attempt(True, False, status)
    return Attempt(False, status >= 500, status, f"http {status}")


def run_command(
    argv: Sequence[str], body: bytes, env: Mapping[str, str], timeout: float
) -> Attempt:
    try:
        proc = subprocess.run(
            list(argv),
            input=body,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **env},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Attempt(False, True, 0, "timeout")
    except OSError as e:
        return Attempt(False, False, 0, bounded(f"cannot run {argv[0]}: {e.strerror}"))
    if proc.returncode == 0:
        return Attempt(True, False, 0)
    last = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return Attempt(
        False, True, proc.returncode, bounded(f"exit {proc.returncode}: {last[0]}".rstrip(": "))
    )


@dataclass
class Dispatcher:
    """Delivers case events to the configured hooks. Clock, sleep and the jitter draw are
    parameters so tests control time; ``transport`` may be replaced for a fault test."""

    root: Path
    lab: str
    hooks: Sequence[HookConfig]
    audit: Audit
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    draw: Callable[[], float]

    def case_reached(self, event: CaseEvent) -> list[DeliveryResult]:
        return [self.deliver(h, event) for h in self.hooks if event.state in h.on]

    def deliver(self, hook: HookConfig, event: CaseEvent) -> DeliveryResult:
        secret = read_secret(hook.secret_file)
        key = rules.idempotency_key(
            hook=hook.name, case_id=event.case_id, state=event.state, revision=event.revision
        )
        body = self._payload(hook, event, key)
        attempt, count = self._attempts(hook, secret, key, event, body)
        result = DeliveryResult(
            hook.name,
            key,
            rules.payload_sha256(body),
            "delivered" if attempt.delivered else "dead_letter",
            count,
            attempt.status,
            attempt.error,
        )
        if not attempt.delivered:
            self._dead_letter(hook, result, body)
        self._audit_delivery(hook, event, result)
        return result

    def _payload(self, hook: HookConfig, event: CaseEvent, key: str) -> bytes:
        return rules.build_payload(
            lab=self.lab,
            hook=hook.name,
            state=event.state,
            idempotency_key=key,
            case=event.raw if hook.values == "raw" and event.raw else event.hashed,
            sent_at=format_utc(self.clock(), timespec="seconds"),
        )

    def _attempts(
        self, hook: HookConfig, secret: bytes, key: str, event: CaseEvent, body: bytes
    ) -> tuple[Attempt, int]:
        """Up to ``max_attempts`` tries with jittered backoff; the last attempt and the count."""
        attempt, count = Attempt(False, True, 0, "not attempted"), 0
        while count < hook.max_attempts and attempt.retry:
            if count:
                self.sleep(
                    rules.retry_delay(
                        count,
                        base=hook.backoff_seconds,
                        cap=hook.backoff_max_seconds,
                        draw=self.draw,
                    )
                )
            count += 1
            attempt = self._attempt(hook, secret, key, event, body)
        return attempt, count

    def _audit_delivery(self, hook: HookConfig, event: CaseEvent, result: DeliveryResult) -> None:
        delivery = HookDelivery(
            hook=hook.name,
            transport=hook.transport,
            case_id=event.case_id,
            state=event.state,
            values=hook.values,
            idempotency_key=result.idempotency_key,
            payload_sha256=result.payload_sha256,
            outcome=result.outcome,
            attempts=result.attempts,
            status=result.status,
            error=result.error,
        )
        self.audit(delivery.EVENT, delivery.to_body())

    def _attempt(
        self, hook: HookConfig, secret: bytes, key: str, event: CaseEvent, body: bytes
    ) -> Attempt:
        # Signed afresh each attempt: the timestamp is the send time, the key never changes.
        signature = rules.sign(secret, int(self.clock().timestamp()), body)
        if hook.url is not None:
            headers = {
                "Content-Type": "application/json",
                rules.SIGNATURE_HEADER: signature,
                rules.IDEMPOTENCY_HEADER: key,
                rules.EVENT_HEADER: f"case.{event.state}",
                "User-Agent": "crossmatch-hooks/1",
            }
            return post_webhook(hook.url, body, headers, hook.timeout_seconds)
        assert hook.command is not None
        env = {
            "CROSSMATCH_SIGNATURE": signature,
            "CROSSMATCH_IDEMPOTENCY_KEY": key,
            "CROSSMATCH_EVENT": f"case.{event.state}",
        }
        return run_command(hook.command, body, env, hook.timeout_seconds)

    def _dead_letter(self, hook: HookConfig, result: DeliveryResult, body: bytes) -> None:
        append_private_line(
            self.root / DEAD_LETTER,
            {
                "time": format_utc(self.clock(), timespec="seconds"),
                "hook": hook.name,
                "idempotency_key": result.idempotency_key,
                "payload_sha256": result.payload_sha256,
                "attempts": result.attempts,
                "status": result.status,
                "error": result.error,
                "payload": body.decode("utf-8"),
            },
        )
