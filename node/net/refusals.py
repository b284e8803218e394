"""How many refusals become audit records: a caller decides how often it is refused, not
how much we write.

A configured peer gets up to ``per_minute`` full refusal records a minute (with a
stored row); anything beyond, and every refusal of a caller that is not a
configured peer (unknown, revoked, expired certificate), is only counted. The
counts are written as one ``refusals_summarised`` record per flush (the daemon
flushes each housekeeping pass and at shutdown), with at most MAX_KEYS keys.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from protocol.audit.events import RefusalsSummarised
from protocol.limits import peer_text
from protocol.rules import Rule, parse_rule

MAX_KEYS = 32  # distinct (caller, rule) pairs a summary names; the rest are "other"
# Refusals that say the caller is not (or no longer) someone we talk to: never one record each.
OUTSIDER_RULES = frozenset(
    {
        Rule.CERTIFICATE_MISSING,
        Rule.UNKNOWN_PEER,
        Rule.CERTIFICATE_REVOKED,
        Rule.CERTIFICATE_EXPIRED,
        Rule.CERTIFICATE_NOT_YET_VALID,
        Rule.CERTIFICATE_WRONG_CA,
        Rule.CERTIFICATE_MALFORMED,
    }
)


class RefusalLedger:
    def __init__(self, per_minute: int, *, clock=time.monotonic):
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[str, list[float]] = {}
        self._counts: Counter[str] = Counter()
        self._since = clock()

    def admit(self, caller: str, rule: str | None) -> bool:
        """True if this refusal may be written in full; otherwise it is counted."""
        known = parse_rule(rule)
        rule = known.value if known is not None else "other"
        now = self._clock()
        with self._lock:
            if caller and rule not in OUTSIDER_RULES:
                recent = [t for t in self._recent.get(caller, []) if now - t < 60.0]
                if len(recent) < self.per_minute:
                    recent.append(now)
                    self._recent[caller] = recent
                    return True
                self._recent[caller] = recent
            key = f"{peer_text(caller or 'unauthenticated', 64)}:{rule}"
            if key not in self._counts and len(self._counts) >= MAX_KEYS:
                key = "other"
            self._counts[key] += 1
            if len(self._recent) > 4 * MAX_KEYS:  # forget callers quiet for a minute
                self._recent = {k: v for k, v in self._recent.items() if v and now - v[-1] < 60}
            return False

    def take_summary(self) -> RefusalsSummarised | None:
        """The counts since the last summary (and reset them), or None if there were none."""
        with self._lock:
            now = self._clock()
            counts, self._counts = self._counts, Counter()
            since, self._since = self._since, now
        if not counts:
            return None
        return RefusalsSummarised(
            counts=dict(sorted(counts.items())),
            total=sum(counts.values()),
            window_seconds=int(now - since),
        )
