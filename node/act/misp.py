"""MISP events of an ExportSet, built with ``pymisp``.

One event per export (``--case``: per case), distribution "your organisation only",
tagged with the TLP 2.0 and PAP taxonomies. One attribute per signal (a MISP type
for raw email, phone, ip and domain values; ``text`` for the rest and for keyed
hashes, which are never marked for IDS), one sighting per peer that holds it, and
per case a comment attribute naming its state and score and a ``user-account`` object
for each of our accounts in it. UUIDs are UUIDv5 of the exported value, so a
re-import updates instead of duplicating.
"""

from __future__ import annotations

import uuid

from pymisp import MISPAttribute, MISPEvent, MISPObject

from node.act.exportset import ExportSet, ExportSignal
from node.act.stix import NAMESPACE
from protocol.timestamps import epoch_us, parse_utc

RAW_TYPES = {
    "email": "email",
    "phone": "phone-number",
    "ip": "ip-src",
    "ip_prefix": "ip-src",
    "org_domain": "domain",
}
DISTRIBUTION_ORG_ONLY = 0
THREAT_LEVEL_MEDIUM = 2
ANALYSIS_ONGOING = 1


def _uuid(*names: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "misp/" + "/".join(names)))


def _epoch(text: str) -> int:
    return epoch_us(parse_utc(text, "export timestamp")) // 1_000_000


def build_event(export: ExportSet) -> MISPEvent:
    event = MISPEvent()
    event.uuid = _uuid(export.lab, "event", export.generated_at, export.values)
    cases = ", ".join(c.case_id for c in export.cases)
    event.info = f"crossmatch {export.lab}: " + (
        f"case {cases}"
        if cases
        else f"{len(export.signals)} signals shared with {', '.join(export.peers)}"
    )
    event.distribution = DISTRIBUTION_ORG_ONLY
    event.threat_level_id = THREAT_LEVEL_MEDIUM
    event.analysis = ANALYSIS_ONGOING
    event.date = parse_utc(export.generated_at, "export timestamp").date()
    event.add_tag(f"tlp:{export.tlp}")
    event.add_tag(f"PAP:{export.pap.upper()}")
    event.add_tag(f'crossmatch:values="{export.values}"')
    for signal in export.signals:
        _add_signal(event, export, signal)
    for case in export.cases:
        event.add_attribute(
            "comment",
            f"case {case.case_id}: {case.title}; state {case.state}, score {case.score:g}",
            uuid=_uuid(export.lab, "case", case.case_id),
            to_ids=False,
            disable_correlation=True,
        )
        for account in case.accounts:
            _add_account(event, export, case.case_id, account)
    return event


def _add_account(event: MISPEvent, export: ExportSet, case_id: str, account: str) -> None:
    """One of our accounts in a case, as a MISP ``user-account`` object."""
    obj = MISPObject("user-account", standalone=False)
    obj.uuid = _uuid(export.lab, "account", case_id, account)
    hashed = export.values != "raw"
    obj.comment = f"our account in case {case_id}" + (" (keyed hash)" if hashed else "")
    obj.add_attribute("user-id", value=account, disable_correlation=hashed)
    event.add_object(obj)


def _add_signal(event: MISPEvent, export: ExportSet, signal: ExportSignal) -> None:
    raw = export.values == "raw"
    kind_type = RAW_TYPES.get(signal.kind, "text") if raw else "text"
    attribute = event.add_attribute(
        kind_type,
        signal.value,
        uuid=_uuid(export.lab, signal.kind, signal.value),
        comment=(
            f"{signal.kind} shared with {', '.join(signal.peers)}"
            + ("" if raw else "; keyed hash under the lab's export key")
        ),
        to_ids=raw and kind_type != "text",
        disable_correlation=not raw,
    )
    assert isinstance(attribute, MISPAttribute)  # one value in, one attribute out
    attribute.add_tag(f'crossmatch:kind="{signal.kind}"')
    for peer in signal.peers:
        seen = [s for s in signal.sightings if s.peer == peer]
        attribute.add_sighting(
            {"source": peer, "type": "0", "timestamp": _epoch(max(s.matched_at for s in seen))}
        )
