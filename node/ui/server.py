"""Run the review UI: bind loopback (port 0 allowed), publish the address, serve with uvicorn."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import uvicorn

from node.config import check_address, load_config
from node.state.files import atomic_write
from node.ui.app import build_app
from node.ui.auth import load_ui_config
from protocol.errors import ConfigError

ADDRESS_FILE = Path("run") / "ui-address"


def loopback_socket(listen: str) -> socket.socket:
    """A listening socket on a loopback address; anything else is refused: the UI shows our
    own accounts and speaks plain HTTP, so reach it through SSH or a TLS proxy instead."""
    host, _, port = check_address(listen).rpartition(":")
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"ui listen address {listen!r} is not loopback: bind 127.0.0.1 and "
            "reach it through an SSH tunnel or a TLS reverse proxy"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, int(port)), family=family)
    except OSError as e:
        raise ConfigError(f"cannot listen on {listen}: {e.strerror}") from e


def serve(node_dir: Path, listen: str | None) -> None:
    cfg = load_config(node_dir)
    ui = load_ui_config(cfg.root, cfg.extra)
    if not ui.users and ui.token_file is None:
        print(
            f"crossmatch ui: no analyst can log in yet: run `crossmatch ui-passwd {node_dir} "
            "--analyst NAME` first",
            file=sys.stderr,
            flush=True,
        )
    sock = loopback_socket(listen or ui.listen)
    app = build_app(node_dir)
    host, port = sock.getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    atomic_write(cfg.root / ADDRESS_FILE, (address + "\n").encode())
    print(f"crossmatch ui: {cfg.lab} on http://{address}/", flush=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", server_header=False
    )
    uvicorn.Server(config).run(sockets=[sock])
