#!/usr/bin/env python3
"""densparse.SparseIndex against scipy on SPLADE-like synthetic data: exact top-10 queries/s.

Data (fixed seed, vectorised numpy): ``--docs`` documents with lognormal non-zero counts
(median ~``--nnz``), term ids Zipfian (density ~ 1/rank) over each vocabulary in ``--vocabs``
with the rank -> id map shuffled, duplicates within a document dropped; weights =
idf-like factor of the term's rank (frequent terms get smaller weights, as SPLADE and
BGE-M3 give to stopwords) x lognormal noise. Queries: 20-40 non-zeros from the same law.

Per vocabulary:

* build time and bytes per posting for float32 / float16 / uint8 (and doc_top_n=64);
* exact top-10 queries/s: densparse (1 thread and all threads, each dtype), scipy CSR
  (``X @ q`` with a dense query vector, then argpartition; single-threaded like scipy)
  and bm25s-style CSC accumulation (sum the query terms' columns with ``np.bincount``);
* with pruning: documents pruned to their 64 largest weights (doc_top_n=64), queries
  pruned (query_top_n=10; query_cut=0.1): queries/s and recall@10 vs the exact top-10;
* batches of each ``--batch-sizes`` size (first queries) in one call (densparse
  ``search(Q, k=10)``: one MaxScore task per query) against scipy's batched product
  ``Q @ D.T`` (``D.T`` converted to CSR once, outside the timing) in chunks of
  ``--scipy-chunk`` queries (the product's output is nearly dense) + a per-row top-k
  (argpartition over the row's non-zeros).

    python3 benches/bench_sparse.py            # real sizes (1M docs x 2 vocabularies)
    python3 benches/bench_sparse.py --quick    # tiny smoke test, numbers meaningless
    python3 benches/bench_sparse.py --docs 200000 --vocabs 30522,250000 --queries 200 \
        --batch-docs 1000000                   # + batches on 1M documents

Results go to ``--out`` (benches/RESULTS.md) between ``<!-- bench_sparse:start -->`` and
``<!-- bench_sparse:end -->``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if list((REPO / "python" / "densparse").glob("_core*.so")):
    sys.path.insert(0, str(REPO / "python"))  # prefer the in-tree build over an installed one
import densparse  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scipy  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from _common import (  # noqa: E402
    Row,
    fmt_num,
    goal_line,
    log,
    machine_info,
    md_table,
    rate_table,
    ratio_table,
    run_header,
    set_log_name,
    timed_runs,
    write_results,
)

MARK_START, MARK_END = "<!-- bench_sparse:start -->", "<!-- bench_sparse:end -->"
K = 10


# --------------------------------------------------------------------------- data
def splade_like(n: int, vocab: int, nnz: float, sigma: float, seed: int, chunk: int = 200_000):
    """CSR (float32 data, int32 indices, int64 indptr) of ``n`` SPLADE-like vectors."""
    rng = np.random.default_rng(seed)
    perm = np.random.default_rng(12345).permutation(vocab)  # rank -> term id, same for queries
    log_v = np.log(vocab + 1.0)
    parts_i, parts_w, lens_all = [], [], []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        lens = np.exp(rng.normal(np.log(nnz), sigma, m)).round().astype(np.int64)
        lens = lens.clip(1, 8 * int(nnz))
        total = int(lens.sum())
        ranks = (np.exp(rng.random(total) * log_v) - 1.0).astype(np.int64).clip(0, vocab - 1)
        indptr = np.zeros(m + 1, np.int64)
        np.cumsum(lens, out=indptr[1:])
        # Duplicates within a row: sort each row (scipy, in C) and keep the first of each.
        carry = ranks.astype(np.float32)  # ranks travel with the ids through the sort
        x = sp.csr_matrix((carry, perm[ranks].astype(np.int32), indptr), (m, vocab))
        x.has_sorted_indices = False
        x.sort_indices()
        ind = x.indices
        keep = np.ones(total, bool)
        keep[1:] = ind[1:] != ind[:-1]
        keep[indptr[:-1]] = True
        r = x.data[keep].astype(np.int64)  # the ranks travelled with the indices
        idf = 0.15 + np.log1p(r) / log_v
        w = (idf * rng.lognormal(0.0, 0.5, r.size)).astype(np.float32)
        parts_i.append(ind[keep])
        parts_w.append(w)
        lens_all.append(np.add.reduceat(keep, indptr[:-1]).astype(np.int64))
    lens = np.concatenate(lens_all)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=indptr[1:])
    X = sp.csr_matrix((np.concatenate(parts_w), np.concatenate(parts_i), indptr), (n, vocab))
    X.has_sorted_indices = True
    return X


def queries_like(n: int, vocab: int, seed: int):
    rng = np.random.default_rng(seed)
    Q = splade_like(n, vocab, 30, 0.25, seed)
    # Keep 20-40 non-zeros where the draw allows.
    rows = []
    for i in range(n):
        a, b = Q.indptr[i], Q.indptr[i + 1]
        want = int(rng.integers(20, 41))
        rows.append((Q.indices[a:b][:want], Q.data[a:b][:want]))
    return rows


def pairs_to_csr(rows, vocab):
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(i) for i, _ in rows], out=indptr[1:])
    return sp.csr_matrix(
        (np.concatenate([w for _, w in rows]), np.concatenate([i for i, _ in rows]), indptr),
        shape=(len(rows), vocab),
    )


# --------------------------------------------------------------------------- peers
def scipy_csr_topk(X, rows, vocab):
    out = []
    for ind, w in rows:
        q = np.zeros(vocab, np.float32)
        q[ind] = w
        s = X @ q
        top = np.argpartition(-s, K)[:K]
        out.append(top[np.lexsort((top, -s[top]))])
    return out


def csc_topk(Xc, rows, n_docs):
    out = []
    ip, ix, data = Xc.indptr, Xc.indices, Xc.data
    for ind, w in rows:
        docs = np.concatenate([ix[ip[t] : ip[t + 1]] for t in ind])
        vals = np.concatenate([data[ip[t] : ip[t + 1]] * wt for t, wt in zip(ind, w)])
        s = np.bincount(docs, weights=vals, minlength=n_docs)
        top = np.argpartition(-s, K)[:K]
        out.append(top[np.lexsort((top, -s[top]))])
    return out


def scipy_batch_topk(XT, Q, chunk):
    """Top-K ids per query from ``Q @ XT`` (XT = D.T as CSR), ``chunk`` queries at a time."""
    out = []
    for a in range(0, Q.shape[0], chunk):
        S = (Q[a : a + chunk] @ XT).tocsr()
        for i in range(S.shape[0]):
            lo, hi = S.indptr[i], S.indptr[i + 1]
            d, ix = S.data[lo:hi], S.indices[lo:hi]
            top = np.argpartition(-d, K)[:K] if len(d) > K else np.arange(len(d))
            out.append(ix[top[np.lexsort((ix[top], -d[top]))]])
        del S
    return out


def recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, exact)]))


def measure_batches(args: argparse.Namespace, X, rows, vocab: int, label: str) -> dict:
    """Batches of each size in ``--batch-sizes``: scipy's batched product + per-row top-k
    against densparse float32 ``search(Q[:b], k)`` (1 thread and all threads)."""
    XT = X.T.tocsr()
    ix = densparse.SparseIndex(dtype="float32")
    ix.add(X)
    out: dict = {"label": label, "sizes": [], "agree": []}
    for b in args.batch_size_list:
        b = min(b, len(rows))
        Qb = pairs_to_csr(rows[:b], vocab)
        log(f"  {label}: batch of {b}: scipy batched Q @ D.T, densparse float32")
        peer: dict = {}

        def run_scipy_batch(XT=XT, Qb=Qb, peer=peer):
            peer["ids"] = scipy_batch_topk(XT, Qb, args.scipy_chunk)

        sc = Row(
            f"scipy Q @ D.T + per-row argpartition, batch of {b}",
            "1",
            b,
            timed_runs(run_scipy_batch, args.reps, 120),
        )
        ours = []
        for tlabel, threads in [("1", 1), (f"all ({args.cores})", None)]:
            got: dict = {}

            def run(threads=threads, got=got, Qb=Qb):
                got["ids"] = ix.search(Qb, k=K, threads=threads)[0]

            ours.append(
                Row(f"densparse float32, batch of {b}", tlabel, b, timed_runs(run, args.reps, 60))
            )
            out["agree"].append(recall(got["ids"], peer["ids"]))
            log(f"    {tlabel} thread(s): {ours[-1].rate:,.0f} q/s vs scipy {sc.rate:,.0f} q/s")
        out["sizes"].append((b, sc, ours))
    ix = None
    del XT
    gc.collect()
    return out


def render_batches(args: argparse.Namespace, bt: dict) -> list[str]:
    lines = [
        f"Batches in one call vs scipy's batched product ({bt['label']}; top-10 sets agree "
        f"{100 * min(bt['agree']):.2f}% or more):",
        "",
    ]
    rows = []
    for _, sc, ours in bt["sizes"]:
        rows += [sc, *ours]
    lines += [rate_table(rows, "queries", "queries/s"), ""]
    for b, sc, ours in bt["sizes"]:
        for r in ours:
            lines.append(
                goal_line(
                    f"{bt['label']}: batch of {b}, densparse float32 ({r.threads} thread(s)) / "
                    "scipy batched Q @ D.T + top-k (1 thread)",
                    r.rate / sc.rate,
                    10,
                )
            )
    return [*lines, ""]


# --------------------------------------------------------------------------- one vocabulary
def run_vocab(args: argparse.Namespace, vocab: int) -> dict:
    res: dict = {"vocab": vocab}
    log(f"=== vocabulary {vocab:,}: generating {args.docs:,} documents")
    t0 = time.perf_counter()
    X = splade_like(args.docs, vocab, args.nnz, 0.5, args.seed)
    res["gen_s"] = time.perf_counter() - t0
    res["nnz"] = int(X.nnz)
    rows = queries_like(args.queries, vocab, args.seed + 1)
    res["q_nnz"] = float(np.mean([len(i) for i, _ in rows]))
    Q = pairs_to_csr(rows, vocab)
    log(f"  {X.nnz:,} non-zeros ({X.nnz / args.docs:.1f}/doc) in {res['gen_s']:.1f}s")
    n_peer = min(args.peer_queries, len(rows))

    peers: list[Row] = []
    log(f"  scipy CSR X @ q on {n_peer} queries")
    exact_peer = None

    def run_scipy(X=X):
        nonlocal exact_peer
        exact_peer = scipy_csr_topk(X, rows[:n_peer], vocab)

    peers.append(Row("scipy CSR X @ q + argpartition", "1", n_peer, timed_runs(run_scipy, 1, 60)))
    if not args.no_csc:
        log("  bm25s-style CSC accumulation")
        t = time.perf_counter()
        Xc = X.tocsc()
        res["csc_convert_s"] = time.perf_counter() - t
        peers.append(
            Row(
                "CSC column accumulation (bm25s-style)",
                "1",
                n_peer,
                timed_runs(lambda: csc_topk(Xc, rows[:n_peer], args.docs), 1, 60),
            )
        )
        del Xc
        gc.collect()

    ours: list[Row] = []
    builds = []
    exact_ids = None
    for dtype, top_n in [("float32", None), ("float16", None), ("uint8", None), ("float32", 64)]:
        name = f"densparse {dtype}" + (f" doc_top_n={top_n}" if top_n else "")
        ix = densparse.SparseIndex(dtype=dtype, doc_top_n=top_n)
        t = time.perf_counter()
        ix.add(X)
        build_s = time.perf_counter() - t
        st = ix.stats()
        builds.append(
            [
                name,
                fmt_num(build_s),
                fmt_num(args.docs / build_s),
                fmt_num(st["bytes_per_posting"]),
                f"{st['n_postings']:,}",
                fmt_num(st["postings_bytes"] / 2**20),
            ]
        )
        log(f"  {name}: built in {build_s:.1f}s, {st['bytes_per_posting']:.2f} B/posting")
        configs = [("1", 1), (f"all ({args.cores})", None)] if top_n is None else [("1", 1)]
        for label, threads in configs:
            got = {}

            def run(threads=threads, got=got, ix=ix):
                got["ids"] = ix.search(Q, k=K, threads=threads)[0]

            times = timed_runs(run, args.reps, 60)
            r = Row(name, label, len(rows), times)
            if dtype == "float32" and top_n is None and threads == 1:
                exact_ids = got["ids"]
                # Agreement with scipy (ties aside): the same top-10 sets.
                res["agree_scipy"] = recall(exact_ids[:n_peer], exact_peer)
            r.extra["recall"] = recall(got["ids"], exact_ids)
            ours.append(r)
            log(f"    {label} thread(s): {r.rate:,.0f} q/s, recall@10 {r.extra['recall']:.4f}")
        if dtype == "float32" and top_n is None:
            qprune = [
                ("query_top_n=10", {"query_top_n": 10}),
                ("query_cut=0.1", {"query_cut": 0.1}),
            ]
            for qname, kw in qprune:
                got = {}

                def runq(kw=kw, got=got, ix=ix):
                    got["ids"] = ix.search(Q, k=K, threads=1, **kw)[0]

                times = timed_runs(runq, args.reps, 60)
                r = Row(f"densparse float32 {qname}", "1", len(rows), times)
                r.extra["recall"] = recall(got["ids"], exact_ids)
                ours.append(r)
                log(f"    {qname}: {r.rate:,.0f} q/s, recall@10 {r.extra['recall']:.4f}")
        ix = None
        gc.collect()
    res.update(peers=peers, ours=ours, builds=builds)
    label = f"{args.docs:,} documents, vocabulary {vocab:,}"
    res["batches"] = measure_batches(args, X, rows, vocab, label)
    X = None
    gc.collect()
    return res


def render(args, info, results, big, t_total) -> str:
    lines = [MARK_START, "## Learned sparse: exact top-10 (densparse.SparseIndex vs scipy)", ""]
    lines += run_header(info, f" (run took {t_total / 60:.1f} min)")
    lines += [
        f"- numpy {np.__version__}, scipy {scipy.__version__}, densparse {densparse.__version__}",
        f"- Data: {args.docs:,} SPLADE-like documents (lognormal non-zero counts, median "
        f"~{args.nnz}; Zipfian term ids; idf-like x lognormal weights), {args.queries} queries "
        f"(20-40 non-zeros), k = {K}, seed {args.seed}. Peers time the first "
        f"{args.peer_queries} queries (one run each: they are slow); densparse runs all "
        f"queries, median of {args.reps} runs.",
    ]
    if args.quick:
        lines.append("- **--quick run: tiny sizes, the numbers mean nothing.**")
    else:
        lines.append(
            f"- Scope: nothing cut ({args.docs:,} documents for each vocabulary); scipy and "
            "the CSC peer are timed on fewer queries only because each takes ~0.1 s."
        )
    load = info.get("loadavg") or (0.0,)
    if load[0] >= 0.5 * (info.get("usable_cores") or 1):
        lines.append(
            f"- Note: the machine was shared with other jobs (load average {load[0]:.2f} at the "
            f"start on {info.get('usable_cores')} cores): the all-threads rows compete with them "
            "and understate scaling; single-thread rows are affected less."
        )
    for res in results:
        v = res["vocab"]
        lines += ["", f"### Vocabulary {v:,}", ""]
        lines.append(
            f"{res['nnz']:,} postings ({res['nnz'] / args.docs:.1f} per document), "
            f"queries {res['q_nnz']:.1f} non-zeros on average; data generated in "
            f"{res['gen_s']:.1f}s; top-10 sets of densparse float32 vs scipy agree "
            f"{100 * res.get('agree_scipy', float('nan')):.2f}%."
        )
        lines += ["", rate_table(res["peers"] + res["ours"], "queries", "queries/s"), ""]
        lines.append(
            md_table(
                ["densparse run", "threads", "recall@10 vs exact float32"],
                [[r.name, r.threads, f"{r.extra['recall']:.4f}"] for r in res["ours"]],
            )
        )
        lines += ["", ratio_table(res["ours"], res["peers"]), ""]
        lines += render_batches(args, res["batches"])
        lines.append(
            md_table(
                ["Index", "build (s)", "docs/s", "bytes/posting", "postings", "postings MiB"],
                res["builds"],
            )
        )
        scipy_row = res["peers"][0]
        one = next(r for r in res["ours"] if r.name == "densparse float32" and r.threads == "1")
        allr = next(
            (r for r in res["ours"] if r.name == "densparse float32" and r.threads != "1"), None
        )
        lines += [
            "",
            goal_line(
                f"vocab {v:,}: exact top-10 q/s, densparse float32 1 thread / scipy CSR",
                one.rate / scipy_row.rate,
                10,
            ),
        ]
        if allr is not None:
            lines.append(
                goal_line(
                    f"vocab {v:,}: exact top-10 q/s, densparse float32 all threads / scipy CSR",
                    allr.rate / scipy_row.rate,
                    10,
                )
            )
    if big is not None:
        lines += ["", f"### {big['label']}", "", f"Data generated in {big['gen_s']:.1f}s.", ""]
        lines += render_batches(args, big)
    lines += ["", MARK_END]
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--nnz", type=float, default=100.0, help="median non-zeros per document")
    p.add_argument("--vocabs", default="30000,250000", help="comma-separated vocabulary sizes")
    p.add_argument("--queries", type=int, default=400, help="queries for densparse")
    p.add_argument("--peer-queries", type=int, default=30, help="queries timed for scipy/CSC")
    p.add_argument("--no-csc", action="store_true", help="skip the CSC accumulation peer")
    p.add_argument("--scipy-chunk", type=int, default=64, help="queries per scipy batched product")
    p.add_argument("--reps", type=int, default=3, help="timed runs per densparse measurement")
    p.add_argument("--batch-sizes", default="64,200", help="batch sizes compared with scipy")
    p.add_argument(
        "--batch-docs",
        type=int,
        default=0,
        help="also compare batches on this many documents (first vocabulary); 0: skip",
    )
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    a = p.parse_args(argv)
    if a.quick:
        a.docs, a.queries, a.peer_queries, a.reps = 20_000, 100, 10, 1
        a.vocabs = "3000"
        a.batch_sizes = "64,100"
        a.batch_docs = min(a.batch_docs, 40_000)
    a.vocab_list = [int(v) for v in a.vocabs.split(",")]
    a.batch_size_list = [int(v) for v in a.batch_sizes.split(",")]
    return a


def main(argv: Optional[list[str]] = None) -> None:
    set_log_name("bench_sparse")
    args = parse_args(argv)
    t0 = time.perf_counter()
    info = machine_info()
    args.cores = info["usable_cores"]
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {info['loadavg']}")
    results = [run_vocab(args, v) for v in args.vocab_list]
    big = None
    if args.batch_docs:
        vocab = args.vocab_list[0]
        log(f"=== batches on {args.batch_docs:,} documents, vocabulary {vocab:,}")
        t = time.perf_counter()
        X = splade_like(args.batch_docs, vocab, args.nnz, 0.5, args.seed)
        gen_s = time.perf_counter() - t
        rows = queries_like(max(args.batch_size_list), vocab, args.seed + 1)
        label = f"{args.batch_docs:,} documents, vocabulary {vocab:,}"
        big = measure_batches(args, X, rows, vocab, label)
        big["gen_s"] = gen_s
        X = None
        gc.collect()
    section = render(args, info, results, big, time.perf_counter() - t0)
    write_results(args.out, section, MARK_START, MARK_END)
    log(f"wrote {args.out} ({(time.perf_counter() - t0) / 60:.1f} min in all)")


if __name__ == "__main__":
    main()
