#!/usr/bin/env python3
"""densparse.distributed on a local Ray: encode and build throughput with 1 and 2 workers,
per-query latency of sharded vs single search, per-shard figures and a capacity plan for
100M chunks derived from them.

Data: SciFact (title + text, ../shared/data/scifact) when present, else synthetic texts;
384-d random unit vectors for the dense route (what real ones cost an exact flat index).
Encoding: the MiniLM-L6 int8 ONNX model of ../shared/models on the first --encode-n texts
(skipped when absent). "Workers" are Ray actors / tasks of 1 CPU each on ``ray.init(num_cpus=2)``;
efficiency = rate with 2 / (2 x rate with 1).

    python3 benches/bench_distributed.py            # ~3-5 min on 2 cores
    python3 benches/bench_distributed.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import densparse
from _common import (
    REPO,
    fmt_num,
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

MARK_START, MARK_END = "<!-- bench_distributed:start -->", "<!-- bench_distributed:end -->"
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
MODEL = REPO.parent / "shared" / "models" / "minilm-l6-int8-onnx"
DIM = 384


def load_corpus(n: Optional[int]) -> tuple[list[dict], list[str], str]:
    rng = np.random.default_rng(0)
    if (SCIFACT / "corpus.jsonl").exists():
        with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
            queries = [json.loads(line)["text"] for line in f]
        docs = [{"id": r["_id"], "text": f"{r.get('title', '')} {r['text']}".strip()} for r in rows]
        what = "SciFact"
    else:
        words = [f"w{i}" for i in range(5000)]
        p = 1 / np.arange(1, 5001)
        p /= p.sum()
        docs = [
            {"id": f"d{i}", "text": " ".join(rng.choice(words, int(rng.integers(50, 200)), p=p))}
            for i in range(5000)
        ]
        queries = [" ".join(rng.choice(words, 4, p=p)) for _ in range(300)]
        what = "synthetic (Zipf, 5,000 pseudo-words)"
    if n:
        docs = docs[:n]
    vecs = unit_rows(rng, len(docs), DIM)
    for d, v in zip(docs, vecs):
        d["dense"] = v.tolist()
    return docs, queries, what


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=None, help="documents (default: all)")
    p.add_argument("--encode-n", type=int, default=512)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--probe-n", type=int, default=200_000, help="documents of the probe shard")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.encode_n, args.queries, args.probe_n = args.n or 600, 64, 30, 20_000
    set_log_name("bench_distributed")
    logging.basicConfig(level=logging.WARNING)
    import ray

    import densparse.distributed as dd

    info = machine_info()
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(dir=args.workdir))
    docs, qtexts, what = load_corpus(args.n)
    qtexts = qtexts[: args.queries]
    rng = np.random.default_rng(1)
    qvecs = unit_rows(rng, len(qtexts), DIM)
    log(f"{len(docs):,} documents ({what}), {len(qtexts)} queries; workdir {work}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    lines: list[str] = []
    try:
        # ------------------------------------------------------------ encode
        enc_rows = []
        if MODEL.exists():
            texts = [{"id": d["id"], "text": d["text"]} for d in docs[: args.encode_n]]
            for workers in (1, 2):
                ds = ray.data.from_items(texts, override_num_blocks=8)
                out = dd.encode(
                    ds, str(MODEL), batch_size=32, num_cpus=1, concurrency=workers, max_length=256
                )
                t0 = time.perf_counter()
                n = len(out.take_all())
                dt = time.perf_counter() - t0
                enc_rows.append((workers, n, dt))
                log(f"encode, {workers} worker(s): {n / dt:.1f} docs/s (model load included)")
        # ------------------------------------------------------------ build
        col_t0 = time.perf_counter()
        single = densparse.Collection.create(work / "single", dense_dim=DIM)
        single.add(sorted(docs, key=lambda d: d["id"]), show_progress=False)
        single_s = time.perf_counter() - col_t0
        log(f"single Collection: {len(docs) / single_s:.0f} docs/s")
        build_rows = []
        for workers in (1, 2):
            ds = ray.data.from_items(docs, override_num_blocks=8).materialize()
            t0 = time.perf_counter()
            path = dd.build_collection(
                ds,
                work / f"sharded-{workers}",
                shards=args.shards,
                dense_dim=DIM,
                num_cpus=2 / workers,
            )
            dt = time.perf_counter() - t0
            build_rows.append((workers, dt))
            log(f"build, {workers} worker(s): {len(docs) / dt:.0f} docs/s")
        # ------------------------------------------------------------ search
        queries = [{"text": t, "dense": v} for t, v in zip(qtexts, qvecs)]
        lat = []
        with dd.open_sharded(path, readonly=True) as sc:
            searcher = dd.ShardedSearcher(path, shards_per_actor=args.shards // 2, num_cpus=1)
            for mode in ("bm25", "dense", "hybrid"):
                kw = {"mode": mode, "k": 10, "candidates": 100}

                def one(q, fn, kw=kw):
                    t = q["text"] if kw["mode"] != "dense" else None
                    d = q["dense"] if kw["mode"] != "bm25" else None
                    return fn(text=t, dense=d, **kw)

                lat.append(
                    latency_row(
                        f"single Collection: {mode}",
                        time_each(lambda q: one(q, single.search), queries, 10),
                    )
                )
                lat.append(
                    latency_row(
                        f"ShardedCollection, {args.shards} shards in-process: {mode}",
                        time_each(lambda q: one(q, sc.search), queries, 10),
                    )
                )
                lat.append(
                    latency_row(
                        f"ShardedSearcher, {args.shards} shards / 2 actors: {mode}",
                        time_each(lambda q: one(q, searcher.search), queries, 10, budget_s=30),
                    )
                )
                log(f"latency {mode} done")
            searcher.close()
            shard_docs = len(sc._group.shards[0])
            shard_bytes = dir_bytes(path / "shard-0000")
        # ------------------------------------------------------------ one-shard scale probe
        # The shards above are too small for their fixed costs not to dominate: one shard of
        # --probe-n documents (30 pseudo-words each, 384-d vectors) gives the per-document cost
        # of each route that the capacity plan scales, and the bytes both rounds move.
        from densparse.distributed.merge import as_query
        from densparse.distributed.shards import ShardGroup

        probe_dir = work / "probe"
        probe = densparse.Collection.create(probe_dir / "shard-0000", dense_dim=DIM)
        prng = np.random.default_rng(7)
        words = np.array([f"w{i}" for i in range(50_000)])
        zipf = 1 / np.arange(1, 50_001)
        zipf /= zipf.sum()
        t0 = time.perf_counter()
        for lo in range(0, args.probe_n, 20_000):
            m = min(20_000, args.probe_n - lo)
            vecs = unit_rows(prng, m, DIM)
            toks = prng.choice(words, size=(m, 30), p=zipf)
            batch = [
                {"id": f"p{lo + i:09d}", "text": " ".join(toks[i]), "dense": vecs[i]}
                for i in range(m)
            ]
            probe.add(batch, show_progress=False)
        probe.merge(max_segments=1)
        probe.close()
        log(f"probe shard of {args.probe_n:,} documents in {time.perf_counter() - t0:.0f} s")
        one_shard = ShardGroup(probe_dir, [0], 1)
        qs = [
            as_query({"text": " ".join(prng.choice(words, 4, p=zipf)), "dense": v})
            for v in unit_rows(prng, 20 if args.quick else 100, DIM)
        ]
        stats = one_shard.statistics([q.text for q in qs])
        per_shard_ms = {}
        for route in ("bm25", "dense"):
            ts = time_each(
                lambda i, route=route: one_shard.route_hits([qs[i]], [stats[i]], 100, [[route]]),
                list(range(len(qs))),
                5,
            )
            per_shard_ms[route] = 1000 * float(np.median(ts))
        msg = []
        for i, q in enumerate(qs):
            r1 = len(pickle.dumps([q.text])) + len(pickle.dumps(one_shard.statistics([q.text])))
            r2 = len(pickle.dumps(([q], [stats[i]], 100, [["bm25", "dense"]]))) + len(
                pickle.dumps(one_shard.route_hits([q], [stats[i]], 100, [["bm25", "dense"]]))
            )
            msg.append((r1, r2))
        one_shard.close()
        probe_docs, probe_bytes = args.probe_n, dir_bytes(probe_dir)
        lines = report(
            args,
            info,
            what,
            docs,
            enc_rows,
            single_s,
            build_rows,
            lat,
            per_shard_ms,
            msg,
            shard_docs,
            shard_bytes,
            probe_docs,
            probe_bytes,
            t_start,
        )
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    write_results(args.out, "\n".join(lines), MARK_START, MARK_END)
    log(f"wrote {args.out}")


def report(
    args,
    info,
    what,
    docs,
    enc_rows,
    single_s,
    build_rows,
    lat,
    per_shard_ms,
    msg,
    shard_docs,
    shard_bytes,
    probe_docs,
    probe_bytes,
    t_start,
) -> list[str]:
    n = len(docs)
    lines = [MARK_START, "## Distributed on Ray (benches/bench_distributed.py)", ""]
    lines += run_header(info, f" (the run took {(time.perf_counter() - t_start) / 60:.1f} min)")
    vers = package_versions(["ray"], missing="not installed")
    lines += [
        f"- densparse measured at commit `{git_commit()}`; versions: "
        + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Data: {n:,} documents ({what}), {DIM}-d random unit vectors; {args.shards} shards; "
        "Ray started with `ray.init(num_cpus=2)` on this machine; a worker = a Ray actor or "
        "task of 1 CPU (the 1-worker runs give one task 2 CPUs' reservation, i.e. run one at a "
        "time). Efficiency = rate with 2 workers / (2 x rate with 1).",
        "",
    ]
    if enc_rows:
        r1 = enc_rows[0][1] / enc_rows[0][2]
        rows = [
            [str(w), f"{k:,}", fmt_num(dt), fmt_num(k / dt), f"{(k / dt) / (w * r1):.2f}"]
            for w, k, dt in enc_rows
        ]
        lines += [
            "**Encode** (`dd.encode`, MiniLM-L6 int8 ONNX, max_length 256, 1 onnxruntime thread "
            "per actor; the time includes starting the actors and loading the model)",
            "",
            md_table(["workers", "documents", "seconds", "docs/s", "efficiency"], rows),
            "",
        ]
    else:
        lines += ["**Encode**: skipped (the MiniLM model of ../shared/models is not present)", ""]
    b1 = n / build_rows[0][1]
    rows = [["single Collection.add (no Ray)", "1", fmt_num(single_s), fmt_num(n / single_s), ""]]
    rows += [
        [
            f"dd.build_collection, {args.shards} shards",
            str(w),
            fmt_num(dt),
            fmt_num(n / dt),
            f"{(n / dt) / (w * b1):.2f}",
        ]
        for w, dt in build_rows
    ]
    lines += [
        "**Build** (from a materialised Dataset to a committed sharded collection: hash, "
        "group by shard, build, manifest)",
        "",
        md_table(["build", "workers", "seconds", "docs/s", "efficiency"], rows),
        "",
    ]
    lines += [
        "**Search latency**, one query per call, k = 10, hybrid = RRF over 100 candidates "
        "per route",
        "",
        md_table(["search", "queries", "p50 (ms)", "p99 (ms)", "mean (ms)", "queries/s"], lat),
        "",
    ]
    r1 = float(np.mean([m[0] for m in msg]))
    r2 = float(np.mean([m[1] for m in msg]))
    bpd = shard_bytes / max(shard_docs, 1)
    dense_ms_per_m = per_shard_ms["dense"] / probe_docs * 1e6
    bm25_ms_per_m = per_shard_ms["bm25"] / probe_docs * 1e6
    lines += [
        "**Per shard** (measured in this run: the SciFact shard 0 for bytes per real document; "
        f"the one-shard probe of {probe_docs:,} documents of 30 pseudo-words and 384-d "
        "vectors for the route costs and messages, 4-word queries, one thread)",
        "",
        md_table(
            ["figure", "value"],
            [
                [
                    "SciFact shard 0: documents / disk bytes per document",
                    f"{shard_docs:,} / {fmt_num(bpd)}",
                ],
                ["probe shard: disk bytes per document", fmt_num(probe_bytes / probe_docs)],
                [
                    "BM25 route, top 100 with global statistics: median ms",
                    fmt_num(per_shard_ms["bm25"]),
                ],
                ["dense route (exact flat), top 100: median ms", fmt_num(per_shard_ms["dense"])],
                [
                    "bytes per query and shard, round 1 (statistics: request + reply, pickled)",
                    fmt_num(r1),
                ],
                [
                    "bytes per query and shard, round 2 (query + statistics; BM25 and dense "
                    "top-100 lists)",
                    fmt_num(r2),
                ],
            ],
        ),
        "",
    ]
    lines += capacity_plan(bpd, dense_ms_per_m, bm25_ms_per_m, r1, r2)
    lines += ["", MARK_END]
    return lines


def capacity_plan(
    bpd: float, dense_ms_per_m: float, bm25_ms_per_m: float, r1: float, r2: float
) -> list[str]:
    """100M chunks, from the per-shard figures: the dense route dominates (exact flat search
    scans every vector), so the shard size is set by a latency target per shard."""
    total = 100_000_000
    target_ms = 100  # one core scans a shard's vectors in about this long
    per_shard = max(500_000, int(target_ms / dense_ms_per_m * 1e6) // 500_000 * 500_000)
    shards = -(-total // per_shard)
    mem_gb = per_shard * bpd / 1e9
    dense_ms = dense_ms_per_m * per_shard / 1e6
    bm25_ms = bm25_ms_per_m * per_shard / 1e6
    bytes_q = shards * (r1 + r2)
    return [
        "**Capacity plan for 100M chunks** (derived from the per-shard figures above, scaled "
        "linearly in shard size: exact flat dense search and BM25 postings both cost time in "
        "proportion to the documents scanned)",
        "",
        f"- Shards: {shards} of {per_shard:,} chunks, sized so that one core scans a shard's "
        f"vectors in about {target_ms} ms (dense route measured at "
        f"{fmt_num(dense_ms_per_m)} ms per million 384-d vectors on one core: "
        f"{fmt_num(dense_ms)} ms per shard per query; BM25 {fmt_num(bm25_ms_per_m)} ms per "
        f"million documents here: {fmt_num(bm25_ms)} ms per shard, this corpus's query terms).",
        f"- Memory per shard: {fmt_num(mem_gb)} GB on disk, mmap'd ({fmt_num(bpd)} bytes per "
        "chunk incl. text, metadata, BM25 postings and float32 vectors); a node with 64 GB "
        f"holds ~{max(1, int(48 / max(mem_gb, 1e-9)))} hot shards (leaving a quarter for the OS "
        "and Ray's object store), i.e. "
        f"~{int(np.ceil(shards / max(1, int(48 / max(mem_gb, 1e-9)))))} such nodes. float16 "
        "vectors halve the vector part; int8 quarters it.",
        f"- Bytes moved per query: {fmt_num(r1 + r2)} per shard (round 1: {fmt_num(r1)}, round 2: "
        f"{fmt_num(r2)}), {fmt_num(bytes_q / 1e6)} MB per query over {shards} shards — a "
        "hybrid query costs the top-100 lists, not the documents.",
        f"- Expected latency: the slowest shard's routes ({fmt_num(dense_ms + bm25_ms)} ms on one "
        "core, less with the shard's routes on several threads) plus two network round trips "
        "(~1 ms each within a rack) plus the merge and fusion in the caller "
        "(the in-process ShardedCollection rows above minus the single Collection's show that "
        "cost at this size). Batch search (`dd.search`) amortises the round trips over "
        "`batch_size` queries.",
    ]


if __name__ == "__main__":
    main()
