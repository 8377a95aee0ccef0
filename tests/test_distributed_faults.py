"""A worker killed in the middle of a shard build and a shard actor killed in the middle of
a search: Ray retries them, and the result has every document exactly once."""

from __future__ import annotations

import os

import pytest

from _distributed_util import (
    DIM,
    as_rows,
    assert_same,
    reference,
    synthetic_queries,
    synthetic_records,
)

ray = pytest.importorskip(
    "ray", reason="densparse.distributed needs Ray: pip install densparse[ray]"
)
pytest.importorskip("ray.data")

import densparse.distributed as dd  # noqa: E402
from densparse.distributed import manifest as mf  # noqa: E402
from densparse.distributed.shards import FAULT_ENV  # noqa: E402


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """A local Ray whose workers kill themselves once in a build task and once in a search."""
    marker = tmp_path_factory.mktemp("fault") / "kill"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {FAULT_ENV: str(marker)}},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield marker
    ray.shutdown()


def test_killed_build_and_search_are_retried(faulty, tmp_path) -> None:
    recs = synthetic_records(150, seed=11)
    ds = ray.data.from_items(as_rows(recs), override_num_blocks=3)
    path = dd.build_collection(ds, tmp_path / "s", shards=3, dense_dim=DIM, max_retries=3)
    assert os.path.exists(f"{faulty}.build")  # a build task did die
    m = mf.read_manifest(path)
    assert m["totals"]["documents"] == len(recs)
    assert not [p for p in os.listdir(path) if ".tmp-" in p]  # the dead attempt's files: gone
    ref = reference(tmp_path / "ref", recs)
    with dd.open_sharded(path, readonly=True) as sc:
        ids = [i for c in sc._group.shards.values() for i in c.ids()]
        assert sorted(ids) == sorted(r["id"] for r in recs)  # none missing, none twice
    queries = synthetic_queries(4, seed=12)
    with dd.ShardedSearcher(path, shards_per_actor=2, num_cpus=0.5, max_restarts=2) as s:
        pids = ray.get([a.pid.remote() for a in s.actors])
        for q in queries:
            got = s.search(q["text"], dense=q["dense"], sparse=q["sparse"], k=10)
            want = ref.search(q["text"], dense=q["dense"], sparse=q["sparse"], k=10)
            assert_same(got, want, "hybrid after an actor restart")
        assert os.path.exists(f"{faulty}.search")  # an actor did die mid-search...
        assert ray.get([a.pid.remote() for a in s.actors]) != pids  # ...and was restarted
