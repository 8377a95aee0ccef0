#!/usr/bin/env python3
"""densparse against its peers (jieba, rjieba, bm25s, rank_bm25, tantivy), side by side in one run.

Sections (``--sections``, comma separated; default: all):

* ``seg``    Chinese segmentation, MB/s of UTF-8 input: jieba, rjieba, densparse (one text
             at a time, single thread) and densparse ``tokenize_batch`` (all cores).
* ``index``  tokenise + index end to end, docs/s: SciFact and a synthetic corpus of ``--docs``
             documents; bm25s, rank_bm25, tantivy (all cores), densparse (all cores and one
             thread). Every run is a fresh subprocess (its peak RSS is kept for ``memory``).
* ``query``  exact top-10 queries/s on the synthetic corpus (densparse, bm25s and tantivy
             index the SAME tokens, k1 1.2, b 0.75; batches and one query per call), on
             SciFact and on STARD; top-10 agreement between densparse and bm25s.
* ``size``   bytes per posting, file size on disk, load time (mmap) on the synthetic corpus.
* ``memory`` peak RSS of indexing the synthetic corpus from text, each in a fresh subprocess.

Run it on a quiet machine (timings are medians of ``--reps`` runs; nothing is asserted):

    python3 benches/bench_bm25.py                 # real sizes (1M synthetic docs, ~20-25 min)
    python3 benches/bench_bm25.py --quick         # tiny sizes: a smoke test, numbers meaningless
    python3 benches/bench_bm25.py --sections seg,query --docs 200000

Results go to ``--out`` (benches/RESULTS.md), between ``<!-- bench_bm25:start -->`` and
``<!-- bench_bm25:end -->``; the rest of that file is kept. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    Row,
    densparse,
    fmt_num,
    fmt_ratio,
    goal_line,
    log,
    machine_info,
    md_table,
    med,
    package_versions,
    peak_rss_kb,
    portable,
    rate_table,
    ratio_table,
    rss_mb,
    run_header,
    set_log_name,
    timed_runs,
    write_results,
)

set_log_name("bench_bm25")
DENSPARSE_ROOT = str(Path(densparse.__file__).resolve().parent.parent)

SECTIONS = ("seg", "index", "query", "size", "memory")
MARK_START, MARK_END = "<!-- bench_bm25:start -->", "<!-- bench_bm25:end -->"
SECTION_TITLE = "## BM25 and segmentation (benches/bench_bm25.py)"

# Synthetic corpus: bump SYNTH_VERSION when the generator changes (the cache key).
SYNTH_VERSION = 2
SYNTH_VOCAB = 200_000
SYNTH_ZIPF_S = 1.1
SYNTH_MEAN_WORDS = 100.0
SYNTH_SIGMA = 0.8
SYNTH_MIN_WORDS, SYNTH_MAX_WORDS = 5, 2000

GOAL_SEG_JIEBA, GOAL_SEG_RJIEBA = 40.0, 1.5
GOAL_INDEX_BM25S = 10.0
GOAL_INDEX_TANTIVY = 2.0
GOAL_QUERY_BM25S = 3.0
GOAL_QUERY_TANTIVY = 5.0
GOAL_QUERY_BM25S_REAL = 1.5
# tantivy fixes k1 = 1.2, b = 0.75 (tantivy-py cannot set them): the synthetic query
# comparison builds every index with those.
SYNTH_K1, SYNTH_B = 1.2, 0.75
TANTIVY_HEAP = 512 * 2**20


# --------------------------------------------------------------------------- helpers
def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def utf8_mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def versions() -> dict:
    return package_versions(
        (
            "jieba",
            "rjieba",
            "bm25s",
            "rank-bm25",
            "tantivy",
            "PyStemmer",
            "numpy",
            "scipy",
            "numba",
        ),
        missing="not installed",
    )


def stard_seg_texts(data_dir: Path) -> list[str]:
    """STARD titles, article texts and query texts: the segmentation input."""
    texts: list[str] = []
    for d in read_jsonl(data_dir / "stard" / "corpus.jsonl"):
        texts += [d.get("title") or "", d.get("text") or ""]
    texts += [d.get("text") or "" for d in read_jsonl(data_dir / "stard" / "queries.jsonl")]
    return [t for t in texts if t.strip()]


def repeat_to_mb(base: list[str], mb: float) -> list[str]:
    """``base`` repeated (whole texts, in order) until the UTF-8 size reaches ``mb``."""
    out, size, target = [], 0, mb * 1e6
    while size < target:
        for t in base:
            out.append(t)
            size += len(t.encode("utf-8"))
            if size >= target:
                break
    return out


def scifact_texts(data_dir: Path, limit: Optional[int] = None) -> list[str]:
    docs = read_jsonl(data_dir / "scifact" / "corpus.jsonl")[:limit]
    return [f"{d.get('title') or ''} {d.get('text') or ''}" for d in docs]


def stard_texts(data_dir: Path) -> list[str]:
    return [
        f"{d.get('title') or ''} {d.get('text') or ''}"
        for d in read_jsonl(data_dir / "stard" / "corpus.jsonl")
    ]


def query_texts(data_dir: Path, name: str, limit: Optional[int] = None) -> list[str]:
    return [d["text"] for d in read_jsonl(data_dir / name / "queries.jsonl")][:limit]


# --------------------------------------------------------------------------- synthetic corpus
def synth_base(cache: Path, seed: int) -> Path:
    return cache / f"synth_v{SYNTH_VERSION}_seed{seed}"


def synth_paths(cache: Path, n_docs: int, seed: int) -> dict[str, Path]:
    base = synth_base(cache, seed)
    return {
        "vocab": Path(f"{base}_vocab{SYNTH_VOCAB}.txt"),
        "ids": Path(f"{base}_n{n_docs}_ids.npy"),
        "offsets": Path(f"{base}_n{n_docs}_offsets.npy"),
        "texts": Path(f"{base}_n{n_docs}_texts.txt"),
    }


def zipf_cdf(n: int, s: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(w)
    return cdf / cdf[-1]


def zipf_draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """Word ids (0 = most frequent) with P(rank r) proportional to r^-s."""
    ids = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(ids, len(cdf) - 1).astype(np.int32)


def make_vocab(seed: int, n: int) -> list[str]:
    """``n`` distinct lowercase ascii pseudo-words. Length grows with rank like a natural
    language's (about 3 letters for the top words, 8-9 for the rarest; ~5 per running word
    under the Zipf law), with noise."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    lengths = np.clip(np.rint(3 + 1.1 * np.log10(ranks) + rng.normal(0, 1.0, n)), 2, 16)
    letters = (rng.integers(0, 26, size=(n, 40), dtype=np.uint8) + ord("a")).astype(np.uint8)
    seen: set[str] = set()
    out: list[str] = []
    for r in range(n):
        length, row = int(lengths[r]), letters[r]
        w = row[:length].tobytes().decode("ascii")
        while w in seen:  # collisions (short words): lengthen the word
            length += 1
            w = row[:length].tobytes().decode("ascii")
        seen.add(w)
        out.append(w)
    return out


def ensure_synth(cache: Path, n_docs: int, seed: int) -> dict[str, Path]:
    """Generate (once) and cache the synthetic corpus: vocab, token ids, offsets, texts."""
    paths = synth_paths(cache, n_docs, seed)
    if all(p.exists() for p in paths.values()):
        return paths
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if paths["vocab"].exists():
        vocab = paths["vocab"].read_text(encoding="ascii").split("\n")
    else:
        log(f"generating the synthetic vocabulary ({SYNTH_VOCAB:,} words)")
        vocab = make_vocab(seed, SYNTH_VOCAB)
        paths["vocab"].write_text("\n".join(vocab), encoding="ascii")
    log(f"generating the synthetic corpus ({n_docs:,} docs) into {cache}")
    rng = np.random.default_rng(seed + 1)
    mu = math.log(SYNTH_MEAN_WORDS) - SYNTH_SIGMA**2 / 2  # lognormal with mean SYNTH_MEAN_WORDS
    lengths = np.clip(
        np.rint(rng.lognormal(mu, SYNTH_SIGMA, n_docs)), SYNTH_MIN_WORDS, SYNTH_MAX_WORDS
    )
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths.astype(np.int64), out=offsets[1:])
    total = int(offsets[-1])
    cdf = zipf_cdf(SYNTH_VOCAB, SYNTH_ZIPF_S)
    ids = np.empty(total, dtype=np.int32)
    chunk = 10_000_000
    for start in range(0, total, chunk):
        end = min(start + chunk, total)
        ids[start:end] = zipf_draw(rng, cdf, end - start)
    vocab_arr = np.array(vocab, dtype=object)
    tmp = paths["texts"].with_suffix(".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        step = 50_000
        for d0 in range(0, n_docs, step):
            d1 = min(d0 + step, n_docs)
            words = vocab_arr[ids[offsets[d0] : offsets[d1]]]
            base = offsets[d0]
            lines = [
                " ".join(words[offsets[i] - base : offsets[i + 1] - base]) for i in range(d0, d1)
            ]
            f.write("\n".join(lines))
            f.write("\n" if d1 < n_docs else "")
    os.replace(tmp, paths["texts"])
    np.save(paths["ids"], ids)
    np.save(paths["offsets"], offsets)
    log(
        f"synthetic corpus ready: {total:,} tokens, {total / n_docs:.1f} words/doc, "
        f"{paths['texts'].stat().st_size / 1e6:,.0f} MB of text ({time.perf_counter() - t0:.0f}s)"
    )
    return paths


def load_synth_texts(paths: dict[str, Path]) -> list[str]:
    return paths["texts"].read_text(encoding="ascii").split("\n")


def synth_queries(seed: int, n_queries: int, present: np.ndarray, n_vocab: int) -> list[list[int]]:
    """``n_queries`` queries of 2-8 distinct word ids from the same Zipf law, every word
    present in the corpus (``present[id]``)."""
    rng = np.random.default_rng(seed + 2)
    cdf = zipf_cdf(n_vocab, SYNTH_ZIPF_S)
    out = []
    for _ in range(n_queries):
        want = int(rng.integers(2, 9))
        q: list[int] = []
        while len(q) < want:
            w = int(zipf_draw(rng, cdf, 1)[0])
            if present[w] and w not in q:
                q.append(w)
        out.append(q)
    return out


def tantivy_index(docs: list[str], tokenizer: str, threads: int) -> Any:
    """An in-memory tantivy index of ``docs`` in one text field ``body`` (term frequencies,
    no positions: what BM25 needs), committed and merged; ``threads`` = 0: tantivy's choice
    (all cores)."""
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("body", stored=False, tokenizer_name=tokenizer, index_option="freq")
    index = tantivy.Index(sb.build())
    writer = index.writer(TANTIVY_HEAP, threads)
    for t in docs:
        writer.add_document(tantivy.Document(body=t))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    return index


def tantivy_queries(index: Any, queries: list[list[str]]) -> list:
    """Each token list as a tantivy OR of term queries (built once, outside the timing)."""
    import tantivy

    schema = index.schema
    return [
        tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "body", w)) for w in q]
        )
        for q in queries
    ]


# --------------------------------------------------------------------------- subprocess runs
def child_main(spec: dict) -> None:
    """One indexing run in a fresh process: load the corpus, warm up on a few docs, time
    ONE index build, report seconds and peak RSS (VmHWM, KiB) on stdout."""
    if spec["corpus"] == "scifact":
        texts = scifact_texts(Path(spec["data_dir"]), spec.get("corpus_limit"))
    else:
        texts = Path(spec["texts_path"]).read_text(encoding="ascii").split("\n")
    if spec.get("limit"):
        texts = texts[: spec["limit"]]
    lib = spec["lib"]
    if lib == "densparse":
        from densparse import BM25, Analyzer

        def build(docs: list[str]) -> Any:
            return BM25(analyzer=Analyzer(language="en")).index(docs, show_progress=False)

    elif lib == "bm25s":
        import bm25s
        import Stemmer

        def build(docs: list[str]) -> Any:
            tokens = bm25s.tokenize(
                docs, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False
            )
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            return retriever

    elif lib == "tantivy":

        def build(docs: list[str]) -> Any:
            return tantivy_index(docs, "en_stem", threads=0)

    elif lib == "rank_bm25":
        from rank_bm25 import BM25Okapi

        def build(docs: list[str]) -> Any:
            return BM25Okapi([t.lower().split() for t in docs])

    else:
        raise SystemExit(f"unknown lib {lib!r}")
    warm = build(texts[:200])
    del warm
    gc.collect()
    baseline = peak_rss_kb()
    t0 = time.perf_counter()
    built = build(texts)
    seconds = time.perf_counter() - t0
    peak = peak_rss_kb()
    extra = {}
    if lib == "densparse":
        extra = built.stats()
    result = {
        "seconds": seconds,
        "n_docs": len(texts),
        "baseline_kb": baseline,
        "maxrss_kb": peak,
        "extra": extra,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_child(spec: dict, env_extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [DENSPARSE_ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.update(env_extra or {})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['lib']} on {spec['corpus']} failed ({proc.returncode})")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"child {spec['lib']} on {spec['corpus']} printed no result")


def child_runs(
    spec: dict, reps: int, budget_s: float, env_extra: Optional[dict] = None
) -> list[dict]:
    """``reps`` fresh-process runs (fewer once they took ``budget_s`` in all)."""
    out: list[dict] = []
    for i in range(reps):
        r = run_child(spec, env_extra)
        out.append(r)
        log(f"  {spec['lib']} {spec['corpus']} run {i + 1}: {r['seconds']:.2f}s")
        if i + 1 < reps and sum(x["seconds"] for x in out) > budget_s:
            log(f"  budget of {budget_s:.0f}s reached after {len(out)} run(s)")
            break
    return out


# --------------------------------------------------------------------------- 1. segmentation
def section_seg(args: argparse.Namespace, ctx: dict) -> dict:
    import jieba
    import rjieba

    from densparse import Analyzer

    jieba.setLogLevel(60)
    base = stard_seg_texts(args.data_dir)
    big = repeat_to_mb(base, args.seg_mb)
    small = repeat_to_mb(base, args.seg_jieba_mb)
    mb_big, mb_small = utf8_mb(big), utf8_mb(small)
    log(
        f"seg: {len(base):,} distinct STARD texts ({utf8_mb(base):.2f} MB); "
        f"{mb_big:.2f} MB for densparse/rjieba, {mb_small:.2f} MB for jieba"
    )

    an = Analyzer(
        language="zh",
        mode="default",
        hmm=True,
        stopwords=None,
        lowercase=False,
        keep_punctuation=True,
    )
    jieba.initialize()  # dictionary load: excluded
    warm = base[:300]
    for t in warm:
        jieba.lcut(t)
        rjieba.cut(t)
        an.tokenize(t)
    an.tokenize_batch(warm)

    def run_jieba() -> None:
        for t in small:
            jieba.lcut(t)

    def run_rjieba() -> None:
        for t in big:
            rjieba.cut(t)

    def run_dens() -> None:
        tok = an.tokenize
        for t in big:
            tok(t)

    def run_dens_batch() -> None:
        an.tokenize_batch(big)

    # Fresh analyzers for the one-pass rows, built outside the timed region
    # (building one loads jieba's dictionary).
    fresh = [
        Analyzer(
            language="zh",
            mode="default",
            hmm=True,
            stopwords=None,
            lowercase=False,
            keep_punctuation=True,
        )
        for _ in range(args.reps + 1)
    ]

    def run_dens_cold() -> None:
        # A fresh analyzer's first pass over distinct texts: its cache of
        # Python str objects for seen tokens starts empty.
        tok = fresh.pop().tokenize
        for t in base:
            tok(t)

    def run_rjieba_distinct() -> None:
        for t in base:
            rjieba.cut(t)

    ncores = str(os.cpu_count())
    rows = []
    for name, threads, mb, fn in [
        ("jieba.lcut (HMM)", "1", mb_small, run_jieba),
        ("rjieba.cut (hmm=True)", "1", mb_big, run_rjieba),
        ("densparse tokenize (per text)", "1", mb_big, run_dens),
        ("rjieba.cut, one pass over distinct texts", "1", utf8_mb(base), run_rjieba_distinct),
        ("densparse tokenize, fresh analyzer, one pass", "1", utf8_mb(base), run_dens_cold),
        ("densparse tokenize_batch", ncores, mb_big, run_dens_batch),
    ]:
        log(f"seg: {name}")
        times = timed_runs(fn, args.reps, args.budget_s)
        rows.append(Row(name, threads, mb, times))
        log(f"  {rows[-1].rate:.2f} MB/s")

    log("seg: agreement on the distinct texts")
    j = [[w for w in jieba.lcut(t) if w.strip()] for t in base]
    r = [[w for w in rjieba.cut(t) if w.strip()] for t in base]
    r_raw = [rjieba.cut(t) for t in base]
    j_raw = [jieba.lcut(t) for t in base]
    d = [an.tokenize(t) for t in base]
    d_batch = an.tokenize_batch(base)
    n = len(base)

    def ndiff(a: list, b: list) -> int:
        return sum(x != y for x, y in zip(a, b))

    agree = md_table(
        ["Pair", "texts that differ", "of"],
        [
            ["densparse vs jieba", str(ndiff(d, j)), str(n)],
            ["rjieba vs jieba", str(ndiff(r, j)), str(n)],
            ["densparse vs rjieba", str(ndiff(d, r)), str(n)],
            ["rjieba vs jieba, whitespace tokens kept (raw)", str(ndiff(r_raw, j_raw)), str(n)],
            ["densparse tokenize vs tokenize_batch", str(ndiff(d, d_batch)), str(n)],
        ],
    )
    ntok = (sum(map(len, j)), sum(map(len, r)), sum(map(len, d)))

    jb, rj, dens, rj_cold, dens_cold, dens_b = rows
    md = [
        "### 1. Chinese segmentation (jieba precise mode, HMM on)",
        "",
        f"Input: STARD corpus titles + texts + query texts ({n:,} distinct texts, "
        f"{utf8_mb(base):.2f} MB), repeated whole to {mb_big:.2f} MB for densparse and rjieba "
        f"and {mb_small:.2f} MB for jieba (slow); each text is one call, MB/s of UTF-8 input "
        "normalises the sizes. Each implementation warmed up first (jieba's dictionary load "
        'excluded). densparse: `Analyzer(language="zh", mode="default", hmm=True, '
        "stopwords=None, lowercase=False, keep_punctuation=True)`.",
        "",
        rate_table(rows, "input (MB)", "MB/s"),
        "",
        ratio_table([dens, dens_b], [jb, rj]),
        "",
        "densparse keeps the Python str object of every token it has returned (a bounded "
        "cache), so repeated words cost no new str; the one-pass rows start from an empty "
        f"cache: densparse {dens_cold.rate:.2f} MB/s vs rjieba {rj_cold.rate:.2f} MB/s "
        f"= **{dens_cold.rate / rj_cold.rate:.2f}x**.",
        "",
        "Token-for-token agreement on the distinct texts (whitespace-only tokens dropped, as "
        f"densparse does; {ntok[0]:,} / {ntok[1]:,} / {ntok[2]:,} tokens from jieba / rjieba / "
        "densparse):",
        "",
        agree,
    ]
    goals = [
        goal_line(
            "densparse tokenize (1 thread) MB/s vs jieba", dens.rate / jb.rate, GOAL_SEG_JIEBA
        ),
        goal_line(
            "densparse tokenize (1 thread) MB/s vs rjieba", dens.rate / rj.rate, GOAL_SEG_RJIEBA
        ),
        goal_line(
            "densparse tokenize (1 thread, fresh analyzer, one pass) vs rjieba",
            dens_cold.rate / rj_cold.rate,
            GOAL_SEG_RJIEBA,
        ),
    ]
    return {"md": md, "goals": goals}


# --------------------------------------------------------------------------- 2. indexing
def index_rows(
    args: argparse.Namespace, corpus: str, n_docs: int, base_spec: dict, big: bool
) -> tuple[list[Row], list[str], dict]:
    """Rows for densparse (all cores, 1 thread), bm25s and rank_bm25 on one corpus."""
    ncores = str(os.cpu_count())
    rows: list[Row] = []
    notes: list[str] = []
    raw: dict[str, list[dict]] = {}
    plan = [
        ("densparse", "densparse BM25.index(texts)", ncores, {}),
        ("densparse", "densparse BM25.index(texts)", "1", {"RAYON_NUM_THREADS": "1"}),
        ("bm25s", "bm25s tokenize + index", "1", {}),
        ("tantivy", "tantivy add_document + commit (en_stem)", ncores, {}),
        ("rank_bm25", "rank_bm25 BM25Okapi", "1", {}),
    ]
    for lib, name, threads, env in plan:
        spec = dict(base_spec, lib=lib)
        if lib == "rank_bm25" and big:
            sub = max(min(10_000, n_docs // 3), n_docs // 100)  # probe size
            if sub < n_docs:
                est_run = run_child(dict(spec, limit=sub))
                est = est_run["seconds"] * n_docs / sub
                log(f"  rank_bm25 estimate for {n_docs:,} docs: {est:.0f}s (from {sub:,} docs)")
                if est > args.rank_bm25_max_s:
                    notes.append(
                        f"rank_bm25 skipped on {corpus}: {sub:,} docs took "
                        f"{est_run['seconds']:.1f}s, so {n_docs:,} would take about {est:.0f}s "
                        f"(> {args.rank_bm25_max_s:.0f}s limit, `--rank-bm25-max-s`); its "
                        f"throughput on the subset was {fmt_num(sub / est_run['seconds'])} docs/s."
                    )
                    continue
        log(f"index: {name} on {corpus} ({threads} thread(s))")
        runs = child_runs(spec, args.reps, args.budget_s, env)
        key = f"{lib}:{threads}"
        raw[key] = runs
        rows.append(Row(name, threads, n_docs, [r["seconds"] for r in runs], runs=runs, lib=lib))
        log(f"  {rows[-1].rate:,.0f} docs/s")
    return rows, notes, raw


def section_index(args: argparse.Namespace, ctx: dict) -> dict:
    md = ["### 2. Tokenise + index, end to end (docs/s)", ""]
    md.append(
        "Every run is a fresh subprocess that loads the corpus, warms up on 200 docs, then "
        'times one index build from raw text. bm25s: `bm25s.tokenize(texts, stopwords="en", '
        'stemmer=Stemmer.Stemmer("english"))` + `BM25().index(tokens)` (numpy backend, its '
        "default); rank_bm25: `BM25Okapi([t.lower().split() for t in texts])`; densparse: "
        '`BM25(analyzer=Analyzer(language="en")).index(texts)`, all cores and with '
        "`RAYON_NUM_THREADS=1`; tantivy 0.27 (tantivy-py): an in-memory index, one text "
        'field (`tokenizer_name="en_stem"`, `index_option="freq"`), `writer(512 MiB, '
        "num_threads=0)` (all cores), `add_document` per text, `commit()` + "
        "`wait_merging_threads()`."
    )
    goals = []
    # SciFact
    sci_n = len(scifact_texts(args.data_dir, args.scifact_docs))
    spec = {"corpus": "scifact", "data_dir": str(args.data_dir), "corpus_limit": args.scifact_docs}
    rows, notes, _ = index_rows(args, "SciFact", sci_n, spec, big=False)
    md += ["", f'**SciFact** ({sci_n:,} docs, title + " " + text)', ""]
    md += [rate_table(rows, "docs", "docs/s"), ""]
    ours = [r for r in rows if r.extra["lib"] == "densparse"]
    peers = [r for r in rows if r.extra["lib"] != "densparse"]
    md += [ratio_table(ours, peers)]
    sci_bm = [r for r in peers if r.extra["lib"] == "bm25s"]
    sci_ratio = ours[0].rate / sci_bm[0].rate
    sci_tv = ours[0].rate / next(r for r in peers if r.extra["lib"] == "tantivy").rate
    # synthetic
    paths = ensure_synth(args.cache_dir, args.docs, args.seed)
    spec = {"corpus": "synthetic", "texts_path": str(paths["texts"])}
    rows, notes2, raw = index_rows(args, f"synthetic-{args.docs}", args.docs, spec, big=True)
    ctx["index_synth_raw"] = raw
    words = int(np.load(paths["offsets"], mmap_mode="r")[-1])
    md += [
        "",
        f"**Synthetic** ({args.docs:,} docs, {words / args.docs:.1f} words/doc on average, "
        f"{paths['texts'].stat().st_size / 1e6:,.0f} MB of text; generator described at the top)",
        "",
        rate_table(rows, "docs", "docs/s"),
        "",
    ]
    ours = [r for r in rows if r.extra["lib"] == "densparse"]
    peers = [r for r in rows if r.extra["lib"] != "densparse"]
    md += [ratio_table(ours, peers)]
    for note in notes + notes2:
        md += ["", f"Note: {note}"]
    bm = [r for r in peers if r.extra["lib"] == "bm25s"]
    tv = [r for r in peers if r.extra["lib"] == "tantivy"]
    goals.append(
        goal_line(
            f"densparse index docs/s (all cores) vs bm25s on synthetic-{args.docs} "
            f"(SciFact: {fmt_ratio(sci_ratio)})",
            ours[0].rate / bm[0].rate if bm else None,
            GOAL_INDEX_BM25S,
        )
    )
    goals.append(
        goal_line(
            f"densparse index docs/s (all cores) vs tantivy (all cores) on synthetic-{args.docs} "
            f"(SciFact: {fmt_ratio(sci_tv)})",
            ours[0].rate / tv[0].rate if tv else None,
            GOAL_INDEX_TANTIVY,
        )
    )
    return {"md": md, "goals": goals}


# --------------------------------------------------------------------------- 3. queries
def bm25s_numpy_twin(retriever: Any) -> Any:
    """A numpy-backend bm25s.BM25 sharing ``retriever``'s index arrays (no second build):
    the four attributes that ``BM25.index`` sets."""
    import bm25s

    twin = bm25s.BM25(backend="numpy")
    for attr in ("scores", "vocab_dict", "unique_token_ids_set", "nonoccurrence_array"):
        setattr(twin, attr, getattr(retriever, attr))
    return twin


def agreement(ids_a: np.ndarray, sc_a: np.ndarray, ids_b: np.ndarray, sc_b: np.ndarray) -> tuple:
    """(% of queries with equal top-k id sets, % with equal sorted top-k scores)."""
    q = len(ids_a)
    same_ids = sum(set(ids_a[i].tolist()) == set(ids_b[i].tolist()) for i in range(q))
    a = np.sort(np.asarray(sc_a, dtype=np.float64), axis=1)
    b = np.sort(np.asarray(sc_b, dtype=np.float64), axis=1)
    same_scores = int(np.isclose(a, b, rtol=1e-4, atol=1e-5).all(axis=1).sum())
    return 100.0 * same_ids / q, 100.0 * same_scores / q


def query_bench(
    args: argparse.Namespace,
    label: str,
    dens: Any,
    dens_queries: list,
    bm: Any,
    bm_queries: list,
    numpy_queries: Optional[int],
    dens_texts: Optional[list[str]] = None,
) -> tuple[list[Row], list[Row], float, float]:
    """Time densparse (1 thread, all cores) and bm25s (numba 1 / all, numpy 1) on the same
    queries; returns (densparse rows, bm25s rows, % equal id sets, % equal scores)."""
    k = 10
    nq = len(dens_queries)
    ncores = str(os.cpu_count())
    # warm-ups (numba compiles the serial and the parallel kernels separately)
    dens.search(dens_queries[:20], k=k, threads=1)
    dens.search(dens_queries[:20], k=k)
    bm.retrieve(bm_queries[:20], k=k, n_threads=1, show_progress=False)
    bm.retrieve(bm_queries[:20], k=k, n_threads=-1, show_progress=False)

    ours: list[Row] = []
    for threads, th in (("1", 1), (ncores, None)):
        log(f"query {label}: densparse search(tokens, threads={th})")
        times = timed_runs(
            lambda th=th: dens.search(dens_queries, k=k, threads=th), args.reps, args.budget_s
        )
        ours.append(Row("densparse search(tokens)", threads, nq, times))
    if dens_texts is not None:
        log(f"query {label}: densparse search(texts, threads=1)")
        times = timed_runs(
            lambda: dens.search(dens_texts, k=k, threads=1), args.reps, args.budget_s
        )
        ours.append(Row("densparse search(texts), analysis included", "1", nq, times))
    peers: list[Row] = []
    for threads, nt in (("1", 1), (ncores, -1)):
        log(f"query {label}: bm25s numba retrieve(n_threads={nt})")
        times = timed_runs(
            lambda nt=nt: bm.retrieve(bm_queries, k=k, n_threads=nt, show_progress=False),
            args.reps,
            args.budget_s,
        )
        peers.append(Row("bm25s numba", threads, nq, times))
    if numpy_queries:
        twin = bm25s_numpy_twin(bm)
        sub = bm_queries[:numpy_queries]
        twin.retrieve(sub[:5], k=k, n_threads=0, backend_selection="numpy", show_progress=False)
        log(f"query {label}: bm25s numpy retrieve ({len(sub)} queries)")
        times = timed_runs(
            lambda: twin.retrieve(
                sub, k=k, n_threads=0, backend_selection="numpy", show_progress=False
            ),
            args.reps,
            args.budget_s,
        )
        peers.append(Row("bm25s numpy", "1", len(sub), times))
    ids_d, sc_d = dens.search(dens_queries, k=k, threads=None)
    res = bm.retrieve(bm_queries, k=k, n_threads=1, show_progress=False)
    same_ids, same_scores = agreement(ids_d, sc_d, np.asarray(res.documents), res.scores)
    return ours, peers, same_ids, same_scores


def tantivy_query_rows(args: argparse.Namespace, s: dict) -> tuple[list[Row], Row, str]:
    """tantivy and densparse, one query per call on one thread, on the synthetic queries;
    also the top-10 overlap between the two (their scores differ a little: tantivy
    quantises document lengths to one byte)."""
    tv = s["tantivy"]
    dens = s["dens"]
    searcher = tv.searcher()
    tq = tantivy_queries(tv, s["qtok"])
    qtok = s["qtok"]
    nq = len(qtok)
    for q in tq[:20]:
        searcher.search(q, 10, count=False)
    for q in qtok[:20]:
        dens.search([q], k=10, threads=1)

    def run_tv() -> None:
        for q in tq:
            searcher.search(q, 10, count=False)

    def run_dens() -> None:
        for q in qtok:
            dens.search([q], k=10, threads=1)

    log("query synthetic: tantivy, one query per call")
    tv_row = Row(
        "tantivy 0.27 search, one query per call",
        "1",
        nq,
        timed_runs(run_tv, args.reps, args.budget_s),
    )
    log("query synthetic: densparse, one query per call")
    d_row = Row(
        "densparse search(tokens), one query per call",
        "1",
        nq,
        timed_runs(run_dens, args.reps, args.budget_s),
    )
    n_seg = searcher.num_segments
    note = f"tantivy's index has {n_seg} segment(s)."
    if n_seg == 1:
        ids_d, _ = dens.search(qtok, k=10, threads=None)
        same = [
            len(
                {a.doc for _, a in searcher.search(q, 10, count=False).hits}
                & set(ids_d[i].tolist())
            )
            / 10
            for i, q in enumerate(tq)
        ]
        note += f" Top-10 overlap densparse vs tantivy: {100 * statistics.mean(same):.1f}%."
    return [tv_row], d_row, note


def build_synth_indexes(args: argparse.Namespace, ctx: dict) -> dict:
    """densparse, bm25s (numba) and tantivy indexes of the SAME synthetic token lists, all
    with k1 = 1.2, b = 0.75 (cached in ctx)."""
    if "synth_idx" in ctx:
        return ctx["synth_idx"]
    import bm25s
    from bm25s.tokenization import Tokenized

    from densparse import BM25, Analyzer

    paths = ensure_synth(args.cache_dir, args.docs, args.seed)
    vocab = paths["vocab"].read_text(encoding="ascii").split("\n")
    ids = np.load(paths["ids"])
    offsets = np.load(paths["offsets"])
    n = len(offsets) - 1
    log(f"query: building token lists for {n:,} synthetic docs")
    vocab_arr = np.array(vocab, dtype=object)
    words = vocab_arr[ids]
    token_lists = [words[offsets[i] : offsets[i + 1]].tolist() for i in range(n)]
    del words
    log("query: densparse BM25(analyzer=en).index(token lists)")
    t0 = time.perf_counter()
    # The analyzer is not used on token lists; "en" keeps load() free of jieba's dictionary.
    dens = BM25(k1=SYNTH_K1, b=SYNTH_B, analyzer=Analyzer(language="en")).index(
        token_lists, show_progress=False
    )
    t_dens = time.perf_counter() - t0
    del token_lists
    gc.collect()
    log(f"  {t_dens:.1f}s; bm25s BM25(backend='numba').index(Tokenized(ids, vocab))")
    id_lists = [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(n)]
    t0 = time.perf_counter()
    bm = bm25s.BM25(backend="numba", k1=SYNTH_K1, b=SYNTH_B)
    bm.index(
        Tokenized(ids=id_lists, vocab={w: i for i, w in enumerate(vocab)}), show_progress=False
    )
    t_bm = time.perf_counter() - t0
    del id_lists
    gc.collect()
    log(f"  {t_bm:.1f}s; tantivy from the same words (whitespace tokenizer)")
    t0 = time.perf_counter()
    tv = tantivy_index(load_synth_texts(paths), "whitespace", threads=0)
    t_tv = time.perf_counter() - t0
    gc.collect()
    log(f"  {t_tv:.1f}s, {tv.searcher().num_segments} segment(s)")
    present = np.bincount(ids, minlength=len(vocab)) > 0
    del ids
    qids = synth_queries(args.seed, args.queries, present, len(vocab))
    ctx["synth_idx"] = {
        "dens": dens,
        "bm": bm,
        "tantivy": tv,
        "vocab": vocab,
        "qids": qids,
        "qtok": [[vocab[w] for w in q] for q in qids],
        "build_s": (t_dens, t_bm, t_tv),
        "n_docs": n,
        "n_vocab_used": int(present.sum()),
    }
    return ctx["synth_idx"]


def section_query(args: argparse.Namespace, ctx: dict) -> dict:
    import bm25s

    from densparse import BM25, Analyzer

    md = ["### 3. Exact top-10 queries/s", ""]
    md.append(
        "densparse `search(queries, k=10, threads=1 | None)`; bm25s 0.3 "
        '`retrieve(queries, k=10, n_threads=1 | -1)` on `BM25(backend="numba")`, and the numpy '
        'backend (`n_threads=0`, i.e. sequential, `backend_selection="numpy"`) on a subset of '
        "the queries. Both exhaustive-exact; agreement = % of queries whose top-10 id *sets* "
        "are equal (ties at the 10th score may legitimately differ) and % whose sorted top-10 "
        "*scores* are equal (tie-insensitive)."
    )
    goals = []
    # --- synthetic
    s = build_synth_indexes(args, ctx)
    nq = len(s["qids"])
    ours, peers, same_ids, same_sc = query_bench(
        args, "synthetic", s["dens"], s["qtok"], s["bm"], s["qids"], args.numpy_queries
    )
    tv_rows, dens_single, tv_note = tantivy_query_rows(args, s)
    ours.append(dens_single)
    peers.extend(tv_rows)
    lens = [len(q) for q in s["qids"]]
    md += [
        "",
        f"**Synthetic, {s['n_docs']:,} docs** — both indexes built from the same token lists "
        "(densparse: lists of str; bm25s: `Tokenized(ids=..., vocab=...)`); "
        f"{nq:,} queries of 2-8 distinct words (mean {statistics.mean(lens):.1f}) drawn from the "
        "same Zipf law, every word present in the corpus; bm25s gets word ids, densparse the "
        "words, tantivy the words joined by spaces (whitespace tokenizer, term frequencies "
        f"only). k1 = {SYNTH_K1}, b = {SYNTH_B} on all three (tantivy's fixed values). "
        "One query per call: a Python loop of `densparse search(tokens, k=10, threads=1)` / "
        "tantivy `searcher.search(query, 10, count=False)` with the tantivy Query objects "
        "(an OR of term queries) built before the timing. "
        f"{tv_note} (Build times, not compared: densparse from tokens "
        f"{s['build_s'][0]:.1f}s, bm25s numba from ids {s['build_s'][1]:.1f}s, tantivy from "
        f"text {s['build_s'][2]:.1f}s.)",
        "",
        rate_table(ours + peers, "queries", "queries/s"),
        "",
        ratio_table(ours, peers),
        "",
        f"Agreement: top-10 id sets equal for {same_ids:.1f}% of queries, "
        f"sorted top-10 scores equal for {same_sc:.1f}%.",
    ]
    goals.append(
        goal_line(
            f"densparse search q/s (threads=1) vs bm25s numba (n_threads=1) on synthetic-"
            f"{s['n_docs']}",
            ours[0].rate / peers[0].rate,
            GOAL_QUERY_BM25S,
        )
    )
    goals.append(
        goal_line(
            "densparse q/s, one query per call (threads=1) vs tantivy (one query per call) on "
            f"synthetic-{s['n_docs']}",
            dens_single.rate / tv_rows[0].rate,
            GOAL_QUERY_TANTIVY,
        )
    )
    # --- SciFact and STARD: bm25s indexes densparse's tokens
    for label, language, texts, queries in (
        (
            "SciFact",
            "en",
            scifact_texts(args.data_dir, args.scifact_docs),
            query_texts(args.data_dir, "scifact", args.eval_queries),
        ),
        (
            "STARD",
            "zh",
            stard_texts(args.data_dir),
            query_texts(args.data_dir, "stard", args.eval_queries),
        ),
    ):
        log(f"query: {label}")
        an = Analyzer(language=language)
        dens = BM25(analyzer=an).index(texts, show_progress=False)
        corpus_tokens = an.tokenize_batch(texts)
        qtok_all = an.tokenize_batch(queries)
        keep = [i for i, q in enumerate(qtok_all) if q]
        qtok = [qtok_all[i] for i in keep]
        qtext = [queries[i] for i in keep]
        bm = bm25s.BM25(backend="numba")
        bm.index(corpus_tokens, show_progress=False)
        ours, peers, same_ids, same_sc = query_bench(
            args, label, dens, qtok, bm, qtok, None, dens_texts=qtext
        )
        dropped = len(queries) - len(keep)
        md += [
            "",
            f"**{label}** ({len(texts):,} docs, {len(qtok):,} queries"
            + (f"; {dropped} with no tokens left out" if dropped else "")
            + f') — densparse `Analyzer(language="{language}")` (its retrieval defaults); '
            "bm25s indexes and queries the very same densparse-made tokens.",
            "",
            rate_table(ours + peers, "queries", "queries/s"),
            "",
            ratio_table(ours, peers),
            "",
            f"Agreement: top-10 id sets equal for {same_ids:.1f}% of queries, "
            f"sorted top-10 scores equal for {same_sc:.1f}%.",
        ]
        goals.append(
            goal_line(
                f"densparse search q/s (threads=1) vs bm25s numba (n_threads=1) on {label}",
                ours[0].rate / peers[0].rate,
                GOAL_QUERY_BM25S_REAL,
            )
        )
        del dens, bm
        gc.collect()
    return {"md": md, "goals": goals}


# --------------------------------------------------------------------------- 4. size
def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def section_size(args: argparse.Namespace, ctx: dict) -> dict:
    import bm25s

    from densparse import BM25, Analyzer

    s = build_synth_indexes(args, ctx)
    dens, bm = s["dens"], s["bm"]
    st = dens.stats()
    sc = bm.scores
    nnz = len(sc["data"])
    bm_payload = sc["data"].nbytes + sc["indices"].nbytes
    bm_all = bm_payload + sc["indptr"].nbytes
    tmp = args.cache_dir / "size_tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        log("size: saving both indexes")
        dpath = tmp / "densparse.idx"
        dens.save(dpath)
        bdir = tmp / "bm25s"
        bm.save(str(bdir), show_progress=False)
        dfile, bfile = dpath.stat().st_size, dir_size(bdir)
        log("size: load times (mmap=True)")
        reps = max(args.reps, 5)
        t_dl = timed_runs(lambda: BM25.load(dpath, mmap=True), reps, args.budget_s)
        t_bl = timed_runs(lambda: bm25s.BM25.load(str(bdir), mmap=True), reps, args.budget_s)
        # load + one query: a lazy load must not pass for a fast one
        q_d, q_b = [s["qtok"][0]], [s["qids"][0]]
        t_dq = timed_runs(
            lambda: BM25.load(dpath, mmap=True).search(q_d, k=10, threads=1), reps, args.budget_s
        )
        t_bq = timed_runs(
            lambda: bm25s.BM25.load(str(bdir), mmap=True).retrieve(
                q_b, k=10, n_threads=1, show_progress=False
            ),
            reps,
            args.budget_s,
        )
        t_auto = timed_runs(Analyzer, reps, args.budget_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def r(a: float, b: float) -> str:
        return fmt_ratio(a / b) if b else "n/a"

    rows = [
        [
            "postings (doc, term pairs)",
            f"{st['n_postings']:,}",
            f"{nnz:,}",
            r(st["n_postings"], nnz),
        ],
        [
            "bytes per posting",
            f"{st['bytes_per_posting']:.2f}",
            f"{bm_payload / nnz:.2f}",
            r(st["bytes_per_posting"], bm_payload / nnz),
        ],
        [
            "postings bytes (MB)",
            f"{st['postings_bytes'] / 1e6:,.1f}",
            f"{bm_payload / 1e6:,.1f} (with indptr: {bm_all / 1e6:,.1f})",
            r(st["postings_bytes"], bm_payload),
        ],
        ["saved on disk (MB)", f"{dfile / 1e6:,.1f}", f"{bfile / 1e6:,.1f}", r(dfile, bfile)],
        [
            f"load, mmap=True (median of {len(t_dl)}/{len(t_bl)}, ms)",
            f"{med(t_dl) * 1e3:,.1f}",
            f"{med(t_bl) * 1e3:,.1f}",
            r(med(t_dl), med(t_bl)),
        ],
        [
            f"load + 1 query, mmap=True (median of {len(t_dq)}/{len(t_bq)}, ms)",
            f"{med(t_dq) * 1e3:,.1f}",
            f"{med(t_bq) * 1e3:,.1f}",
            r(med(t_dq), med(t_bq)),
        ],
    ]
    md = [
        "### 4. Index size (synthetic corpus, same tokens)",
        "",
        f"{s['n_docs']:,} docs, {st['vocab_size']:,} terms. bm25s stores a float32 score and "
        "an int32 doc index per posting (`data` + `indices` of its CSC matrix; `indptr` shown "
        "apart); densparse's figure is from `stats()`. Disk: densparse `save()` (one file) vs "
        "bm25s `save()` (a directory: arrays + vocab + params). Load times with a warm page "
        'cache; the densparse index carries an `Analyzer(language="en")` (the analyzer is '
        "rebuilt on load: a zh or auto analyzer adds jieba's dictionary, "
        f"`Analyzer()` takes {med(t_auto) * 1e3:,.0f} ms here). "
        "Ratio densparse / bm25s: lower = better.",
        "",
        md_table(["Metric", "densparse", "bm25s", "densparse / bm25s"], rows),
    ]
    return {"md": md, "goals": []}


# --------------------------------------------------------------------------- 5. memory
def section_memory(args: argparse.Namespace, ctx: dict) -> dict:
    raw = ctx.get("index_synth_raw")
    ncores = str(os.cpu_count())
    reused = raw is not None
    if raw is None:
        paths = ensure_synth(args.cache_dir, args.docs, args.seed)
        spec = {"corpus": "synthetic", "texts_path": str(paths["texts"])}
        raw = {}
        for lib in ("densparse", "bm25s"):
            log(f"memory: {lib} in a fresh subprocess")
            raw[f"{lib}:{ncores if lib == 'densparse' else '1'}"] = [run_child(dict(spec, lib=lib))]
    names = {
        f"densparse:{ncores}": f"densparse BM25.index(texts), {ncores} threads",
        "densparse:1": "densparse BM25.index(texts), 1 thread",
        "bm25s:1": "bm25s tokenize + index",
        "rank_bm25:1": "rank_bm25 BM25Okapi",
    }
    measured = {key: raw[key] for key in names if raw.get(key)}
    ref = measured.get("bm25s:1")
    ref_peak = max(r["maxrss_kb"] for r in ref) if ref else None
    ref_inc = ref_peak - ref[0]["baseline_kb"] if ref else None
    rows = []
    for key, runs in measured.items():
        # peak of one fresh process per run (runs are alike; the highest is kept)
        peak, base = max(r["maxrss_kb"] for r in runs), runs[0]["baseline_kb"]
        row = [names[key], rss_mb(base), rss_mb(peak), rss_mb(peak - base)]
        if ref and key != "bm25s:1":
            row += [fmt_ratio(peak / ref_peak), fmt_ratio((peak - base) / max(ref_inc, 1))]
        else:
            row += ["—", "—"]
        rows.append(row)
    md = [
        "### 5. Peak memory of indexing the synthetic corpus from text",
        "",
        f"{args.docs:,} docs; each build in a fresh Python process: peak RSS (`VmHWM`) "
        "after loading the texts and a 200-doc warm-up (baseline) and after the build (peak); "
        "the increase is what indexing costs. Ratio densparse / bm25s: lower = better."
        + (" (Taken from the section 2 runs.)" if reused else ""),
        "",
        md_table(
            [
                "Implementation",
                "baseline RSS (MB)",
                "peak RSS (MB)",
                "increase (MB)",
                "peak / bm25s",
                "increase / bm25s",
            ],
            rows,
        ),
    ]
    return {"md": md, "goals": []}


# --------------------------------------------------------------------------- report
def render(args: argparse.Namespace, info: dict, vers: dict, results: dict, t_total: float) -> str:
    lines = [MARK_START, SECTION_TITLE, ""]
    if args.quick:
        lines += ["> **QUICK SMOKE RUN (`--quick`): tiny sizes, the numbers mean nothing.**", ""]
    lines += run_header(info, f" (run took {t_total / 60:.1f} min)")
    lines += [
        f"- Python {info['python']}; " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Timings: median of up to {args.reps} runs (fewer when runs of one measurement "
        f"passed {args.budget_s:.0f}s in all; the `runs` column says how many). Throughput "
        "ratios densparse / peer: higher = better; size and memory ratios: lower = better.",
        f"- Synthetic corpus: {args.docs:,} docs, lognormal lengths (mean "
        f"~{SYNTH_MEAN_WORDS:.0f} words, sigma {SYNTH_SIGMA}, clipped to "
        f"[{SYNTH_MIN_WORDS}, {SYNTH_MAX_WORDS}]), words Zipf(s={SYNTH_ZIPF_S}) over "
        f"{SYNTH_VOCAB:,} lowercase ascii pseudo-words (short words frequent), numpy seed "
        f"{args.seed}, cached in `{portable(str(args.cache_dir.resolve()))}`.",
        "",
        "**Goals**",
        "",
    ]
    goals = [g for name in SECTIONS if name in results for g in results[name]["goals"]]
    lines += goals or ["- (no goal sections were run)"]
    for name in SECTIONS:
        if name in results:
            lines += [""] + results[name]["md"]
    skipped = [n for n in SECTIONS if n not in results]
    if skipped:
        lines += ["", f"Sections not run this time: {', '.join(skipped)}."]
    lines += ["", MARK_END]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument("--docs", type=int, default=1_000_000, help="synthetic corpus size")
    p.add_argument("--queries", type=int, default=1000, help="synthetic queries")
    p.add_argument(
        "--numpy-queries",
        type=int,
        default=200,
        help="queries for the (slow) bm25s numpy backend on the synthetic corpus",
    )
    p.add_argument("--seg-mb", type=float, default=3.0, help="MB of text for densparse/rjieba")
    p.add_argument("--seg-jieba-mb", type=float, default=1.0, help="MB of text for jieba")
    p.add_argument("--scifact-docs", type=int, default=None, help="limit SciFact docs")
    p.add_argument(
        "--eval-queries",
        type=int,
        default=None,
        help="limit SciFact / STARD queries (default: all)",
    )
    p.add_argument("--reps", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=120.0,
        help="stop repeating a measurement once its runs took this long",
    )
    p.add_argument(
        "--rank-bm25-max-s",
        type=float,
        default=300.0,
        help="skip rank_bm25 on the synthetic corpus if estimated slower than this",
    )
    p.add_argument("--seed", type=int, default=20240601, help="numpy seed of the synthetic data")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--cache-dir", type=Path, default=REPO / "benches" / ".cache")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--child", help=argparse.SUPPRESS)
    if p.parse_known_args(argv)[0].quick:  # tiny defaults; flags given explicitly still win
        p.set_defaults(
            docs=3000,
            queries=50,
            numpy_queries=20,
            seg_mb=0.05,
            seg_jieba_mb=0.02,
            scifact_docs=1000,
            eval_queries=100,
            reps=2,
            rank_bm25_max_s=60.0,
        )
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {bad}: choose from {','.join(SECTIONS)}")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return
    t0 = time.perf_counter()
    info, vers = machine_info(), versions()
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {info['loadavg']}")
    funcs = {
        "seg": section_seg,
        "index": section_index,
        "memory": section_memory,  # before query: reuses the index runs, and needs the RAM
        "query": section_query,
        "size": section_size,
    }
    ctx: dict = {}
    results = {}
    for name, fn in funcs.items():
        if name in args.sections:
            log(f"=== section {name}")
            results[name] = fn(args, ctx)
    ctx.clear()
    section = render(args, info, vers, results, time.perf_counter() - t0)
    write_results(args.out, section, MARK_START, MARK_END)
    log(f"wrote {args.out} ({(time.perf_counter() - t0) / 60:.1f} min in all)")


if __name__ == "__main__":
    main()
