"""Cases, as hooks and exports see them, built from the case read API (node/data/cases.py).

A hook payload comes in two views: ``hashed`` (counts, peers, kinds, keyed entity
hashes from the case key, keyed value hashes from the export key) and ``raw``
(the same with this lab's own account keys and values), chosen per hook.

Deliveries are at least once: ``sweep`` looks at every case in a state some hook
listens for and delivers each (hook, case, state, revision) not yet in the ledger
NODE_DIR/hooks/delivered.jsonl. The revision is the case's ``updated_at``, so a
case re-opened and confirmed again is a new event, and a sweep after a crash
re-sends with the same idempotency key.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from node.act.exportset import ExportCase, export_key, exported_value
from node.act.hooks import CaseEvent, DeliveryResult, Dispatcher, load_hooks
from node.data.cases import CaseDetail, case_key, get_case, list_cases
from node.runtime import Node
from node.state.files import append_private_line
from node.state.store import Store
from protocol import hooks as rules
from protocol.cases.ids import entity_hash

LEDGER = Path("hooks") / "delivered.jsonl"
SWEEP_LIMIT = 100  # deliveries per sweep; the rest wait for the next one
MAX_PAYLOAD_ITEMS = 1000  # entities or signals listed in one payload (counts are whole)


def node_dispatcher(node: Node) -> Dispatcher:
    """The hooks of node.toml, with the real clock, sleep and jitter, auditing to the node."""
    return Dispatcher(
        root=node.paths.root,
        lab=node.lab,
        hooks=load_hooks(node.paths.root, node.config.extra),
        audit=node.log,
        clock=node.now,
        sleep=time.sleep,
        draw=random.SystemRandom().random,
    )


def case_event(root: Path, detail: CaseDetail) -> CaseEvent:
    s = detail.summary
    ckey, xkey = case_key(root), export_key(root)
    head: dict[str, Any] = {
        "case_id": s.case_id,
        "state": s.state,
        "score": s.score,
        "entities": s.entities,
        "peers": s.peers,
        "kinds": s.kinds,
        "campaigns": len(s.campaigns),
        "first_seen": s.first_seen,
        "last_seen": s.last_seen,
        "last_match_at": s.last_match_at,
        "updated_at": s.updated_at,
    }
    matches = detail.matches[:MAX_PAYLOAD_ITEMS]
    hashed = {
        **head,
        "entity_hashes": [entity_hash(ckey, e["key"]) for e in detail.entities[:MAX_PAYLOAD_ITEMS]],
        "signals": [
            {
                "kind": m["kind"],
                "peer": m["peer"],
                "value_hmac": exported_value(xkey, "hashed", m["kind"], m["value"], m["value"]),
            }
            for m in matches
        ],
    }
    raw = {
        **head,
        "campaigns": s.campaigns,
        "accounts": [e["key"] for e in detail.entities[:MAX_PAYLOAD_ITEMS]],
        "signals": [
            {"kind": m["kind"], "peer": m["peer"], "account": m["entity"], "value": m["value"]}
            for m in matches
        ],
    }
    return CaseEvent(s.case_id, s.state, s.updated_at, hashed=hashed, raw=raw)


def export_case(detail: CaseDetail, *, key: bytes, values: str) -> ExportCase:
    s = detail.summary
    accounts = tuple(
        exported_value(key, values, "account", e["key"], e["key"]) for e in detail.entities
    )
    return ExportCase(
        case_id=s.case_id,
        title=f"crossmatch case {s.case_id}",
        state=s.state,
        score=float(s.score),
        signal_refs=frozenset((m["kind"], m["value"]) for m in detail.matches),
        accounts=accounts,
        description=(
            f"{s.entities} of our accounts; peers {', '.join(s.peers)}; kinds "
            f"{', '.join(s.kinds)}; {len(s.campaigns)} prompt campaign(s)."
            + (f" Seen by {s.consortium['seen_by']} in consortium rounds." if s.consortium else "")
        ),
    )


def _ledger(root: Path) -> set[str]:
    path = root / LEDGER
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            keys.add(json.loads(line)["idempotency_key"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line after a crash: that event is simply re-sent
    return keys


def _record(root: Path, result: DeliveryResult) -> None:
    append_private_line(
        root / LEDGER,
        {"hook": result.hook, "idempotency_key": result.idempotency_key, "outcome": result.outcome},
    )


def pending(store: Store, dispatcher: Dispatcher, done: set[str]) -> Iterable[tuple[Any, Any]]:
    states = sorted({s for h in dispatcher.hooks for s in h.on})
    for state in states:
        page = 1
        while True:
            result = list_cases(store, state=state, page=page, per_page=200)
            for summary in result.cases:
                for hook in dispatcher.hooks:
                    key = rules.idempotency_key(
                        hook=hook.name,
                        case_id=summary.case_id,
                        state=state,
                        revision=summary.updated_at,
                    )
                    if state in hook.on and key not in done:
                        yield hook, summary
            if page * result.per_page >= result.total:
                break
            page += 1


def sweep(
    store: Store, dispatcher: Dispatcher, *, limit: int = SWEEP_LIMIT
) -> list[DeliveryResult]:
    """Deliver up to ``limit`` events not delivered yet (dead letters count as handled:
    they are for a person to replay, not for the next sweep to hammer)."""
    done = _ledger(dispatcher.root)
    results: list[DeliveryResult] = []
    for hook, summary in pending(store, dispatcher, done):
        if len(results) >= limit:
            break
        detail = get_case(store, summary.case_id, max_entities=MAX_PAYLOAD_ITEMS)
        result = dispatcher.deliver(hook, case_event(dispatcher.root, detail))
        _record(dispatcher.root, result)
        results.append(result)
    return results
