#!/usr/bin/env python3
"""int8 export fidelity on SciFact: cosine to the fp32 model over every corpus document and
dense nDCG@10 on the test queries, fp32 vs int8 variants of all-MiniLM-L6-v2.

Variants (``--variants``, comma separated):

* ``fp32``      ``export_model(..., kind="st")`` (the reference).
* ``int8``      ``export_model(..., int8=True)``: what densparse ships (dynamic int8, signed
                per-channel weights, feed-forward down-projections in float32).
* ``int8-all``  every MatMul quantised, weights 7-bit (``reduce_range=True``; no vpmaddubsw
                saturation on AVX2), the down-projections included: the fastest graph, less
                accurate.

Documents are ``title + " " + text``, max_length 256; retrieval is exact inner product over the
L2-normalised vectors; nDCG@10 with ``densparse.eval.evaluate`` (trec_eval's definition).
Embeddings are cached under ``--work-dir`` as .npy.

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
from _common import REPO, densparse, log, set_log_name

set_log_name("quality_int8")
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
    args = ap.parse_args()
    from densparse.eval import evaluate, load_beir

    ds = load_beir(SHARED / "data" / "scifact", split="test")
    ids = list(ds.corpus)[: args.n_docs]
    texts = [f"{d['title']} {d['text']}".strip() for d in (ds.corpus[i] for i in ids)]
    qids = list(ds.queries)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    vecs, rows = {}, []
    for v in args.variants.split(","):
        d = model_dir(v, args.work_dir)
        cache = args.work_dir / f"scifact_{v}_{len(ids)}.npy"
        enc = densparse.Encoder.from_pretrained(
            d, provider="cpu", max_length=MAX_LENGTH, threads=args.threads
        )
        t0 = time.perf_counter()
        if cache.is_file():
            docs = np.load(cache)
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
    print(f"| variant | {head} | cosine to fp32 min | mean |")
    print("|---|---|---|---|")
    for v, ndcg, cos in rows:
        c = ("1", "1") if cos is None else (f"{cos.min():.4f}", f"{cos.mean():.4f}")
        print(f"| {v} | {ndcg:.4f} | {c[0]} | {c[1]} |")


if __name__ == "__main__":
    main()
