"""Imported prompts. They stay here; only their LSH band tokens, held as signals of kind
'prompt', enter rounds. A matched token leads back to our prompts (``prompt_hits``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node.state.signals import FINGERPRINT_SIZE, ImportResult, count_signals
from node.state.sqlite import Database, stored_time, where_equal
from protocol.errors import InputError

SCHEMA = (
    """CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        campaign TEXT NOT NULL,
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        UNIQUE (text, campaign, account)
    )""",
    """CREATE TABLE prompt_tokens (
        token BLOB NOT NULL CHECK (length(token) = 32),
        prompt_id INTEGER NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
        PRIMARY KEY (token, prompt_id)
    ) WITHOUT ROWID""",
)


@dataclass(frozen=True)
class PromptInput:
    """One prompt to import with its tokens; ``campaign`` and ``account`` may be empty."""

    text: str
    campaign: str
    account: str
    source: str
    tokens: tuple[bytes, ...]


@dataclass(frozen=True)
class PromptHit:
    """One of our prompts holding a token matched in a round."""

    round_id: str
    peer: str
    prompt_id: int
    text: str
    campaign: str
    account: str
    token: bytes


class PromptTables(Database):
    def add_prompts(
        self,
        prompts: Sequence[PromptInput],
        *,
        param_set_id: str,
        now: str | None = None,
        on_new_links: Callable[[sqlite3.Connection], None] | None = None,
    ) -> ImportResult:
        """Import prompts and their tokens in one transaction; tokens become 'prompt' signals.

        A prompt already held (same text, campaign and account) is not duplicated; tokens
        shared by many prompts of a campaign are held once as signals. If a new prompt
        has both a campaign and an account (a link between entities for cases),
        ``on_new_links(db)`` runs last in the same transaction (node/data/prompt_import.py).
        """
        imported_at = stored_time(now, "now")
        distinct = {t for p in prompts for t in p.tokens}
        if any(len(t) != FINGERPRINT_SIZE for t in distinct):
            raise InputError("prompt tokens must be 32 bytes")
        with self.transaction() as db:
            before = count_signals(db, "prompt")
            links = 0
            for p in prompts:
                inserted = db.execute(
                    "INSERT INTO prompts (text, campaign, account, source, imported_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (text, campaign, account) DO NOTHING",
                    (p.text, p.campaign, p.account, p.source, imported_at),
                ).rowcount
                links += inserted if p.campaign and p.account else 0
                (prompt_id,) = db.execute(
                    "SELECT id FROM prompts WHERE text = ? AND campaign = ? AND account = ?",
                    (p.text, p.campaign, p.account),
                ).fetchone()
                db.executemany(
                    "INSERT INTO prompt_tokens (token, prompt_id) VALUES (?, ?)"
                    " ON CONFLICT DO NOTHING",
                    ((t, prompt_id) for t in p.tokens),
                )
            db.executemany(
                "INSERT INTO signals (kind, fingerprint, normalized, first_source, imported_at)"
                " VALUES ('prompt', ?, ?, ?, ?) ON CONFLICT (kind, fingerprint) DO NOTHING",
                ((t, param_set_id, "prompt import", imported_at) for t in sorted(distinct)),
            )
            after = count_signals(db, "prompt")
            if links and on_new_links is not None:
                on_new_links(db)
        added = after - before
        return ImportResult("prompt", added, len(distinct) - added, after, received=len(prompts))

    def prompt_count(self) -> int:
        with self.reading() as db:
            return int(db.execute("SELECT COUNT(*) FROM prompts").fetchone()[0])

    def prompt_hits(
        self, *, peer: str | None = None, round_id: str | None = None
    ) -> list[PromptHit]:
        """Our prompts holding a token matched by a completed round, one row per token."""
        conditions, params = where_equal(("r.peer", peer), ("m.round_id", round_id))
        conditions.insert(0, "m.kind = 'prompt'")
        query = (
            "SELECT m.round_id, r.peer, p.id, p.text, p.campaign, p.account, m.fingerprint"
            " FROM matches m JOIN rounds r ON r.round_id = m.round_id"
            " JOIN prompt_tokens t ON t.token = m.fingerprint"
            " JOIN prompts p ON p.id = t.prompt_id"
            f" WHERE {' AND '.join(conditions)}"
            " ORDER BY r.started_us DESC, p.id"
        )
        with self.reading() as db:
            rows = db.execute(query, params).fetchall()
        return [
            PromptHit(rid, rpeer, pid, text, campaign, account, bytes(token))
            for rid, rpeer, pid, text, campaign, account, token in rows
        ]
