#!/usr/bin/env python3
"""CPU reranking throughput: densparse.Reranker vs sentence-transformers' CrossEncoder, same
model and precision, in one run.

Model: a BERT cross-encoder of the ms-marco-MiniLM-L-6 shape (6 layers, 384 wide): the shared
``minilm-l6-fp32`` encoder with a seeded one-label classification head (speed does not depend
on the weights' values), or ``--model DIR`` (any Hugging Face one-label sequence classifier,
e.g. the output of benches/finetune_reranker_scifact.py). densparse runs its ONNX export made by
``densparse.export.export_model(kind="reranker", optimize=True)`` (onnxruntime's fused attention;
``densparse export --kind reranker --optimize``), cached under ``--work-dir``.

Workload: what a RAG reranker does: ``--queries`` SciFact test queries, each with its BM25 top
``--candidates`` documents (title + " " + text), scored as (query, passage) pairs at
``--max-length`` tokens, passed to each engine query by query in BM25 order
(``CrossEncoder.predict(pairs)`` / ``Reranker.score(query, passages)``).

Sections: ``fp32`` (densparse on the fp32 export vs CrossEncoder in PyTorch fp32; their scores
are compared) and ``int8`` (densparse on its own dynamic-int8 export vs CrossEncoder after
``torch.ao.quantization.quantize_dynamic`` on nn.Linear: different int8 models, so only the
ranking agreement with fp32 is shown). Every engine is timed at every batch size; runs are
interleaved (rep 1 of everything, then rep 2, ...) so a busy moment hits all engines alike.

    python3 benches/bench_rerank.py --quick      # smoke test, seconds; numbers meaningless
    python3 benches/bench_rerank.py              # real size (~10 min on a quiet 2-core CPU)

Results go to ``--out`` (benches/RESULTS.md) between ``<!-- bench_rerank:start -->`` and
``<!-- bench_rerank:end -->``. Needs the ``bench`` extra (sentence-transformers, torch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

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
    package_versions,
    portable,
    run_header,
    set_log_name,
    write_results,
)

set_log_name("bench_rerank")
MARK_START, MARK_END = "<!-- bench_rerank:start -->", "<!-- bench_rerank:end -->"
SHARED = REPO.parent / "shared"
GOAL = 1.3


def versions() -> dict:
    return package_versions(
        ("onnxruntime-gpu", "onnxruntime", "tokenizers", "torch", "sentence-transformers")
    )


# --------------------------------------------------------------------------- data
def workload(data: Path, n_queries: int, n_cand: int) -> list[tuple[str, list[str]]]:
    """[(query, [passages])]: SciFact test queries with their BM25 top ``n_cand``."""
    from densparse import BM25, Analyzer
    from densparse.eval import load_corpus, load_qrels, load_queries

    corpus = load_corpus(data / "corpus.jsonl")
    queries = load_queries(data / "queries.jsonl")
    qids = [q for q in load_qrels(data / "qrels" / "test.tsv") if q in queries][:n_queries]
    ids = list(corpus)
    texts = [f"{corpus[i].get('title', '')} {corpus[i].get('text', '')}".strip() for i in ids]
    bm25 = BM25(analyzer=Analyzer(language="en"))
    bm25.index(texts, show_progress=False)
    hits, _ = bm25.search([queries[q] for q in qids], k=n_cand)
    return [(queries[q], [texts[int(i)] for i in row]) for q, row in zip(qids, hits)]


# --------------------------------------------------------------------------- models
def source_model(args) -> Path:
    """A one-label BERT sequence classifier directory (``--model``, or MiniLM + seeded head)."""
    if args.model is not None:
        return args.model
    out = args.work_dir / "minilm-l6-cross-encoder"
    if (out / "config.json").is_file():
        return out
    import torch
    import transformers

    base = SHARED / "models" / "minilm-l6-fp32"
    if not base.is_dir():
        sys.exit(f"bench_rerank needs {portable(str(base))} (or --model DIR)")
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    model.save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    log(f"built a cross-encoder from {portable(str(base))} with a seeded head")
    return out


def onnx_dir(args, src: Path, int8: bool) -> Path:
    out = args.work_dir / f"{src.name}-onnx-opt{'-int8' if int8 else ''}"
    if (out / "model.onnx").is_file():
        return out
    from densparse.export import export_model

    # optimize: onnxruntime's fused attention, what `densparse export --optimize` writes
    rep = export_model(src, out, kind="reranker", int8=int8, optimize=True, overwrite=True)
    log(f"exported {out.name}: max |onnx - torch| {rep.max_abs_diff}")
    return out


class Densparse:
    def __init__(self, model_dir: Path, args):
        self.rr = densparse.Reranker.from_pretrained(
            model_dir, provider="cpu", max_length=args.max_length, threads=args.threads
        )

    def score(self, query: str, passages: list[str], bs: int) -> np.ndarray:
        return self.rr.score(query, passages, batch_size=bs, show_progress=False)


class CrossEncoderEngine:
    def __init__(self, model_dir: Path, args, int8: bool = False):
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(args.threads)
        self.torch = torch
        self.ce = CrossEncoder(str(model_dir), device="cpu", max_length=args.max_length)
        if int8:
            self.ce = torch.ao.quantization.quantize_dynamic(
                self.ce, {torch.nn.Linear}, dtype=torch.qint8
            )

    def score(self, query: str, passages: list[str], bs: int) -> np.ndarray:
        with self.torch.inference_mode():
            return np.asarray(
                self.ce.predict(
                    [(query, p) for p in passages],
                    batch_size=bs,
                    show_progress_bar=False,
                    activation_fn=self.torch.nn.Identity(),
                    convert_to_numpy=True,
                ),
                dtype=np.float32,
            )


def engines(prec: str, args, src: Path) -> list[tuple[str, Any]]:
    int8 = prec == "int8"
    ours = onnx_dir(args, src, int8)
    peer = "CrossEncoder (torch dynamic int8)" if int8 else "CrossEncoder (torch fp32)"
    return [
        (f"densparse Reranker ({prec} ONNX)", lambda: Densparse(ours, args)),
        (f"sentence-transformers {peer}", lambda: CrossEncoderEngine(src, args, int8)),
    ]


# --------------------------------------------------------------------------- timing
def run_all(eng, work: list[tuple[str, list[str]]], bs: int) -> np.ndarray:
    return np.concatenate([eng.score(q, ps, bs) for q, ps in work])


def section(prec: str, args, src: Path, work) -> dict:
    loaded = []
    for name, make in engines(prec, args, src):
        t0 = time.perf_counter()
        eng = make()
        eng.score(work[0][0], work[0][1][:4], 4)  # warm-up
        loaded.append((name, eng))
        log(f"{prec}: loaded {name} in {time.perf_counter() - t0:.1f}s")
    times: dict = {(n, bs): [] for n, _ in loaded for bs in args.batch_sizes}
    scores: dict = {}
    for rep in range(args.reps):
        for bs in args.batch_sizes:
            for name, eng in loaded:
                t0 = time.perf_counter()
                s = run_all(eng, work, bs)
                times[(name, bs)].append(time.perf_counter() - t0)
                scores.setdefault(name, s)
        log(
            f"{prec}: rep {rep + 1}/{args.reps}: "
            + ", ".join(
                f"{n[:20]} bs={b} {npairs(work) / v[-1]:.1f}/s" for (n, b), v in times.items()
            )
        )
    return {"engines": [n for n, _ in loaded], "times": times, "scores": scores}


def npairs(work) -> int:
    return sum(len(ps) for _, ps in work)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# --------------------------------------------------------------------------- report
def render(args, info, vers, res: dict, work, t_total: float) -> str:
    n = npairs(work)
    tok = densparse.Reranker.from_pretrained(onnx_dir(args, source_model(args), False))
    lens = [
        len(ids)
        for q, ps in work
        for ids, _ in tok.tokenize_pairs([(q, p) for p in ps], args.max_length)
    ]
    lines = [
        "## Reranking on CPU (benches/bench_rerank.py)",
        "",
        *run_header(info),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Workload: {len(work)} SciFact test queries x BM25 top {args.candidates} = {n:,} "
        f"(query, title + text) pairs, max_length {args.max_length} "
        f"(mean {np.mean(lens):.0f} tokens per pair, "
        f"{np.mean(np.asarray(lens) >= args.max_length):.0%} truncated); scored query by "
        f"query; threads {args.threads} for every engine; {args.reps} interleaved runs, median.",
        "- Model: "
        + (
            f"`{portable(str(args.model))}`"
            if args.model
            else "MiniLM-L6 (shared minilm-l6-fp32) + a seeded one-label head: the "
            "ms-marco-MiniLM-L-6 cross-encoder shape"
        )
        + f"; total run {t_total / 60:.1f} min.",
        "",
    ]
    best_ratio: dict = {}
    for prec, r in res.items():
        ours, peer = r["engines"]
        rows, ratios = [], []
        for bs in args.batch_sizes:
            t_o, t_p = np.median(r["times"][(ours, bs)]), np.median(r["times"][(peer, bs)])
            rows.append([str(bs), fmt_num(n / t_o), fmt_num(n / t_p), fmt_ratio(t_p / t_o)])
            ratios.append(t_p / t_o)
        best_o = max(n / np.median(r["times"][(ours, b)]) for b in args.batch_sizes)
        best_p = max(n / np.median(r["times"][(peer, b)]) for b in args.batch_sizes)
        best_ratio[prec] = best_o / best_p
        lines += [
            f"### {prec}: pairs/s",
            "",
            md_table(["batch size", ours, peer, "ratio"], rows),
            "",
            f"Best vs best: {fmt_num(best_o)} vs {fmt_num(best_p)} pairs/s = "
            f"**{fmt_ratio(best_ratio[prec])}**; same batch size: "
            f"{fmt_ratio(min(ratios))}-{fmt_ratio(max(ratios))}.",
        ]
        a, b = r["scores"][ours], r["scores"][peer]
        if prec == "fp32":
            lines.append(
                f"Agreement: max |densparse - CrossEncoder| logit {np.abs(a - b).max():.2e}, "
                f"Spearman {spearman(a, b):.6f}."
            )
        else:
            ref = res.get("fp32", {}).get("scores", {})
            if ref:
                f32 = ref[res["fp32"]["engines"][0]]
                lines.append(
                    f"Ranking agreement with fp32 (Spearman over all pairs): densparse int8 "
                    f"{spearman(a, f32):.4f}, CrossEncoder int8 {spearman(b, f32):.4f}."
                )
        lines.append("")
    lines += [
        "### Goal",
        "",
        goal_line(
            "reranker pairs/s vs CrossEncoder, same model and precision (fp32, best vs best)",
            best_ratio.get("fp32"),
            GOAL,
        ),
    ]
    if "int8" in best_ratio:
        lines.append(
            f"- int8 (each engine's own int8 model): {fmt_ratio(best_ratio['int8'])} best vs best."
        )
    if args.note:
        lines.append(f"- Note: {args.note}")
    return MARK_START + "\n" + "\n".join(lines) + "\n" + MARK_END


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=SHARED / "data" / "scifact")
    p.add_argument("--model", type=Path, default=None, help="a one-label sequence classifier")
    p.add_argument("--work-dir", type=Path, default=REPO / "benches" / ".cache" / "rerank")
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--candidates", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-sizes", default="16,32")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--sections", default="fp32,int8")
    p.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    p.add_argument("--no-write", action="store_true", help="print, do not write --out")
    p.add_argument("--note", default="")
    a = p.parse_args(argv)
    a.batch_sizes = [int(x) for x in a.batch_sizes.split(",")]
    if a.quick:
        a.queries, a.candidates, a.reps, a.batch_sizes, a.no_write = 2, 8, 1, [8], True
    return a


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if not (args.data / "corpus.jsonl").is_file():
        sys.exit(f"bench_rerank needs SciFact in BEIR layout at {portable(str(args.data))}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    info, vers = machine_info(), versions()
    t0 = time.perf_counter()
    work = workload(args.data, args.queries, args.candidates)
    src = source_model(args)
    res = {prec: section(prec, args, src, work) for prec in args.sections.split(",")}
    text = render(args, info, vers, res, work, time.perf_counter() - t0)
    print(text)
    if not args.no_write:
        write_results(args.out, text, MARK_START, MARK_END)
        log(f"wrote {portable(str(args.out.resolve()))}")


if __name__ == "__main__":
    main()
