"""The cases benchmark's small variant (not timed): its data form the clusters it claims."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.cases_bench import CASE_KEY, KEY, longest_wait, store_matches, write_files
from node.data.case_build import recompute
from node.data.cases import list_cases
from node.data.entities import import_entities
from node.state.store import Store


def test_small_bench_builds_clusters_of_eight(tmp_path):
    entities_csv, _ = write_files(tmp_path, 400)
    with Store(tmp_path / "b.db") as store:
        result = import_entities(store, entities_csv, KEY)
        assert result.entities_added == 400
        assert sum(r.added for r in result.signals.values()) == 400 * 4 + 100
        store_matches(store, 400, 40)
        report = recompute(
            store, CASE_KEY, now=datetime(2026, 11, 30, 13, tzinfo=UTC), retention_days=90
        )
        page = list_cases(store, per_page=1000)
        assert report.cases == page.total <= 40
        assert all(c.entities == 8 for c in page.cases)
        # The repeat round's refresh rebuilds the same clusters, with both rounds in.
        store_matches(store, 400, 40, rid="bench-round-2", stamp="12:30")
        again, waited = longest_wait(
            store,
            lambda: recompute(
                store, CASE_KEY, now=datetime(2026, 11, 30, 13, tzinfo=UTC), retention_days=90
            ),
        )
        assert not again.reclustered and again.clusters == report.cases and waited >= 0
        assert {c.rounds for c in list_cases(store, per_page=1000).cases} == {2}
