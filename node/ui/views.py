"""What each page of the review UI shows, gathered from the store, the cases and the log.

Plain functions returning plain dicts for the templates (which escape everything):
no HTML is built here except the SVG charts, whose labels node/ui/charts.py escapes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from node.data.campaigns import group_campaigns
from node.data.case_feedback import peer_opinions
from node.data.cases import CaseDetail, cases_stale, get_case, list_cases, recompute_cases
from node.data.warninglists import installed_lists
from node.ops.report import render_report
from node.ops.report_chart import Point, chart
from node.pki import load_audit_public_key
from node.runtime import Node
from node.state.auditlog import checkpoint_path, verify_log
from node.ui.charts import bar_chart, cluster_diagram
from protocol.audit.reconcile import reconcile
from protocol.audit.verify_report import VerifyReport
from protocol.cases.lifecycle import STATES
from protocol.errors import CrossmatchError, VerificationError
from protocol.rules import Rule

PEER_LOGS = "peer-logs"  # NODE_DIR/peer-logs/*.log: logs peers handed over, for reconcile
SORTS = {"score": "score", "recent": "last_match_at", "accounts": "entities"}
IN_MEMORY_SORT_LIMIT = 5000


def refresh(node: Node) -> None:
    if cases_stale(node.store):
        recompute_cases(node)


def dashboard(node: Node) -> dict[str, Any]:
    refresh(node)
    rounds = node.store.rounds()
    points = [
        Point(r.started_at, r.peer, r.status == "completed")
        for r in rounds
        if r.status != "refused"
    ]
    with node.store.reading() as db:
        kinds = dict(
            db.execute(
                "SELECT kind, COUNT(DISTINCT fingerprint) FROM matches GROUP BY kind"
            ).fetchall()
        )
    by_state = {s: list_cases(node.store, state=s, per_page=1).total for s in STATES}
    top = list_cases(node.store, state="open", per_page=10)
    return {
        "chart": chart(points),
        "rounds_total": len(rounds),
        "kinds_chart": bar_chart(
            "kinds-chart",
            "Matched signals per kind",
            {("prompt tokens" if k == "prompt" else k): n for k, n in kinds.items()},
            unit="signals",
        ),
        "cases_chart": bar_chart(
            "cases-chart", "Cases per state", {s: n for s, n in by_state.items() if n}, unit="cases"
        ),
        "open_cases": top.cases,
        "open_total": top.total,
    }


def cases_page(
    node: Node, *, state: str | None, peer: str | None, sort: str, page: int, per_page: int = 25
) -> dict[str, Any]:
    refresh(node)
    state = state if state in ("open", *STATES) else None
    sort = sort if sort in SORTS else "score"
    if sort == "score":  # the API's own order, paged in SQL
        result = list_cases(
            node.store, state=state, peer=peer or None, page=page, per_page=per_page
        )
        rows, total = result.cases, result.total
    else:  # other orders: sorted here, over at most IN_MEMORY_SORT_LIMIT cases
        everything = list_cases(node.store, state=state, peer=peer or None, per_page=1000).cases
        rows = sorted(everything, key=lambda c: getattr(c, SORTS[sort]), reverse=True)
        total = len(rows)
        rows = rows[(page - 1) * per_page : page * per_page]
    peers = sorted({p.lab for p in node.config.peers})
    return {
        "cases": rows,
        "total": total,
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-total // per_page)),
        "state": state or "",
        "peer": peer or "",
        "sort": sort,
        "states": ("open", *STATES),
        "sorts": list(SORTS),
        "peers": peers,
    }


def case_page(node: Node, case_id: str) -> dict[str, Any]:
    refresh(node)
    detail = get_case(node.store, case_id, max_entities=500)
    signals = signal_rows(detail.matches)
    links = [(m["entity"], f"{m['kind']}: {m['value']}", m["peer"]) for m in signals]
    return {
        "case": detail.summary,
        "entities": detail.entities,
        "matches": signals[:500],
        "matches_total": len(signals),
        "events": detail.events,
        "campaigns": campaign_examples(node, detail),
        "diagram": cluster_diagram([e["key"] for e in detail.entities], links),
        "opinions": peer_opinions(node.store, case_id),
        "peers": sorted({m["peer"] for m in signals}),
    }


def signal_rows(matches: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One row per (account, kind, value, peer), however many rounds matched it (newest
    match first, as the cases API lists them)."""
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for m in matches:
        key = (m["entity"], m["kind"], m["value"], m["peer"])
        row = rows.setdefault(key, {**m, "rounds": 0, "first_matched": m["matched_at"]})
        row["rounds"] += 1
        row["first_matched"] = min(row["first_matched"], m["matched_at"])
    return list(rows.values())


def campaign_examples(node: Node, detail: CaseDetail) -> list[dict[str, Any]]:
    """The case's matched prompt campaigns, one per (label, peer) with the rounds that
    matched it, each with a few of our own example prompts from one of those rounds."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for c in detail.campaigns:
        entry = grouped.setdefault((str(c["label"]), str(c["peer"])), {**c, "rounds": 0})
        entry["rounds"] += 1
    for entry in grouped.values():
        report = group_campaigns(
            node.store.prompt_hits(peer=entry["peer"], round_id=str(entry["round_id"]))
        )
        examples = [
            e for sc in report.campaigns if entry["label"] in sc.labels for e in sc.examples
        ]
        entry["examples"] = examples[:3]
    return list(grouped.values())


def _peer_keys(root: Path) -> dict[str, Ed25519PublicKey]:
    return {p.stem: load_audit_public_key(p) for p in sorted((root / "peers").glob("*.pub"))}


def _verify_own(node: Node) -> tuple[VerifyReport | None, str]:
    log = node.paths.audit_log
    kept = checkpoint_path(log)
    try:
        report = verify_log(
            log,
            public_key=node.audit_key.public_key(),
            peer_keys=_peer_keys(node.paths.root),
            checkpoints=[kept] if kept.exists() else [],
        )
    except CrossmatchError as e:
        return None, e.diagnostics()
    return report, ""


def audit_page(node: Node) -> dict[str, Any]:
    report, problem = _verify_own(node)
    records = list(report.records)[-40:] if report else []
    policy = node.policy
    return {
        "verified": report is not None,
        "problem": problem,
        "size": report.size if report else 0,
        "root": report.root.hex() if report else "",
        "records": list(reversed(records)),
        "reconciled": _reconcile_all(node, report),
        "policy": {
            "id": policy.policy_id,
            "version": policy.version,
            "not_before": policy.not_before or "-",
            "not_after": policy.not_after or "-",
            "kinds": sorted(policy.allowed_kinds),
            "retention_days": policy.retention_days,
            "hash": policy.hash().hex(),
        },
        "policy_problem": node.policy_problem,
        "warninglists": _warninglists(node),
        "peer_logs_dir": str(node.paths.root / PEER_LOGS),
    }


def _reconcile_all(node: Node, own: VerifyReport | None) -> list[dict[str, Any]]:
    folder = node.paths.root / PEER_LOGS
    out = []
    for log in sorted(folder.glob("*.log")) if folder.is_dir() else []:
        entry: dict[str, Any] = {"file": log.name, "ok": False, "lines": []}
        try:
            peer = verify_log(log)  # learn whose log it is from record 0 ...
            key = node.paths.root / "peers" / f"{peer.lab}.pub"
            if key.exists():  # ... then check it against the key its certificate gave us
                peer = verify_log(log, public_key=load_audit_public_key(key))
            entry["lab"], entry["key_checked"] = peer.lab, key.exists()
            if own is None:
                raise VerificationError("our own log does not verify", rule=Rule.RECONCILE)
            result = reconcile(own, peer)
            entry["ok"], entry["lines"] = result.ok, result.summary_lines()
        except CrossmatchError as e:
            entry["lines"] = [e.diagnostics()]
        out.append(entry)
    return out


def _warninglists(node: Node) -> list[dict[str, Any]]:
    """The installed warninglists (a list that does not verify shows as the problem)."""
    try:
        lists = installed_lists(node)
    except CrossmatchError as e:
        return [{"name": "(unusable)", "description": e.diagnostics(), "entries": 0}]
    return [
        {
            "name": wl.name,
            "description": wl.description,
            "entries": len(wl.ranges) + len(wl.domains) + sum(map(len, wl.exact.values())),
            "kinds": sorted(
                {*wl.exact, *(["ip"] if wl.ranges else []), *(["org_domain"] if wl.domains else [])}
            ),
        }
        for wl in lists
    ]


def report_html(node: Node) -> str:
    report, problem = _verify_own(node)
    data = node.paths.audit_log.read_bytes()
    failure = None if report else VerificationError(problem)
    return render_report(
        records=list(report.records) if report else [],
        report=report,
        failure=failure,
        source=node.paths.audit_log.name,
        source_sha256=hashlib.sha256(data).hexdigest(),
        generated_at=node.now(),
    )
