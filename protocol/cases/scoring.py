"""An explainable case score: points for peers and for independent kinds, times recency.

    peers_points  = 20 per distinct peer lab, at most 3 counted   (0..60)
    kinds_points  = 10 per independent kind family, at most 4     (0..40)
    recency       = 0.5 ** (days since the last match / 30)
    score         = round((peers_points + kinds_points) * recency)   (0..100)

Kinds are grouped into families that an actor cannot vary independently:
``ip`` and ``ip_prefix`` are one family (an address implies its prefix), and so
are ``email`` and ``org_domain``. Every term is returned, so an analyst sees why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

POINTS_PER_PEER = 20
MAX_PEERS_COUNTED = 3
POINTS_PER_KIND = 10
MAX_KINDS_COUNTED = 4
HALF_LIFE_DAYS = 30.0

KIND_FAMILY = {"ip_prefix": "ip", "org_domain": "email"}


@dataclass(frozen=True)
class Score:
    peers: int
    kind_families: tuple[str, ...]
    days_since_last_match: float
    peers_points: int
    kinds_points: int
    recency: float
    score: int

    def terms(self) -> dict[str, object]:
        return {
            "peers": self.peers,
            "peers_points": self.peers_points,
            "kind_families": list(self.kind_families),
            "kinds_points": self.kinds_points,
            "days_since_last_match": round(self.days_since_last_match, 2),
            "recency": round(self.recency, 3),
            "score": self.score,
        }

    def explain(self) -> str:
        return (
            f"{self.peers} peer(s) x {POINTS_PER_PEER} = {self.peers_points}"
            f" + {len(self.kind_families)} kind famil(ies)"
            f" x {POINTS_PER_KIND} = {self.kinds_points}; x recency {self.recency:.2f}"
            f" ({self.days_since_last_match:.1f} days) = {self.score}"
        )


def score_case(peers: Iterable[str], kinds: Iterable[str], days_since_last_match: float) -> Score:
    distinct_peers = len(set(peers))
    families = tuple(sorted({KIND_FAMILY.get(k, k) for k in kinds}))
    peers_points = POINTS_PER_PEER * min(distinct_peers, MAX_PEERS_COUNTED)
    kinds_points = POINTS_PER_KIND * min(len(families), MAX_KINDS_COUNTED)
    days = max(0.0, float(days_since_last_match))
    recency = 0.5 ** (days / HALF_LIFE_DAYS)
    score = round((peers_points + kinds_points) * recency)
    return Score(distinct_peers, families, days, peers_points, kinds_points, recency, score)
