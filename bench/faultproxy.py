"""A fault-injecting TCP proxy on loopback, for the soak (bench/soak.py).

One listener per node, forwarding to that node's current address (``retarget``
after a restart, so peers keep one address per lab). Each new connection draws
a fault: none, a delay on every forwarded piece, a reset after some bytes (RST,
by SO_LINGER 0), or half-open (after some bytes, stop forwarding one direction
while both sockets stay open). Counts what it did.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
import time
from collections import Counter

FAULTS = ("none", "delay", "reset", "half-open")


class FaultProxy:
    def __init__(self, target: str, rng: random.Random, weights: tuple[float, ...]):
        self.target = target
        self.rng = rng
        self.weights = weights
        self.enabled = True
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def retarget(self, target: str) -> None:
        self.target = target

    def close(self) -> None:
        self._closed.set()
        self._sock.close()

    def _draw(self) -> str:
        with self._lock:
            fault = self.rng.choices(FAULTS, self.weights)[0] if self.enabled else "none"
            self.counts[fault] += 1
            budget = self.rng.randint(200, 400_000)
            delay = self.rng.uniform(0.01, 0.3)
        return f"{fault}:{budget}:{delay}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(client, self._draw()), name="proxy-conn", daemon=True
            ).start()

    def _serve(self, client: socket.socket, plan: str) -> None:
        fault, budget_text, delay_text = plan.split(":")
        budget, delay = int(budget_text), float(delay_text)
        host, _, port = self.target.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        sent = 0
        stalled: set[socket.socket] = set()
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select(list(peers), [], [], 1.0)
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    sent += len(data)
                    if fault == "delay":
                        time.sleep(delay)
                    if fault == "reset" and sent > budget:
                        _reset(client)
                        _reset(upstream)
                        return
                    if fault == "half-open" and sent > budget:
                        stalled.add(src)  # swallow from now on, keep the socket open
                    if src not in stalled:
                        peers[src].sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
