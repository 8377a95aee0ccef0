"""The ``densparse`` command: index, search, eval, demo, mine, finetune, export, serve."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional

from densparse._core import CorruptIndexError
from densparse.analysis import Analyzer
from densparse.bm25 import BM25, METHODS

INDEX_FILE = "index.bm25"
DOCS_FILE = "docs.jsonl"
DATA = Path(__file__).parent / "data"


def _doc_text(doc: dict, use_title: bool) -> str:
    title, text = doc.get("title") or "", doc.get("text") or ""
    return f"{title} {text}".strip() if use_title else text


def _progress(a: argparse.Namespace) -> Optional[bool]:
    """``show_progress`` for a command: off with ``--quiet``, else ``None`` (a bar only on a
    terminal, and not with ``DENSPARSE_PROGRESS=0``)."""
    return False if a.quiet else None


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """An existing non-empty output directory needs ``--overwrite`` (as export and finetune)."""
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")


def build_index(
    corpus: dict,
    out: Path,
    language: str,
    method: str,
    k1: float,
    b: float,
    use_title: bool,
    mode: str,
    show_progress: Optional[bool] = None,
) -> BM25:
    """Index a {doc_id: {title, text}} corpus into directory ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ids = list(corpus)
    bm25 = BM25(method=method, k1=k1, b=b, analyzer=Analyzer(language=language, mode=mode))
    bm25.index([_doc_text(corpus[i], use_title) for i in ids], show_progress=show_progress)
    bm25.save(out / INDEX_FILE)
    with open(out / DOCS_FILE, "w", encoding="utf-8") as f:
        for i in ids:
            # the text too: `search --rerank` hands it to the cross-encoder
            doc = {"id": i, "title": corpus[i].get("title", ""), "text": corpus[i].get("text", "")}
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return bm25


def _load(dir_: Path) -> tuple[BM25, list[dict]]:
    if not (dir_ / INDEX_FILE).exists():
        raise FileNotFoundError(
            f"{dir_} holds no index (expected {dir_ / INDEX_FILE}); run `densparse index` first"
        )
    bm25 = BM25.load(dir_ / INDEX_FILE)
    path = dir_ / DOCS_FILE
    docs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                d = json.loads(line)
            except ValueError as e:
                raise CorruptIndexError(f"{path}:{n}: not JSON ({e})") from None
            if not isinstance(d, dict) or not isinstance(d.get("id"), str):
                raise CorruptIndexError(f"{path}:{n}: not a document with a string 'id'")
            docs.append(d)
    if len(docs) != bm25.n_docs:
        raise CorruptIndexError(
            f"{path} has {len(docs)} documents but the index has {bm25.n_docs}: the directory "
            "was changed outside densparse; run `densparse index` again"
        )
    return bm25, docs


def _print_hits(docs: list[dict], ids, scores, out=None, positive_only: bool = True) -> int:
    """Print the hits (with a positive score, unless ``positive_only=False``); returns how many
    were printed."""
    out = out or sys.stdout
    shown = 0
    for rank, (i, s) in enumerate(zip(ids, scores), 1):
        if positive_only and s <= 0:  # BM25: documents that share no term with the query
            break
        d = docs[int(i)]
        print(f"  {rank:>2}. {s:8.4f}  {d['id']:<12} {d.get('title', '')}", file=out)
        shown += 1
    return shown


def _warn(message: str) -> None:
    print(f"densparse: warning: {message}", file=sys.stderr)


def cmd_index(a: argparse.Namespace) -> int:
    from densparse.eval import load_corpus

    t0 = time.perf_counter()
    _refuse_existing(Path(a.output), a.overwrite)
    corpus = load_corpus(a.corpus)
    bm25 = build_index(
        corpus, Path(a.output), a.language, a.method, a.k1, a.b, a.title, a.mode, _progress(a)
    )
    st = bm25.stats()
    print(
        f"indexed {st['n_docs']} documents, {st['vocab_size']} terms, {st['n_postings']} postings "
        f"({st['bytes_per_posting']:.2f} bytes each) in {time.perf_counter() - t0:.2f}s"
        f" -> {a.output}"
    )
    return 0


def rerank_hits(reranker, query: str, docs: list[dict], ids, scores, k: int):
    """BM25 hits (ids, scores) re-scored by a cross-encoder on title + text: the best k as
    (ids, rerank scores). Hits that share no term with the query (score 0) are dropped."""
    keep = [int(i) for i, s in zip(ids, scores) if s > 0]
    if any("text" not in docs[i] for i in keep):
        raise ValueError(
            "this index stores no document texts (built by an older densparse); rebuild it with "
            "`densparse index` to rerank"
        )
    ranked = reranker.rerank(query, [_doc_text(docs[i], True) for i in keep], top_k=k)
    return [keep[j] for j, _ in ranked], [s for _, s in ranked]


def _reranker(path: Optional[str]):
    if path is None:
        return None
    from densparse.models.reranker import Reranker

    return Reranker.from_pretrained(path)


def cmd_search(a: argparse.Namespace) -> int:
    bm25, docs = _load(Path(a.index))
    reranker = _reranker(a.rerank)
    n = max(a.k, a.rerank_candidates) if reranker else a.k
    ids, scores = bm25.search(a.query, k=n)
    if reranker is not None:
        ids, scores = rerank_hits(reranker, a.query, docs, ids, scores, a.k)
    print(f"query: {a.query}")
    if not _print_hits(docs, ids, scores, positive_only=reranker is None):
        if not bm25.analyzer.tokenize(a.query):
            _warn(
                "the query has no searchable tokens after analysis (only stopwords or "
                f"punctuation for language={bm25.analyzer.config.get('language')!r}); "
                "add content words"
            )
        else:
            _warn("no indexed document shares a term with the query")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from densparse.eval import evaluate, load_qrels, load_queries, write_run

    bm25, docs = _load(Path(a.index))
    qrels = load_qrels(a.qrels)
    queries = load_queries(a.queries)
    qids = [q for q in qrels if q in queries]
    if not qids:
        raise ValueError(f"no query in {a.qrels} has a text in {a.queries}")
    indexed = {d["id"] for d in docs}
    judged = {d for q in qids for d in qrels[q]}
    if not judged & indexed:
        _warn(
            f"none of the {len(judged)} documents judged in {a.qrels} is in the index "
            "(different corpus, or different ids?): every metric will be 0"
        )
    reranker = _reranker(a.rerank)
    ids, scores = bm25.search([queries[q] for q in qids], k=a.k)
    if reranker is not None:  # every retrieved hit re-scored: the ranking of BM25's top k
        pairs = [
            rerank_hits(reranker, queries[q], docs, ids[n], scores[n], a.k)
            for n, q in enumerate(qids)
        ]
        ids, scores = [p[0] for p in pairs], [p[1] for p in pairs]
    run = {
        q: {docs[int(i)]["id"]: float(s) for i, s in zip(ids[n], scores[n])}
        for n, q in enumerate(qids)
    }
    metrics = [m.strip() for m in a.metrics.split(",")]
    res = evaluate(qrels, run, metrics=metrics)
    if a.run:
        write_run(a.run, run, tag="densparse-bm25")
    print(f"{len(qids)} queries, {bm25.n_docs} documents, top {a.k}")
    width = max(len(m) for m in res)
    for m, v in res.items():
        print(f"  {m:<{width}}  {v:.4f}")
    return 0


def run_demo(out=None, k: int = 3) -> dict:
    """Index the bundled bilingual sample corpus and run its sample queries."""
    out = out or sys.stdout
    from densparse.eval import evaluate, load_corpus

    corpus = load_corpus(DATA / "sample_corpus.jsonl")
    with open(DATA / "sample_queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line) for line in f]
    ids = list(corpus)
    bm25 = BM25(analyzer=Analyzer(language="auto"))
    bm25.index([_doc_text(corpus[i], True) for i in ids], show_progress=False)
    print(
        f"densparse demo: BM25 over {len(ids)} sample documents (Chinese, English, mixed)\n",
        file=out,
    )
    hit_ids, hit_scores = bm25.search([q["text"] for q in queries], k=k)
    run = {}
    for q, hi, hs in zip(queries, hit_ids, hit_scores):
        print(f"query: {q['text']}", file=out)
        _print_hits([{"id": i, "title": corpus[i]["title"]} for i in ids], hi, hs, out)
        print(file=out)
        run[q["_id"]] = {ids[int(i)]: float(s) for i, s in zip(hi, hs)}
    qrels = {q["_id"]: {d: 1 for d in q["relevant"]} for q in queries}
    res = evaluate(qrels, run, metrics=(f"ndcg@{k}", f"recall@{k}"))
    print("  ".join(f"{m} = {v:.3f}" for m, v in res.items()), file=out)
    return res


def cmd_upgrade(a: argparse.Namespace) -> int:
    from densparse import Collection

    old = Collection.upgrade(a.collection)
    if old is None:
        print(f"{a.collection}: already format version {Collection.FORMAT_VERSION}")
    else:
        print(f"{a.collection}: upgraded from format version {old} to {Collection.FORMAT_VERSION}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    run_demo()
    return 0


# ---------------------------------------------------------------------------- mine
def cmd_mine(a: argparse.Namespace) -> int:
    from densparse.train.data import load_split, write_jsonl
    from densparse.train.mining import mine_hard_negatives

    t0 = time.perf_counter()
    retriever = a.retriever
    if retriever != "bm25":
        from densparse.models import Encoder

        retriever = Encoder.from_pretrained(retriever)
    options = dict(
        retriever=retriever,
        range_start=a.range[0],
        range_end=a.range[1],
        negative_number=a.negatives,
        seed=a.seed,
        language=a.language,
        query_instruction=a.query_instruction,
        max_length=a.max_length,
        prompt=a.prompt,
        show_progress=_progress(a),
        return_stats=True,
    )
    if Path(a.dataset).is_file():  # a training JSONL: (re)mine its negatives
        from densparse.train.data import read_jsonl, read_pool
        from densparse.train.mining import add_hard_negatives

        pool = read_pool(a.pool) if a.pool else None
        records, st = add_hard_negatives(
            read_jsonl(a.dataset, require_neg=False),
            pool,
            **options,
        )
        n = write_jsonl(records, a.output)
        print(
            f"{n} records from {a.dataset}, pool of {st['pool']} texts; {st['negatives']} "
            f"negatives: {st['mined']} mined from ranks [{a.range[0]}, {a.range[1]}), "
            f"{st['backfilled']} backfilled, {st['short']} queries short; "
            f"{time.perf_counter() - t0:.2f}s -> {a.output}"
        )
        return 0
    if a.pool:
        raise ValueError("--pool applies to a training JSONL input, not to a BEIR dataset")
    ds = load_split(a.dataset, a.split, skip_unknown=a.skip_unknown)
    records, st = mine_hard_negatives(
        ds.corpus,
        ds.queries,
        ds.qrels,
        mode=a.mode,
        skip_unknown=a.skip_unknown,
        **options,
    )
    n = write_jsonl(records, a.output)
    mean = st["negatives"] / max(n, 1)
    print(
        f"{n} records ({a.mode}) from {st['judged_queries']} judged queries of split {a.split!r}"
        f" (dropped {st['dropped_no_positive']} without a positive, "
        f"{st['dropped_empty_query']} empty); {st['negatives']} negatives, {mean:.1f} per "
        f"query: {st['mined']} mined from ranks [{a.range[0]}, {a.range[1]}), "
        f"{st['backfilled']} backfilled, {st['short']} queries short; "
        f"{time.perf_counter() - t0:.2f}s -> {a.output}"
    )
    return 0


def add_mine_parser(sub, common=()) -> None:
    s = sub.add_parser(
        "mine",
        parents=list(common),
        formatter_class=HelpFormatter,
        help="build fine-tuning JSONL with hard negatives from a BEIR dataset",
        description="Build {query, pos, neg} training JSONL from a BEIR dataset's qrels split, "
        "mining hard negatives with BM25 or a dense model.",
    )
    s.add_argument(
        "dataset",
        help="BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/), or a training JSONL "
        "({query, pos[, neg]} per line) whose negatives are (re)mined",
    )
    s.add_argument("output", help="training JSONL file to write")
    s.add_argument("--split", default="train", help="qrels split (default: train)")
    s.add_argument(
        "--mode",
        default="qd",
        choices=["qd", "qq"],
        help="qd: question -> document (default); qq: question -> question (FAQ)",
    )
    s.add_argument(
        "--retriever", default="bm25", help="'bm25' (default) or a dense model directory"
    )
    s.add_argument(
        "--range",
        nargs=2,
        type=int,
        default=[2, 200],
        metavar=("START", "END"),
        help="sample negatives from ranks [START, END) (default: 2 200)",
    )
    s.add_argument("--negatives", type=int, default=15, help="negatives per query (default 15)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    s.add_argument("--language", default="auto", choices=["auto", "en", "zh"], help="BM25 analyzer")
    s.add_argument(
        "--query-instruction", default=None, help="dense: override the query instruction"
    )
    s.add_argument(
        "--max-length", type=int, default=None, help="dense: truncate texts at this many tokens"
    )
    s.add_argument("--prompt", default=None, help="write this 'prompt' into every record")
    s.add_argument(
        "--pool",
        default=None,
        help="JSONL input only: candidate pool file ({text} or BEIR {_id, title, text} per "
        "line; default: all pos and neg texts of the input)",
    )
    s.add_argument(
        "--skip-unknown",
        action="store_true",
        help="skip qrels naming unknown queries/documents (with a warning) instead of failing",
    )
    s.set_defaults(func=cmd_mine)


# ---------------------------------------------------------------------------- finetune
#: `densparse finetune` flags -> TrainConfig keys; every flag defaults to "not given" so a
#: --config file's values stay unless a flag overrides them.
_FT_FLAGS = [
    # (flags, config key, argparse kwargs)
    (
        ("--kind",),
        "kind",
        {"choices": ["embedder", "reranker"], "help": "what to fine-tune (default embedder)"},
    ),
    (("--train",), "train", {"metavar": "FILE.jsonl", "help": "training JSONL {query, pos, neg}"}),
    (("--model",), "model", {"metavar": "DIR", "help": "Hugging Face model directory"}),
    (("--out",), "out", {"metavar": "DIR", "help": "output directory"}),
    (("--dev",), "dev", {"metavar": "DATASET_DIR", "help": "BEIR folder for dev evaluation"}),
    (("--dev-split",), "dev_split", {"help": "dev qrels split (default test)"}),
    (("--epochs",), "epochs", {"type": int, "help": "passes over the data (default 1)"}),
    (("--max-steps",), "max_steps", {"type": int, "help": "stop after N steps (0: epochs)"}),
    (("--lr",), "lr", {"type": float, "help": "peak learning rate (default 2e-5)"}),
    (
        ("--head-lr",),
        "head_lr",
        {"type": float, "help": "lr of a fresh (reranker) head (default: --lr)"},
    ),
    (("--weight-decay",), "weight_decay", {"type": float, "help": "AdamW weight decay (0.01)"}),
    (("--batch-size",), "batch_size", {"type": int, "help": "queries per batch (default 16)"}),
    (("--group-size",), "group_size", {"type": int, "help": "1 pos + G-1 negs (default 8)"}),
    (("--temperature",), "temperature", {"type": float, "help": "InfoNCE tau (default 0.02)"}),
    (("--warmup-ratio",), "warmup_ratio", {"type": float, "help": "warmup fraction (0.1)"}),
    (("--grad-accum",), "grad_accum", {"type": int, "help": "micro-batches per step (1)"}),
    (("--query-max-len",), "query_max_len", {"type": int, "help": "query tokens (default 64)"}),
    (("--passage-max-len",), "passage_max_len", {"type": int, "help": "passage tokens (256)"}),
    (("--max-length",), "max_length", {"type": int, "help": "reranker: tokens per pair (512)"}),
    (
        ("--query-instruction",),
        "query_instruction",
        {"help": "prepended to queries (default: the family's; '' = none)"},
    ),
    (
        ("--pooling",),
        "pooling",
        {"choices": ["cls", "mean", "max", "mean_sqrt_len"], "help": "default: the family's"},
    ),
    (("--eval-steps",), "eval_steps", {"type": int, "help": "dev eval every N steps (0: end)"}),
    (("--eval-batch-size",), "eval_batch_size", {"type": int, "help": "dev encoding batch (64)"}),
    (
        ("--eval-max-queries",),
        "eval_max_queries",
        {"type": int, "help": "dev eval on a fixed sample of N queries (0: all)"},
    ),
    (
        ("--eval-candidates",),
        "eval_candidates",
        {"type": int, "help": "reranker: BM25 candidates reranked per dev query (100)"},
    ),
    (("--save-steps",), "save_steps", {"type": int, "help": "checkpoint every N steps (0: off)"}),
    (("--logging-steps",), "logging_steps", {"type": int, "help": "log every N steps (10)"}),
    (("--seed",), "seed", {"type": int, "help": "random seed (default 42)"}),
    (("--device",), "device", {"help": "cuda / cpu (default: cuda when available)"}),
    (("--export-kind",), "export_kind", {"choices": ["bge", "m3", "st"], "help": "exporter kind"}),
    (("--wandb-project",), "wandb_project", {"help": "W&B project (default densparse)"}),
]
_FT_SWITCHES = [
    # (flag, config key, value, help)
    ("--no-in-batch", "in_batch", False, "no in-batch negatives: each query's own group only"),
    ("--fp16", "fp16", True, "fp16 autocast (CUDA only)"),
    ("--bf16", "bf16", True, "bf16 autocast (CUDA only)"),
    ("--grad-checkpointing", "grad_checkpointing", True, "gradient checkpointing"),
    ("--no-eval-at-start", "eval_at_start", False, "skip the step-0 dev evaluation"),
    ("--no-export", "export", False, "do not export the final model to ONNX"),
    ("--no-tensorboard", "tensorboard", False, "no TensorBoard logs"),
    ("--wandb", "wandb", True, "log to Weights & Biases (when installed)"),
    ("--overwrite", "overwrite", True, "allow a non-empty output directory"),
]


def finetune_config(a: argparse.Namespace):
    """The TrainConfig of a `densparse finetune` command line: --config file, then flags."""
    from densparse.train.trainer import TrainConfig, read_config_file

    values = read_config_file(a.config) if a.config else {}
    for _, key, _ in _FT_FLAGS:
        if getattr(a, key, None) is not None:
            values[key] = getattr(a, key)
    for _, key, value, _ in _FT_SWITCHES:
        if getattr(a, key, None) is not None:
            values[key] = value
    if getattr(a, "quiet", None):  # the common -q/--quiet
        values["quiet"] = True
    return TrainConfig.from_dict(values)


def cmd_finetune(a: argparse.Namespace) -> int:
    try:
        from densparse.train.trainer import Trainer

        cfg = finetune_config(a)
        logging.getLogger("densparse.train").setLevel(logging.INFO)  # progress lines
        trainer = Trainer(cfg)  # every input is checked here, before training
    except (TypeError, ImportError) as e:
        raise ValueError(str(e)) from e
    try:
        res = trainer.train()
    except FloatingPointError as e:
        raise ValueError(str(e)) from e
    print(f"fine-tuned {res.steps} steps in {res.train_seconds:.1f}s -> {res.final_dir}")
    metrics = ("ndcg@10", "recall@100", "mrr@10")
    if res.dev:
        first, last = res.dev[0], res.dev[-1]
        for m in metrics:
            print(
                f"  dev {m:<10} step {first['step']}: {first[m]:.4f}  step {last['step']}: "
                f"{last[m]:.4f}  ({last[m] - first[m]:+.4f})"
            )
    if res.baseline:
        b = res.baseline
        print(f"  dev {b['model']} alone: " + ", ".join(f"{m} {b[m]:.4f}" for m in metrics))
    print(f"  logs: {res.train_csv}" + (f", {res.dev_csv}" if res.dev_csv else ""))
    if res.plot:
        print(f"  plot: {res.plot}")
    if res.onnx_dir:
        loader = "Reranker" if cfg.kind == "reranker" else "Encoder"
        print(f"  ONNX: {res.onnx_dir} (densparse.{loader}.from_pretrained loads it)")
    return 0


def add_finetune_parser(sub, common=()) -> None:
    s = sub.add_parser(
        "finetune",
        parents=list(common),
        formatter_class=HelpFormatter,
        help="fine-tune a dense embedding model or a reranker on {query, pos, neg} JSONL",
        description="Fine-tune an embedding model with InfoNCE (in-batch + hard negatives), or "
        "with --kind reranker a cross-encoder with cross-entropy over groups of 1 positive + G-1 "
        "negatives (dev: BM25 candidates reranked), "
        "evaluate it on a dev split, and export it to ONNX. Settings come from --config "
        "(JSON or TOML, keys = the long flag names with '_') and flags, flags winning.",
    )
    s.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings")
    for flags, key, kw in _FT_FLAGS:
        s.add_argument(*flags, dest=key, default=None, **kw)
    for flag, key, _, help_ in _FT_SWITCHES:
        s.add_argument(flag, dest=key, action="store_const", const=True, default=None, help=help_)
    s.set_defaults(func=cmd_finetune)


# ---------------------------------------------------------------------------- export
def cmd_export(a: argparse.Namespace) -> int:
    from densparse.export import export_model

    report = export_model(
        a.model_dir,
        a.out_dir,
        kind=a.kind,
        fp16=a.fp16,
        int8=a.int8,
        optimize=a.optimize,
        opset=a.opset,
        check=not a.no_check,
        show_progress=_progress(a),
        overwrite=a.overwrite,
    )
    print(report.summary())
    return 0


def _add_export_parser(sub, common=()) -> None:
    s = sub.add_parser(
        "export",
        parents=list(common),
        formatter_class=HelpFormatter,
        help="export a BGE / BGE-M3 / SPLADE / sentence-transformers / cross-encoder "
        "checkpoint to ONNX",
        description="Export a Hugging Face checkpoint directory to an ONNX model directory "
        "that densparse.Encoder (or, for --kind reranker, densparse.Reranker) loads, and check "
        "it against the torch forward pass "
        '(needs pip install "densparse[export]").',
    )
    s.add_argument("model_dir", help="checkpoint directory (config.json, weights, tokenizer)")
    s.add_argument("out_dir", help="directory to write (must not exist, unless --overwrite)")
    s.add_argument(
        "--kind", choices=["bge", "m3", "splade", "st", "reranker"], help="default: detected"
    )
    prec = s.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="float16 weights (GPU)")
    prec.add_argument("--int8", action="store_true", help="dynamic int8 quantisation (CPU)")
    s.add_argument("--optimize", action="store_true", help="onnxruntime transformer optimizer")
    s.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    s.add_argument("--no-check", action="store_true", help="skip the comparison with torch")
    s.add_argument("--overwrite", action="store_true", help="replace an existing out_dir")
    s.set_defaults(func=cmd_export)


# ---------------------------------------------------------------------------- main
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, unless the help text already says it or
    there is none to show (``None`` / ``False``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if "default" in help_ or action.default in (None, False, argparse.SUPPRESS):
            return help_
        return super()._get_help_string(action) or help_


def _common_options(top: bool = False) -> argparse.ArgumentParser:
    """-v and -q, accepted before or after the subcommand: the top-level parser holds the
    defaults (``top=True``); the subcommands' copies default to SUPPRESS, so they do not reset
    a flag given before the subcommand."""
    c = argparse.ArgumentParser(add_help=False)
    for flags, default, help_ in (
        (("-v", "--verbose"), False, "log what is being done"),
        (("-q", "--quiet"), None, "no progress bars or step messages (also: DENSPARSE_PROGRESS=0)"),
    ):
        c.add_argument(
            *flags, action="store_true", default=default if top else argparse.SUPPRESS, help=help_
        )
    return c


DEMO_DESCRIPTION = (
    "Index the small bilingual sample corpus that ships with densparse (Chinese, English and "
    "mixed documents) with BM25, run its sample queries, print the top hits of each and "
    "their nDCG and recall against the sample judgments. Needs no download and no model."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``densparse`` argument parser (every subcommand)."""
    common = [_common_options()]
    p = argparse.ArgumentParser(
        prog="densparse",
        description="Retrieval for RAG: BM25, encoders, hard-negative mining, export.",
        parents=[_common_options(top=True)],
        formatter_class=HelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "index",
        help="index a BEIR corpus.jsonl",
        description="Index a corpus with BM25 into a directory (index.bm25 + docs.jsonl).",
        parents=common,
        formatter_class=HelpFormatter,
    )
    s.add_argument("corpus", help="corpus.jsonl with {_id, title, text} per line")
    s.add_argument("-o", "--output", required=True, help="index directory to write")
    s.add_argument("--language", default="auto", choices=["auto", "zh", "en"], help="analyzer")
    s.add_argument(
        "--mode", default="default", choices=["default", "search", "all"], help="jieba mode"
    )
    s.add_argument("--method", default="lucene", choices=METHODS, help="BM25 variant")
    s.add_argument("--k1", type=float, default=1.5, help="BM25 term-frequency saturation")
    s.add_argument("--b", type=float, default=0.75, help="BM25 length normalisation")
    s.add_argument(
        "--title", action=argparse.BooleanOptionalAction, default=True, help="index title + text"
    )
    s.add_argument(
        "--overwrite", action="store_true", help="write into an existing non-empty directory"
    )
    s.set_defaults(func=cmd_index)

    s = sub.add_parser(
        "search",
        help="search an index",
        description="Search an index with one query.",
        parents=common,
        formatter_class=HelpFormatter,
    )
    s.add_argument("index", help="index directory")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=10, help="number of hits")
    s.add_argument(
        "--rerank",
        metavar="DIR",
        help="re-score BM25's top --rerank-candidates with this ONNX cross-encoder "
        "(densparse export --kind reranker)",
    )
    s.add_argument(
        "--rerank-candidates",
        type=int,
        default=100,
        help="BM25 hits the reranker re-scores (default 100)",
    )
    s.set_defaults(func=cmd_search)

    s = sub.add_parser(
        "eval",
        help="evaluate an index on queries and qrels",
        description="Evaluate retrieval.",
        parents=common,
        formatter_class=HelpFormatter,
    )
    s.add_argument("index", help="index directory")
    s.add_argument("--queries", required=True, help="queries.jsonl")
    s.add_argument("--qrels", required=True, help="qrels .tsv (query-id corpus-id score)")
    s.add_argument("-k", type=int, default=100, help="hits retrieved per query")
    s.add_argument("--metrics", default="ndcg@10,recall@100,mrr@10,map@100", help="comma-separated")
    s.add_argument("--run", help="also write a TREC run file here")
    s.add_argument(
        "--rerank",
        metavar="DIR",
        help="re-score each query's top k with this ONNX cross-encoder before evaluating",
    )
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser(
        "demo",
        help="index a built-in bilingual sample and search it",
        description=DEMO_DESCRIPTION,
        parents=common,
        formatter_class=HelpFormatter,
    )
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser(
        "upgrade",
        help="upgrade a Collection directory to the current format",
        description="Rewrite an older Collection's manifest in the current format (every file "
        "named with its size and checksum). Nothing is lost; needs the writer lock.",
        parents=common,
        formatter_class=HelpFormatter,
    )
    s.add_argument("collection", help="Collection directory")
    s.set_defaults(func=cmd_upgrade)

    add_mine_parser(sub, common)
    add_finetune_parser(sub, common)
    _add_export_parser(sub, common)
    from densparse.serve.cli import add_serve_parser  # argparse only: no FastAPI import

    add_serve_parser(sub, common, HelpFormatter)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Run the ``densparse`` command line; returns the exit status."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return a.func(a)
    except (ValueError, OSError, ImportError, RuntimeError) as e:
        print(f"densparse: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
