"""Group matched prompt tokens into shared campaigns, from this lab's own prompts only.

A round tells us which of our prompt tokens the peer also holds. Prompts of one
campaign share tokens with each other, so we join our matched prompts into
groups: two prompts are in one group when they hold a common matched token or
carry the same campaign label. A prompt counts only if it holds at least
``min_tokens`` matched tokens (default 2): unrelated prompts collide on a single
LSH band now and then (about 3e-5 of unrelated pairs, docs/prompt-matching.md),
while a real near-duplicate shares several bands. Single-token hits are counted
as weak and not reported as campaigns.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from node.state.store import PromptHit

MIN_TOKENS = 2
EXAMPLES = 3
EXAMPLE_CHARS = 160


@dataclass
class SharedCampaign:
    round_id: str
    peer: str
    labels: list[str]
    prompts: int
    accounts: int
    matched_tokens: int
    unlabelled: int = 0  # our prompts in the group that carry no campaign label yet
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "round_id": self.round_id,
            "peer": self.peer,
            "labels": self.labels,
            "prompts": self.prompts,
            "accounts": self.accounts,
            "matched_tokens": self.matched_tokens,
            "unlabelled": self.unlabelled,
            "examples": self.examples,
        }


@dataclass
class CampaignReport:
    campaigns: list[SharedCampaign]
    weak_prompts: int  # prompts with fewer than min_tokens matched tokens


class _Groups:
    """Union-find over prompt ids."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def group_campaigns(hits: list[PromptHit], *, min_tokens: int = MIN_TOKENS) -> CampaignReport:
    by_round: dict[tuple[str, str], list[PromptHit]] = defaultdict(list)
    for hit in hits:
        by_round[(hit.round_id, hit.peer)].append(hit)
    campaigns: list[SharedCampaign] = []
    weak = 0
    for (round_id, peer), round_hits in by_round.items():
        tokens_of: dict[int, set[bytes]] = defaultdict(set)
        info: dict[int, PromptHit] = {}
        for hit in round_hits:
            tokens_of[hit.prompt_id].add(hit.token)
            info[hit.prompt_id] = hit
        strong = {pid for pid, toks in tokens_of.items() if len(toks) >= min_tokens}
        weak += len(tokens_of) - len(strong)
        groups = _Groups()
        first_with: dict[object, int] = {}
        for pid in sorted(strong):
            groups.find(pid)
            keys: list[object] = list(tokens_of[pid])
            if info[pid].campaign:
                keys.append(("label", info[pid].campaign))
            for key in keys:
                if key in first_with:
                    groups.union(pid, first_with[key])
                else:
                    first_with[key] = pid
        members: dict[int, list[int]] = defaultdict(list)
        for pid in sorted(strong):
            members[groups.find(pid)].append(pid)
        for pids in members.values():
            accounts = {info[p].account for p in pids if info[p].account}
            labels = sorted({info[p].campaign for p in pids if info[p].campaign})
            examples = [_short(info[p].text) for p in pids[:EXAMPLES]]
            matched = set().union(*(tokens_of[p] for p in pids))
            unlabelled = sum(1 for p in pids if not info[p].campaign)
            campaigns.append(
                SharedCampaign(
                    round_id,
                    peer,
                    labels,
                    len(pids),
                    len(accounts),
                    len(matched),
                    unlabelled,
                    examples,
                )
            )
    campaigns.sort(key=lambda c: (-c.prompts, c.labels))
    return CampaignReport(campaigns, weak)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXAMPLE_CHARS else flat[: EXAMPLE_CHARS - 1] + "…"
