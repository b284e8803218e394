"""Rows the case tests and the cases benchmark put in a real Store: a completed reveal round."""

from __future__ import annotations

from collections.abc import Sequence

from node.state.store import RoundRow, Store


def save_reveal_round(
    store: Store,
    rid: str,
    peer: str,
    matches: list[tuple[str, bytes]],
    *,
    stamp: str,
    kinds: Sequence[str] | None = None,
) -> None:
    """A completed reveal round with ``peer`` (we initiated) whose matches are ``matches``;
    sizes and hashes are placeholders, ``kinds`` defaults to those of the matches."""
    kinds = list(kinds) if kinds is not None else sorted({k for k, _ in matches}) or ["email"]
    row = RoundRow(
        rid,
        peer,
        "initiator",
        "reveal",
        kinds,
        {},
        {},
        {},
        "completed",
        "",
        stamp,
        stamp,
        "00",
        "00",
    )
    store.save_round(row, matches)
