"""crossmatch protocol: pure functions over bytes and values.

Nothing in this package opens sockets or files or reads the clock; time and
randomness come in as parameters. ``node`` imports this package, never the reverse.
"""

# v3: the DLEQ proofs of verified matches weight pairs by value, from one context per
# round (ADR 0012); the domain strings of v2 are unchanged.
# v4: a reveal round without verified matches releases round-bound hashes of its
# re-blinded points, not the points (protocol/release.py): epoch keys let a peer reuse
# the points of an earlier round to plant matches.
PROTOCOL_VERSION = "crossmatch/v4"
