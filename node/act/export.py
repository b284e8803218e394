"""`crossmatch export`: gather, render in one format, and audit what left the node.

Every export is an ``export_written`` audit record (format, value form, TLP, object
count and the SHA-256 of the bytes written), so a raw export is as visible to legal
as a round.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from node.act import misp, stix
from node.act.casefeed import export_case
from node.act.exportset import ExportSet, export_key, signals_from_matches, to_csv
from node.data.cases import CaseSummary, cases_stale, get_case, list_cases, recompute_cases
from node.runtime import Node, iso
from protocol import exports
from protocol.audit.case_events import ExportWritten
from protocol.errors import InputError
from protocol.rules import Rule

FORMATS = exports.EXPORT_FORMATS


@dataclass(frozen=True)
class ExportRequest:
    fmt: str
    values: str = "hashed"
    tlp: str = exports.DEFAULT_TLP
    pap: str = exports.DEFAULT_PAP
    peer: str | None = None
    case_id: str | None = None


def gather(node: Node, request: ExportRequest) -> ExportSet:
    if request.values not in exports.VALUE_MODES:
        raise InputError(f"--values must be one of {', '.join(exports.VALUE_MODES)}")
    key = export_key(node.paths.root)
    if cases_stale(node.store):
        recompute_cases(node)
    signals = signals_from_matches(
        node.store.matches(peer=request.peer), key=key, values=request.values
    )
    if request.case_id:
        details = [get_case(node.store, request.case_id)]
        if details[0].summary.merged_into:
            raise InputError(
                f"case {request.case_id} was merged into {details[0].summary.merged_into}: "
                "export that one",
                rule=Rule.EXPORT_CASE,
            )
    else:
        details = [get_case(node.store, c.case_id) for c in _all_cases(node, request.peer)]
    cases = [export_case(d, key=key, values=request.values) for d in details]
    for case in cases:
        for signal in signals:
            if signal.ref in case.signal_refs:
                signal.cases.append(case.case_id)
    if request.case_id:  # only what the case holds
        signals = [s for s in signals if s.cases]
    return ExportSet(
        lab=node.lab,
        values=request.values,
        tlp=exports.check_tlp(request.tlp),
        pap=exports.check_pap(request.pap),
        generated_at=iso(node.now()).replace(".000000Z", "Z"),
        signals=signals,
        cases=cases,
    )


def _all_cases(node: Node, peer: str | None) -> list[CaseSummary]:
    """Every live case (not merged into another, not expired), all pages."""
    out: list[CaseSummary] = []
    page = 1
    while True:
        result = list_cases(node.store, peer=peer, page=page, per_page=500)
        out += [c for c in result.cases if c.state not in ("merged", "expired")]
        if page * result.per_page >= result.total:
            return out
        page += 1


def render(export: ExportSet, fmt: str) -> tuple[str, int]:
    """The export's text and how many objects (STIX objects, MISP attributes, CSV rows)."""
    if fmt == "stix":
        bundle = stix.build_bundle(export)
        return bundle.serialize(pretty=True) + "\n", len(bundle.objects)
    if fmt == "misp":
        event = misp.build_event(export)
        return json.dumps(json.loads(event.to_json()), indent=2, sort_keys=True) + "\n", len(
            event.attributes
        )
    if fmt == "csv":
        return to_csv(export), len(export.signals)
    raise InputError(f"unknown export format {fmt!r} (one of: {', '.join(FORMATS)})")


def run_export(node: Node, request: ExportRequest) -> str:
    export = gather(node, request)
    text, objects = render(export, request.fmt)
    node.record(
        ExportWritten(
            format=request.fmt,
            values=export.values,
            tlp=export.tlp,
            pap=export.pap,
            peer=request.peer or "",
            case_id=request.case_id or "",
            objects=objects,
            signals=len(export.signals),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
    )
    return text
