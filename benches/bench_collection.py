#!/usr/bin/env python3
"""Collection: hybrid search latency (p50 / p99) on SciFact, add and delete throughput.

The SciFact corpus (title + text) goes into a Collection with 384-d dense vectors. No
encoder is involved here (that is the ONNX-encoder issue's benchmark): the vectors are random
unit vectors with a fixed seed, which costs the dense route exactly what real ones would.
Queries are SciFact's test+train questions (text) with random unit query vectors.

Measured:

* add: documents/s of ``Collection.add`` in batches (BM25 analysis + indexing, dense and
  record storage, the commit's fsyncs), and of one ``add`` of everything;
* search: per-query latency p50 / p99 / mean for mode bm25, dense, hybrid (RRF over both),
  hybrid with a metadata filter, over several segments and after ``merge()``;
* delete: ids/s of ``delete`` in batches (each call commits);
* a baseline of what users write by hand, for context: bm25s retrieve + numpy matmul +
  argpartition + RRF in Python over the same data (same k, candidates).

    python3 benches/bench_collection.py            # full SciFact (~2-3 min)
    python3 benches/bench_collection.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    densparse,
    fmt_num,
    latency_row,
    log,
    machine_info,
    md_table,
    run_header,
    set_log_name,
    time_each,
    unit_rows,
    write_results,
)

set_log_name("bench_collection")
MARK_START, MARK_END = "<!-- bench_collection:start -->", "<!-- bench_collection:end -->"
DIM = 384


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def handwritten_baseline(texts: list[str], X: np.ndarray, k: int, cand: int):
    """bm25s + numpy + RRF in Python: the usual hand-rolled hybrid search."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )

    def search(q: tuple[str, np.ndarray]) -> list[int]:
        text, vec = q
        toks = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        bid, _ = retriever.retrieve(toks, k=cand, show_progress=False, n_threads=1)
        s = X @ vec
        top = np.argpartition(-s, cand)[:cand]
        top = top[np.argsort(-s[top], kind="stable")]
        fused: dict[int, float] = {}
        for lst in (bid[0].tolist(), top.tolist()):
            for r, d in enumerate(lst, start=1):
                fused[d] = fused.get(d, 0.0) + 1.0 / (60 + r)
        return sorted(fused, key=lambda d: -fused[d])[:k]

    return search


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--batch", type=int, default=500, help="records per add() call")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    p.add_argument("--quick", action="store_true", help="1,000 docs, 100 queries: smoke test")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    info = machine_info()
    corpus = read_jsonl(args.data_dir / "scifact" / "corpus.jsonl")
    queries = [q["text"] for q in read_jsonl(args.data_dir / "scifact" / "queries.jsonl")]
    if args.quick:
        corpus, queries = corpus[:1000], queries[:100]
    rng = np.random.default_rng(20241124)
    X = unit_rows(rng, len(corpus))
    Q = unit_rows(rng, len(queries))
    texts = [(d.get("title", "") + " " + d["text"]).strip() for d in corpus]
    records = [
        {"id": d["_id"], "text": t, "dense": X[i], "metadata": {"bucket": i % 10}}
        for i, (d, t) in enumerate(zip(corpus, texts))
    ]
    tmp = Path(tempfile.mkdtemp(prefix="densparse-bench-"))
    an = densparse.Analyzer(language="en")
    rows_add = []
    try:
        # ---- add: batches (one segment each, every call committed) and all at once
        log(f"add: {len(records):,} records in batches of {args.batch}")
        c = densparse.Collection.create(
            tmp / "batches", dense_dim=DIM, analyzer=an, auto_merge=False
        )
        t0 = time.perf_counter()
        for i in range(0, len(records), args.batch):
            c.add(records[i : i + args.batch], show_progress=False)
        t_batches = time.perf_counter() - t0
        rows_add.append(
            [
                f"add, batches of {args.batch} (autocommit)",
                f"{len(records):,}",
                fmt_num(t_batches),
                fmt_num(len(records) / t_batches),
            ]
        )
        c1 = densparse.Collection.create(tmp / "one", dense_dim=DIM, analyzer=an)
        t0 = time.perf_counter()
        c1.add(records, show_progress=False)
        t_one = time.perf_counter() - t0
        rows_add.append(
            ["add, one call", f"{len(records):,}", fmt_num(t_one), fmt_num(len(records) / t_one)]
        )
        n_segments = c.stats()["segments"]

        # ---- search latency
        qs = list(zip(queries, Q))
        lat = []
        for label, coll in ((f"{n_segments} segments", c), ("1 segment", c1)):
            log(f"search: {label}")
            lat.append(
                latency_row(
                    f"bm25, {label}",
                    time_each(
                        lambda q, coll=coll: coll.search(text=q[0], k=args.k, mode="bm25"), qs
                    ),
                )
            )
            lat.append(
                latency_row(
                    f"dense, {label}",
                    time_each(
                        lambda q, coll=coll: coll.search(dense=q[1], k=args.k, mode="dense"), qs
                    ),
                )
            )
            lat.append(
                latency_row(
                    f"hybrid RRF, {label}",
                    time_each(
                        lambda q, coll=coll: coll.search(
                            text=q[0], dense=q[1], k=args.k, candidates=args.candidates
                        ),
                        qs,
                    ),
                )
            )
            lat.append(
                latency_row(
                    f"hybrid RRF + filter (10% of docs), {label}",
                    time_each(
                        lambda q, coll=coll: coll.search(
                            text=q[0],
                            dense=q[1],
                            k=args.k,
                            candidates=args.candidates,
                            filter={"bucket": 3},
                        ),
                        qs,
                    ),
                )
            )
        try:
            base = handwritten_baseline(texts, X, args.k, args.candidates)
            lat.append(
                latency_row("hand-written: bm25s + numpy + RRF (1 index)", time_each(base, qs))
            )
        except ImportError as e:
            log(f"baseline skipped: {e}")

        # ---- delete throughput
        ids = [r["id"] for r in records]
        n_del = min(1000, len(ids) // 2)
        log(f"delete: {n_del} ids")
        t0 = time.perf_counter()
        for i in range(0, n_del, 100):
            c1.delete(ids[i : i + 100])
        t_del = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(n_del, n_del + 50):
            c1.delete(ids[i])
        t_del1 = time.perf_counter() - t0
        rows_del = [
            [
                "delete, batches of 100 (each commits)",
                f"{n_del:,}",
                fmt_num(t_del),
                fmt_num(n_del / t_del),
            ],
            ["delete, one id per call (each commits)", "50", fmt_num(t_del1), fmt_num(50 / t_del1)],
        ]
        t0 = time.perf_counter()
        c1.merge(max_segments=1)
        t_merge = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [MARK_START, "## Collection (benches/bench_collection.py)", ""]
    if args.quick:
        lines += ["> **QUICK SMOKE RUN (`--quick`): tiny sizes, the numbers mean nothing.**", ""]
    lines += run_header(info, f" (run took {(time.perf_counter() - t_start) / 60:.1f} min)")
    lines += [
        f'- Data: SciFact corpus, {len(records):,} docs (title + text, `Analyzer(language="en")`),'
        f" {DIM}-d random unit vectors (seed 20241124) as dense vectors, metadata "
        f"`bucket = i % 10`; {len(qs):,} SciFact queries with random unit query vectors; "
        f"k = {args.k}, {args.candidates} candidates per route for the fusion.",
        "",
        "**Writes** (each `add`/`delete` call is durable when it returns: files fsynced, "
        "manifest switched)",
        "",
        md_table(["Operation", "items", "seconds", "items/s"], rows_add + rows_del),
        "",
        f"`merge(max_segments=1)` after the deletions: {t_merge:.2f} s.",
        "",
        "**Search latency** (one query per call, one thread; milliseconds)",
        "",
        md_table(["Search", "queries", "p50 (ms)", "p99 (ms)", "mean (ms)", "queries/s"], lat),
    ]
    lines += ["", MARK_END]
    write_results(args.out, "\n".join(lines), MARK_START, MARK_END)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
