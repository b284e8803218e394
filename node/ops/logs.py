"""Structured logs: one JSON object a line on stderr, for journald, Loki or anything else.

Fields: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg`` and, for audit
events, ``event`` plus a fixed allowlist of fields (labs, round ids, kinds,
counts, rules). Never identifiers: the allowlist is how that stays true when a
new audit field appears; a field not on it is simply not logged.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from protocol.timestamps import format_utc

# Audit body fields that may appear in application logs (none can hold customer data).
EVENT_FIELDS = (
    "round_id",
    "peer",
    "role",
    "mode",
    "kinds",
    "own_sizes",
    "peer_sizes",
    "intersection_sizes",
    "stage",
    "rule",
    "reason",
    "count",
    "before",
    "lab",
    "address",
    "claimed_lab",
    "policy_hash",
)
MAX_TEXT = 300  # reasons may quote a peer's abort message: keep lines bounded

event_log = logging.getLogger("crossmatch.events")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": format_utc(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, sort_keys=False, default=str)


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread; when its queue is full the line is dropped and
    counted, so a stalled stderr (full pipe, throttled journald) never blocks a request."""

    def __init__(self, q: queue.Queue[logging.LogRecord]):
        super().__init__(q)
        self.dropped = 0
        self._lock = threading.Lock()

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.dropped += 1


_queue_handler: DroppingQueueHandler | None = None
_listener: logging.handlers.QueueListener | None = None


def _stop_listener() -> None:
    """Flush what is queued (at a clean exit, or before reconfiguring); never blocks."""
    global _listener
    listener, _listener = _listener, None
    if listener is None or listener._thread is None:
        return
    try:
        listener.queue.put(None, timeout=1.0)  # type: ignore[attr-defined]  # its sentinel
    except queue.Full:
        return  # the writer is stuck on a stalled stream: do not wait for it
    listener._thread.join(timeout=2.0)


atexit.register(_stop_listener)


def dropped_lines() -> int:
    """Log lines dropped because the writer could not keep up (a metric)."""
    return _queue_handler.dropped if _queue_handler is not None else 0


def configure(fmt: str = "json", *, verbose: bool = False, queue_size: int = 10_000) -> None:
    """Route the root logger to stderr as JSON lines (or plain text), through a bounded
    queue and one writer thread."""
    global _queue_handler, _listener
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _stop_listener()
    _queue_handler = DroppingQueueHandler(queue.Queue(queue_size))
    _listener = logging.handlers.QueueListener(_queue_handler.queue, handler)
    _listener.start()
    root = logging.getLogger()
    root.handlers[:] = [_queue_handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("grpc", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event_fields(event: str, body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"event": event}
    for name in EVENT_FIELDS:
        if name in body:
            value = body[name]
            fields[name] = value[:MAX_TEXT] if isinstance(value, str) else value
    return fields


def log_event(event: str, body: dict[str, Any]) -> None:
    """Mirror one audit event into the application log (an observer of ``Node.log``)."""
    level = logging.WARNING if event in ("round_aborted", "round_refused") else logging.INFO
    event_log.log(level, event, extra={"fields": event_fields(event, body)})
