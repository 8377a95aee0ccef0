"""build_collection: a sharded collection from a Ray Dataset, each shard built by a Ray task."""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Optional, Union

from densparse.analysis import Analyzer
from densparse.collection.collection import Collection
from densparse.distributed import manifest as mf
from densparse.distributed._ray import ray
from densparse.distributed.shards import crash_once_for_tests, shard_sizes

log = logging.getLogger("densparse.distributed")

SHARD_COLUMN = "__densparse_shard"
# Collection.create's settings a sharded collection passes to every shard.
_CREATE_KEYS = (
    "dense_dim",
    "bm25_method",
    "k1",
    "b",
    "delta",
    "dense_dtype",
    "metric",
    "sparse_dtype",
    "colbert_dim",
)


def _assign_shards(batch: Any, n_shards: int, id_column: str) -> Any:
    import pyarrow as pa

    ids = batch.column(id_column).to_pylist()
    shards = [mf.shard_of(i, n_shards) for i in ids]
    return batch.append_column(SHARD_COLUMN, pa.array(shards, type=pa.int32()))


def to_record(row: dict, id_column: str, text_column: str) -> dict:
    """A Collection record from a Dataset row: ``id``, ``text``, and when present
    ``views``, ``dense``, ``sparse`` (``{token id: weight}``) or ``sparse_indices`` +
    ``sparse_values``, ``colbert`` and ``metadata``."""
    rec: dict[str, Any] = {"id": row[id_column], "text": row[text_column]}
    for key in ("views", "dense", "colbert", "metadata"):
        if row.get(key) is not None:
            rec[key] = row[key]
    if row.get("sparse") is not None:
        rec["sparse"] = row["sparse"]
    elif row.get("sparse_indices") is not None:
        rec["sparse"] = (row["sparse_indices"], row["sparse_values"])
    if rec.get("metadata") is not None:
        # Arrow structs give every key of the column to every row: drop the absent ones.
        rec["metadata"] = {k: v for k, v in rec["metadata"].items() if v is not None}
    return rec


def _create_shard(target: Path, settings: dict, records: list[dict]) -> dict[str, int]:
    """Build one shard into a fresh directory, then rename it into place: a retried task
    replaces whatever an attempt that died left, so no document is lost or doubled."""
    from densparse.bm25 import _analyzer_from_config

    tmp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    kw = {k: settings[k] for k in _CREATE_KEYS if k in settings}
    analyzer = _analyzer_from_config(settings["analyzer"])
    records.sort(key=lambda r: r["id"])  # storage order = id order (ties break by id)
    with Collection.create(tmp, analyzer=analyzer, auto_merge=False, **kw) as col:
        if records:
            col.add(records, show_progress=False)
        crash_once_for_tests("build")  # mid-build: a dead attempt leaves a partial tmp dir
        col.merge(max_segments=1)
        sizes = shard_sizes(col)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return sizes


def _build_group(batch: Any, root: str, settings: dict, id_column: str, text_column: str) -> Any:
    import pyarrow as pa

    shard = int(batch.column(SHARD_COLUMN)[0].as_py())
    t0 = time.perf_counter()
    rows = batch.drop_columns([SHARD_COLUMN]).to_pylist()
    records = [to_record(r, id_column, text_column) for r in rows]
    sizes = _create_shard(Path(root) / mf.shard_name(shard), settings, records)
    log.info(
        "built %s: %d documents in %.1f s",
        mf.shard_name(shard),
        sizes["documents"],
        time.perf_counter() - t0,
    )
    return pa.table({"shard": [shard], **{k: [v] for k, v in sizes.items()}})


def build_collection(
    ds: Any,
    path: Union[str, os.PathLike],
    shards: int,
    *,
    analyzer: Optional[Analyzer] = None,
    dense_dim: Optional[int] = None,
    id_column: str = "id",
    text_column: str = "text",
    num_cpus: float = 1,
    max_retries: int = 3,
    **settings: Any,
) -> Path:
    """Build a sharded collection in ``path`` (new or empty) from the Ray Dataset ``ds``.

    Every row becomes a record of shard :func:`~densparse.distributed.manifest.shard_of`
    (its id): columns ``id``, ``text`` and optionally ``views``, ``dense``, ``sparse`` or
    ``sparse_indices`` + ``sparse_values`` (as :func:`densparse.distributed.encode` writes
    them), ``colbert``, ``metadata``. The rows are grouped by shard across the cluster and
    each shard is built by one Ray task (``num_cpus`` each, retried up to ``max_retries``
    times when its worker dies) as an ordinary :class:`densparse.Collection` under
    ``path/shard-NNNN``, written to a temporary directory and renamed into place. Then
    ``path/sharded.json`` names every shard with its documents, BM25 rows and tokens.

    ``path`` must be on storage every node can reach (a shared file system) for the
    shards to be found where the manifest is written.

    BM25 statistics are not frozen at build time: a search sums each shard's exact
    statistics for the query's tokens first (see :mod:`densparse.distributed.merge`), so
    the scores equal one index over the whole corpus, after adds and deletes too.

    Args:
        ds: a ``ray.data.Dataset`` of records.
        shards: the number of shards (fixed for the collection's life: ids hash to shards).
        analyzer, dense_dim, settings: as :meth:`densparse.Collection.create`
            (``bm25_method``, ``k1``, ``b``, ``delta``, ``dense_dtype``, ``metric``,
            ``sparse_dtype``, ``colbert_dim``).
        id_column, text_column: the columns holding ids and texts.

    Returns:
        ``path``, ready for :func:`densparse.distributed.open_sharded` or
        :class:`densparse.distributed.ShardedSearcher`. An id that appears twice fails
        its shard's task (Collection.add's ValueError).
    """
    r = ray()
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be an int >= 1, got {shards!r}")
    unknown = set(settings) - set(_CREATE_KEYS)
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}")
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty directory")
    analyzer = analyzer if analyzer is not None else Analyzer()
    if not isinstance(analyzer, Analyzer):
        raise TypeError(f"analyzer must be a densparse.Analyzer, not {type(analyzer).__name__}")
    acfg = dict(analyzer.config)
    if acfg.get("user_dict"):
        acfg["user_dict_text"] = Path(acfg["user_dict"]).read_text(encoding="utf-8")
    cfg = {"analyzer": acfg, "dense_dim": dense_dim, **settings}
    path.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log.info("building %d shards in %s", shards, path)
    assigned = ds.map_batches(
        _assign_shards,
        batch_format="pyarrow",
        fn_kwargs={"n_shards": shards, "id_column": id_column},
    )
    built = (
        assigned.groupby(SHARD_COLUMN, num_partitions=shards)
        .map_groups(
            _build_group,
            batch_format="pyarrow",
            fn_kwargs={
                "root": str(path.resolve()),
                "settings": cfg,
                "id_column": id_column,
                "text_column": text_column,
            },
            num_cpus=num_cpus,
            max_retries=max_retries,
        )
        .take_all()
    )
    del r
    got = {int(b["shard"]): b for b in built}
    for leftover in path.glob("shard-*.tmp-*"):  # what attempts that died had written
        shutil.rmtree(leftover, ignore_errors=True)
    entries = []
    for i in range(shards):
        if i not in got:  # no document hashed here: an empty shard
            sizes = _create_shard(path / mf.shard_name(i), cfg, [])
        else:
            sizes = {k: int(got[i][k]) for k in ("documents", "rows", "total_tokens")}
        entries.append({"name": mf.shard_name(i), **sizes})
    mf.write_manifest(path, entries, {"n_shards": shards, **cfg})
    log.info(
        "built %d documents in %d shards in %.1f s",
        sum(e["documents"] for e in entries),
        shards,
        time.perf_counter() - t0,
    )
    return path
