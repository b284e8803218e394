"""What an export holds, gathered once from the store, whatever the format.

An :class:`ExportSet` is this lab's own signals that peers also hold (one entry per
signal, with every peer round that matched it), the peers involved and, when
cases exist, the cases grouping them. Values are already in their exported form
(keyed hash by default, this lab's own first spelling with ``values="raw"``), so
a writer cannot emit a raw value by mistake.

The export key (NODE_DIR/keys/export.key, 0600, made on first use) is local: it
never leaves the node, so a hashed export lets the lab's systems correlate values
across exports without anyone outside the node being able to test guesses.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.state.files import write_secret
from node.state.store import MatchRow
from protocol import exports
from protocol.errors import ConfigError

EXPORT_KEY_HEADER = "crossmatch-export-key-v1:"
CSV_COLUMNS = (
    "kind",
    "value",
    "value_form",
    "peers",
    "rounds",
    "first_matched",
    "last_matched",
    "cases",
)


@dataclass(frozen=True)
class Sighting:
    peer: str
    round_id: str
    matched_at: str


@dataclass
class ExportSignal:
    kind: str
    value: str  # exported form: "hmac-sha256-v1:..." or this lab's own spelling
    ref: tuple[str, str] = ("", "")  # (kind, normalized): links it to cases; never exported
    sightings: list[Sighting] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)

    @property
    def peers(self) -> list[str]:
        return sorted({s.peer for s in self.sightings})

    @property
    def first_matched(self) -> str:
        return min(s.matched_at for s in self.sightings)

    @property
    def last_matched(self) -> str:
        return max(s.matched_at for s in self.sightings)


@dataclass(frozen=True)
class ExportCase:
    case_id: str
    title: str
    state: str
    score: float
    signal_refs: frozenset[tuple[str, str]]  # ExportSignal.ref of its signals
    description: str = ""
    accounts: tuple[str, ...] = ()  # our account keys, in exported form


@dataclass
class ExportSet:
    lab: str
    values: str  # "hashed" | "raw"
    tlp: str
    pap: str
    generated_at: str
    signals: list[ExportSignal]
    cases: list[ExportCase] = field(default_factory=list)

    @property
    def peers(self) -> list[str]:
        return sorted({p for s in self.signals for p in s.peers})


def export_key(root: Path) -> bytes:
    """The node's local export key, created (0600) on first use."""
    path = root / "keys" / "export.key"
    if not path.exists():
        write_secret(path, (EXPORT_KEY_HEADER + secrets.token_hex(32) + "\n").encode("ascii"))
    text = path.read_text(encoding="ascii").strip()
    if not text.startswith(EXPORT_KEY_HEADER):
        raise ConfigError(f"{path} is not a crossmatch export key file")
    try:
        return exports.check_export_key(bytes.fromhex(text[len(EXPORT_KEY_HEADER) :]))
    except ValueError as e:
        raise ConfigError(f"{path}: export key is not hex") from e


def exported_value(key: bytes, values: str, kind: str, raw: str, normalized: str) -> str:
    if values == "raw":
        return raw or normalized
    return exports.hashed_value(key, kind, normalized or raw)


def signals_from_matches(
    rows: Iterable[MatchRow], *, key: bytes, values: str
) -> list[ExportSignal]:
    """One ExportSignal per (kind, fingerprint) matched, prompt tokens left out (they are
    LSH band hashes, meaningless outside a round; campaigns are exported with cases)."""
    by_signal: dict[tuple[str, bytes], ExportSignal] = {}
    for r in rows:
        if r.kind == "prompt":
            continue
        signal = by_signal.get((r.kind, r.fingerprint))
        if signal is None:
            value = exported_value(key, values, r.kind, r.value, r.normalized)
            signal = by_signal[(r.kind, r.fingerprint)] = ExportSignal(
                r.kind, value, ref=(r.kind, r.normalized or r.value)
            )
        signal.sightings.append(Sighting(r.peer, r.round_id, r.matched_at))
    return sorted(by_signal.values(), key=lambda s: (s.kind, s.value))


def to_csv(export: ExportSet) -> str:
    """Formula-safe CSV, one row per signal."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in export.signals:
        row: Sequence[object] = (
            s.kind,
            s.value,
            export.values,
            ";".join(s.peers),
            len({x.round_id for x in s.sightings}),
            s.first_matched,
            s.last_matched,
            ";".join(s.cases),
        )
        writer.writerow([exports.safe_cell(str(c)) for c in row])
    return out.getvalue()
