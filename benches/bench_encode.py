#!/usr/bin/env python3
"""CPU encoding throughput and peak memory: densparse.Encoder vs sentence-transformers and a
plain onnxruntime + tokenizers loop, same model and precision, in one run.

Model: all-MiniLM-L6-v2 (the shared ``minilm-l6-fp32`` checkpoint and ``minilm-l6-int8-onnx``).
Data: the first ``--n`` documents of the SciFact corpus in corpus order, ``title + " " + text``,
max_length 256 for every engine.

Sections (``--sections``, comma separated; default: all):

* ``fp32``  densparse Encoder on an fp32 ONNX export made by ``densparse.export.export_model``
            (cached under ``--work-dir``) vs sentence-transformers (PyTorch CPU, fp32) vs the plain
            loop on the same ONNX file.
* ``int8``  densparse Encoder on the shared int8 ONNX vs the plain loop on the same file vs
            sentence-transformers after ``torch.ao.quantization.quantize_dynamic`` on nn.Linear
            (a different int8 model: NOT bit-identical to the ONNX one).
* ``latency`` one short query per call (SciFact queries of 8-12 word pieces, special tokens
            excluded), as a search service encodes them: densparse Encoder on the fp32 export and on
            the int8 export vs ``SentenceTransformer.encode([query])`` (torch fp32, the same
            model); p50 / p95 per call, the engines interleaved query by query.
* ``mem``   peak RSS (VmHWM, one subprocess per engine) while encoding long documents
            (consecutive SciFact documents joined until >= 2,000 tokens, truncated to 256), and
            densparse late chunking (``chunk_embed``, 64-token chunks, overlapping windows) of them.

The plain loop is what a user writes: corpus order, fixed batch size, pad to the longest text
of the batch, ``session.run``, masked mean pooling, L2 normalisation; default SessionOptions
(onnxruntime's defaults: full graph optimisation, memory pattern and arena on).
All engines get the same thread count (``--threads``, default: all cores). Every engine is timed
at every batch size; the runs are interleaved (rep 1 of everything, then rep 2, ...) so a busy
moment of the shared machine hits all engines alike. The cosine between engines' outputs is
printed so nobody benchmarks wrong numbers.

    python3 benches/bench_encode.py --quick          # smoke test, seconds; numbers meaningless
    python3 benches/bench_encode.py                  # real size (quiet machine: ~15 min)

Results go to ``--out`` (benches/RESULTS.md) between ``<!-- bench_encode:start -->`` and
``<!-- bench_encode:end -->``. Needs the ``bench`` extra (sentence-transformers, torch).
"""

from __future__ import annotations

import argparse
import json
import os
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
    rate_table,
    run_header,
    set_log_name,
    write_results,
)

set_log_name("bench_encode")
MARK_START, MARK_END = "<!-- bench_encode:start -->", "<!-- bench_encode:end -->"
SECTION_TITLE = "## Encoding on CPU (bench_encode.py)"
SECTIONS = ("fp32", "int8", "latency", "mem")
MAX_LENGTH = 256
SHARED = REPO.parent / "shared"


def shared_dir() -> Path:
    if (SHARED / "models").is_dir():
        return SHARED
    sys.exit("bench_encode needs the shared models and data (the shared folder beside the repo)")


def versions() -> dict:
    return package_versions(
        ("onnxruntime-gpu", "onnxruntime", "tokenizers", "torch", "sentence-transformers")
    )


def load_corpus(path: Path, n: Optional[int]) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            title, text = d.get("title") or "", d.get("text") or ""
            texts.append(f"{title} {text}".strip() if title else text)
            if n is not None and len(texts) >= n:
                break
    return texts


def long_docs(texts: list[str], tokenizer_json: Path, n: int, min_tokens: int) -> list[str]:
    """``n`` documents of >= ``min_tokens`` tokens: consecutive corpus texts joined."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.no_padding()
    lens = [len(e.ids) - 2 for e in tok.encode_batch(texts)]
    out, cur, cur_len, i = [], [], 0, 0
    while len(out) < n:
        cur.append(texts[i % len(texts)])
        cur_len += lens[i % len(texts)]
        i += 1
        if cur_len >= min_tokens:
            out.append(" ".join(cur))
            cur, cur_len = [], 0
    return out


# --------------------------------------------------------------------------- engines
class Densparse:
    def __init__(self, model_dir: Path, threads: int):
        self.enc = densparse.Encoder.from_pretrained(
            model_dir, provider="cpu", max_length=MAX_LENGTH, threads=threads
        )

    def encode(self, texts: list[str], bs: int) -> np.ndarray:
        return self.enc.encode(texts, batch_size=bs, show_progress=False)


class PlainOrt:
    """What a user writes with onnxruntime + tokenizers."""

    def __init__(self, model_dir: Path, threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(
            str(model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"]
        )
        self.names = {i.name for i in self.sess.get_inputs()}
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.enable_truncation(MAX_LENGTH)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch

    def encode(self, texts: list[str], bs: int) -> np.ndarray:
        out = []
        for i in range(0, len(texts), bs):
            encs = self.tok.encode_batch(texts[i : i + bs])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            h = self.sess.run(None, feeds)[0]
            m = mask[:, :, None].astype(np.float32)
            v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            out.append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out).astype(np.float32)

    def padded_tokens(self, texts: list[str], bs: int) -> int:
        total = 0
        for i in range(0, len(texts), bs):
            total += sum(len(e.ids) for e in self.tok.encode_batch(texts[i : i + bs]))
        return total


class SentTransformers:
    def __init__(self, model_dir: Path, threads: int, int8: bool = False):
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.model.max_seq_length = MAX_LENGTH
        if int8:
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear}, dtype=torch.qint8
            )

    def encode(self, texts: list[str], bs: int) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model.encode(
                texts,
                batch_size=bs,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)


def fp32_onnx_dir(args, shared: Path) -> Path:
    """The fp32 ONNX export of minilm-l6-fp32, made once with densparse's exporter."""
    out = args.work_dir / "minilm-l6-fp32-onnx"
    if (out / "model.onnx").is_file():
        return out
    from densparse.export import export_model

    log(f"exporting {shared / 'models/minilm-l6-fp32'} -> {out}")
    rep = export_model(shared / "models" / "minilm-l6-fp32", out, kind="st")
    log(f"export: max |onnx - torch| = {rep.max_abs_diff}")
    return rep.out_dir


def int8_export_dir(args, shared: Path) -> Path:
    """densparse's own dynamic-int8 export of minilm-l6-fp32 (``export_model(int8=True)``)."""
    out = args.work_dir / "minilm-l6-int8-dynamic-onnx"
    if (out / "model.onnx").is_file():
        return out
    from densparse.export import export_model

    log(f"exporting {shared / 'models/minilm-l6-fp32'} -> {out} (int8=True)")
    rep = export_model(shared / "models" / "minilm-l6-fp32", out, kind="st", int8=True)
    return rep.out_dir


#: Engine names starting with this are densparse rows (ratio table rows); the rest are peers.
OURS = "densparse"


def engine_specs(prec: str, args, shared: Path) -> list[tuple[str, Any]]:
    t = args.threads
    st_dir = shared / "models" / "minilm-l6-fp32"
    if prec == "fp32":
        onnx_dir = fp32_onnx_dir(args, shared)
        return [
            ("densparse Encoder", lambda: Densparse(onnx_dir, t)),
            ("sentence-transformers (torch fp32)", lambda: SentTransformers(st_dir, t)),
            ("plain onnxruntime loop", lambda: PlainOrt(onnx_dir, t)),
        ]
    onnx_dir = shared / "models" / "minilm-l6-int8-onnx"
    specs = [
        ("densparse Encoder", lambda: Densparse(onnx_dir, t)),
        ("sentence-transformers (torch dynamic int8)", lambda: SentTransformers(st_dir, t, True)),
        ("plain onnxruntime loop", lambda: PlainOrt(onnx_dir, t)),
    ]
    if args.int8_export:
        q_dir = int8_export_dir(args, shared)
        specs.insert(1, ("densparse Encoder, own int8 export", lambda: Densparse(q_dir, t)))
    return specs


# --------------------------------------------------------------------------- throughput
def cos_rows(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    c = (a * b).sum(1)
    return float(c.min()), float(c.mean())


def section_throughput(prec: str, args, shared: Path, texts: list[str]) -> dict:
    specs = engine_specs(prec, args, shared)
    engines = []
    for name, make in specs:
        t0 = time.perf_counter()
        eng = make()
        eng.encode(texts[:16], 16)  # warm-up
        engines.append((name, eng))
        log(f"{prec}: loaded {name} in {time.perf_counter() - t0:.1f}s")
    times: dict = {(name, bs): [] for name, _ in engines for bs in args.batch_sizes}
    vecs: dict = {}
    for rep in range(args.reps):
        for bs in args.batch_sizes:
            for name, eng in engines:
                t0 = time.perf_counter()
                v = eng.encode(texts, bs)
                times[(name, bs)].append(time.perf_counter() - t0)
                if rep == 0 and bs == args.batch_sizes[0]:
                    vecs[name] = v  # for the agreement check
        log(
            f"{prec}: rep {rep + 1}/{args.reps}: "
            + ", ".join(
                f"{n[:12]} bs={b} {len(texts) / v[-1]:.1f}/s" for (n, b), v in times.items()
            )
        )
    # agreement: every engine's vectors vs densparse's (first batch size, first run)
    base = vecs[engines[0][0]]
    agree = {name: cos_rows(base, v) for name, v in vecs.items() if name != engines[0][0]}
    for name, (lo, mean) in agree.items():
        log(f"{prec}: cosine densparse vs {name}: min {lo:.6f} mean {mean:.6f}")
    plain = next(e for n, e in engines if n.startswith("plain"))
    dens = engines[0][1].enc
    lens = [len(e.ids) for e in dens._tokenize(texts, MAX_LENGTH)]
    pad = {bs: plain.padded_tokens(texts, bs) for bs in args.batch_sizes}
    return {
        "engines": [n for n, _ in engines],
        "times": times,
        "agree": agree,
        "tokens": int(sum(lens)),
        "plain_padded": pad,
        "n": len(texts),
        "vecs": vecs,
    }


# --------------------------------------------------------------------------- latency
def short_queries(path: Path, tokenizer_json: Path, n: int, lo: int = 8, hi: int = 12) -> list[str]:
    """SciFact queries of ``lo``-``hi`` word pieces (special tokens excluded), file order."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.no_padding()
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)["text"]
            if lo <= len(tok.encode(q, add_special_tokens=False).ids) <= hi:
                out.append(q)
                if len(out) >= n:
                    break
    return out


def section_latency(args, shared: Path) -> dict:
    st_dir = shared / "models" / "minilm-l6-fp32"
    queries = short_queries(
        shared / "data" / "scifact" / "queries.jsonl", st_dir / "tokenizer.json", args.lat_queries
    )
    t = args.threads
    specs: list[tuple[str, Any]] = [
        ("densparse Encoder, fp32 export", lambda: Densparse(fp32_onnx_dir(args, shared), t)),
        ("densparse Encoder, int8 export", lambda: Densparse(int8_export_dir(args, shared), t)),
        ("sentence-transformers (torch fp32)", lambda: SentTransformers(st_dir, t)),
    ]
    engines = [(name, make()) for name, make in specs]
    for _, eng in engines:  # warm-up
        for q in queries[:20]:
            eng.encode([q], 1)
    times: dict = {name: [] for name, _ in engines}
    for _ in range(args.lat_reps):
        for q in queries:
            for name, eng in engines:
                t0 = time.perf_counter()
                eng.encode([q], 1)
                times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        log(f"latency {name}: p50 {np.percentile(ts, 50) * 1e3:.2f} ms")
    return {"times": times, "n_queries": len(queries)}


def render_latency(lat: dict, threads: int) -> tuple[list[str], dict]:
    lines = [
        f"### Short-query latency: one query per call ({lat['n_queries']} SciFact queries of "
        "8-12 word pieces)",
        "",
        "Each call encodes one query (`Encoder.encode([q])` / `SentenceTransformer.encode([q])`), "
        f"{threads} threads; engines interleaved query by query.",
        "",
    ]
    st = "sentence-transformers (torch fp32)"
    st50 = float(np.percentile(lat["times"][st], 50))
    body, ratios = [], {}
    for name, ts in lat["times"].items():
        ms = np.asarray(ts) * 1e3
        p50 = float(np.percentile(ms, 50))
        ratio = p50 / (st50 * 1e3)
        if name != st:
            ratios[name] = ratio
        body.append(
            [
                name,
                f"{len(ms):,}",
                fmt_num(p50),
                fmt_num(float(np.percentile(ms, 95))),
                fmt_num(float(ms.mean())),
                "1" if name == st else f"{ratio:.2f}",
            ]
        )
    lines.append(
        md_table(
            ["engine", "calls", "p50 (ms)", "p95 (ms)", "mean (ms)", "p50 / sentence-transformers"],
            body,
        )
    )
    lines.append("")
    return lines, ratios


# --------------------------------------------------------------------------- memory
MEM_ENGINES = {
    "densparse-int8": "densparse Encoder, int8 ONNX, encode",
    "plain-int8": "plain onnxruntime loop, int8 ONNX",
    "st-int8": "sentence-transformers, torch dynamic int8",
    "densparse-fp32": "densparse Encoder, fp32 ONNX, encode",
    "plain-fp32": "plain onnxruntime loop, fp32 ONNX",
    "st-fp32": "sentence-transformers, torch fp32",
    "densparse-int8-late": "densparse Encoder, int8 ONNX, chunk_embed late (64-token chunks, "
    "windows of 256, whole documents)",
}


def mem_child(args) -> None:
    """Runs in a subprocess: load one engine, encode the long documents, print JSON."""
    shared = shared_dir()
    name = args.child_mem
    texts = json.loads(Path(args.child_texts).read_text(encoding="utf-8"))
    prec = name.split("-")[1]
    onnx_dir = (
        shared / "models" / "minilm-l6-int8-onnx"
        if prec == "int8"
        else args.work_dir / "minilm-l6-fp32-onnx"
    )
    st_dir = shared / "models" / "minilm-l6-fp32"
    t = args.threads
    if name.startswith("densparse"):
        eng: Any = Densparse(onnx_dir, t)
    elif name.startswith("plain"):
        eng = PlainOrt(onnx_dir, t)
    else:
        eng = SentTransformers(st_dir, t, int8=prec == "int8")
    after_load = peak_rss_kb()
    t0 = time.perf_counter()
    if name.endswith("late"):
        res = eng.enc.chunk_embed(texts, chunk_size=64, batch_size=args.mem_bs, show_progress=False)
        n_chunks = sum(len(v) for v, _ in res)
    else:
        eng.encode(texts, args.mem_bs)
        n_chunks = None
    dt = time.perf_counter() - t0
    print(
        json.dumps(
            {"after_load_kb": after_load, "peak_kb": peak_rss_kb(), "s": dt, "chunks": n_chunks}
        )
    )


def section_mem(args, shared: Path, corpus: list[str]) -> dict:
    tok_json = shared / "models" / "minilm-l6-int8-onnx" / "tokenizer.json"
    docs = long_docs(corpus, tok_json, args.mem_docs, 2000)
    late_docs = docs[: args.late_docs]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, d in (("encode", docs), ("late", late_docs)):
        p = args.work_dir / f"long_docs_{key}.json"
        p.write_text(json.dumps(d), encoding="utf-8")
        paths[key] = p
    if "fp32" in args.mem_engines_prec:
        fp32_onnx_dir(args, shared)
    rows = []
    for name in MEM_ENGINES:
        if name.split("-")[1] not in args.mem_engines_prec:
            continue
        late = name.endswith("late")
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child-mem",
            name,
            "--child-texts",
            str(paths["late" if late else "encode"]),
            "--threads",
            str(args.threads),
            "--mem-bs",
            str(args.mem_bs),
            "--work-dir",
            str(args.work_dir),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            log(f"mem {name} failed: {r.stderr[-2000:]}")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["name"], res["docs"] = name, len(late_docs if late else docs)
        rows.append(res)
        log(
            f"mem {name}: peak {res['peak_kb'] / 1024:,.0f} MB (after load "
            f"{res['after_load_kb'] / 1024:,.0f} MB), {res['s']:.1f}s"
        )
    return {"rows": rows, "n_docs": len(docs), "n_late": len(late_docs)}


# --------------------------------------------------------------------------- report
def best(res: dict, name: str) -> tuple[int, float]:
    """(batch size, docs/s) of the fastest batch size of an engine."""
    rates = {bs: res["n"] / med(t) for (n, bs), t in res["times"].items() if n == name}
    bs = max(rates, key=rates.get)
    return bs, rates[bs]


def render_throughput(prec: str, res: dict, threads: int) -> tuple[list[str], dict]:
    lines = [f"### {prec}: docs/s, first {res['n']:,} SciFact documents", ""]
    if prec == "int8":
        lines.append(
            "`densparse Encoder` and the plain loop run the same file, the shared int8 ONNX "
            "(int8 *weights* that onnxruntime dequantises to float32 at load: it computes in "
            "float32). sentence-transformers runs torch dynamic int8 (quantize_dynamic on "
            "nn.Linear, per tensor, int8 activations) of the fp32 checkpoint, and `densparse "
            "Encoder, own int8 export` runs `export_model(..., int8=True)` (onnxruntime dynamic "
            "int8, u8s8, 7-bit per-channel weights, feed-forward down-projections kept float32): "
            "**three different int8 models, not bit-identical** (see the cosines below)."
        )
        lines.append("")
    bss = sorted({b for _, b in res["times"]})
    rows = [
        Row(f"{n} bs={bs}", str(threads), res["n"], res["times"][(n, bs)])
        for n in res["engines"]
        for bs in bss
    ]
    lines.append(rate_table(rows, "docs", "docs/s"))
    lines.append("")
    ours = [n for n in res["engines"] if n.startswith(OURS)]
    peers = [n for n in res["engines"] if not n.startswith(OURS)]
    body = []
    for o in ours:
        for bs in bss:
            orate = res["n"] / med(res["times"][(o, bs)])
            body.append(
                [f"{o} bs={bs}"]
                + [fmt_ratio(orate / (res["n"] / med(res["times"][(p, bs)]))) for p in peers]
            )
    ratios = {}
    for o in ours:
        ob, orate = best(res, o)
        cells = []
        for p in peers:
            pb, prate = best(res, p)
            ratios[(o, p)] = orate / prate
            cells.append(f"{fmt_ratio(orate / prate)} (bs {ob} vs {pb})")
        body.append([f"{o}, best vs best", *cells])
    lines.append(md_table(["densparse / peer, same batch size", *[f"vs {p}" for p in peers]], body))
    lines.append("")
    pad_note = ", ".join(f"bs={bs}: {res['plain_padded'][bs] / res['tokens']:.2f}x" for bs in bss)
    lines.append(
        f"- Tokens: {res['tokens']:,} real (truncated at {MAX_LENGTH}); the plain loop computes "
        f"padded tokens / real tokens = {pad_note}; densparse sorts by length (padding ~1.0x)."
    )
    lines.append(
        "- Agreement (cosine of each document's vector with `densparse Encoder`'s): "
        + "; ".join(f"{n}: min {lo:.6f}, mean {m:.6f}" for n, (lo, m) in res["agree"].items())
    )
    if "vs_fp32" in res:
        lines.append(
            "- Each int8 engine vs the fp32 `densparse Encoder` vectors (the float32 model): "
            + "; ".join(f"{n}: min {lo:.4f}, mean {m:.4f}" for n, (lo, m) in res["vs_fp32"].items())
        )
    lines.append("")
    return lines, ratios


def render(
    args, info, vers, thr: dict, lat: Optional[dict], mem: Optional[dict], t_total: float
) -> str:
    lines = [MARK_START, SECTION_TITLE, ""]
    lines += run_header(info, f" (run took {t_total / 60:.1f} min)")
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    lines.append(
        f"- Model all-MiniLM-L6-v2, max_length {MAX_LENGTH}, CPU only, {args.threads} threads for "
        "every engine (onnxruntime intra-op threads / torch.set_num_threads). Medians of "
        f"{args.reps} interleaved runs per engine and batch size."
    )
    if args.quick:
        lines.append("- **--quick run: tiny sizes, the numbers mean nothing.**")
    if args.note:
        lines.append(f"- Note: {args.note}")
    lines.append("")
    goals = []
    for prec in ("fp32", "int8"):
        if prec not in thr:
            continue
        body, ratios = render_throughput(prec, thr[prec], args.threads)
        lines += body
        for (o, peer), r in ratios.items():
            target = 1.3 if peer.startswith("sentence") else 1.5
            if o != "densparse Encoder" and not peer.startswith("sentence"):
                continue  # a different graph than the plain loop's: no like-for-like goal
            goals.append(goal_line(f"{prec} docs/s, {o} vs {peer}, best vs best", r, target))
    if lat is not None:
        body, lratios = render_latency(lat, args.threads)
        lines += body
        for name, r in lratios.items():
            goals.append(
                f"- Goal: short-query p50, {name} / sentence-transformers <= 0.5: measured "
                f"{r:.2f} — {'**met**' if r <= 0.5 else '**NOT met**'}"
            )
    if mem is not None and mem["rows"]:
        lines.append(
            f"### Peak memory on long documents ({mem['n_docs']} documents of >= 2,000 tokens, "
            f"truncated to {MAX_LENGTH}; late chunking: {mem['n_late']} whole documents)"
        )
        lines.append("")
        lines.append(
            f"One subprocess per engine, batch size {args.mem_bs}; peak RSS = VmHWM of the process "
            "(includes the Python interpreter, libraries and model)."
        )
        lines.append("")
        body = [
            [
                MEM_ENGINES[r["name"]],
                str(r["docs"]),
                fmt_num(r["after_load_kb"] / 1024),
                fmt_num(r["peak_kb"] / 1024),
                fmt_num((r["peak_kb"] - r["after_load_kb"]) / 1024),
                fmt_num(r["s"]),
            ]
            for r in mem["rows"]
        ]
        lines.append(
            md_table(
                [
                    "engine",
                    "docs",
                    "RSS after load (MB)",
                    "peak RSS (MB)",
                    "growth while encoding (MB)",
                    "time (s)",
                ],
                body,
            )
        )
        lines.append("")
    if goals:
        lines.append("### Goals")
        lines.append("")
        lines += goals
        lines.append("")
    lines.append(MARK_END)
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--n", type=int, default=1000, help="first N SciFact documents")
    ap.add_argument("--batch-sizes", default="16,32,64,128")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--mem-docs", type=int, default=200, help="long documents for peak RSS")
    ap.add_argument("--late-docs", type=int, default=50, help="long documents late-chunked")
    ap.add_argument("--mem-bs", type=int, default=32)
    ap.add_argument("--lat-queries", type=int, default=100, help="short queries for latency")
    ap.add_argument("--lat-reps", type=int, default=3, help="passes over the short queries")
    ap.add_argument("--mem-precisions", default="int8,fp32")
    ap.add_argument("--work-dir", type=Path, default=REPO / "benches" / ".cache" / "encode")
    ap.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    ap.add_argument(
        "--no-int8-export",
        dest="int8_export",
        action="store_false",
        help="skip the extra int8 row with densparse's own export_model(int8=True) graph",
    )
    ap.add_argument("--note", default="", help="a line for RESULTS.md (e.g. what was cut)")
    ap.add_argument("--child-mem", help=argparse.SUPPRESS)
    ap.add_argument("--child-texts", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    for s in a.sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}: expected {', '.join(SECTIONS)}")
    a.batch_sizes = [int(b) for b in a.batch_sizes.split(",")]
    a.mem_engines_prec = [p.strip() for p in a.mem_precisions.split(",")]
    if a.quick:
        a.n, a.batch_sizes, a.reps = 48, [16, 32], 1
        a.mem_docs, a.late_docs = 4, 2
        a.lat_queries, a.lat_reps = 10, 1
    return a


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.child_mem:
        mem_child(args)
        return
    t0 = time.perf_counter()
    shared = shared_dir()
    info, vers = machine_info(), versions()
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {info['loadavg']}; {vers}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    corpus_path = shared / "data" / "scifact" / "corpus.jsonl"
    texts = load_corpus(corpus_path, args.n)
    thr = {}
    for prec in ("fp32", "int8"):
        if prec in args.sections:
            thr[prec] = section_throughput(prec, args, shared, texts)
    if "fp32" in thr and "int8" in thr:
        ref = thr["fp32"]["vecs"]["densparse Encoder"]
        thr["int8"]["vs_fp32"] = {n: cos_rows(ref, v) for n, v in thr["int8"]["vecs"].items()}
    lat = section_latency(args, shared) if "latency" in args.sections else None
    mem = None
    if "mem" in args.sections:
        mem = section_mem(args, shared, load_corpus(corpus_path, None))
    section = render(args, info, vers, thr, lat, mem, time.perf_counter() - t0)
    print(section)
    write_results(args.out, section, MARK_START, MARK_END)
    log(f"wrote {args.out} ({(time.perf_counter() - t0) / 60:.1f} min in all)")


if __name__ == "__main__":
    main()
