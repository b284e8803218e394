"""`crossmatch status NODE_DIR`: is the node serving, under which policy, with what
certificate, and how each peer's rounds are going (last, next, last error).

Reads the node directory only (config, store, certificate, policy, and the
scheduler's run/schedule.json); it never talks to peers and writes nothing.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from node import pki
from node.cli.common import node_dir_argument, print_table
from node.config import load_config
from node.runtime import Node
from node.schedule.scheduler import initiator_of
from protocol.timestamps import format_utc

CERT_WARN_DAYS = 30
POLICY_WARN_DAYS = 14


def _reachable(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _days(until: datetime, now: datetime) -> float:
    return (until - now).total_seconds() / 86400


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def collect(node_dir: Path) -> dict[str, Any]:
    """Everything `status` shows, as plain data (the demo renders it too)."""
    load_config(node_dir)  # a clear ConfigError before anything else
    with Node(node_dir, open_audit=False) as node:
        now = node.now()
        address = _read_text(node.paths.address_file)
        serving = bool(address) and _reachable(address)
        warnings: list[str] = []
        certificate = _certificate(node, now, warnings)
        policy = _policy(node, now, warnings)
        schedule = _schedule(node.paths.schedule_state) if serving else {}
        peers = [
            _peer_row(node, p.lab, p.scheduled, schedule.get(p.lab, {}), serving)
            for p in node.config.peers
        ]
        revoked = len(node.revoked_serials())
    return {
        "lab": node.lab,
        "now": format_utc(now, timespec="seconds"),
        "serving": serving,
        "address": address if serving else "",
        "metrics": _read_text(node.paths.metrics_address_file) if serving else "",
        "certificate": certificate,
        "policy": policy,
        "revoked_serials": revoked,
        "peers": peers,
        "warnings": warnings,
    }


def _certificate(node: Node, now: datetime, warnings: list[str]) -> dict[str, Any]:
    cert = pki.summarize_certificate(node.tls_cert_pem)
    cert_days = _days(cert.not_after, now)
    if cert_days < 0:
        warnings.append(f"certificate EXPIRED {-cert_days:.0f} days ago: peers refuse it")
    elif cert_days < CERT_WARN_DAYS:
        warnings.append(
            f"certificate expires in {cert_days:.0f} days: renew it "
            "(`crossmatch cert request`, `ca issue`, `cert install`)"
        )
    return {
        "serial": str(cert.serial),
        "not_after": format_utc(cert.not_after, timespec="seconds"),
        "days_left": round(cert_days, 1),
    }


def _policy(node: Node, now: datetime, warnings: list[str]) -> dict[str, Any]:
    policy: dict[str, Any] = {"installed": not node.policy_problem}
    if node.policy_problem:
        warnings.append(node.policy_problem)
        return policy
    p = node.policy
    policy.update(
        policy_id=p.policy_id, version=p.version, hash=p.hash().hex(), not_after=p.not_after
    )
    expires = p.expires()
    if expires is not None:
        days = _days(expires, now)
        policy["days_left"] = round(days, 1)
        if days < 0:
            warnings.append(f"policy {p.policy_id} EXPIRED: every round is refused")
        elif days < POLICY_WARN_DAYS:
            warnings.append(f"policy {p.policy_id} expires in {days:.0f} days")
    return policy


def _schedule(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()).get("peers", {}))
    except (OSError, ValueError):
        return {}


def _peer_row(
    node: Node, lab: str, scheduled: bool, plan: dict[str, Any], serving: bool
) -> dict[str, Any]:
    rounds = node.store.rounds(peer=lab)
    last = rounds[0] if rounds else None
    completed = [r for r in rounds if r.status == "completed"]
    failed = next((r for r in rounds if r.status != "completed"), None)
    initiator = initiator_of(node.lab, lab)
    if not scheduled:
        nxt = "manual"
    elif initiator != node.lab:
        nxt = f"by {lab}"
    elif not serving:
        nxt = "daemon not running"
    elif plan.get("running"):
        nxt = "running now"
    else:
        nxt = plan.get("next_due") or "-"
    last_error = plan.get("last_error") or ""
    if (
        not last_error
        and failed is not None
        and (not completed or failed.started_at > completed[0].started_at)
    ):
        last_error = failed.reason
    return {
        "lab": lab,
        "initiator": initiator,
        "rounds_completed": len(completed),
        "last_round": last.started_at[:19] + "Z" if last else "",
        "last_status": last.status if last else "",
        "last_shared": dict(completed[0].intersection_sizes) if completed else {},
        "next_round": nxt,
        "failures": int(plan.get("failures", 0)),
        "last_error": last_error,
    }


def render(status: dict[str, Any], echo: Any = click.echo) -> None:
    state = f"serving on {status['address']}" if status["serving"] else "NOT RUNNING"
    echo(
        f"lab {status['lab']}: {state}"
        + (f", metrics on http://{status['metrics']}/metrics" if status["metrics"] else "")
    )
    p = status["policy"]
    if p.get("installed"):
        echo(
            f"policy: {p['policy_id']} v{p['version']} ({p['hash'][:16]}…), valid until "
            f"{p['not_after']}"
        )
    c = status["certificate"]
    echo(
        f"certificate: serial {c['serial'][:12]}…, expires {c['not_after'][:10]} "
        f"({c['days_left']:.0f} days); {status['revoked_serials']} serial(s) revoked by CRL"
    )
    for w in status["warnings"]:
        echo(f"WARNING: {w}")


def peer_table(status: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["PEER", "INITIATOR", "DONE", "LAST ROUND", "STATUS", "NEXT ROUND", "LAST ERROR"]
    rows = [
        [
            r["lab"],
            r["initiator"],
            str(r["rounds_completed"]),
            r["last_round"] or "-",
            r["last_status"] or "-",
            r["next_round"],
            (r["last_error"] or "")[:70],
        ]
        for r in status["peers"]
    ]
    return headers, rows


@click.command("status")
@node_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(node_dir: Path, as_json: bool) -> None:
    """Show the node's state: serving or not, policy, certificate expiry, and per peer the
    last and next round and the last error."""
    data = collect(node_dir)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    render(data)
    print_table(*peer_table(data))


def register(group: click.Group) -> None:
    group.add_command(status)
