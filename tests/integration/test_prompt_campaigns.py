"""Issue 4's done-when: two labs holding different samples of the same campaigns (no prompt
text in common) plus disjoint background prompts find those campaigns as shared, and no
background prompt is reported."""

from __future__ import annotations

import json

from bench.prompt_campaigns import generate
from node.demo.sandbox import run_cli
from node.state.store import Store
from tests.integration.conftest import audit_ok


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_shared_campaign_found_and_background_not_reported(pair, tmp_path):
    a, b = pair.labs["lab-a"], pair.labs["lab-b"]
    # Same campaign templates (campaign_seed), different samples, accounts and background.
    records_a = generate(1, 3, 40, 250, campaign_seed=7)
    records_b = generate(2, 3, 40, 250, campaign_seed=7)
    assert not {r["text"] for r in records_a} & {r["text"] for r in records_b}
    run_cli("import", a.dir, write_jsonl(tmp_path / "a.jsonl", records_a), "--kind", "prompt")
    run_cli("import", b.dir, write_jsonl(tmp_path / "b.jsonl", records_b), "--kind", "prompt")

    out = run_cli("round", a.dir, "--peer", "lab-b", "--kinds", "prompt", "--json")
    summary = json.loads(out.stdout)
    assert summary["intersection_sizes"]["prompt"] > 0
    campaigns_truth = {r["campaign"] for r in records_a if r["campaign"]}
    for lab in (a, b):
        report = json.loads(
            run_cli(
                "matches",
                lab.dir,
                "--kind",
                "prompt",
                "--round",
                summary["round_id"],
                "--format",
                "json",
            ).stdout
        )
        found = report["campaigns"]
        labels = {label for c in found for label in c["labels"]}
        assert labels == campaigns_truth, lab.name
        # Every reported prompt is a campaign prompt: no background prompt is reported.
        assert all(c["unlabelled"] == 0 for c in found), found
        assert all(c["prompts"] >= 2 and c["accounts"] >= 1 and c["examples"] for c in found)
        # Examples are this lab's own prompts, never the peer's.
        own = {r["text"] for r in (records_a if lab is a else records_b)}
        flat = {" ".join(t.split()) for t in own}
        for c in found:
            for ex in c["examples"]:
                assert ex.rstrip("…") and any(f.startswith(ex.rstrip("…")) for f in flat)
    text = run_cli("matches", a.dir, "--kind", "prompt", "--round", summary["round_id"]).stdout
    assert "shared campaign(s)" in text and "e.g." in text
    audit_ok(a.dir)
    audit_ok(b.dir)


def test_bad_prompt_lines_are_reported_and_nothing_is_imported(pair, tmp_path):
    a = pair.labs["lab-a"]

    def held():
        with Store(a.paths.db) as store:
            return store.prompt_count(), store.signal_counts().get("prompt", 0)

    before = held()
    lines = [
        json.dumps({"text": "Solve this math problem step by step and explain each step"}),
        json.dumps({"text": ""}),
        json.dumps({"prompt": "no text field here"}),
        "\xff not json",
        json.dumps({"text": "x" * (1 << 20)}),
        json.dumps({"text": "binary \x00 inside"}),
    ]
    f = tmp_path / "bad.jsonl"
    f.write_bytes(
        ("\n".join(lines) + "\n")
        .encode("utf-8", "surrogateescape")
        .replace("\xff".encode(), b"\xff")
    )
    proc = run_cli("import", a.dir, f, "--kind", "prompt", check=False)
    assert proc.returncode == 65, proc.stderr
    for line in (2, 3, 4, 5, 6):
        assert f"bad.jsonl:{line}:" in proc.stderr, proc.stderr
    assert "bad.jsonl:1:" not in proc.stderr.split("\n", 1)[1]
    assert "nothing was imported" in proc.stderr
    assert "x" * 100 not in proc.stderr  # never echoes the prompt
    assert held() == before
