"""ShardedSearcher: the shards of a sharded collection served from Ray actors, and
``search``: batch search of a Ray Dataset of queries against them."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from densparse.collection.collection import Hit
from densparse.distributed import manifest as mf
from densparse.distributed._ray import ray
from densparse.distributed.merge import search_batch
from densparse.distributed.shards import ShardGroup, update_manifest

log = logging.getLogger("densparse.distributed")


class _ShardActor:
    """A Ray actor holding a ShardGroup (its shards opened, memory-mapped, once)."""

    def __init__(self, path: str, indices: list[int], n_shards: int, readonly: bool) -> None:
        logging.basicConfig(level=logging.INFO)
        self.group = ShardGroup(path, indices, n_shards, readonly=readonly)

    def statistics(self, texts):
        return self.group.statistics(texts)

    def route_hits(self, queries, stats, n, routes, filter=None):
        return self.group.route_hits(queries, stats, n, routes, filter)

    def records(self, ids):
        return self.group.records(ids)

    def write(self, op, items):
        return self.group.write(op, items)

    def missing(self, ids):
        return self.group.missing(ids)

    def sizes(self):
        return self.group.sizes()

    def close(self) -> None:
        self.group.close()

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        return ray().get_runtime_context().get_node_id()


class ShardedSearcher:
    """Serve a sharded collection from Ray actors, ``shards_per_actor`` shards each.

    Each actor opens its shards once (memory-mapped) and answers two kinds of tiny calls per
    batch of queries: BM25 statistics of the query tokens, then per-route top-n lists scored
    with the summed statistics; this process merges and fuses them, so results equal one
    :class:`densparse.Collection` holding every document. An actor that dies is restarted
    (``max_restarts``) and its calls retried (``max_task_retries``): it reopens its shards
    from disk. With ``readonly=False`` the actors hold the shards' writer locks and
    :meth:`add`, :meth:`upsert` and :meth:`delete` go to the actor that owns each id.

    Args:
        path: the sharded collection (on storage the actors' nodes can read).
        shards_per_actor: shards served by each actor.
        num_cpus: CPUs Ray reserves per actor, for its whole life: leave some free for the
            Dataset tasks of :func:`search` and for writing its result.
        readonly: open the shards without writer locks (no writes through this searcher).
        max_restarts, max_task_retries: Ray fault tolerance of the actors.
        start_timeout_s: how long to wait for every actor to be up (TimeoutError after,
            typically when the cluster lacks ``num_cpus`` for each of them).
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        shards_per_actor: int = 1,
        *,
        num_cpus: float = 1,
        readonly: bool = True,
        max_restarts: int = 3,
        max_task_retries: int = 3,
        start_timeout_s: float = 300,
    ) -> None:
        r = ray()
        self.path = Path(path).resolve()
        self.manifest = mf.read_manifest(self.path)
        n = len(self.manifest["shards"])
        if isinstance(shards_per_actor, bool) or not isinstance(shards_per_actor, int):
            raise TypeError("shards_per_actor must be an int")
        if shards_per_actor < 1:
            raise ValueError(f"shards_per_actor must be >= 1, got {shards_per_actor}")
        self.n_shards = n
        self.readonly = readonly
        cls = r.remote(_ShardActor).options(
            num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=max_task_retries
        )
        self.assignment = [
            list(range(i, min(i + shards_per_actor, n))) for i in range(0, n, shards_per_actor)
        ]
        self.actors = [cls.remote(str(self.path), ix, n, readonly) for ix in self.assignment]
        self._owner = {s: a for a, ix in zip(self.actors, self.assignment) for s in ix}
        try:  # wait until every actor is up
            r.get([a.sizes.remote() for a in self.actors], timeout=start_timeout_s)
        except r.exceptions.GetTimeoutError:
            self.close()
            raise TimeoutError(
                f"{len(self.assignment)} shard actors of {num_cpus} CPU(s) each did not start "
                f"within {start_timeout_s} s: does the cluster have the CPUs free?"
            ) from None
        log.info("serving %d shards of %s from %d actors", n, self.path, len(self.actors))

    def search_many(self, queries: Sequence[Any], k: int = 10, **kw: Any) -> list[list[Hit]]:
        """Search a batch of queries (str, or mappings with ``text`` / ``dense`` /
        ``sparse``) in two rounds over the actors; keywords as :meth:`search`."""
        res = search_queries(self.actors, queries, k, **kw)
        r = ray()
        ids = {i for q in res for i, _, _ in q}
        by_actor: dict[int, list[str]] = {}
        for i in ids:
            by_actor.setdefault(id(self._owner[mf.shard_of(i, self.n_shards)]), []).append(i)
        recs: dict[str, dict] = {}
        for got in r.get([a.records.remote(by_actor.get(id(a), [])) for a in self.actors]):
            recs.update(got)
        return [
            [Hit(i, s, rs, recs[i]["text"], recs[i]["metadata"]) for i, s, rs in q] for q in res
        ]

    def search(
        self,
        text: Optional[str] = None,
        dense: Optional[Any] = None,
        sparse: Optional[Any] = None,
        k: int = 10,
        mode: str = "hybrid",
        **kw: Any,
    ) -> list[Hit]:
        """One query, synchronously (for services): arguments as
        :meth:`densparse.Collection.search` (``fusion``, ``weights``, ``filter``,
        ``candidates``, ``rrf_k``, ``normalization``; no ColBERT or rerank)."""
        q = {"text": text, "dense": dense, "sparse": sparse}
        return self.search_many([q], k, mode=mode, **kw)[0]

    def _write(self, op: str, items: list) -> None:
        r = ray()
        by_actor: dict[int, list] = {}
        for it in items:
            if op != "delete" and not isinstance(it, Mapping):
                raise TypeError(f"a record must be a mapping, not {type(it).__name__}")
            doc_id = it if op == "delete" else it.get("id")
            by_actor.setdefault(id(self._owner[mf.shard_of(doc_id, self.n_shards)]), []).append(it)
        if op == "delete":  # an unknown id deletes nothing anywhere, as Collection.delete
            missing = [
                m
                for got in r.get([a.missing.remote(by_actor.get(id(a), [])) for a in self.actors])
                for m in got
            ]
            if missing:
                raise KeyError(f"unknown id(s): {', '.join(repr(u) for u in missing[:5])}")
        sizes: dict[int, dict] = {}
        calls = [a.write.remote(op, by_actor[id(a)]) for a in self.actors if id(a) in by_actor]
        for got in r.get(calls):
            sizes.update(got)
        self.manifest = update_manifest(self.path, self.manifest, sizes)

    def add(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Add records, each to the actor serving the shard that owns its id."""
        self._write("add", list(records))

    def upsert(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Add records, replacing those whose id is already there."""
        self._write("upsert", list(records))

    def delete(self, ids: Union[str, Sequence[str]]) -> None:
        """Delete documents by id; an unknown id raises KeyError and deletes nothing."""
        self._write("delete", [ids] if isinstance(ids, str) else list(ids))

    def close(self) -> None:
        """Close the shards (releasing writer locks before this returns), stop the actors."""
        r = ray()
        # ray.kill is asynchronous: close first, so the locks are free when this returns
        with contextlib.suppress(Exception):
            r.get([a.close.remote() for a in self.actors], timeout=60)
        for a in self.actors:
            r.kill(a, no_restart=True)
        self.actors = []

    def __enter__(self) -> ShardedSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def search_queries(actors: Sequence[Any], queries: Sequence[Any], k: int, **kw: Any) -> list:
    """Two rounds over shard actors: statistics, then per-route lists; merged and fused."""
    r = ray()

    def stats_fn(texts):
        return r.get([a.statistics.remote(texts) for a in actors])

    def hits_fn(qs, stats, n, routes, filter):
        return r.get([a.route_hits.remote(qs, stats, n, routes, filter) for a in actors])

    return search_batch(stats_fn, hits_fn, queries, k, **kw)


def _search_batch(batch: Any, actors: list, id_column: str, k: int, kw: dict) -> Any:
    import pyarrow as pa

    rows = batch.to_pylist()
    res = search_queries(actors, rows, k, **kw)
    return pa.table(
        {
            "query_id": [row[id_column] for row in rows],
            "ids": pa.array([[i for i, _, _ in q] for q in res], type=pa.list_(pa.string())),
            "scores": pa.array([[s for _, s, _ in q] for q in res], type=pa.list_(pa.float32())),
        }
    )


def search(
    sharded: Union[ShardedSearcher, str, os.PathLike],
    queries: Any,
    k: int = 10,
    mode: str = "hybrid",
    *,
    id_column: str = "id",
    batch_size: int = 256,
    concurrency: int = 1,
    shards_per_actor: int = 1,
    num_cpus: float = 1,
    **kw: Any,
) -> Any:
    """Batch search: a Ray Dataset of ``(query_id, ids, scores)`` rows, best first.

    ``queries`` is a Ray Dataset with an id column, and ``text`` and / or ``dense``,
    ``sparse_indices`` + ``sparse_values`` (as :func:`densparse.distributed.encode` writes
    them for ``query=True``). Each batch of ``batch_size`` queries asks every shard actor for
    BM25 statistics, then for its per-route top lists, and merges and fuses them exactly
    (:mod:`densparse.distributed.merge`). ``kw``: ``fusion``, ``weights``, ``filter``,
    ``candidates``, ``rrf_k``, ``normalization`` as :meth:`densparse.Collection.search`.

    ``sharded``: a :class:`ShardedSearcher` (the Dataset is lazy and uses its actors), or a
    path: then a read-only searcher with ``shards_per_actor`` (``num_cpus`` per actor) and
    ``concurrency`` tasks merging batches is started, the result
    materialised and the actors stopped before this returns.
    """
    r = ray()
    own = not isinstance(sharded, ShardedSearcher)
    searcher = ShardedSearcher(sharded, shards_per_actor, num_cpus=num_cpus) if own else sharded
    try:
        out = queries.map_batches(
            _search_batch,
            batch_format="pyarrow",
            batch_size=batch_size,
            fn_kwargs={
                "actors": searcher.actors,
                "id_column": id_column,
                "k": k,
                "kw": {**kw, "mode": mode},
            },
            num_cpus=0.1,  # the caller only merges: the actors do the scoring
            compute=r.data.TaskPoolStrategy(size=concurrency),
        )
        if own:
            out = out.materialize()
    finally:
        if own:
            searcher.close()
    return out
