#!/usr/bin/env python3
"""Fine-tune a MiniLM-L6 cross-encoder on SciFact train; rerank BM25 on SciFact test (issue 12).

Steps (all with densparse):

1. Hard negatives: BM25 over the SciFact corpus for the train queries
   (``densparse.train.mining.mine_hard_negatives``, ranks [2, 200), 15 per query), as
   benches/finetune_scifact.py does. ``--dev-queries`` train queries are held out (not
   trained on) as the dev set that ``training.png`` follows.
2. Training: ``TrainConfig(kind="reranker")`` from ../shared/models/minilm-l6-fp32 (a
   sentence-transformers embedder: the classification head is fresh), groups of 1 positive +
   G-1 BM25 negatives, cross-entropy over each group; export to ONNX (``kind="reranker"``).
3. SciFact test, 300 queries, 5,183 documents (title + " " + text), k = 100:
   (a) BM25 alone (``Analyzer(language="en")``);
   (b) BM25 top 100 reranked by the fine-tuned cross-encoder through its ONNX export and
       ``densparse.Reranker`` (CPU);
   (c) dense MiniLM-L6 and hybrid BM25 + dense (RRF, k = 60) through one ``Collection``, as
       benches/quality_hybrid.py computes them (its code).
   A table goes to benches/RESULTS.md between ``<!-- finetune_reranker:start -->`` and
   ``<!-- finetune_reranker:end -->``, the training plot to
   benches/finetune_reranker_scifact.png.

    python3 benches/finetune_reranker_scifact.py --quick   # tiny subset, a few steps: smoke test
    python3 benches/finetune_reranker_scifact.py           # the real run (CPU; see --help)

Goal (issue 12): reranked >= BM25 + 0.03 nDCG@10. Not CI: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, log, machine_info, md_table, run_header, set_log_name, write_results

SHARED = REPO.parent / "shared"
MARK_START, MARK_END = "<!-- finetune_reranker:start -->", "<!-- finetune_reranker:end -->"
METRICS = ("ndcg@10", "recall@100", "mrr@10")


def write_dev(train, qids: list[str], folder: Path) -> Path:
    """A BEIR folder (corpus, queries, qrels/dev.tsv) of the held-out train queries."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d, v in train.corpus.items():
            f.write(json.dumps({"_id": d, "title": v.get("title", ""), "text": v["text"]}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in qids:
            f.write(json.dumps({"_id": q, "text": train.queries[q]}) + "\n")
    with open(folder / "qrels" / "dev.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            for d, g in train.qrels[q].items():
                f.write(f"{q}\t{d}\t{g}\n")
    return folder


def rerank_onnx(onnx_dir: Path, test, cands, top: int, max_length: int) -> tuple[dict, float, int]:
    """Every test query's BM25 top ``top`` reranked by ``densparse.Reranker`` (CPU), followed
    by the rest of its BM25 candidates in BM25 order: (run, seconds, pairs scored)."""
    import densparse

    rr = densparse.Reranker.from_pretrained(onnx_dir, provider="cpu", max_length=max_length)
    run: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    pairs = 0
    for n, (q, idx) in enumerate(cands.candidates.items(), 1):
        head, tail = idx[:top], idx[top:]
        ranked = rr.rerank(test.queries[q], [cands.texts[i] for i in head], show_progress=False)
        order = [head[j] for j, _ in ranked] + tail
        # scores by final rank: the reranked head above the BM25 tail
        run[q] = {cands.doc_ids[i]: float(len(order) - r) for r, i in enumerate(order)}
        pairs += len(head)
        if n % 50 == 0:
            el = time.perf_counter() - t0
            log(f"  reranked {n}/{len(cands.candidates)} queries ({pairs / el:.1f} pairs/s)")
    return run, time.perf_counter() - t0, pairs


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny subset, a few steps: smoke test")
    p.add_argument("--model", type=Path, default=SHARED / "models" / "minilm-l6-fp32")
    p.add_argument(
        "--dense-model",
        type=Path,
        default=SHARED / "models" / "minilm-l6-int8-onnx",
        help="ONNX MiniLM for the dense and hybrid rows (as benches/quality_hybrid.py)",
    )
    p.add_argument("--data", type=Path, default=SHARED / "data" / "scifact")
    p.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "densparse_finetune_reranker",
        help="scratch directory (training JSONL, dev set, run, export)",
    )
    p.add_argument("--results", type=Path, default=REPO / "benches" / "RESULTS.md")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="cap the steps (0: epochs)")
    p.add_argument("--batch-size", type=int, default=8, help="queries (groups) per step")
    p.add_argument("--group-size", type=int, default=4, help="G = 1 positive + G-1 negatives")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument(
        "--head-lr", type=float, default=None, help="lr of the fresh classification head (--lr)"
    )
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--max-length", type=int, default=192, help="tokens per pair (train + test)")
    p.add_argument("--range", nargs=2, type=int, default=[2, 200], metavar=("START", "END"))
    p.add_argument("--negatives", type=int, default=15)
    p.add_argument("--dev-queries", type=int, default=30, help="held-out train queries")
    p.add_argument("--dev-candidates", type=int, default=10, help="BM25 top-N reranked on dev")
    p.add_argument("--evals", type=int, default=2, help="dev evaluations after step 0")
    p.add_argument(
        "--candidates",
        type=int,
        default=30,
        help="BM25 top-N reranked on test (of its top 100; the rest keep BM25's order)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-hybrid", action="store_true", help="skip the dense / hybrid rows")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    a = p.parse_args(argv)
    set_log_name("finetune_reranker")
    if a.quick:
        a.max_steps = a.max_steps or 4
        a.batch_size = min(a.batch_size, 4)
        a.max_length = min(a.max_length, 64)
        a.dev_queries = min(a.dev_queries, 8)
    for path in (a.model, a.data) + (() if a.no_hybrid else (a.dense_model,)):
        if not path.exists():
            print(f"needs {path} (the shared folder)", file=sys.stderr)
            return 1
    from densparse.eval import evaluate
    from densparse.train.data import write_jsonl
    from densparse.train.reranker import BM25Candidates
    from densparse.train.trainer import TrainConfig, Trainer, plot_training
    from finetune_scifact import Split, load_data, mine_bm25, work_dir

    info = machine_info()
    t_all = time.perf_counter()
    work = work_dir(a.work, a.quick)

    train, test = load_data(a.data, a.quick, a.seed)
    dev_q = sorted(random.Random(a.seed).sample(sorted(train.qrels), a.dev_queries))
    train_q = [q for q in train.qrels if q not in set(dev_q)]
    log(
        f"train: {len(train_q)} queries (+{len(dev_q)} held out for dev); test: "
        f"{len(test.qrels)} queries, {len(test.corpus)} documents"
    )
    stages: dict[str, float] = {}

    # 1. hard negatives for the training queries
    t0 = time.perf_counter()
    train_split = Split(
        train.corpus, {q: train.queries[q] for q in train_q}, {q: train.qrels[q] for q in train_q}
    )
    records, stats = mine_bm25(train_split, a.range, a.negatives)
    stages["mine"] = time.perf_counter() - t0
    train_file = work / "scifact_train_bm25neg.jsonl"
    write_jsonl(records, train_file)
    dev_dir = write_dev(train, dev_q, work / "dev")
    log(f"mined {stats['negatives']} negatives for {len(records)} records -> {train_file}")

    # (a) BM25 alone on test (the candidates of (b))
    t0 = time.perf_counter()
    cands = BM25Candidates(test, k=100, language="en")
    rows: dict[str, dict[str, Any]] = {
        "BM25": {**evaluate(test.qrels, cands.run, metrics=list(METRICS))}
    }
    stages["bm25"] = time.perf_counter() - t0
    log("BM25: " + ", ".join(f"{m} {rows['BM25'][m]:.4f}" for m in METRICS))

    # 2. training
    export = True
    try:
        from densparse.export.kinds import KINDS

        export = "reranker" in KINDS
    except ImportError:
        export = False
    steps_per_epoch = -(-len(records) // a.batch_size)
    total = a.max_steps or steps_per_epoch * a.epochs
    cfg = TrainConfig(
        kind="reranker",
        train=str(train_file),
        model=str(a.model),
        out=str(work / "run"),
        dev=str(dev_dir),
        dev_split="dev",
        epochs=a.epochs,
        max_steps=a.max_steps,
        lr=a.lr,
        head_lr=a.head_lr,
        batch_size=a.batch_size,
        group_size=a.group_size,
        warmup_ratio=a.warmup_ratio,
        max_length=a.max_length,
        eval_steps=max(1, total // a.evals) if a.evals else 0,
        eval_batch_size=32,
        eval_candidates=a.dev_candidates,
        logging_steps=5,
        seed=a.seed,
        export=export,
        overwrite=True,
    )
    log(f"training: {total} steps")
    res = Trainer(cfg).train()
    stages["train"] = res.train_seconds
    loss_first = sum(v for _, v in res.losses[:10]) / min(10, len(res.losses))
    loss_last = sum(v for _, v in res.losses[-10:]) / min(10, len(res.losses))
    (work / "train_result.json").write_text(
        json.dumps(
            {
                "steps": res.steps,
                "train_s": res.train_seconds,
                "dev": res.dev,
                "dev_bm25": res.baseline,
                "loss_first10": loss_first,
                "loss_last10": loss_last,
            },
            indent=2,
        )
    )
    plot_dst = (work if (a.quick or a.no_write) else REPO / "benches") / (
        "finetune_reranker_scifact.png"
    )
    plot_training(
        res.losses,
        res.dev,
        plot_dst,
        baseline=res.baseline,
        title=f"MiniLM-L6 cross-encoder on SciFact train (dev: {len(dev_q)} held-out queries, "
        f"BM25 top {a.dev_candidates} reranked)",
    )

    # (b) test: BM25 top-N reranked through the ONNX export
    rerank_label = (
        f"BM25 top 100, top {a.candidates} reranked by the fine-tuned cross-encoder "
        "(ONNX, densparse.Reranker)"
    )
    if res.onnx_dir is not None:
        run, secs, pairs = rerank_onnx(res.onnx_dir, test, cands, a.candidates, a.max_length)
        stages["rerank"] = secs
        rows[rerank_label] = {**evaluate(test.qrels, run, metrics=list(METRICS))}
        log(f"reranked {pairs} pairs in {secs:.0f}s ({pairs / secs:.1f} pairs/s)")
        log("reranked: " + ", ".join(f"{m} {rows[rerank_label][m]:.4f}" for m in METRICS))
        (work / "rerank_test.json").write_text(json.dumps(rows[rerank_label], indent=2))
    else:
        log("no ONNX export (densparse.export has no kind 'reranker'): (b) not measured")

    # (c) dense and hybrid, as benches/quality_hybrid.py
    if not a.no_hybrid:
        from quality_hybrid import hybrid_collection, search_run

        set_log_name("finetune_reranker")
        t0 = time.perf_counter()
        c, _ = hybrid_collection(test.corpus, a.dense_model, work / "collection")
        queries = {q: test.queries[q] for q in test.qrels}
        for name, kw in (
            (f"dense ({a.dense_model.name})", {"mode": "dense"}),
            ("hybrid BM25 + dense, RRF (k=60)", {"fusion": "rrf"}),
        ):
            rows[name] = {**evaluate(test.qrels, search_run(c, queries, **kw), metrics=METRICS)}
            log(f"{name}: " + ", ".join(f"{m} {rows[name][m]:.4f}" for m in METRICS))
        stages["hybrid"] = time.perf_counter() - t0
        shutil.rmtree(work / "collection", ignore_errors=True)

    total_s = time.perf_counter() - t_all
    base = rows["BM25"]["ndcg@10"]
    table = md_table(
        ["method", "nDCG@10", "Δ nDCG@10 vs BM25", "Recall@100", "MRR@10"],
        [
            [
                name,
                f"{r['ndcg@10']:.4f}",
                f"{r['ndcg@10'] - base:+.4f}",
                f"{r['recall@100']:.4f}",
                f"{r['mrr@10']:.4f}",
            ]
            for name, r in rows.items()
        ],
    )
    gain = rows[rerank_label]["ndcg@10"] - base if rerank_label in rows else None
    goal = "- Goal: reranked >= BM25 + 0.03 nDCG@10: " + (
        "**not measured**"
        if gain is None
        else f"measured {gain:+.4f} — {'**met**' if gain >= 0.03 else '**NOT met**'}"
    )
    dev0, dev1 = (res.dev[0], res.dev[-1]) if res.dev else ({}, {})
    lines = [
        MARK_START,
        "## Fine-tuning a MiniLM-L6 cross-encoder on SciFact (issue 12)",
        "",
        *(
            [
                "> **QUICK SMOKE RUN (`--quick`): tiny subset, a few steps; the numbers mean "
                "nothing.**",
                "",
            ]
            if a.quick
            else []
        ),
        *run_header(info),
        f"- Data: SciFact train qrels, {len(train_q)} queries → {len(records)} records with "
        f"{stats['negatives']} BM25 negatives (ranks [{a.range[0]}, {a.range[1]}), "
        f"{a.negatives} per query); {len(dev_q)} more train queries held out as the dev set "
        f"(BM25 top {a.dev_candidates} reranked, {a.evals} evaluations). Test: SciFact test "
        f"({len(test.qrels)} queries, {len(test.corpus):,} documents, title + text), k = 100.",
        f"- Model: `{a.model.name}` (all-MiniLM-L6-v2, a bi-encoder) loaded as "
        "`BertForSequenceClassification` with a fresh one-logit head; fp32, CPU.",
        f'- Training: `TrainConfig(kind="reranker")`, {res.steps} steps ({a.epochs} epoch(s)'
        f"{f', capped at {a.max_steps}' if a.max_steps else ''}) of {a.batch_size} groups × "
        f"G = {a.group_size} (1 positive + {a.group_size - 1} BM25 negatives), cross-entropy "
        f"over each group; lr {a.lr:g}"
        f"{f' (fresh head: {a.head_lr:g})' if a.head_lr else ''} (AdamW, warmup "
        f"{a.warmup_ratio:g} then linear decay), "
        f"max length {a.max_length} tokens per pair (also at test time), seed {a.seed}. Loss "
        f"{loss_first:.3f} → {loss_last:.3f} (mean of the first / last 10 steps); dev nDCG@10 "
        f"{dev0.get('ndcg@10', float('nan')):.4f} → {dev1.get('ndcg@10', float('nan')):.4f} "
        f"(BM25 alone {res.baseline['ndcg@10']:.4f})."
        if res.baseline
        else "",
        f'- Rows: BM25 = densparse BM25 top 100, `Analyzer(language="en")`; reranked = its '
        f"top {a.candidates} re-scored by the ONNX export in `densparse.Reranker` (fp32, CPU) "
        f"and put above ranks {a.candidates + 1}-100 (BM25 order kept there, so Recall@100 "
        f"equals BM25's); dense / hybrid = one `Collection` with `{a.dense_model.name}` as in "
        "benches/quality_hybrid.py.",
        "",
        table,
        "",
        goal,
        "- Stages: "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in stages.items())
        + f"; total wall time {total_s / 60:.1f} min.",
        f"- Plot (training loss, dev nDCG@10, BM25 on dev dashed): "
        f"`{plot_dst.relative_to(REPO) if plot_dst.is_relative_to(REPO) else plot_dst}`",
        MARK_END,
    ]
    section = "\n".join(line for line in lines if line is not None)
    print(section)
    (work / "section.md").write_text(section, encoding="utf-8")
    if not a.no_write and not a.quick:
        write_results(a.results, section, MARK_START, MARK_END)
        log(f"wrote {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
