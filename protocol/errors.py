"""One exception hierarchy for crossmatch.

Every error carries a one-line, human-readable ``diagnostics()`` naming what was
wrong and where (file:line, peer, record number) and, when a rule refused
something, which rule (a :class:`protocol.rules.Rule`). The CLI prints that line
and exits with ``exit_code``; the traceback is shown only with ``--verbose``.
"""

from __future__ import annotations

from protocol.rules import Rule


class CrossmatchError(Exception):
    """Base of every error crossmatch raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, rule: Rule | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.rule = rule

    def diagnostics(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.rule:
            text += f" [rule: {self.rule}]"
        return text

    def __str__(self) -> str:
        return self.diagnostics()


class InputError(CrossmatchError):
    """Bad local input: an unparsable value, a wrong column, a malformed file."""

    exit_code = 65


class ConfigError(CrossmatchError):
    """A node directory, config file, key or certificate is missing or invalid."""

    exit_code = 78


class ProtocolError(CrossmatchError):
    """The peer sent something malformed or out of order."""

    exit_code = 76


class PolicyError(CrossmatchError):
    """A round or request was refused by a rule (kind, size, rate, policy, identity)."""

    exit_code = 77


class VerificationError(CrossmatchError):
    """A signature, hash chain, Merkle proof, checkpoint or receipt did not verify."""

    exit_code = 3


class PeerUnavailableError(CrossmatchError):
    """The peer could not be reached, or went away mid-round."""

    exit_code = 69


class RoundAbortedError(CrossmatchError):
    """A round was aborted; nothing was stored and the abort was logged."""

    exit_code = 4


# Exit codes of the `crossmatch` command and what each means. A test checks that
# every exit code an error class can produce has help text here.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected error (re-run with --verbose for the traceback)",
    2: "usage error: unknown command or bad option",
    3: "verification failed: the audit log, a checkpoint, a proof or a receipt does not verify",
    4: "round aborted: nothing was stored, the abort and its reason are in the audit log",
    65: "bad input data: the file and line are named; nothing was imported",
    69: "peer unavailable: could not connect, or the peer went away",
    76: "protocol error: the peer sent malformed or out-of-order data",
    77: "refused by policy: the rule that refused is named",
    78: "configuration error: node directory, config, key or certificate",
}
