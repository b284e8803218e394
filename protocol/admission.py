"""Admission of a round: the rules a responder applies to a proposal, and an initiator
to the response, before any cryptographic work. Pure: the caller supplies who it is,
who the verified peer is, the policy in force, what time it is and what it has stored.

Each rule raises the error naming it (docs/protocol.md, "Checks before any
cryptographic work"); the order of the checks is the order a peer sees refusals in:
first what the proposal is, then who may propose it, then the policy, then limits.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol import PROTOCOL_VERSION
from protocol.errors import PolicyError, ProtocolError
from protocol.identity import PeerIdentity
from protocol.messages import MODES, Proposal, ProposalResponse
from protocol.policy import DEFAULT_POLICY, Policy
from protocol.responder_proof import check_nonce
from protocol.rules import Rule
from protocol.suites import DEFAULT_SUITE
from protocol.transcript import RoundHeader

ROUND_ID = re.compile(r"[0-9a-f]{32}")
# The two sides stamp a round's start a moment apart; forgive that much of the policy's
# minimum interval (at most RATE_SLACK_MAX, at most a tenth of the interval).
RATE_SLACK_MAX = timedelta(seconds=30)


@dataclass(frozen=True)
class Admitted:
    """The header parts an accepted proposal fixes; the responder adds its own side."""

    proposal: Proposal
    policy: Policy  # the policy in force, whose hash the proposal presented

    def header(self, responder_sizes: tuple[int, ...], responder_commitment: bytes) -> RoundHeader:
        p = self.proposal
        return RoundHeader(
            round_id=p.round_id,
            initiator=p.initiator,
            responder=p.responder,
            mode=p.mode,
            kinds=p.kinds,
            initiator_sizes=p.sizes,
            responder_sizes=responder_sizes,
            policy_hash=p.policy_hash,
            initiator_commitment=p.input_commitment,
            responder_commitment=responder_commitment,
            prompt_params=p.prompt_params,
            suite=p.suite or DEFAULT_SUITE,
            verified_matches=self.policy.verified_matches,
        )


class Flight:
    """Per peer: at most one round in flight, and the policy's minimum interval between
    rounds. Holds no clock: every call says what time it is. Safe across threads."""

    def __init__(self, slack_max: timedelta = RATE_SLACK_MAX):
        self._slack_max = slack_max
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._last_accepted: dict[str, datetime] = {}

    def reserve(
        self, peer: str, policy: Policy, *, now: datetime, last_round: datetime | None
    ) -> None:
        """Claim the peer's single slot, atomically, if the policy's interval has passed
        since ``last_round`` (the last round stored) and since the last one accepted here."""
        slack = min(self._slack_max, timedelta(seconds=policy.min_interval_seconds / 10))
        with self._lock:
            if peer in self._active:
                raise PolicyError(
                    f"a round with {peer} is already in flight", rule=Rule.SINGLE_FLIGHT
                )
            accepted = self._last_accepted.get(peer)
            if accepted is not None and (last_round is None or accepted > last_round):
                last_round = accepted
            policy.check_interval(last_round, now, slack)
            self._active.add(peer)
            self._last_accepted[peer] = now

    def release(self, peer: str) -> None:
        with self._lock:
            self._active.discard(peer)


def admit_proposal(
    p: Proposal,
    *,
    me: str,
    peer: str,
    policy: Callable[[], Policy],
    prompt_params: str,
    round_known: Callable[[str], bool],
    flight: Flight,
    now: datetime,
    last_round: Callable[[], datetime | None],
    shutting_down: bool = False,
) -> Admitted:
    """Accept ``p`` from the verified lab ``peer`` or raise the rule it breaks.

    ``policy()`` returns the signed policy in force (or raises policy-unsigned/-expired);
    ``round_known(id)`` says whether a round id was used; ``last_round()`` is the start of
    the last round stored with this peer. On success the peer's flight slot is taken:
    the caller releases it (``flight.release(peer)``) when the round ends or fails.
    """
    _check_form(p, me=me, peer=peer, round_known=round_known)
    if shutting_down:
        raise PolicyError("this node is shutting down; retry later", rule=Rule.SHUTTING_DOWN)
    in_force = policy()
    _check_policy(p, in_force, prompt_params)
    flight.reserve(peer, in_force, now=now, last_round=last_round())
    return Admitted(p, in_force)


def _check_form(p: Proposal, *, me: str, peer: str, round_known: Callable[[str], bool]) -> None:
    if p.protocol_version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {p.protocol_version!r} not supported "
            f"(this node speaks {PROTOCOL_VERSION})",
            rule=Rule.VERSION,
        )
    check_nonce(p.nonce)
    if p.initiator != peer:
        raise PolicyError(
            f"claims to be lab {p.initiator!r} but its certificate is for {peer!r}",
            rule=Rule.LAB_MISMATCH,
        )
    if p.responder != me:
        raise PolicyError(
            f"round addressed to {p.responder!r}, this is {me!r}", rule=Rule.WRONG_RESPONDER
        )
    if not ROUND_ID.fullmatch(p.round_id):
        raise ProtocolError("round id must be 32 lowercase hex digits", rule=Rule.ROUND_ID)
    if round_known(p.round_id):
        raise ProtocolError("round id already used", rule=Rule.ROUND_ID)
    if p.mode not in MODES:
        raise ProtocolError(f"unknown mode {p.mode}", rule=Rule.MODE)
    if len(set(p.kinds)) != len(p.kinds):
        raise ProtocolError("a kind is listed twice", rule=Rule.KINDS)


def _check_policy(p: Proposal, policy: Policy, prompt_params: str) -> None:
    if p.policy_hash != policy.hash():
        unsigned = p.policy_hash == DEFAULT_POLICY.hash()
        raise PolicyError(
            "initiator runs without a signed consortium policy"
            if unsigned
            else f"initiator runs under a different policy ({p.policy_hash.hex()[:16]}…, "
            f"ours {policy.policy_id} v{policy.version} {policy.hash().hex()[:16]}…)",
            rule=Rule.POLICY_UNSIGNED if unsigned else Rule.POLICY_MISMATCH,
        )
    policy.check_round(p.kinds, p.mode, p.sizes)
    policy.check_sizes(p.kinds, p.sizes)  # anti-probing: min-set-size, pad-bucket
    policy.check_suite(p.suite or DEFAULT_SUITE)  # a node from before suites sends none
    if "prompt" in p.kinds and p.prompt_params != prompt_params:
        raise PolicyError(
            f"prompt fingerprint parameters differ: peer {p.prompt_params!r}, "
            f"ours {prompt_params!r}",
            rule=Rule.PROMPT_PARAMS,
        )


def admit_response(
    r: ProposalResponse, *, proposal: Proposal, identify: Callable[[bytes], PeerIdentity]
) -> PeerIdentity:
    """The initiator's check of the answer to ``proposal``: the same round and kinds, and a
    certificate (checked by ``identify``: chain, validity, revocation) for the lab we
    addressed. Returns the responder's identity, whose audit key verifies its receipt."""
    if r.round_id != proposal.round_id:
        raise ProtocolError("responder answered for another round", rule=Rule.ROUND_ID)
    if r.kinds != proposal.kinds:
        raise ProtocolError("responder's kinds do not match the proposal", rule=Rule.KINDS)
    peer = identify(r.certificate_pem)
    if peer.lab != proposal.responder:
        raise PolicyError(
            f"responder presented a certificate for {peer.lab!r}", rule=Rule.LAB_MISMATCH
        )
    return peer
