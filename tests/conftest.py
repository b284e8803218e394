"""Session-wide test hooks."""

from __future__ import annotations


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001 (pytest's hook signature)
    # rbcl never deletes the libsodium copy it writes to the temp dir at import; the node
    # removes it (node/ops/suites.py), and so does a test session that imported it.
    import sys

    if "rbcl" in sys.modules:
        from node.ops.suites import drop_library_copy

        drop_library_copy()
