"""node/ui/auth.py and node/ui/charts.py: password hashes, tokens, sessions, the login limit,
and SVG labels escaped."""

from __future__ import annotations

import pytest

from node.ui import auth
from node.ui.charts import bar_chart, cluster_diagram
from node.ui.server import loopback_socket
from protocol.errors import ConfigError


def test_password_hash_round_trip_and_tamper():
    stored = auth.hash_password("correct horse battery")
    assert stored.startswith("scrypt$16384$8$1$")
    assert auth.check_password("correct horse battery", stored)
    assert not auth.check_password("correct horse batterz", stored)
    for broken in (
        "",
        "md5$x",
        stored.replace("scrypt", "bcrypt"),
        stored[:-2],
        "scrypt$1048577$8$1$00$00",
    ):  # absurd cost parameters are refused too
        assert not auth.check_password("correct horse battery", broken)


def config(tmp_path, *, token: str | None = None, users: dict | None = None) -> auth.UiConfig:
    path = None
    if token is not None:
        path = tmp_path / "ui.token"
        path.write_text(token)
        path.chmod(0o600)
    return auth.UiConfig(users=users or {}, token_file=path)


def test_sessions_for_users_and_the_login_limit(tmp_path):
    now = [0.0]
    sessions = auth.Sessions(
        config(tmp_path, users={"alice": auth.hash_password("pw-alice-1")}), clock=lambda: now[0]
    )
    sid = sessions.login("alice", "pw-alice-1")
    assert sid and sessions.get(sid).analyst == "alice"
    assert sessions.login("mallory", "pw-alice-1") is None, "unknown analysts never log in"
    for _ in range(auth.MAX_FAILURES_PER_MINUTE):
        assert sessions.login("alice", "wrong") is None
    assert sessions.login("alice", "pw-alice-1") is None, "limited while failures pile up"
    now[0] += 61
    assert sessions.login("alice", "pw-alice-1")
    now[0] += auth.SESSION_SECONDS + 1
    assert sessions.get(sid) is None, "sessions expire"


def test_token_login_any_analyst_and_token_file_mode(tmp_path):
    token = "t" * 32
    sessions = auth.Sessions(config(tmp_path, token=token))
    assert sessions.login("bob", token) and sessions.login("bob", "t" * 31 + "u") is None
    (tmp_path / "ui.token").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        sessions.login("bob", token)


def test_chart_and_diagram_labels_are_escaped():
    svg = bar_chart("c", "t", {"<script>x</script>": 2}, unit="u")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    diagram = cluster_diagram(["<b>acct</b>"], [("<b>acct</b>", "email: \"'><x", "lab-b")])
    assert "<b>" not in diagram and "&lt;b&gt;" in diagram and "'><x" not in diagram


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "192.0.2.1:8800", "example.com:80"])
def test_the_ui_binds_loopback_only(listen):
    with pytest.raises(ConfigError, match="not loopback"):
        loopback_socket(listen)


def test_loopback_port_zero_binds():
    sock = loopback_socket("127.0.0.1:0")
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
