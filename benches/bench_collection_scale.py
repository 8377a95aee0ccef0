#!/usr/bin/env python3
"""Collection at scale: N synthetic chunk records in densparse, LanceDB and milvus-lite.

Records: text of 30-90 words drawn from a Zipfian vocabulary (s = 1) of pseudo-words (each one
its own token under every engine's analysis: no stemming or stopword differences),
a 384-d random unit vector, metadata ``bucket`` (int 0-9) and ``year`` (int 1990-2024). Every
engine gets the same records, in the same batches, and the same queries (2-5 words from the
vocabulary minus its 20 most frequent words, and a random unit vector).

Each engine, one after the other (only one open at a time):

* ingest: batches of ``--batch`` records, each call durable where the engine offers it, then
  whatever the engine needs before it can search (LanceDB builds its FTS index, milvus-lite
  flushes); docs/s over the whole;
* merge to one segment: densparse ``merge(max_segments=1)``, LanceDB ``optimize()`` (compaction
  into one fragment, old versions removed), milvus-lite ``compact()``; disk bytes per record
  after it;
* open in a fresh process (a subprocess, several times): seconds to open and RSS growth (the
  process and its children: milvus-lite serves gRPC from a thread), then the first hybrid
  query and the RSS after it (LanceDB and milvus-lite read lazily, so open alone says little);
* search latency p50/p99, one query per call, k = 10: BM25, dense (exact, flat: no ANN index in
  any engine), hybrid RRF (k = 60) over 100 candidates per route, and the same hybrid with the
  filter ``bucket in [1, 2, 3] and year >= 2010`` (about 13% of the records) applied before
  top-k in both routes;
* agreement: top-10 ids of densparse against each peer for the first queries (dense exact
  search must agree; BM25 scores use k1 = 1.2, b = 0.75 everywhere, so it should mostly agree),
  and every filtered hit checked against the filter.

    python3 benches/bench_collection_scale.py --n 100000
    python3 benches/bench_collection_scale.py --n 1000000 --budget-s 30 --warmup 3 --open-reps 1
    python3 benches/bench_collection_scale.py --n 10000000 --dense-dtype int8 --engines densparse
    python3 benches/bench_collection_scale.py --quick          # smoke test, 5,000 records

Peers that are not installed (``pip install lancedb "pymilvus[milvus_lite]"``, the ``bench``
extra) are skipped and said so in the results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    densparse,
    fmt_num,
    fmt_ratio,
    git_commit,
    latency_row,
    log,
    machine_info,
    md_table,
    package_versions,
    run_header,
    set_log_name,
    time_each,
    unit_rows,
    write_results,
)

set_log_name("bench_collection_scale")
# LanceDB logs a deprecation warning per query (the `_score` column) and warns about
# create_fts_index / optimize(cleanup_older_than=0): none of it matters here.
os.environ.setdefault("LANCE_LOG", "error")
warnings.filterwarnings("ignore", message=".*create_fts_index is deprecated.*")
warnings.filterwarnings("ignore", message=r".*optimize\(cleanup_older_than=0\).*")
DIM = 384
VOCAB = 50_000
ZIPF_S = 1.0
WORDS = (30, 90)
YEARS = (1990, 2024)
RRF_K = 60
FILTER_DS = {"bucket": {"$in": [1, 2, 3]}, "year": {"$gte": 2010}}
FILTER_MILVUS = "bucket in [1, 2, 3] and year >= 2010"
FILTER_LANCE = "bucket IN (1, 2, 3) AND year >= 2010"
# Same BM25 everywhere: LanceDB's FTS has k1 = 1.2, b = 0.75 built in.
K1, B = 1.2, 0.75
MODES = ("bm25", "dense", "hybrid", "hybrid+filter")
ENGINES = ("densparse", "lancedb", "milvus-lite")


def passes_filter(bucket: int, year: int) -> bool:
    return bucket in (1, 2, 3) and year >= 2010


# --------------------------------------------------------------------------- data
def vocabulary(seed: int) -> list[str]:
    """VOCAB pseudo-words (consonant-vowel syllables), each of which densparse's English
    analyzer keeps as exactly itself: not a stopword, unchanged by the stemmer."""
    rng = np.random.default_rng(seed)
    cons, vows = list("bdfgklmnprstvz"), list("aiou")  # no e: Snowball strips final e
    syl = [c + v for c in cons for v in vows]
    an = densparse.Analyzer(language="en")
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < VOCAB:
        n_syl = rng.integers(2, 5, size=4096)
        picks = rng.integers(0, len(syl), size=(4096, 4))
        cand = ["".join(syl[j] for j in picks[i, : n_syl[i]]) for i in range(4096)]
        cand = [w for w in cand if w not in seen]
        toks = an.tokenize_batch(cand) if hasattr(an, "tokenize_batch") else None
        for i, w in enumerate(cand):
            t = toks[i] if toks is not None else an.tokenize(w)
            if list(t) == [w] and w not in seen:
                seen.add(w)
                out.append(w)
    return out[:VOCAB]


class Data:
    """The records, generated batch by batch from (seed, batch number), so that every engine
    gets the same ones without all of them being held in memory."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch, self.seed = n, batch, seed
        self.vocab = np.array(vocabulary(seed))
        p = 1.0 / np.arange(1, VOCAB + 1) ** ZIPF_S
        self.cdf = np.cumsum(p / p.sum())

    def _words(self, rng: np.random.Generator, m: int, first_rank: int = 0) -> np.ndarray:
        lo = self.cdf[first_rank - 1] if first_rank else 0.0
        u = lo + rng.random(m) * (1.0 - lo)
        return np.minimum(np.searchsorted(self.cdf, u), VOCAB - 1)

    def batches(self):
        for b, start in enumerate(range(0, self.n, self.batch)):
            m = min(self.batch, self.n - start)
            rng = np.random.default_rng([self.seed, 1, b])
            lens = rng.integers(WORDS[0], WORDS[1] + 1, size=m)
            words = self.vocab[self._words(rng, int(lens.sum()))].tolist()
            ends = np.cumsum(lens).tolist()
            starts = [0, *ends[:-1]]
            yield {
                "id": [f"doc{start + i:09d}" for i in range(m)],
                "text": [" ".join(words[a:z]) for a, z in zip(starts, ends)],
                "dense": unit_rows(rng, m, DIM),
                "bucket": rng.integers(0, 10, size=m),
                "year": rng.integers(YEARS[0], YEARS[1] + 1, size=m),
            }

    def queries(self, nq: int) -> list[tuple[str, np.ndarray]]:
        rng = np.random.default_rng([self.seed, 2])
        out = []
        vecs = unit_rows(rng, nq, DIM)
        for i in range(nq):
            ranks = self._words(rng, int(rng.integers(2, 6)), first_rank=20)
            out.append((" ".join(self.vocab[ranks].tolist()), vecs[i]))
        return out


# --------------------------------------------------------------------------- engines
class Densparse:
    name = "densparse"

    def __init__(self, path: Path, dtype: str = "float32", create: bool = False) -> None:
        self.path = path
        if create:
            self.c = densparse.Collection.create(
                path,
                dense_dim=DIM,
                analyzer=densparse.Analyzer(language="en"),
                dense_dtype=dtype,
                k1=K1,
                b=B,
                auto_merge=False,  # the merge is measured on its own
            )
        else:
            self.c = densparse.Collection.open(path, readonly=True, encoder=None)

    def add(self, cols: dict) -> None:
        recs = [
            {"id": i, "text": t, "dense": v, "metadata": {"bucket": b, "year": y}}
            for i, t, v, b, y in zip(
                cols["id"],
                cols["text"],
                cols["dense"],
                cols["bucket"].tolist(),
                cols["year"].tolist(),
            )
        ]
        self.c.add(recs, show_progress=False)

    def finish(self) -> None:
        self.c.commit()

    def merge(self) -> Optional[str]:
        self.c.merge(max_segments=1)
        return None

    def count(self) -> int:
        return len(self.c)

    def close(self) -> None:
        self.c.close()

    @staticmethod
    def _out(hits) -> list[tuple[str, int, int]]:
        return [(h.id, h.metadata["bucket"], h.metadata["year"]) for h in hits]

    def bm25(self, q, k: int, cand: int):
        return self._out(self.c.search(text=q[0], k=k, mode="bm25"))

    def dense(self, q, k: int, cand: int):
        return self._out(self.c.search(dense=q[1], k=k, mode="dense"))

    def hybrid(self, q, k: int, cand: int, filtered: bool = False):
        hits = self.c.search(
            text=q[0],
            dense=q[1],
            k=k,
            candidates=cand,
            rrf_k=RRF_K,
            filter=FILTER_DS if filtered else None,
        )
        return self._out(hits)


class Lance:
    name = "lancedb"
    COLS = ("id", "text", "bucket", "year")

    def __init__(self, path: Path, dtype: str = "float32", create: bool = False) -> None:
        import lancedb
        import pyarrow as pa
        from lancedb.rerankers import RRFReranker

        self.pa, self.path = pa, path
        self.db = lancedb.connect(str(path))
        self.rrf = RRFReranker(K=RRF_K)
        if create:
            schema = pa.schema(
                [
                    ("id", pa.string()),
                    ("text", pa.string()),
                    ("dense", pa.list_(pa.float32(), DIM)),
                    ("bucket", pa.int64()),
                    ("year", pa.int64()),
                ]
            )
            self.t = self.db.create_table("docs", schema=schema)
        else:
            self.t = self.db.open_table("docs")

    def add(self, cols: dict) -> None:
        pa = self.pa
        flat = pa.array(cols["dense"].reshape(-1), pa.float32())
        self.t.add(
            pa.table(
                {
                    "id": pa.array(cols["id"], pa.string()),
                    "text": pa.array(cols["text"], pa.string()),
                    "dense": pa.FixedSizeListArray.from_arrays(flat, DIM),
                    "bucket": pa.array(cols["bucket"], pa.int64()),
                    "year": pa.array(cols["year"], pa.int64()),
                }
            )
        )

    def finish(self) -> None:
        # The same English analysis as densparse's: lowercase, stopwords, Snowball stemmer.
        self.t.create_fts_index("text", language="English", stem=True, remove_stop_words=True)

    def merge(self) -> Optional[str]:
        self.t.optimize(cleanup_older_than=dt.timedelta(0))
        return None

    def count(self) -> int:
        return self.t.count_rows()

    def close(self) -> None:
        self.t = self.db = None

    @staticmethod
    def _out(tbl, k: int) -> list[tuple[str, int, int]]:
        d = tbl.slice(0, k).select(["id", "bucket", "year"]).to_pydict()
        return list(zip(d["id"], d["bucket"], d["year"]))

    def bm25(self, q, k: int, cand: int):
        r = (
            self.t.search(q[0], query_type="fts", fts_columns="text")
            .select(list(self.COLS))
            .limit(k)
        )
        return self._out(r.to_arrow(), k)

    def dense(self, q, k: int, cand: int):
        r = (
            self.t.search(q[1], vector_column_name="dense")
            .distance_type("dot")
            .bypass_vector_index()
            .select(list(self.COLS))
            .limit(k)
        )
        return self._out(r.to_arrow(), k)

    def hybrid(self, q, k: int, cand: int, filtered: bool = False):
        # LanceDB's hybrid query asks each route for `limit` hits: limit(cand), then the
        # fused list is cut to k, as densparse's candidates=cand, k=k.
        r = (
            self.t.search(query_type="hybrid", vector_column_name="dense", fts_columns="text")
            .vector(q[1])
            .text(q[0])
            .distance_type("dot")
            .bypass_vector_index()
            .select(list(self.COLS))
        )
        if filtered:
            r = r.where(FILTER_LANCE, prefilter=True)
        return self._out(r.rerank(self.rrf).limit(cand).to_arrow(), k)


class Milvus:
    name = "milvus-lite"
    OUT = ("text", "bucket", "year")

    def __init__(self, path: Path, dtype: str = "float32", create: bool = False) -> None:
        from pymilvus import MilvusClient

        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.c = MilvusClient(str(path / "milvus.db"))
        if create:
            self._create()
        self.c.load_collection("docs")

    def _create(self) -> None:
        from pymilvus import DataType, Function, FunctionType

        s = self.c.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
        s.add_field(
            "text",
            DataType.VARCHAR,
            max_length=4096,
            enable_analyzer=True,
            # milvus-lite knows only the standard and jieba analyzers (and silently ignores
            # stop and stemmer filters): no stemming or stopwords, which the pseudo-word
            # vocabulary does not need for equal results.
            analyzer_params={"type": "standard"},
        )
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
        s.add_field("bucket", DataType.INT64)
        s.add_field("year", DataType.INT64)
        s.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        ip = self.c.prepare_index_params()
        ip.add_index(field_name="dense", index_type="FLAT", metric_type="IP")
        ip.add_index(
            field_name="sparse",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"bm25_k1": K1, "bm25_b": B},
        )
        self.c.create_collection("docs", schema=s, index_params=ip)

    def add(self, cols: dict) -> None:
        rows = [
            {"id": i, "text": t, "dense": v, "bucket": b, "year": y}
            for i, t, v, b, y in zip(
                cols["id"],
                cols["text"],
                cols["dense"],
                cols["bucket"].tolist(),
                cols["year"].tolist(),
            )
        ]
        self.c.insert("docs", rows)

    def finish(self) -> None:
        self.c.flush("docs")

    def merge(self) -> Optional[str]:
        job = self.c.compact("docs")
        state = str(self.c.get_compaction_state(job))
        # milvus-lite (3.x) compacts by itself after each flush, inside the ingest time;
        # its compact() does nothing and reports Completed.
        return (
            "n/a: milvus-lite compacts after each flush (in the ingest time); its compact() "
            f"is a no-op (state {state})"
        )

    def count(self) -> int:
        res = self.c.query("docs", filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def close(self) -> None:
        self.c.close()
        # milvus-lite serves from a thread of this process that keeps the data directory
        # locked after close(): stop it, so that a fresh process can open the collection.
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(self.path / "milvus.db"))

    @staticmethod
    def _out(res, k: int) -> list[tuple[str, int, int]]:
        return [(h["id"], h["entity"]["bucket"], h["entity"]["year"]) for h in res[0][:k]]

    def bm25(self, q, k: int, cand: int):
        res = self.c.search(
            "docs",
            data=[q[0]],
            anns_field="sparse",
            limit=k,
            search_params={"metric_type": "BM25"},
            output_fields=list(self.OUT),
        )
        return self._out(res, k)

    def dense(self, q, k: int, cand: int):
        res = self.c.search(
            "docs",
            data=[q[1].tolist()],
            anns_field="dense",
            limit=k,
            search_params={"metric_type": "IP"},
            output_fields=list(self.OUT),
        )
        return self._out(res, k)

    def hybrid(self, q, k: int, cand: int, filtered: bool = False):
        from pymilvus import AnnSearchRequest, RRFRanker

        expr = FILTER_MILVUS if filtered else None
        reqs = [
            AnnSearchRequest(
                data=[q[0]],
                anns_field="sparse",
                param={"metric_type": "BM25"},
                limit=cand,
                expr=expr,
            ),
            AnnSearchRequest(
                data=[q[1].tolist()],
                anns_field="dense",
                param={"metric_type": "IP"},
                limit=cand,
                expr=expr,
            ),
        ]
        res = self.c.hybrid_search(
            "docs", reqs, RRFRanker(RRF_K), limit=k, output_fields=list(self.OUT)
        )
        return self._out(res, k)


CLASSES = {"densparse": Densparse, "lancedb": Lance, "milvus-lite": Milvus}
IMPORTS = {"densparse": "densparse", "lancedb": "lancedb", "milvus-lite": "milvus_lite"}
PROBE_IMPORTS = {
    "densparse": ["densparse"],
    "lancedb": ["lancedb", "pyarrow", "lancedb.rerankers", "lancedb.query", "pandas"],
    "milvus-lite": ["pymilvus", "milvus_lite"],
}


# --------------------------------------------------------------------------- memory
def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return out


def tree_rss_kb(pid: Optional[int] = None) -> int:
    """RSS of a process and all its descendants (an engine may serve from a child)."""
    todo, total, seen = [pid or os.getpid()], 0, set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _rss_kb(p)
        todo += _children(p)
    return total


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def probe(engine: str, path: Path, dtype: str, seed: int) -> dict:
    """Run in a fresh process: open the collection, then answer one hybrid query."""
    cls = CLASSES[engine]
    for mod in PROBE_IMPORTS[engine]:  # imports are not part of opening
        __import__(mod)
    q = (
        "query text",
        unit_rows(np.random.default_rng([seed, 3]), 1, DIM)[0],
    )
    base = tree_rss_kb()
    t0 = time.perf_counter()
    e = cls(path, dtype)
    t_open = time.perf_counter() - t0
    rss_open = tree_rss_kb()
    t0 = time.perf_counter()
    e.hybrid(q, 10, 100)
    t_first = time.perf_counter() - t0
    rss_first = tree_rss_kb()
    e.close()
    return {
        "open_s": t_open,
        "open_rss_kb": rss_open - base,
        "first_query_s": t_first,
        "first_rss_kb": rss_first - base,
    }


def probe_fresh(engine: str, path: Path, dtype: str, seed: int, reps: int) -> list[dict]:
    out = []
    for _ in range(reps):
        cmd = [sys.executable, __file__, "--probe", engine, str(path), "--dense-dtype", dtype]
        cmd += ["--seed", str(seed)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"probe of {engine} failed: {r.stderr[-2000:]}")
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return out


# --------------------------------------------------------------------------- one engine
def run_engine(engine: str, data: Data, queries: list, root: Path, args) -> dict:
    cls = CLASSES[engine]
    path = root / engine
    res: dict[str, Any] = {"name": engine}
    log(f"{engine}: ingest {data.n:,} records in batches of {data.batch:,}")
    e = cls(path, args.dense_dtype, create=True)
    t_add = 0.0
    for cols in data.batches():
        t0 = time.perf_counter()
        e.add(cols)
        t_add += time.perf_counter() - t0
    t0 = time.perf_counter()
    e.finish()
    t_finish = time.perf_counter() - t0
    res.update(add_s=t_add, finish_s=t_finish, ingest_dps=data.n / (t_add + t_finish))
    log(f"{engine}: ingest {data.n / (t_add + t_finish):,.0f} docs/s; merging")
    res["disk_before_merge"] = disk_bytes(path)
    t0 = time.perf_counter()
    note = e.merge()
    res["merge_s"] = None if note else time.perf_counter() - t0
    res["merge_note"] = note
    n = e.count()
    if n != data.n:
        raise RuntimeError(f"{engine} holds {n:,} records, not {data.n:,}")
    e.close()
    del e
    res["disk"] = disk_bytes(path)
    log(f"{engine}: merge {res['merge_s']} s; {res['disk'] / data.n:,.0f} bytes/record; probes")
    res["probes"] = probe_fresh(engine, path, args.dense_dtype, args.seed, args.open_reps)

    e = cls(path, args.dense_dtype)
    k, cand = args.k, args.candidates
    fns = {
        "bm25": lambda q: e.bm25(q, k, cand),
        "dense": lambda q: e.dense(q, k, cand),
        "hybrid": lambda q: e.hybrid(q, k, cand),
        "hybrid+filter": lambda q: e.hybrid(q, k, cand, filtered=True),
    }
    check = queries[: args.check]
    res["top"] = {m: [[h[0] for h in fns[m](q)] for q in check] for m in MODES}
    bad = sum(
        not passes_filter(int(b), int(y)) for q in check for _, b, y in fns["hybrid+filter"](q)
    )
    res["filter_violations"] = bad
    res["lat"] = {}
    for m in MODES:
        log(f"{engine}: {m} latency")
        res["lat"][m] = time_each(fns[m], queries, warmup=args.warmup, budget_s=args.budget_s)
    e.close()
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)
    return res


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    """Mean |top-k(a) & top-k(b)| / k over the queries."""
    return float(np.mean([len(set(x) & set(y)) / max(len(x), 1) for x, y in zip(a, b)]))


# --------------------------------------------------------------------------- report
def report(args, info, data: Data, results: list[dict], skipped: dict, wall: float) -> str:
    commit = info["commit"]
    by = {r["name"]: r for r in results}
    ds = by.get("densparse")
    title = f"{data.n:,} records" + (
        f", {args.dense_dtype} vectors" if args.dense_dtype != "float32" else ""
    )
    lines = [
        args.mark_start,
        f"## Collection at scale: {title} (benches/bench_collection_scale.py)",
        "",
    ]
    if args.quick:
        lines += ["> **QUICK SMOKE RUN (`--quick`): tiny sizes, the numbers mean nothing.**", ""]
    lines += run_header(info, f" (the run took {wall / 60:.1f} min)")
    versions = package_versions(
        ["lancedb", "pylance", "pyarrow", "pymilvus", "milvus-lite"], "not installed"
    )
    lines += [
        f"- densparse measured at commit `{commit}`; versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Data: {data.n:,} records of {WORDS[0]}-{WORDS[1]} words from a Zipfian "
        f"(s = {ZIPF_S:g}) vocabulary of {VOCAB:,} pseudo-words, {DIM}-d random unit vectors, "
        "metadata `bucket` "
        f"(0-9) and `year` ({YEARS[0]}-{YEARS[1]}); seed {args.seed}; ingested in batches of "
        f"{data.batch:,}. densparse stores its vectors as {args.dense_dtype}, the peers as "
        "float32.",
        f"- Queries: {args.queries} of 2-5 words plus a random unit vector; "
        f"k = {args.k}; hybrid = RRF (k = {RRF_K}) over {args.candidates} candidates per route; "
        f"filter `{FILTER_MILVUS}`; exact flat dense search (inner product) in every engine; "
        f"BM25 k1 = {K1}, b = {B}; English analysis (stopwords, Snowball stemmer) in densparse "
        "and LanceDB, the standard analyzer (lowercase, no stemmer or stopwords: the only one "
        "milvus-lite has besides jieba) in milvus-lite; the pseudo-words make them agree. "
        f"Latency: one query per call, one client thread, {args.warmup} warm-up queries, at most "
        f"{args.budget_s:g} s of timed queries per engine and mode (hence fewer queries for slow "
        "ones). Hits carry id, text and metadata in every engine.",
        "- Open: a fresh Python process per try (median of "
        f"{args.open_reps}), RSS of the process and its children after "
        "the engine's import; then the first hybrid query in that process.",
    ]
    for name, why in skipped.items():
        lines.append(f"- **{name} skipped**: {why}")
    lines.append("")

    def med(r, key):
        return float(np.median([p[key] for p in r["probes"]]))

    rows = []
    for r in results:
        rows.append(
            [
                r["name"],
                fmt_num(r["add_s"] + r["finish_s"]),
                fmt_num(r["finish_s"]),
                fmt_num(r["ingest_dps"]),
                "n/a" if r["merge_s"] is None else fmt_num(r["merge_s"]),
                fmt_num(r["disk"] / data.n),
                fmt_num(med(r, "open_s")),
                fmt_num(med(r, "open_rss_kb") / 1024),
                fmt_num(med(r, "first_query_s") * 1000),
                fmt_num(med(r, "first_rss_kb") / 1024),
            ]
        )
    lines += [
        "**Ingest, merge, size, open** (ingest = the batched adds + what the engine needs before "
        "searching: LanceDB's FTS index build, milvus-lite's flush; included in docs/s)",
        "",
        md_table(
            [
                "engine",
                "ingest (s)",
                "of it index/flush (s)",
                "docs/s",
                "merge to 1 segment (s)",
                "disk bytes/record",
                "open (s)",
                "RSS growth on open (MB)",
                "first hybrid query (ms)",
                "RSS after it (MB)",
            ],
            rows,
        ),
        "",
    ]
    notes = [f"- {r['name']} merge: {r['merge_note']}" for r in results if r["merge_note"]]
    lines += [*notes, ""] if notes else []
    lat = []
    for r in results:
        for m in MODES:
            lat.append(latency_row(f"{r['name']}: {m}", r["lat"][m]))
    lines += [
        "**Search latency** (milliseconds)",
        "",
        md_table(
            ["engine: search", "queries", "p50 (ms)", "p99 (ms)", "mean (ms)", "queries/s"], lat
        ),
        "",
    ]
    peers = [r for r in results if r["name"] != "densparse"]
    if ds is not None and peers:

        def p50(r, m):
            return float(np.percentile(r["lat"][m], 50))

        rrows = []
        rrows.append(
            ["ingest docs/s"] + [fmt_ratio(ds["ingest_dps"] / p["ingest_dps"]) for p in peers]
        )
        for m in MODES:
            rrows.append(
                [f"{m} p50 (speed-up)"] + [fmt_ratio(p50(p, m) / p50(ds, m)) for p in peers]
            )
        rrows.append(
            ["open time (theirs / ours)"]
            + [fmt_ratio(med(p, "open_s") / med(ds, "open_s")) for p in peers]
        )
        rrows.append(
            ["RSS growth on open (theirs / ours)"]
            + [fmt_ratio(med(p, "open_rss_kb") / max(med(ds, "open_rss_kb"), 1)) for p in peers]
        )
        rrows.append(
            ["disk bytes (theirs / ours)"] + [fmt_ratio(p["disk"] / ds["disk"]) for p in peers]
        )
        lines += [
            "**Ratios** (densparse vs each peer; > 1 means densparse is better)",
            "",
            md_table(["measure"] + [f"vs {p['name']}" for p in peers], rrows),
            "",
        ]
        orows = [[m] + [f"{overlap(ds['top'][m], p['top'][m]):.2f}" for p in peers] for m in MODES]
        lines += [
            f"**Agreement**: mean top-{args.k} overlap with densparse over the first "
            f"{args.check} queries (1.00 = the same ids; exact dense search should give 1.00 "
            f"with float32 vectors; BM25 differs only by the engines' score rounding and ties)",
            "",
            md_table(["search"] + [f"{p['name']}" for p in peers], orows),
            "",
        ]
        if data.n >= 1_000_000:
            lines.append(goal_line_pair(ds, peers, med, p50))
    viol = ", ".join(f"{r['name']} {r['filter_violations']}" for r in results)
    lines += [
        f"Filtered hits that fail the filter (first {args.check} queries): {viol}.",
        "",
        args.mark_end,
    ]
    return "\n".join(lines)


def goal_line_pair(ds, peers, med, p50) -> str:
    """The issue's goals at 1M, met or not, from this run's ratios."""
    out = []
    lance = next((p for p in peers if p["name"] == "lancedb"), None)
    milvus = next((p for p in peers if p["name"] == "milvus-lite"), None)
    if lance is not None:
        r = ds["ingest_dps"] / lance["ingest_dps"]
        out.append(
            f"ingest {fmt_ratio(r)} LanceDB (goal >= 1.5x: {'met' if r >= 1.5 else 'NOT met'})"
        )
        g = med(ds, "open_rss_kb") <= med(lance, "open_rss_kb")
        out.append(f"RSS growth on open <= LanceDB's: {'met' if g else 'NOT met'}")
    if milvus is not None:
        r = ds["ingest_dps"] / milvus["ingest_dps"]
        out.append(
            f"ingest {fmt_ratio(r)} milvus-lite (goal >= 3x: {'met' if r >= 3 else 'NOT met'})"
        )
    for m in ("hybrid", "hybrid+filter"):
        worst = min(p50(p, m) / p50(ds, m) for p in peers)
        verdict = "met" if worst >= 10 else "NOT met"
        out.append(f"{m} p50 >= 10x faster than both: {fmt_ratio(worst)} ({verdict})")
    o = med(ds, "open_s")
    out.append(f"open <= 0.5 s: {o:.2f} s ({'met' if o <= 0.5 else 'NOT met'})")
    return "- Goals of issue 10 at this size: " + "; ".join(out) + ".\n"


# --------------------------------------------------------------------------- main
def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="records (100000, 1000000, ...)")
    p.add_argument(
        "--dense-dtype",
        default="float32",
        choices=["float32", "float16", "int8"],
        help="densparse's dense storage (int8 for the 10M case); peers keep float32",
    )
    p.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated subset of " + ", ".join(ENGINES),
    )
    p.add_argument("--batch", type=int, default=10_000, help="records per add call")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--budget-s", type=float, default=60.0, help="timed seconds per engine and mode")
    p.add_argument("--warmup", type=int, default=10, help="untimed queries per engine and mode")
    p.add_argument("--check", type=int, default=20, help="queries compared across engines")
    p.add_argument("--open-reps", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument(
        "--workdir", type=Path, default=None, help="where the collections go (default: a temp dir)"
    )
    p.add_argument("--keep", action="store_true", help="keep the collections")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    p.add_argument("--quick", action="store_true", help="5,000 records, 50 queries: smoke test")
    p.add_argument("--probe", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe[0], Path(args.probe[1]), args.dense_dtype, args.seed)))
        return
    if args.quick:
        args.n, args.queries, args.batch, args.budget_s = 5_000, 50, 1_000, 10.0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        p.error(f"unknown engines {sorted(unknown)}: choose from {ENGINES}")
    tag = f"{args.n}" + ("" if args.dense_dtype == "float32" else f"-{args.dense_dtype}")
    args.mark_start = f"<!-- bench_collection_scale:{tag}:start -->"
    args.mark_end = f"<!-- bench_collection_scale:{tag}:end -->"
    t_start = time.perf_counter()
    info = machine_info()
    info["commit"] = git_commit()  # at the start: the run may outlast a commit
    skipped: dict[str, str] = {}
    for eng in list(engines):
        try:
            __import__(IMPORTS[eng])
            if eng == "lancedb":
                __import__("pyarrow")
            if eng == "milvus-lite":
                __import__("pymilvus")
        except ImportError as e:
            skipped[eng] = f"not installed ({e})"
            engines.remove(eng)
    log(f"generating the vocabulary and {args.queries} queries")
    data = Data(args.n, args.batch, args.seed)
    queries = data.queries(args.queries)
    root = Path(tempfile.mkdtemp(prefix="densparse-scale-", dir=args.workdir))
    results = []
    try:
        for i, eng in enumerate(engines):
            try:
                results.append(run_engine(eng, data, queries, root, args))
            except Exception as e:
                if eng == "densparse":
                    raise
                log(f"{eng} failed: {type(e).__name__}: {e}")
                skipped[eng] = f"failed here: {type(e).__name__}: {str(e)[:300]}"
            if i + 1 < len(engines):  # what is measured so far, in case the run is cut short
                pending = {e: "not measured: the run was cut short" for e in engines[i + 1 :]}
                wall = time.perf_counter() - t_start
                section = report(args, info, data, results, {**skipped, **pending}, wall)
                write_results(args.out, section, args.mark_start, args.mark_end)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - t_start
    section = report(args, info, data, results, skipped, wall)
    print(section)
    write_results(args.out, section, args.mark_start, args.mark_end)
    log(f"wrote {args.out} (run took {wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
