#!/usr/bin/env python3
"""SciFact test nDCG@10 of BM25, dense (shared MiniLM int8 ONNX) and hybrid fusion, all
through one densparse Collection. The goal: hybrid >= best single method + 0.02.

    python3 benches/quality_hybrid.py     # encodes the 5,183-doc corpus (a few minutes on CPU)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    densparse,
    log,
    machine_info,
    md_table,
    run_header,
    set_log_name,
    write_results,
)

set_log_name("quality_hybrid")
MARK_START, MARK_END = "<!-- quality_hybrid:start -->", "<!-- quality_hybrid:end -->"


def hybrid_collection(corpus: dict, model: Path, path: Path):
    """A Collection at ``path`` (English BM25 + ``Encoder.from_pretrained(model)`` on CPU)
    holding every document of a BEIR corpus as title + " " + text; (collection, seconds)."""
    from densparse.models import Encoder

    enc = Encoder.from_pretrained(model, provider="cpu")
    c = densparse.Collection.create(path, analyzer=densparse.Analyzer(language="en"), encoder=enc)
    log(f"encoding and adding {len(corpus):,} documents")
    t = time.perf_counter()
    c.add(
        [
            {"id": d, "text": (v.get("title", "") + " " + v["text"]).strip()}
            for d, v in corpus.items()
        ],
        show_progress=False,
    )
    return c, time.perf_counter() - t


def search_run(c, queries: dict, k: int = 100, **kw) -> dict:
    """``{query_id: {doc_id: score}}`` of ``c.search(text=..., k=k, **kw)`` for each query."""
    return {q: {h.id: h.score for h in c.search(text=t, k=k, **kw)} for q, t in queries.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument(
        "--model", type=Path, default=REPO.parent / "shared" / "models" / "minilm-l6-int8-onnx"
    )
    p.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    args = p.parse_args()
    t0 = time.perf_counter()
    info = machine_info()
    from densparse.eval import evaluate, load_beir

    ds = load_beir(args.data_dir / "scifact", split="test")
    docs = ds.corpus
    c, t_add = hybrid_collection(docs, args.model, Path(tempfile.mkdtemp()) / "c")
    qids = [q for q in ds.queries if q in ds.qrels]
    runs: dict[str, dict] = {}
    configs = [
        ("BM25", dict(mode="bm25")),
        ("dense (MiniLM-L6 int8)", dict(mode="dense")),
        ("hybrid RRF (k=60)", dict(fusion="rrf")),
        (
            "hybrid weighted minmax 0.3/0.7",
            dict(fusion="weighted", weights={"bm25": 0.3, "dense": 0.7}),
        ),
        ("hybrid weighted dbsf", dict(fusion="weighted", normalization="dbsf")),
    ]
    for name, kw in configs:
        log(f"searching: {name}")
        runs[name] = search_run(c, {q: ds.queries[q] for q in qids}, **kw)
    rows, scores = [], {}
    for name, run in runs.items():
        m = evaluate(ds.qrels, run, metrics=("ndcg@10", "recall@100"))
        scores[name] = m["ndcg@10"]
        rows.append([name, f"{m['ndcg@10']:.4f}", f"{m['recall@100']:.4f}"])
    best_single = max(scores["BM25"], scores["dense (MiniLM-L6 int8)"])
    best_hybrid = max(v for k, v in scores.items() if k.startswith("hybrid"))
    met = "met" if best_hybrid >= best_single + 0.02 else "NOT met"
    lines = [
        MARK_START,
        "## SciFact retrieval quality: BM25, dense, hybrid (benches/quality_hybrid.py)",
        "",
    ]
    lines += run_header(info, f" (run took {(time.perf_counter() - t0) / 60:.1f} min)")
    lines += [
        f"- {len(docs):,} documents (title + text) encoded and indexed by one `Collection` with "
        f"`Encoder.from_pretrained({args.model.name})` (CPU) in {t_add:.0f} s; "
        f"{len(qids)} test queries; k = 100, 100 candidates per route.",
        "",
        md_table(["Method", "nDCG@10", "Recall@100"], rows),
        "",
        f"- Goal: hybrid >= best single + 0.02: best single {best_single:.4f}, "
        f"best hybrid {best_hybrid:.4f} — **{met}**",
        "",
        MARK_END,
    ]
    write_results(args.out, "\n".join(lines), MARK_START, MARK_END)
    log("done")


if __name__ == "__main__":
    main()
