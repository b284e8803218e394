"""The wire fuzzer runs against a real served node for about a minute and finds nothing:
the node keeps serving, its memory stays bounded, its log verifies, an honest round
completes afterwards (bench/fuzz_wire.py; the 30-minute figures are in docs/reliability.md)."""

from __future__ import annotations

import pytest

from bench import fuzz_wire


@pytest.mark.slow
def test_fuzz_wire_for_a_minute(tmp_path, capsys):
    assert (
        fuzz_wire.main(
            ["--minutes", "1", "--verify-every", "100", "--keep", str(tmp_path / "fuzz")]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "0 crashes" in out and "an honest round completed" in out
