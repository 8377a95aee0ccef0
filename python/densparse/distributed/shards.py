"""Shards opened in one process: a ShardGroup serves some shards (inside a Ray actor, or
all of them on one machine), and ShardedCollection is the whole sharded collection opened
locally, with the same search as :class:`densparse.Collection`."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from densparse.collection.collection import Collection, Hit
from densparse.distributed import manifest as mf
from densparse.distributed.merge import Query, RouteHits, Stats, search_batch, shard_route

log = logging.getLogger("densparse.distributed")

#: Test hook: a path prefix in this environment variable makes the first build task and the
#: first shard search that find no ``PREFIX.build`` / ``PREFIX.search`` file create it and
#: kill their own process (SIGKILL), so tests can show that Ray retries the work.
FAULT_ENV = "DENSPARSE_TEST_KILL_ONCE"


def crash_once_for_tests(stage: str) -> None:
    """Kill this process the first time ``stage`` runs when :data:`FAULT_ENV` is set."""
    prefix = os.environ.get(FAULT_ENV)
    if not prefix:
        return
    try:
        fd = os.open(f"{prefix}.{stage}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    log.warning("test fault: killing process %d in %s", os.getpid(), stage)
    os.kill(os.getpid(), signal.SIGKILL)


def shard_sizes(col: Collection) -> dict[str, int]:
    rows, total, _ = col.bm25_statistics([])
    return {"documents": len(col), "rows": rows, "total_tokens": total}


class ShardGroup:
    """Some shards of a sharded collection, each an open :class:`densparse.Collection`."""

    def __init__(
        self,
        path: Union[str, os.PathLike],
        indices: Sequence[int],
        n_shards: int,
        readonly: bool = True,
        mmap: bool = True,
    ) -> None:
        self.path = Path(path)
        self.n_shards = n_shards
        self.shards: dict[int, Collection] = {}
        try:
            for i in indices:
                self.shards[i] = Collection.open(
                    self.path / mf.shard_name(i), readonly=readonly, mmap=mmap, encoder=None
                )
        except BaseException:
            self.close()
            raise
        log.info("opened shards %s of %s", list(self.shards), self.path)

    def close(self) -> None:
        for c in self.shards.values():
            c.close()
        self.shards = {}

    def statistics(self, texts: Sequence[Optional[str]]) -> list[Optional[Stats]]:
        """Per query: BM25 statistics summed over this group's shards (None for None)."""
        out: list[Optional[Stats]] = []
        for t in texts:
            if t is None:
                out.append(None)
                continue
            rows, total, df = 0, 0, {}
            for c in self.shards.values():
                r, n, d = c.bm25_statistics(t)
                rows, total = rows + r, total + n
                for tok, v in d.items():
                    df[tok] = df.get(tok, 0) + v
            out.append((rows, total, df))
        return out

    def route_hits(
        self,
        queries: Sequence[Query],
        stats: Sequence[Optional[Stats]],
        n: int,
        routes: Sequence[Sequence[str]],
        filter: Optional[Any] = None,
    ) -> list[dict[str, RouteHits]]:
        """Per query and route, the best ``n`` of this group's shards (global BM25 stats)."""
        crash_once_for_tests("search")
        out = []
        for q, st, rs in zip(queries, stats, routes):
            got: dict[str, RouteHits] = {}
            for r in rs:
                lists = []
                for c in self.shards.values():
                    if len(c) == 0 or (r == "bm25" and (st is None or st[0] < 1)):
                        continue
                    kw: dict[str, Any] = {"mode": r, "filter": filter}
                    if r == "bm25":
                        kw.update(text=q.text, bm25_stats=st)
                    elif r == "dense":
                        kw["dense"] = q.dense
                    else:
                        kw["sparse"] = q.sparse

                    def run(kr: int, c: Collection = c, kw: dict = kw) -> list[Hit]:
                        return c.search(k=kr, candidates=kr, **kw)

                    lists.append(shard_route(run, n))
                merged = [h for lst in lists for h in lst]
                merged.sort(key=lambda h: (-h[0], h[1]))
                got[r] = merged[:n]
            out.append(got)
        return out

    def records(self, ids: Iterable[str]) -> dict[str, dict]:
        """``{id: {"text", "metadata"}}`` for the ids these shards hold."""
        out = {}
        for i in ids:
            c = self.shards.get(mf.shard_of(i, self.n_shards))
            if c is not None and i in c:
                rec = c.get(i)
                out[i] = {"text": rec["text"], "metadata": rec.get("metadata", {})}
        return out

    def write(self, op: str, items: Sequence[Any]) -> dict[int, dict[str, int]]:
        """``add`` / ``upsert`` records or ``delete`` ids; every item must belong to one of
        this group's shards. Returns the new sizes of the shards written."""
        if op == "delete":
            unknown = self.missing(items)
            if unknown:
                raise KeyError(f"unknown id(s): {', '.join(repr(u) for u in unknown[:5])}")
        by_shard: dict[int, list] = {}
        for it in items:
            if op != "delete" and not isinstance(it, Mapping):
                raise TypeError(f"a record must be a mapping, not {type(it).__name__}")
            doc_id = it if op == "delete" else it.get("id")
            s = mf.shard_of(doc_id, self.n_shards)
            if s not in self.shards:
                raise ValueError(f"document {doc_id!r} belongs to shard {s}, not this group")
            by_shard.setdefault(s, []).append(it)
        for s, batch in by_shard.items():
            getattr(self.shards[s], op)(batch)
        return {s: shard_sizes(self.shards[s]) for s in by_shard}

    def missing(self, ids: Sequence[Any]) -> list[Any]:
        """The ids, among those these shards own, that are not there."""
        out = []
        for i in ids:
            if not isinstance(i, str):
                raise TypeError(f"document ids must be str, not {type(i).__name__}")
            c = self.shards.get(mf.shard_of(i, self.n_shards))
            if c is not None and i not in c:
                out.append(i)
        return out

    def sizes(self) -> dict[int, dict[str, int]]:
        return {s: shard_sizes(c) for s, c in self.shards.items()}


class ShardedCollection:
    """A sharded collection opened on one machine: every shard in this process.

    Searches give the same ids and scores as one :class:`densparse.Collection` holding all
    documents (BM25 with collection-wide statistics; see :mod:`densparse.distributed.merge`
    for the order of equal scores). Adds, upserts and deletes go to the shard that owns each
    id and update the manifest. Open with :meth:`open` (or
    :func:`densparse.distributed.open_sharded`); serve from a Ray cluster with
    :class:`densparse.distributed.ShardedSearcher`.
    """

    def __init__(self, path: Path, manifest: dict, group: ShardGroup) -> None:
        self.path = path
        self.manifest = manifest
        self._group = group

    @classmethod
    def open(
        cls, path: Union[str, os.PathLike], *, readonly: bool = False, mmap: bool = True
    ) -> ShardedCollection:
        """Open every shard of the sharded collection in ``path`` (``readonly=True`` takes
        no writer locks, so other processes may write)."""
        path = Path(path)
        m = mf.read_manifest(path)
        n = len(m["shards"])
        return cls(path, m, ShardGroup(path, range(n), n, readonly=readonly, mmap=mmap))

    @property
    def n_shards(self) -> int:
        return len(self.manifest["shards"])

    def __len__(self) -> int:
        return sum(len(c) for c in self._group.shards.values())

    def __contains__(self, doc_id: object) -> bool:
        if not isinstance(doc_id, str):
            return False
        return doc_id in self._group.shards[mf.shard_of(doc_id, self.n_shards)]

    def get(self, doc_id: str) -> dict:
        """The stored record of ``doc_id`` (KeyError when unknown)."""
        return self._group.shards[mf.shard_of(doc_id, self.n_shards)].get(doc_id)

    def bm25_statistics(self, query: Union[str, Sequence[str]]) -> Stats:
        """Exact BM25 statistics of the whole sharded collection for ``query`` (see
        :meth:`densparse.Collection.bm25_statistics`)."""
        rows, total, df = 0, 0, {}
        for c in self._group.shards.values():
            r, n, d = c.bm25_statistics(query)
            rows, total = rows + r, total + n
            for t, v in d.items():
                df[t] = df.get(t, 0) + v
        return rows, total, df

    def search_many(self, queries: Sequence[Any], k: int = 10, **kw: Any) -> list[list[Hit]]:
        """Search several queries (str, or mappings with ``text`` / ``dense`` / ``sparse``);
        keywords as :meth:`search`."""
        g = self._group
        res = search_batch(
            lambda texts: [g.statistics(texts)],
            lambda *a: [g.route_hits(*a)],
            queries,
            k,
            **kw,
        )
        ids = {i for r in res for i, _, _ in r}
        recs = g.records(ids)
        return [
            [Hit(i, s, rs, recs[i]["text"], recs[i]["metadata"]) for i, s, rs in r] for r in res
        ]

    def search(
        self,
        text: Optional[str] = None,
        dense: Optional[Any] = None,
        sparse: Optional[Any] = None,
        k: int = 10,
        mode: str = "hybrid",
        fusion: str = "rrf",
        weights: Optional[Mapping[str, float]] = None,
        filter: Optional[Any] = None,
        candidates: int = 100,
        rrf_k: float = 60,
        normalization: str = "minmax",
    ) -> list[Hit]:
        """Exact top-k over all shards; arguments as :meth:`densparse.Collection.search`
        (no ColBERT or rerank here)."""
        q = {"text": text, "dense": dense, "sparse": sparse}
        return self.search_many(
            [q],
            k,
            mode=mode,
            fusion=fusion,
            weights=weights,
            filter=filter,
            candidates=candidates,
            rrf_k=rrf_k,
            normalization=normalization,
        )[0]

    def _write(self, op: str, items: Sequence[Any]) -> None:
        self._group.write(op, list(items))
        self.manifest = update_manifest(self.path, self.manifest, self._group.sizes())

    def add(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Add records (ids new to the collection), each to the shard that owns its id."""
        self._write("add", records)

    def upsert(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Add records, replacing those whose id is already there."""
        self._write("upsert", records)

    def delete(self, ids: Union[str, Sequence[str]]) -> None:
        """Delete documents by id; an unknown id raises KeyError and deletes nothing."""
        self._write("delete", [ids] if isinstance(ids, str) else ids)

    def close(self) -> None:
        self._group.close()

    def __enter__(self) -> ShardedCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShardedCollection({str(self.path)!r}, shards={self.n_shards})"


def update_manifest(path: Path, m: dict, sizes: Mapping[int, Mapping[str, int]]) -> dict:
    """The manifest with new sizes for some shards, written atomically."""
    shards = [dict(s) for s in m["shards"]]
    for i, sz in sizes.items():
        shards[i].update({k: int(v) for k, v in sz.items()})
    return mf.write_manifest(path, shards, m["config"])


def open_sharded(
    path: Union[str, os.PathLike], *, readonly: bool = False, mmap: bool = True
) -> ShardedCollection:
    """Open the sharded collection in ``path`` on this machine (every shard in this process)."""
    return ShardedCollection.open(path, readonly=readonly, mmap=mmap)
