"""The suite in the signed policy, per-suite epoch keys, and loading a suite at start-up."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node.cli.policy import template
from node.ops.suites import check_temp_dir, ensure_suite
from node.state.epochs import CACHE_FILE, EpochStore, key_name
from protocol.errors import ConfigError, InputError, PolicyError
from protocol.policy import DEFAULT_POLICY
from protocol.policy_document import parse_policy_toml
from protocol.suites import DEFAULT_SUITE, SUITES
from protocol.suites import ristretto255 as r255
from tests.unit.test_policy import BASE

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def with_suite(extra: str) -> str:
    head, kinds = BASE.split("[kinds.email]")
    return f"{head}{extra}\n[kinds.email]{kinds}"


def test_a_policy_without_a_suite_keeps_its_hash_and_the_original_suite():
    plain = parse_policy_toml(BASE)
    assert plain.suite == DEFAULT_SUITE and not plain.verified_matches
    explicit = parse_policy_toml(with_suite(f'suite = "{DEFAULT_SUITE}"'))
    assert explicit.hash() == plain.hash()  # policies signed before suites still hash the same
    assert "suite" not in DEFAULT_POLICY.to_dict()


def test_ristretto_verifies_matches_by_default_and_the_switch_is_hashed():
    on = parse_policy_toml(with_suite('suite = "ristretto255-v1"'))
    off = parse_policy_toml(with_suite('suite = "ristretto255-v1"\nverified_matches = false'))
    assert on.verified_matches and not off.verified_matches
    assert len({on.hash(), off.hash(), parse_policy_toml(BASE).hash()}) == 3
    assert parse_policy_toml(template(datetime.now(UTC))).suite == "ristretto255-v1"


@pytest.mark.parametrize(
    "extra, message",
    [
        ('suite = "x25519-v1"', "suite must be one of"),
        ("suite = 7", "suite must be one of"),
        ('suite = "ristretto255-v1"\nverified_matches = "yes"', "true or false"),
        (f'suite = "{DEFAULT_SUITE}"\nverified_matches = true', "needs a suite with proofs"),
    ],
)
def test_bad_suite_settings_are_named(extra, message):
    with pytest.raises(InputError, match=message) as e:
        parse_policy_toml(with_suite(extra))
    assert e.value.rule == "policy-syntax"


def test_a_round_on_another_suite_is_refused_by_rule():
    policy = parse_policy_toml(with_suite('suite = "ristretto255-v1"'))
    policy.check_suite("ristretto255-v1")
    with pytest.raises(PolicyError) as e:
        policy.check_suite(DEFAULT_SUITE)
    assert e.value.rule == "suite-policy"


def test_epoch_keys_are_per_suite_and_valid_for_it(tmp_path):
    with EpochStore(tmp_path / CACHE_FILE, epoch=timedelta(days=7)) as epochs:
        p = epochs.current("lab-b", T0)
        r = epochs.current("lab-b", T0, suite=r255.NAME)
        assert p.key_id != r.key_id and p.psi_key != r.psi_key
        SUITES[r255.NAME].check_key(r.psi_key)
        SUITES[DEFAULT_SUITE].check_key(p.psi_key)
        assert epochs.current("lab-b", T0 + timedelta(days=1), suite=r255.NAME) == r
        assert epochs.current("lab-bb", T0, suite=r255.NAME).key_id != r.key_id
        assert epochs.forget("lab-b")  # every suite's key of that peer, no other peer's
        assert epochs.current("lab-b", T0, suite=r255.NAME).key_id != r.key_id
    assert key_name("lab-b", DEFAULT_SUITE) == "lab-b"


def test_a_key_of_one_suite_is_never_used_for_another(tmp_path):
    # A P-256 key stored under a ristretto name (a damaged or hand-edited file) is refused.
    import sqlite3

    with EpochStore(tmp_path / CACHE_FILE, epoch=timedelta(days=7)) as epochs:
        epochs.current("lab-b", T0, suite=r255.NAME)
    db = sqlite3.connect(tmp_path / CACHE_FILE)
    db.execute("UPDATE epoch_keys SET psi_key = ?", (b"\xff" * 32,))
    db.commit()
    db.close()
    with EpochStore(tmp_path / CACHE_FILE, epoch=timedelta(days=7)) as epochs:
        with pytest.raises(ConfigError, match="damaged"):
            epochs.current("lab-b", T0, suite=r255.NAME)


def test_suites_load_and_self_test_and_leave_no_library_copy():
    before = {f for f in os.listdir(check_temp_dir()) if f.endswith(".so")}
    for name in SUITES:
        assert ensure_suite(name).name == name
    lib_copy = r255.sodium()._sodium._name
    assert not os.path.exists(lib_copy)
    assert {f for f in os.listdir(check_temp_dir()) if f.endswith(".so")} <= before


def test_an_unusable_temp_dir_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        check_temp_dir(Path(tmp_path / "missing"))
    assert e.value.rule == "suite-unavailable"
    assert "TMPDIR" in e.value.diagnostics() and "\n" not in e.value.diagnostics()
    assert check_temp_dir(tmp_path) == tmp_path


def test_proven_pairs_are_kept_per_key_and_a_version_1_file_is_upgraded(tmp_path):
    import sqlite3

    from protocol.psi import TableSource

    path = tmp_path / CACHE_FILE
    with EpochStore(path, epoch=timedelta(days=7)) as epochs:
        key = epochs.current("lab-b", T0, suite=r255.NAME)
    db = sqlite3.connect(path)  # make it a file of the version before proven pairs
    db.execute("DROP TABLE epoch_verified")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    pairs = TableSource(bytes(range(32)) * 2, 32, b"\x07" * 64, 32)
    with EpochStore(path, epoch=timedelta(days=7)) as epochs:
        assert epochs.current("lab-b", T0, suite=r255.NAME) == key  # keys survive
        assert epochs.load_verified(key) is None
        assert epochs.save_verified(key, b"K" * 32, pairs, T0)
        peer_key, table = epochs.load_verified(key)
        assert peer_key == b"K" * 32 and len(table) == 2
        epochs.forget("lab-b")  # with its key go its proven pairs
        assert epochs.load_verified(key) is None
        assert not epochs.save_verified(key, b"K" * 32, pairs, T0)  # no longer current
