"""When an epoch cache may grow by a part instead of being rewritten (ADR 0015).

A repeat round at 1 % churn knows 99 % of its rows from the cache and computes the rest.
Rewriting the whole cache after it (131 MB a side at a million elements, and as much
again overwritten by ``secure_delete``) cost more than the round's own crypto; appending
the new rows as a part costs what they weigh. The price is that rows of elements that
left either set stay in the cache until it is next rewritten. This rule bounds that: the
rows no longer in use stay at most a tenth of those in use, and parts at most
``MAX_PARTS``; past either, the round rewrites the cache with its own rows only.
"""

from __future__ import annotations

MAX_PARTS = 16  # parts on top of the base table: each is one more read at load
STALE_DIVISOR = 10  # rows no longer in use may be at most 1/10 of those in use


def append_as_part(
    stored_rows: int, stored_parts: int, known: int, new: int, loaded_rows: int | None = None
) -> bool:
    """Whether a round that found ``known`` of its rows in a cache of ``stored_rows`` rows
    in ``stored_parts`` parts (the base not counted), and computed ``new`` rows, may append
    them as one more part; else the cache is rewritten with the round's rows alone.
    ``loaded_rows``: the rows of the cache the round loaded; if the stored cache has
    changed since (another process's round wrote it), the round's counts describe another
    table, so it is rewritten."""
    if loaded_rows is not None and loaded_rows != stored_rows:
        return False
    if stored_rows <= 0 or known <= 0 or stored_parts >= MAX_PARTS:
        return False
    stale = max(0, stored_rows - known)  # stored rows this round did not use
    return stale * STALE_DIVISOR <= known + new
