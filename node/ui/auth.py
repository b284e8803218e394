"""Who may use the review UI: analysts with a scrypt password hash, or one token file.

node.toml::

    [ui]
    listen = "127.0.0.1:8800"          # loopback by default
    token_file = "keys/ui.token"       # optional: any analyst name + this token (0600)
    [[ui.users]]
    name = "alice"
    password_scrypt = "scrypt$16384$8$1$<salt hex>$<hash hex>"   # `crossmatch ui-passwd`

Sessions live in the server's memory (a restart logs everyone out): a random id in
an HttpOnly, SameSite=Strict cookie, with its own CSRF token that every form
carries back. Passwords and tokens are compared in constant time; failed logins are
rate-limited per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_SECONDS = 8 * 3600
MAX_FAILURES_PER_MINUTE = 10


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        expected = bytes.fromhex(want)
        # Fixed parameters' bounds and a whole 32-byte digest: a cut-down hash in node.toml
        # must not become a weaker check, nor absurd costs a way to stall the server.
        if (
            scheme != "scrypt"
            or len(expected) != 32
            or int(n) > 2**20
            or int(r) > 32
            or int(p) > 16
        ):
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@dataclass(frozen=True)
class UiConfig:
    listen: str = "127.0.0.1:8800"
    users: Mapping[str, str] = field(default_factory=dict)  # name -> scrypt hash
    token_file: Path | None = None


def load_ui_config(root: Path, extra: Mapping[str, object]) -> UiConfig:
    table = extra.get("ui", {})
    where = f"{root / 'node.toml'}: [ui]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    users: dict[str, str] = {}
    for u in table.get("users", []):
        if not isinstance(u, dict) or not u.get("name") or not u.get("password_scrypt"):
            raise ConfigError(f"{where}: each [[ui.users]] needs name and password_scrypt")
        users[str(u["name"])] = str(u["password_scrypt"])
    token = table.get("token_file")
    return UiConfig(
        listen=str(table.get("listen", UiConfig.listen)),
        users=users,
        token_file=root / str(token) if token else None,
    )


def read_token(path: Path) -> str:
    try:
        mode, text = path.stat().st_mode, path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"cannot read UI token {path}: {e.strerror}") from e
    if mode & 0o077:
        raise ConfigError(f"UI token {path} is readable by group/others; chmod 600 it")
    if len(text) < 24:
        raise ConfigError(f"UI token {path} is shorter than 24 characters")
    return text


@dataclass
class Session:
    analyst: str
    csrf: str
    expires: float


class Sessions:
    """In-memory sessions and the login rate limit (one server process)."""

    def __init__(self, config: UiConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def login(self, analyst: str, secret: str) -> str | None:
        """A new session id, or None; None also while too many logins fail."""
        with self._lock:
            now = self._clock()
            while self._failures and self._failures[0] < now - 60:
                self._failures.popleft()
            if len(self._failures) >= MAX_FAILURES_PER_MINUTE:
                return None
        if not self._authenticates(analyst, secret):
            with self._lock:
                self._failures.append(self._clock())
            return None
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = Session(
                analyst, secrets.token_urlsafe(32), self._clock() + SESSION_SECONDS
            )
        return sid

    def _authenticates(self, analyst: str, secret: str) -> bool:
        stored = self.config.users.get(analyst)
        if stored is not None:
            return check_password(secret, stored)
        if self.config.token_file is not None and not self.config.users:
            return hmac.compare_digest(secret.encode(), read_token(self.config.token_file).encode())
        check_password(secret, hash_password("x", salt=b"\0" * 16))  # same cost: no user oracle
        return False

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None or session.expires < self._clock():
                self._sessions.pop(sid, None)
                return None
            return session

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)
