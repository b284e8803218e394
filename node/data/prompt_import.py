"""Import flagged prompts from JSON lines: validate every line, tokenize, store in one go.

Each line is a JSON object with the prompt text (``--field``, default ``text``)
and optionally a campaign label and an account id. Prompts stay in the node's
store; only their LSH band tokens (``protocol.fingerprints.prompts``) take part
in rounds, deduplicated across prompts (campaign prompts share many tokens).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from node.data.importer import Problems, _decoded_lines
from node.state.cases_store import bump, ensure_schema
from node.state.store import ImportResult, PromptInput, Store
from protocol.errors import InputError
from protocol.fingerprints.prompts import (
    DEFAULT_PARAMS,
    PromptParams,
    iter_prompt_tokens,
    normalize_prompt,
    param_set_id,
    shingles,
)


def _record(
    text: str, field: str, campaign_field: str | None, account_field: str | None
) -> tuple[str, str, str]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(record, dict):
        raise InputError("not a JSON object")
    if field not in record:
        raise InputError(f"field {field!r} missing")
    prompt = record[field]
    if not isinstance(prompt, str):
        raise InputError(f"field {field!r} is not a string")
    labels = []
    for name in (campaign_field, account_field):
        value = record.get(name, "") if name else ""
        if value is None:
            value = ""
        if not isinstance(value, str | int):
            raise InputError(f"field {name!r} must be a string")
        labels.append(str(value)[:256])
    return prompt, labels[0], labels[1]


def prepare_prompts(
    path: Path,
    key: bytes,
    *,
    field: str = "text",
    campaign_field: str | None = "campaign",
    account_field: str | None = "account",
    campaign: str | None = None,
    params: PromptParams = DEFAULT_PARAMS,
) -> list[PromptInput]:
    """Every prompt of ``path`` with its tokens, or one InputError listing the bad lines."""
    path = Path(path)
    good: list[tuple[int, str, str, str]] = []
    problems = Problems(path)
    for number, text, reason in _decoded_lines(path):
        if reason is None and text is not None and not text.strip():
            reason = "empty line"
        if reason is None:
            assert text is not None
            try:
                prompt, label, account = _record(text, field, campaign_field, account_field)
                # Validate now so that every bad line is reported, not only the first.
                shingles(normalize_prompt(prompt, max_bytes=params.max_bytes), params)
                good.append((number, prompt, campaign if campaign is not None else label, account))
                continue
            except InputError as e:
                reason = e.message
        problems.add(number, reason or "unreadable")
    if problems:
        raise problems.error("of prompts")
    tokens = iter_prompt_tokens(key, [g[1] for g in good], params)
    return [
        PromptInput(text, label, account, f"{path}:{line}", tuple(t))
        for (line, text, label, account), t in zip(good, tokens, strict=True)
    ]


def import_prompts(
    store: Store, path: Path, key: bytes, *, now: str | None = None, **opts: object
) -> ImportResult:
    prompts = prepare_prompts(path, key, **opts)  # type: ignore[arg-type]
    linking = any(p.campaign and p.account for p in prompts)
    if linking:
        ensure_schema(store)  # the counter below lives in the case tables
    # A campaign label on an account's prompts links that account's entity to the
    # campaign's others (node/data/case_build.py): new such prompts make the next case
    # build re-cluster (prompts already held change nothing).
    return store.add_prompts(
        prompts,
        param_set_id=param_set_id(DEFAULT_PARAMS),
        now=now,
        on_new_links=_entities_changed if linking else None,
    )


def _entities_changed(db: sqlite3.Connection) -> None:
    bump(db, "entities_generation")
