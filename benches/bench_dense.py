#!/usr/bin/env python3
"""Exact dense search and ColBERT MaxSim against numpy, faiss-cpu and usearch, in one run.

Sections (``--sections``, comma separated; default: all):

* ``bw``     the machine's memory read bandwidth, measured now: a streaming float32 sum over a
             1 GiB array (Rust, AVX, the same dispatch as the search kernels) on one thread
             and on all threads; numpy's ``arr.sum()`` (one thread) as a cross-check.
* ``one``    one-query top-10 latency for float32 / float16 / int8 storage at each size, as
             GB/s of vector bytes read and % of the measured bandwidth (same thread count);
             peers on float32: numpy matvec + argpartition, faiss IndexFlatIP, usearch exact.
* ``batch``  64-query top-10 batches: densparse (GEMM per row block + per-query top-k) vs
             numpy GEMM + argpartition, faiss IndexFlatIP and usearch exact.
* ``maxsim`` ColBERT MaxSim throughput (passages/s) vs a numpy reference
             (``(q @ p.T).max(1).mean()`` per passage, as FlagEmbedding's colbert_score).

Data: random normal float32 (numpy, fixed seed). Timings are medians; nothing is asserted.

    python3 benches/bench_dense.py            # real sizes (100k and 1M x 384 / 768, ~8 min)
    python3 benches/bench_dense.py --quick    # tiny sizes: a smoke test, numbers meaningless

Results go to ``--out`` (benches/RESULTS.md) between ``<!-- bench_dense:start -->`` and
``<!-- bench_dense:end -->``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    densparse,
    fmt_num,
    fmt_ratio,
    goal_line,
    log,
    machine_info,
    md_table,
    med,
    met_mark,
    package_versions,
    run_header,
    set_log_name,
    timed_runs,
    write_results,
)

set_log_name("bench_dense")
MARK_START, MARK_END = "<!-- bench_dense:start -->", "<!-- bench_dense:end -->"
SECTION_TITLE = "## Dense exact search and MaxSim (benches/bench_dense.py)"
SECTIONS = ("bw", "one", "batch", "maxsim")
DTYPES = ("float32", "float16", "int8")
K = 10

try:
    import faiss  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    faiss = None
try:
    from usearch.index import MetricKind  # type: ignore[import-not-found]
    from usearch.index import search as usearch_search
except ImportError:  # pragma: no cover
    usearch_search = None


def versions() -> dict:
    out = {
        "numpy": np.__version__,
        **package_versions(("faiss-cpu", "usearch"), missing="not installed (peer skipped)"),
    }
    out["kernels"] = densparse._core._dense_kernels()
    return out


def thread_label(t: Optional[int]) -> str:
    return "1" if t == 1 else f"all ({os.cpu_count()})"


def np_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """argpartition + sort of the k best, along the last axis."""
    part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    top = np.take_along_axis(scores, part, axis=-1)
    order = np.argsort(-top, axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


# --------------------------------------------------------------------------- bandwidth
def section_bw(args) -> dict:
    n = (64 << 20) // 4 if args.quick else (1 << 30) // 4
    buf = np.ones(n, dtype=np.float32)
    out = {"bytes": buf.nbytes}
    for label, t in (("1", 1), ("all", None)):
        densparse._core._dense_stream_sum(buf, t)  # warm up (page faults, pool start)
        times = timed_runs(lambda t=t: densparse._core._dense_stream_sum(buf, t), 9, 20)
        out[label] = buf.nbytes / med(times) / 1e9
        log(f"read bandwidth ({label} threads): {out[label]:.1f} GB/s")
    times = timed_runs(buf.sum, 5, 10)
    out["numpy"] = buf.nbytes / med(times) / 1e9
    log(f"numpy sum: {out['numpy']:.1f} GB/s")
    return out


# --------------------------------------------------------------------------- one query
def cycle(queries: np.ndarray) -> Callable[[], np.ndarray]:
    state = [0]

    def nxt() -> np.ndarray:
        q = queries[state[0] % len(queries)]
        state[0] += 1
        return q

    return nxt


def time_query(fn: Callable[[np.ndarray], Any], queries: np.ndarray, reps: int, budget: float):
    nxt = cycle(queries)
    fn(nxt())  # warm up
    return timed_runs(lambda: fn(nxt()), reps, budget)


def section_one_and_batch(args, sizes, do_one: bool, do_batch: bool) -> dict:
    res: dict = {"one": [], "batch": []}
    rng = np.random.default_rng(args.seed)
    for n, d in sizes:
        log(f"=== {n:,} x {d}: generating data")
        x = rng.standard_normal((n, d), dtype=np.float32)
        qs = rng.standard_normal((64, d), dtype=np.float32)
        reps = 3 if args.quick else args.reps
        for dt in DTYPES:
            ix = densparse.DenseIndex(d, dtype=dt)
            t0 = time.perf_counter()
            ix.add(x)
            log(f"{dt}: added in {time.perf_counter() - t0:.1f}s")
            nbytes = ix._core.vector_bytes
            if do_one:
                for t in (1, None):
                    times = time_query(
                        lambda q, t=t, ix=ix: ix.search(q, k=K, threads=t), qs, reps, 5
                    )
                    res["one"].append(
                        dict(
                            n=n,
                            d=d,
                            dtype=dt,
                            impl="densparse",
                            threads=t,
                            times=times,
                            bytes=nbytes,
                        )
                    )
                    log(
                        f"  one query {dt} threads={t}: {med(times) * 1e3:.1f} ms, "
                        f"{nbytes / med(times) / 1e9:.1f} GB/s"
                    )
            if do_batch:
                times = timed_runs(lambda ix=ix, qs=qs: ix.search(qs, k=K), max(2, reps // 3), 20)
                res["batch"].append(
                    dict(
                        n=n,
                        d=d,
                        dtype=dt,
                        impl="densparse",
                        threads=None,
                        times=times,
                        bytes=nbytes,
                    )
                )
                log(f"  batch of 64 {dt}: {med(times):.3f} s")
            ix = None
            gc.collect()
        nbytes = x.nbytes
        # Peers on float32.
        if do_one:
            times = time_query(lambda q, x=x: np_topk(x @ q, K), qs, max(3, reps // 2), 8)
            res["one"].append(
                dict(
                    n=n,
                    d=d,
                    dtype="float32",
                    impl="numpy matvec+argpartition",
                    threads=None,
                    times=times,
                    bytes=nbytes,
                )
            )
            log(f"  numpy one query: {med(times) * 1e3:.1f} ms")
        if do_batch:
            times = timed_runs(
                lambda x=x, qs=qs: np_topk(qs @ x.T, K), 2 if n >= 1_000_000 else 3, 25
            )
            res["batch"].append(
                dict(
                    n=n,
                    d=d,
                    dtype="float32",
                    impl="numpy GEMM+argpartition",
                    threads=None,
                    times=times,
                    bytes=nbytes,
                )
            )
            log(f"  numpy batch: {med(times):.3f} s")
        if faiss is not None:
            fx = faiss.IndexFlatIP(d)
            fx.add(x)
            for t in (1, None) if do_one else ():
                faiss.omp_set_num_threads(1 if t == 1 else os.cpu_count())
                times = time_query(lambda q, fx=fx: fx.search(q[None, :], K), qs, reps, 5)
                res["one"].append(
                    dict(
                        n=n,
                        d=d,
                        dtype="float32",
                        impl="faiss IndexFlatIP",
                        threads=t,
                        times=times,
                        bytes=nbytes,
                    )
                )
                log(f"  faiss one query threads={t}: {med(times) * 1e3:.1f} ms")
            faiss.omp_set_num_threads(os.cpu_count())
            if do_batch:
                times = timed_runs(lambda fx=fx, qs=qs: fx.search(qs, K), max(2, reps // 3), 20)
                res["batch"].append(
                    dict(
                        n=n,
                        d=d,
                        dtype="float32",
                        impl="faiss IndexFlatIP",
                        threads=None,
                        times=times,
                        bytes=nbytes,
                    )
                )
                log(f"  faiss batch: {med(times):.3f} s")
            fx = None
            gc.collect()
        if usearch_search is not None:
            for t in (1, None) if do_one else ():
                times = time_query(
                    lambda q, t=t, x=x: usearch_search(
                        x, q, K, MetricKind.IP, exact=True, threads=1 if t == 1 else 0
                    ),
                    qs,
                    reps,
                    5,
                )
                res["one"].append(
                    dict(
                        n=n,
                        d=d,
                        dtype="float32",
                        impl="usearch exact",
                        threads=t,
                        times=times,
                        bytes=nbytes,
                    )
                )
                log(f"  usearch one query threads={t}: {med(times) * 1e3:.1f} ms")
            if do_batch:
                times = timed_runs(
                    lambda x=x, qs=qs: usearch_search(
                        x, qs, K, MetricKind.IP, exact=True, threads=0
                    ),
                    2,
                    20,
                )
                res["batch"].append(
                    dict(
                        n=n,
                        d=d,
                        dtype="float32",
                        impl="usearch exact",
                        threads=None,
                        times=times,
                        bytes=nbytes,
                    )
                )
                log(f"  usearch batch: {med(times):.3f} s")
        x = None
        gc.collect()
    return res


# --------------------------------------------------------------------------- maxsim
def section_maxsim(args) -> dict:
    rng = np.random.default_rng(args.seed + 1)
    d, m = 1024, 32  # BGE-M3 ColBERT vectors are 1024-d; a 32-token query
    n_docs = 50 if args.quick else 1000
    lens = rng.integers(32, 256, n_docs)
    q = rng.standard_normal((m, d), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    docs = []
    for n in lens:
        p = rng.standard_normal((int(n), d), dtype=np.float32)
        docs.append(p / np.linalg.norm(p, axis=1, keepdims=True))

    def ref() -> np.ndarray:
        return np.array([(q @ p.T).max(axis=1).mean() for p in docs], dtype=np.float32)

    np.testing.assert_allclose(densparse.maxsim(q, docs), ref(), rtol=1e-4, atol=1e-5)
    out: dict = {"n_docs": n_docs, "rows": int(lens.sum()), "d": d, "m": m, "rows_": []}
    for name, fn, t in (
        ("densparse maxsim", lambda: densparse.maxsim(q, docs), None),
        ("densparse maxsim", lambda: densparse.maxsim(q, docs, threads=1), 1),
        ("numpy reference", ref, None),
    ):
        fn()
        fn()  # two warm-up passes: the first numpy pass ran 20x slower on the test machine
        times = timed_runs(fn, 3 if args.quick else 7, 30)
        out["rows_"].append((name, t, times))
        log(f"maxsim {name} threads={t}: {n_docs / med(times):,.0f} passages/s")
    return out


# --------------------------------------------------------------------------- report
def render(args, info, vers, bw, qres, ms, t_total) -> str:
    lines = [MARK_START, SECTION_TITLE, ""]
    lines += run_header(info, f" (run took {t_total / 60:.1f} min)")
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    lines.append(
        "- Data: random normal float32 vectors and queries (numpy, seed "
        f"{args.seed}); k = {K}; timings are medians of up to {args.reps} runs."
    )
    if args.quick:
        lines.append("- **--quick run: tiny sizes, the numbers mean nothing.**")
    lines.append(
        "- Cut to fit ~12 minutes on this machine: peers run on float32 only (they have no "
        "int8-with-scale storage); numpy batches at 1M rows run twice; usearch batches twice."
    )
    lines.append("")
    goals = []
    if bw:
        lines += [
            "### Memory read bandwidth (measured in this run)",
            "",
            "Method: sum of a "
            f"{bw['bytes'] / 2**30:.2f} GiB float32 array, 4 SIMD accumulators, one pass "
            "per run, median of 9 (`densparse._core._dense_stream_sum`; the array is far "
            "larger than the caches, so this is DRAM read bandwidth). numpy's single-thread "
            "`arr.sum()` is a cross-check. Probed at the start and at the end of the run; the "
            "table shows both and the percentages below use the higher one. The 2-core VM is "
            "shared with other jobs, so single runs vary by up to 2x; a figure above 100% means "
            "the probes ran at busier moments than that search.",
            "",
            md_table(
                ["probe", "threads", "GB/s (start)", "GB/s (end)", "used"],
                [
                    [name, th, *(fmt_num(bw[w][k]) for w in ("first", "second")), fmt_num(bw[k])]
                    for name, th, k in (
                        ("stream sum (Rust)", "1", "1"),
                        ("stream sum (Rust)", thread_label(None), "all"),
                        ("numpy arr.sum()", "1", "numpy"),
                    )
                ],
            ),
            "",
        ]

    def bw_of(t):
        if not bw:
            return None
        return bw["1"] if t == 1 else bw["all"]

    if qres and qres["one"]:
        rows = []
        for r in qres["one"]:
            gbs = r["bytes"] / med(r["times"]) / 1e9
            ref = bw_of(r["threads"])
            rows.append(
                [
                    f"{r['n']:,} x {r['d']}",
                    r["dtype"],
                    r["impl"],
                    thread_label(r["threads"]),
                    str(len(r["times"])),
                    fmt_num(med(r["times"]) * 1e3),
                    fmt_num(gbs),
                    "n/a" if ref is None else f"{100 * gbs / ref:.0f}%",
                ]
            )
        lines += [
            "### One query, top-10 (latency)",
            "",
            "GB/s = bytes of stored vectors (int8: plus 4-byte scales) / median latency; "
            "% = of the bandwidth measured above with the same thread count.",
            "",
            md_table(
                [
                    "size",
                    "storage",
                    "implementation",
                    "threads",
                    "runs",
                    "median (ms)",
                    "GB/s",
                    "% of bandwidth",
                ],
                rows,
            ),
            "",
        ]
        # Ratios and goals on float32.
        ratio_rows = []
        for r in qres["one"]:
            if r["impl"] != "densparse" or r["dtype"] != "float32":
                continue
            row = [f"{r['n']:,} x {r['d']} ({thread_label(r['threads'])})"]
            for peer in ("numpy matvec+argpartition", "faiss IndexFlatIP", "usearch exact"):
                p = [
                    o
                    for o in qres["one"]
                    if o["impl"] == peer
                    and o["n"] == r["n"]
                    and o["d"] == r["d"]
                    and (o["threads"] == r["threads"] or peer.startswith("numpy"))
                ]
                row.append(fmt_ratio(med(p[0]["times"]) / med(r["times"])) if p else "n/a")
            ratio_rows.append(row)
            ref = bw_of(r["threads"])
            if ref:
                share = r["bytes"] / med(r["times"]) / 1e9 / ref
                met = met_mark(share >= 0.8)
                goals.append(
                    f"- Goal: one query f32 at {r['n']:,} x {r['d']} "
                    f"({thread_label(r['threads'])} threads) >= 80% of read bandwidth: "
                    f"measured {100 * share:.0f}% — {met}"
                )
        lines += [
            "Speed ratio densparse float32 / peer (higher = densparse faster; numpy uses its "
            "BLAS threads in both rows):",
            "",
            md_table(["densparse f32 one query", "vs numpy", "vs faiss", "vs usearch"], ratio_rows),
            "",
        ]
    if qres and qres["batch"]:
        rows = []
        for r in qres["batch"]:
            rows.append(
                [
                    f"{r['n']:,} x {r['d']}",
                    r["dtype"],
                    r["impl"],
                    str(len(r["times"])),
                    fmt_num(med(r["times"])),
                    fmt_num(64 / med(r["times"])),
                ]
            )
        lines += [
            "### Batches of 64 queries, top-10 (all threads)",
            "",
            md_table(
                ["size", "storage", "implementation", "runs", "median (s)", "queries/s"], rows
            ),
            "",
        ]
        ratio_rows = []
        for r in qres["batch"]:
            if r["impl"] != "densparse":
                continue
            row = [f"{r['n']:,} x {r['d']} {r['dtype']}"]
            for peer in ("numpy GEMM+argpartition", "faiss IndexFlatIP", "usearch exact"):
                p = [
                    o
                    for o in qres["batch"]
                    if o["impl"] == peer and o["n"] == r["n"] and o["d"] == r["d"]
                ]
                ratio = med(p[0]["times"]) / med(r["times"]) if p else None
                row.append(fmt_ratio(ratio))
                if r["dtype"] == "float32" and ratio is not None and peer != "usearch exact":
                    what = f"64-query batch f32 at {r['n']:,} x {r['d']} vs {peer}"
                    goals.append(goal_line(what, ratio, 1.0))
            ratio_rows.append(row)
        lines += [
            "Speed ratio densparse / peer (peers store float32):",
            "",
            md_table(["densparse batch", "vs numpy", "vs faiss", "vs usearch"], ratio_rows),
            "",
        ]
    if ms:
        rows = []
        ours = None
        for name, t, times in ms["rows_"]:
            rate = ms["n_docs"] / med(times)
            rows.append(
                [
                    name,
                    thread_label(t) if name.startswith("densparse") else "BLAS",
                    str(len(times)),
                    fmt_num(med(times)),
                    fmt_num(rate),
                ]
            )
            if name.startswith("densparse") and t is None:
                ours = med(times)
        ref = next(med(tt) for n_, _, tt in ms["rows_"] if n_.startswith("numpy"))
        lines += [
            "### ColBERT MaxSim",
            "",
            f"One {ms['m']}-row query against {ms['n_docs']:,} passages of 32-255 rows "
            f"({ms['rows']:,} rows in all), dim {ms['d']} (BGE-M3 ColBERT width).",
            "",
            md_table(["implementation", "threads", "runs", "median (s)", "passages/s"], rows),
            "",
        ]
        if ours:
            goals.append(
                f"- MaxSim densparse / numpy reference: {fmt_ratio(ref / ours)} (no target set)"
            )
    if goals:
        lines += ["### Goals", "", *goals, ""]
    lines.append(MARK_END)
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument(
        "--sizes",
        default="100000x384,100000x768,1000000x384,1000000x768",
        help="comma-separated NxD list",
    )
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    a = ap.parse_args(argv)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    for s in a.sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}: expected {', '.join(SECTIONS)}")
    return a


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    info, vers = machine_info(), versions()
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {info['loadavg']}; {vers}")
    if args.quick:
        sizes = [(5000, 64), (20000, 384)]
    else:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    bw = section_bw(args) if "bw" in args.sections else None
    qres = None
    if "one" in args.sections or "batch" in args.sections:
        qres = section_one_and_batch(args, sizes, "one" in args.sections, "batch" in args.sections)
    ms = section_maxsim(args) if "maxsim" in args.sections else None
    if bw is not None:
        # The machine is shared: probe again at the end and keep the higher figure per thread
        # count, so a busy moment during the first probe cannot flatter the percentages.
        log("bandwidth probe again (end of run)")
        bw2 = section_bw(args)
        bw["first"] = {k: bw[k] for k in ("1", "all", "numpy")}
        bw["second"] = {k: bw2[k] for k in ("1", "all", "numpy")}
        for k in ("1", "all", "numpy"):
            bw[k] = max(bw[k], bw2[k])
    section = render(args, info, vers, bw, qres, ms, time.perf_counter() - t0)
    write_results(args.out, section, MARK_START, MARK_END)
    log(f"wrote {args.out} ({(time.perf_counter() - t0) / 60:.1f} min in all)")


if __name__ == "__main__":
    main()
