"""STIX 2.1 bundles of an ExportSet, built with the ``stix2`` library.

- an Identity for this lab (the creator of every object) and one per peer;
- an Indicator per signal of ours that a peer also holds (pattern from
  protocol/exports.py: a standard observable for raw email, ip, domain and account
  values, our ``x-crossmatch-signal`` object otherwise and for keyed hashes);
- a Sighting per (signal, peer): "the peer holds it too", seen in N rounds;
- a Grouping per case (context ``suspicious-activity``) referencing its objects;
- the OASIS TLP 2.0 marking on every object, and a PAP statement marking.

Ids are UUIDv5 of names built from the lab and the *exported* value (never the
raw value or the consortium fingerprint), so re-exporting updates the same objects
in a threat-intel platform instead of duplicating them.
"""

from __future__ import annotations

import uuid
from typing import Any

import stix2

from node.act.exportset import ExportCase, ExportSet, ExportSignal
from protocol import exports

# Our namespace for UUIDv5 object ids (a fixed random UUID; changing it renames everything).
NAMESPACE = uuid.UUID("5d0f3c1e-8a47-4b8e-9d51-2f6b7c9e0a14")


def _sid(kind: str, *names: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, '/'.join(names))}"


def identity(lab: str, created: str) -> stix2.Identity:
    return stix2.Identity(
        id=_sid("identity", "lab", lab),
        name=lab,
        identity_class="organization",
        created=created,
        modified=created,
        description="crossmatch consortium member lab",
    )


def pap_marking(level: str, created_by: str, created: str) -> stix2.MarkingDefinition:
    level = exports.check_pap(level)
    return stix2.MarkingDefinition(
        id=_sid("marking-definition", "pap", level),
        created=created,
        created_by_ref=created_by,
        name=f"PAP:{level.upper()}",
        definition_type="statement",
        definition=stix2.StatementMarking(
            f"PAP:{level.upper()} (Permissible Actions Protocol): see FIRST PAP for the "
            "actions allowed on this information"
        ),
    )


def build_bundle(export: ExportSet) -> stix2.Bundle:
    t = export.generated_at
    me = identity(export.lab, t)
    tlp = stix2.MarkingDefinition(**exports.tlp_marking(export.tlp))
    pap = pap_marking(export.pap, me.id, t)
    marks = [tlp.id, pap.id]
    common: dict[str, Any] = dict(
        created_by_ref=me.id, object_marking_refs=marks, created=t, modified=t
    )
    peers = {p: identity(p, t) for p in export.peers}
    objects: list[Any] = [tlp, pap, me, *peers.values()]
    refs_by_signal: dict[tuple[str, str], list[str]] = {}
    for signal in export.signals:
        indicator = _indicator(export, signal, common)
        sightings = [
            _sighting(export, signal, indicator.id, p, peers[p].id, common) for p in signal.peers
        ]
        objects += [indicator, *sightings]
        refs_by_signal[signal.ref] = [indicator.id, *(s.id for s in sightings)]
    for case in export.cases:
        objects.append(_grouping(export, case, refs_by_signal, peers, common))
    return stix2.Bundle(objects=objects, id=_sid("bundle", export.lab, t, export.values))


def _indicator(export: ExportSet, signal: ExportSignal, common: dict[str, Any]) -> stix2.Indicator:
    hashed = export.values == "hashed"
    peers = ", ".join(signal.peers)
    return stix2.Indicator(
        id=_sid("indicator", export.lab, signal.kind, signal.value),
        name=f"{signal.kind} shared with {peers}",
        description=(
            f"A {signal.kind} this lab flagged that {peers} also flagged "
            f"(crossmatch private set intersection)."
            + (" The value is a keyed hash under this lab's export key." if hashed else "")
        ),
        indicator_types=["malicious-activity"],
        pattern_type="stix",
        pattern=exports.signal_pattern(signal.kind, signal.value, hashed=hashed),
        valid_from=signal.first_matched,
        labels=[f"crossmatch-kind:{signal.kind}"],
        **common,
    )


def _sighting(
    export: ExportSet,
    signal: ExportSignal,
    indicator_id: str,
    peer: str,
    peer_id: str,
    common: dict[str, Any],
) -> stix2.Sighting:
    seen = [s for s in signal.sightings if s.peer == peer]
    first, last = min(s.matched_at for s in seen), max(s.matched_at for s in seen)
    return stix2.Sighting(
        id=_sid("sighting", export.lab, signal.kind, signal.value, peer),
        sighting_of_ref=indicator_id,
        where_sighted_refs=[peer_id],
        count=len({s.round_id for s in seen}),
        first_seen=first,
        last_seen=last,
        description=f"{peer} holds the same {signal.kind} (matched in a crossmatch round)",
        **common,
    )


def _grouping(
    export: ExportSet,
    case: ExportCase,
    refs_by_signal: dict[tuple[str, str], list[str]],
    peers: dict[str, stix2.Identity],
    common: dict[str, Any],
) -> stix2.Grouping:
    refs = [r for ref in sorted(case.signal_refs) for r in refs_by_signal.get(ref, [])]
    involved = sorted({p for s in export.signals if s.ref in case.signal_refs for p in s.peers})
    refs += [peers[p].id for p in involved]
    return stix2.Grouping(
        id=_sid("grouping", export.lab, "case", case.case_id),
        name=case.title,
        context="suspicious-activity",
        object_refs=refs or [common["created_by_ref"]],
        description=(
            f"crossmatch case {case.case_id}: state {case.state}, score "
            f"{case.score:g}. {case.description}"
        ).strip(),
        labels=[f"crossmatch-case-state:{case.state}"],
        **common,
    )
