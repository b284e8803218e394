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
from node.act.exportset import ExportSet, export_key, signals_from_matches, to_csv
from node.runtime import Node, iso
from protocol import exports
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
    if request.case_id is not None:
        raise InputError(
            "case export needs the case store, which this node does not hold yet",
            rule=Rule.EXPORT_CASE,
        )
    key = export_key(node.paths.root)
    rows = node.store.matches(peer=request.peer)
    now = iso(node.now()).replace(".000000Z", "Z")
    return ExportSet(
        lab=node.lab,
        values=request.values,
        tlp=exports.check_tlp(request.tlp),
        pap=exports.check_pap(request.pap),
        generated_at=now,
        signals=signals_from_matches(rows, key=key, values=request.values),
    )


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
    node.log(
        "export_written",
        {
            "format": request.fmt,
            "values": export.values,
            "tlp": export.tlp,
            "pap": export.pap,
            "peer": request.peer or "",
            "case_id": request.case_id or "",
            "objects": objects,
            "signals": len(export.signals),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        },
    )
    return text
