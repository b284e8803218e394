"""crossmatch protocol: pure functions over bytes and values.

Nothing in this package opens sockets or files or reads the clock; time and
randomness come in as parameters. ``node`` imports this package, never the reverse.
"""

# v3: the DLEQ proofs of verified matches weight pairs by value, from one context per
# round (ADR 0012); the domain strings of v2 are unchanged.
PROTOCOL_VERSION = "crossmatch/v3"
