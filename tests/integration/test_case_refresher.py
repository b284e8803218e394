"""The daemon's case refresher (node/data/case_refresh.py) on a real node directory: a
completed round wakes it and cases follow; a store it cannot read gives one warning line,
no traceback, and the next round's wake-up builds again."""

from __future__ import annotations

import logging
import time

import pytest

from node.data.case_refresh import CaseRefresher
from node.data.cases import cases_stale, list_cases
from node.demo.sandbox import Sandbox, run_cli
from node.runtime import Node
from protocol.fingerprints import fingerprint, normalize
from tests.store_rows import save_reveal_round

WAIT = 20.0


@pytest.fixture
def node(tmp_path):
    sandbox = Sandbox(tmp_path / "consortium")
    sandbox.create(["lab-a", "lab-b"])
    lab = sandbox.labs["lab-a"].dir
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("account,email\nacct-1,one@actor.test\nacct-2,two@actor.test\n")
    run_cli("import", lab, accounts, "--entities")
    with Node(lab) as opened:
        yield opened


def matched(node: Node, rid: str, email: str) -> None:
    fp = fingerprint(node.consortium_key, "email", normalize("email", email))
    save_reveal_round(node.store, rid, "lab-b", [("email", fp)], stamp="2026-11-30T12:00:00Z")


def settled(node: Node) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if not cases_stale(node.store):
            return True
        time.sleep(0.05)
    return False


def test_a_round_wakes_it_and_a_store_it_cannot_read_is_one_line(node, caplog):
    refresher = CaseRefresher(node, settle=0.0)
    refresher.start()
    try:
        matched(node, "r1", "one@actor.test")
        refresher.observe("round_completed", {})
        assert settled(node)
        assert list_cases(node.store).total == 1
        # The store's file is moved away: the refresh cannot take its snapshot.
        path = node.paths.db
        moved = path.with_name("moved.db")
        matched(node, "r2", "two@actor.test")
        with caplog.at_level(logging.INFO, logger="crossmatch.cases"):
            path.rename(moved)
            try:
                refresher.observe("round_completed", {})
                deadline = time.monotonic() + WAIT
                while time.monotonic() < deadline and not any(
                    "case refresh failed" in r.getMessage() for r in caplog.records
                ):
                    time.sleep(0.05)
            finally:
                moved.rename(path)
        (failure,) = [r for r in caplog.records if "case refresh failed" in r.getMessage()]
        assert failure.levelno == logging.WARNING and failure.exc_info is None
        assert "moved or replaced" in failure.getMessage()
        # The next round's wake-up builds again, with both rounds in.
        refresher.observe("round_completed", {})
        assert settled(node)
        assert list_cases(node.store).total == 2
    finally:
        refresher.stop()
