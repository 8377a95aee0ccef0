#!/usr/bin/env python3
"""int8 export fidelity on SciFact: cosine to the fp32 model over every corpus document and
dense nDCG@10 on the test queries, fp32 vs int8 variants of all-MiniLM-L6-v2.

Variants (``--variants``, comma separated):

* ``fp32``      ``export_model(..., kind="st")`` (the reference).
* ``int8``      ``export_model(..., int8=True)``: what densparse ships (dynamic int8, signed 7-bit
                per-channel weights, feed-forward down-projections in float32).
* ``int8-all``  every MatMul quantised, weights 7-bit (``reduce_range=True``; no vpmaddubsw
                saturation on AVX2), the down-projections included: the fastest graph, less
                accurate.

Documents are ``title + " " + text``, max_length 256; retrieval is exact inner product over the
L2-normalised vectors; nDCG@10 with ``densparse.eval.evaluate`` (trec_eval's definition).
Embeddings are cached under ``--work-dir`` as .npy. The table and the goals go to ``--out``
(benches/RESULTS.md) between ``<!-- quality_int8:start -->`` and its end marker.

    python3 benches/quality_int8.py            # 3 x 5,183 documents: 10-30 min on 2 cores
    python3 benches/quality_int8.py --variants fp32,int8
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    densparse,
    log,
    machine_info,
    md_table,
    met_mark,
    run_header,
    set_log_name,
    write_results,
)

set_log_name("quality_int8")
MARK_START, MARK_END = "<!-- quality_int8:start -->", "<!-- quality_int8:end -->"
SHARED = REPO.parent / "shared"
MAX_LENGTH = 256


def model_dir(variant: str, work: Path) -> Path:
    from densparse.export import export_model

    src = SHARED / "models" / "minilm-l6-fp32"
    fp32 = work / "minilm-l6-fp32-onnx"
    if not (fp32 / "model.onnx").is_file():
        export_model(src, fp32, kind="st")
    if variant == "fp32":
        return fp32
    if variant == "int8":
        out = work / "minilm-l6-int8-dynamic-onnx"
        if not (out / "model.onnx").is_file():
            export_model(src, out, kind="st", int8=True)
        return out
    if variant == "int8-all":
        out = work / "minilm-l6-int8-all-onnx"
        if not (out / "model.onnx").is_file():
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            shutil.copytree(fp32, out, ignore=shutil.ignore_patterns("model.onnx*"))
            quantize_dynamic(
                str(fp32 / "model.onnx"),
                str(out / "model.onnx"),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        return out
    raise SystemExit(f"unknown variant {variant!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="fp32,int8,int8-all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-docs", type=int, default=None, help="first N corpus documents only")
    ap.add_argument("--work-dir", type=Path, default=REPO / "benches" / ".cache" / "encode")
    ap.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    args = ap.parse_args()
    info, t_start = machine_info(), time.perf_counter()
    from densparse.eval import evaluate, load_beir

    ds = load_beir(SHARED / "data" / "scifact", split="test")
    ids = list(ds.corpus)[: args.n_docs]
    texts = [f"{d['title']} {d['text']}".strip() for d in (ds.corpus[i] for i in ids)]
    qids = list(ds.queries)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    vecs, rows, cached = {}, [], []
    for v in args.variants.split(","):
        d = model_dir(v, args.work_dir)
        cache = args.work_dir / f"scifact_{v}_{len(ids)}.npy"
        enc = densparse.Encoder.from_pretrained(
            d, provider="cpu", max_length=MAX_LENGTH, threads=args.threads
        )
        t0 = time.perf_counter()
        if cache.is_file():
            docs = np.load(cache)
            cached.append(v)
        else:
            docs = enc.encode(texts, batch_size=32, show_progress=False)
            np.save(cache, docs)
        q = enc.encode([ds.queries[i] for i in qids], batch_size=32, show_progress=False)
        vecs[v] = docs
        s = q @ docs.T
        top = np.argsort(-s, axis=1)[:, :100]
        run = {qid: {ids[j]: float(s[r, j]) for j in top[r]} for r, qid in enumerate(qids)}
        ndcg = evaluate(ds.qrels, run, ["ndcg@10"])["ndcg@10"]
        ref = vecs.get("fp32")
        cos = (docs * ref).sum(1) if ref is not None else None
        rows.append((v, ndcg, cos))
        log(
            f"{v}: nDCG@10 {ndcg:.4f}"
            + (
                f", cosine to fp32 min {cos.min():.4f} mean {cos.mean():.4f}"
                if cos is not None
                else ""
            )
            + f" ({time.perf_counter() - t0:.0f}s)"
        )
    head = f"SciFact nDCG@10 ({len(qids)} test queries, {len(ids):,} docs)"
    table = md_table(
        ["variant", head, "cosine to fp32: min", "mean"],
        [
            [v, f"{n:.4f}"] + (["1", "1"] if c is None else [f"{c.min():.4f}", f"{c.mean():.4f}"])
            for v, n, c in rows
        ],
    )
    print(table)
    lines = [MARK_START, "## int8 export fidelity on SciFact (benches/quality_int8.py)", ""]
    lines += run_header(info, f" (run took {(time.perf_counter() - t_start) / 60:.1f} min)")
    lines.append(
        f"- Model all-MiniLM-L6-v2, max_length {MAX_LENGTH}, {args.threads} threads; exact "
        "inner product over L2-normalised vectors; nDCG@10 by `densparse.eval.evaluate`."
    )
    if cached:
        lines.append(
            "- Document vectors of " + ", ".join(cached) + " were read from this script's cache "
            "(`--work-dir`), made by an earlier run on the same model files; the queries were "
            "encoded in this run."
        )
    ndcg = {v: n for v, n, _ in rows}
    low = {v: c.min() for v, _, c in rows if c is not None}
    if "fp32" in ndcg and "int8" in ndcg:
        gap = ndcg["fp32"] - ndcg["int8"]
        lines.append(
            f"- Goal: int8 nDCG@10 within 0.005 of fp32: {gap:+.4f} — {met_mark(gap <= 0.005)}"
        )
    if "int8" in low:
        lines.append(
            "- Goal: int8 cosine to fp32 >= 0.99 on every document: "
            f"min {low['int8']:.4f} — {met_mark(low['int8'] >= 0.99)}"
        )
    lines += ["", table, "", MARK_END]
    write_results(args.out, "\n".join(lines), MARK_START, MARK_END)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
