"""PSI suites: the group, hash and key format a consortium's rounds run on.

``SUITES`` maps the name a signed policy gives (``suite = "..."``) to the suite.
``openmined-p256-v1`` is the original engine; ``ristretto255-v1`` is faster and
can prove its re-blinding (docs/adr/0008-ristretto255-suite.md).
"""

from __future__ import annotations

from protocol.errors import PolicyError
from protocol.rules import Rule
from protocol.suites.base import Suite, WorkerEngine
from protocol.suites.p256 import P256
from protocol.suites.ristretto255 import RISTRETTO255

SUITES: dict[str, Suite] = {s.name: s for s in (P256, RISTRETTO255)}
DEFAULT_SUITE = P256.name


def get_suite(name: str) -> Suite:
    """The suite called ``name``; PolicyError (rule ``suite-unknown``) if there is none."""
    suite = SUITES.get(name)
    if suite is None:
        raise PolicyError(
            f"unknown PSI suite {name[:64]!r} (known: {', '.join(sorted(SUITES))})",
            rule=Rule.SUITE_UNKNOWN,
        )
    return suite


__all__ = ["DEFAULT_SUITE", "SUITES", "Suite", "WorkerEngine", "get_suite"]
