"""crossmatch protocol: pure functions over bytes and values.

Nothing in this package opens sockets or files or reads the clock; time and
randomness come in as parameters. ``node`` imports this package, never the reverse.
"""

PROTOCOL_VERSION = "crossmatch/v2"
