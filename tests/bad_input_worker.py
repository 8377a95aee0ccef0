"""Worker of tests/test_bad_input_corpus.py: runs one group of abusive calls and prints one
JSON line per case (``{"case": ..., "outcome": ...}``), after a ``{"start": ...}`` line, so
that the parent can name the case that crashed or hung the process. Not a test module."""

from __future__ import annotations

import inspect
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

import densparse
from densparse import BM25, Analyzer, Collection, DenseIndex, SparseIndex

BIG = "ab " * 3_500_000  # ~10 MB


def abusive_values() -> dict[str, Any]:
    return {
        "None": None,
        "str": "abc",
        "empty_str": "",
        "bytes": b"\x00\xff",
        "empty_list": [],
        "empty_dict": {},
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": float("-inf"),
        "negative": -1,
        "zero": 0,
        "2**64": 2**64,
        "-2**64": -(2**64),
        "float": 1.5,
        "bool": True,
        "10MB_str": BIG,
        "surrogate": "\ud800",
        "nested": [[{"a": [None, {"b": float("nan")}]}], ("x", {1: 2})],
        "object": object(),
        "nan_array": np.array([np.nan, 1.0], dtype=np.float32),
        "empty_2d": np.zeros((0, 0), dtype=np.float32),
        "huge_list": [2**64, -(2**64)],
    }


class Fixture:
    """Valid receivers and arguments; each call gets fresh objects where it mutates them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.n = 0
        self.en = Analyzer(language="en")
        self.bm = BM25(analyzer=self.en).index(["apple pie", "apple tart", "pear"])
        self.bm.save(tmp / "ok.bm25")
        self.stats_for_search = densparse.bm25.GlobalStats(3, 2.0, {"apple": 2})
        d = DenseIndex(4)
        d.add(np.eye(4, dtype=np.float32))
        d.save(tmp / "ok.dense")
        s = SparseIndex()
        s.add([{1: 0.5, 2: 1.0}, {3: 1.0}])
        s.save(tmp / "ok.sparse")

    def zh(self) -> Analyzer:
        if not hasattr(self, "_zh"):
            self._zh = Analyzer(language="zh")
        return self._zh

    def path(self) -> Path:
        self.n += 1
        return self.tmp / f"p{self.n}"

    def dense(self) -> DenseIndex:
        return DenseIndex.load(self.tmp / "ok.dense")

    def sparse(self) -> SparseIndex:
        return SparseIndex.load(self.tmp / "ok.sparse")

    @property
    def coll_path(self) -> str:
        if not hasattr(self, "_coll_path"):
            self._coll_path = str(self.coll().path)
        return self._coll_path

    def coll(self) -> Collection:
        c = Collection.create(self.path(), dense_dim=4, analyzer=self.en)
        c.add([{"id": "a", "text": "apple pie", "dense": np.ones(4), "metadata": {"y": 1}}])
        return c


# (callable name, receiver factory or None, valid keyword arguments).
def entry_points(f: Fixture) -> dict[str, tuple[Callable[[], Any], dict[str, Any]]]:
    q = np.ones(4, dtype=np.float32)
    return {
        "BM25": (
            lambda: BM25,
            {"method": "lucene", "k1": 1.5, "b": 0.75, "delta": 0.5, "analyzer": f.en},
        ),
        "BM25.index": (lambda: BM25(analyzer=f.en), {"corpus": ["a b", "b c"]}),
        "BM25.search": (lambda: f.bm, {"queries": "apple", "k": 2, "threads": None, "mask": None}),
        "BM25.get_scores": (lambda: f.bm, {"query": "apple", "stats": None}),
        "BM25.search_with_stats": (
            lambda: f.bm,
            {
                "queries": "apple",
                "k": 2,
                "stats": f.stats_for_search,
                "mask": None,
                "threads": None,
            },
        ),
        "BM25.doc_freqs": (lambda: f.bm, {"tokens": ["apple"]}),
        "BM25.encode_documents": (lambda: f.bm, {"texts": ["apple"]}),
        "BM25.encode_queries": (lambda: f.bm, {"texts": ["apple"]}),
        "BM25.save": (lambda: f.bm, {"path": str(f.tmp / "s.bm25")}),
        "BM25.load": (lambda: BM25, {"path": str(f.tmp / "ok.bm25"), "mmap": True}),
        "Analyzer": (
            lambda: Analyzer,
            {
                "language": "en",
                "mode": "default",
                "hmm": True,
                "stopwords": None,
                "stemmer": None,
                "lowercase": True,
                "keep_punctuation": False,
                "user_dict": None,
                "char_ngrams": None,
                "tokenizer": "default",
            },
        ),
        "Analyzer.tokenize": (lambda: f.en, {"text": "apple pie"}),
        "Analyzer.tokenize_batch": (lambda: f.en, {"texts": ["apple pie"]}),
        "Analyzer.keywords": (lambda: f.en, {"text": "apple pie", "k": 2, "method": "tfidf"}),
        "Analyzer.add_word": (f.zh, {"word": "苹果派", "freq": 10, "tag": "n"}),
        "Analyzer.suggest_freq": (f.zh, {"word": "苹果派"}),
        "DenseIndex": (lambda: DenseIndex, {"dim": 4, "dtype": "float32", "metric": "ip"}),
        "DenseIndex.add": (f.dense, {"vectors": np.ones((1, 4), dtype=np.float32), "ids": None}),
        "DenseIndex.remove": (f.dense, {"ids": [0]}),
        "DenseIndex.get": (f.dense, {"ids": [0]}),
        "DenseIndex.search": (f.dense, {"queries": q, "k": 2, "mask": None, "threads": None}),
        "DenseIndex.save": (f.dense, {"path": str(f.tmp / "s.dense")}),
        "DenseIndex.load": (lambda: DenseIndex, {"path": str(f.tmp / "ok.dense"), "mmap": True}),
        "SparseIndex": (lambda: SparseIndex, {"dtype": "float32", "doc_top_n": None}),
        "SparseIndex.add": (f.sparse, {"docs": [{1: 0.5}], "ids": None}),
        "SparseIndex.remove": (f.sparse, {"ids": [0]}),
        "SparseIndex.get": (f.sparse, {"ids": [0]}),
        "SparseIndex.search": (
            f.sparse,
            {
                "queries": {1: 1.0},
                "k": 2,
                "mask": None,
                "threads": None,
                "query_top_n": None,
                "query_cut": None,
            },
        ),
        "SparseIndex.save": (f.sparse, {"path": str(f.tmp / "s.sparse")}),
        "SparseIndex.load": (lambda: SparseIndex, {"path": str(f.tmp / "ok.sparse"), "mmap": True}),
        "Collection.create": (
            lambda: Collection,
            {
                "path": None,
                "dense_dim": 4,
                "analyzer": f.en,
                "bm25_method": "lucene",
                "k1": 1.5,
                "b": 0.75,
                "delta": 0.5,
                "dense_dtype": "float32",
                "metric": "ip",
                "sparse_dtype": "float32",
                "colbert_dim": None,
                "encoder": None,
                "autocommit": True,
                "max_segments": 8,
                "auto_merge": True,
            },
        ),
        "Collection.open": (
            lambda: Collection,
            {
                "path": f.coll_path,
                "readonly": False,
                "mmap": True,
                "encoder": None,
                "autocommit": True,
                "max_segments": 8,
                "auto_merge": True,
            },
        ),
        "Collection.add": (f.coll, {"records": [{"id": "b", "text": "pear"}]}),
        "Collection.upsert": (f.coll, {"records": [{"id": "b", "text": "pear"}]}),
        "Collection.delete": (f.coll, {"ids": ["a"]}),
        "Collection.get": (f.coll, {"doc_id": "a"}),
        "Collection.search": (
            f.coll,
            {
                "text": "apple",
                "dense": None,
                "sparse": None,
                "colbert": None,
                "k": 2,
                "mode": "hybrid",
                "fusion": "rrf",
                "weights": None,
                "filter": {"y": 1},
                "candidates": 10,
                "rrf_k": 60,
                "normalization": "minmax",
                "rerank": None,
                "rerank_candidates": 10,
                "bm25_stats": None,
            },
        ),
        "Collection.bm25_statistics": (f.coll, {"query": "apple"}),
        "Collection.merge": (f.coll, {"max_segments": 1, "background": False}),
        "fuse": (
            lambda: densparse.fuse,
            {
                "results": [([1, 2], [0.5, 0.2]), ([2], [1.0])],
                "method": "rrf",
                "k": 60,
                "weights": None,
                "normalization": "minmax",
                "top_k": None,
            },
        ),
        "maxsim": (
            lambda: densparse.maxsim,
            {"query_vecs": np.ones((2, 4)), "doc_vecs_list": [np.ones((3, 4))], "threads": None},
        ),
        "maxsim_rerank": (
            lambda: densparse.maxsim_rerank,
            {
                "query_vecs": np.ones((2, 4)),
                "doc_vecs_list": [np.ones((3, 4))],
                "k": 1,
                "threads": None,
            },
        ),
        "Encoder.from_pretrained": (
            lambda: densparse.Encoder,
            {
                "path_or_repo_id": str(f.tmp / "no-model"),
                "provider": "auto",
                "device_id": 0,
                "max_length": None,
                "threads": None,
                "family": None,
                "query_instruction": None,
                "onnx_file": None,
                "cache_dir": None,
                "revision": None,
                "local_files_only": True,
            },
        ),
        "Reranker.from_pretrained": (
            lambda: densparse.Reranker,
            {
                "path_or_repo_id": str(f.tmp / "no-model"),
                "provider": "auto",
                "device_id": 0,
                "max_length": None,
                "threads": None,
                "onnx_file": None,
                "cache_dir": None,
                "revision": None,
                "local_files_only": True,
            },
        ),
    }


CLI_VALUES = ["", "nan", "inf", "-1", "0", str(2**64), "1e400", "\udcff", "x" * 100_000, "{}"]


def cli_cases(f: Fixture) -> list[tuple[str, list[str]]]:
    """(case, argv) for every subcommand, each argument in turn given each abusive value."""
    corpus = f.tmp / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "apple pie"}\n{"_id": "d2", "text": "pear"}\n')
    idx = f.tmp / "cli-index"
    from densparse import cli

    cli.main(["index", str(corpus), "-o", str(idx), "--language", "en"])
    queries = f.tmp / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "apple"}\n')
    qrels = f.tmp / "qrels.tsv"
    qrels.write_text("q1\td1\t1\n")
    base = {
        "index": [
            "index",
            str(corpus),
            "-o",
            "{out}",
            "--language",
            "en",
            "--k1",
            "1.2",
            "--b",
            "0.7",
        ],
        "search": ["search", str(idx), "apple", "-k", "2"],
        "eval": ["eval", str(idx), "--queries", str(queries), "--qrels", str(qrels), "-k", "5"],
        "upgrade": ["upgrade", str(f.tmp / "no-collection")],
        "mine": ["mine", str(f.tmp / "no-beir"), "{out}", "--negatives", "2"],
        "export": ["export", str(f.tmp / "no-model"), "{out}"],
        "finetune": ["finetune", "--config", str(f.tmp / "no-config.json")],
    }
    out = []
    for sub, argv in base.items():
        for i in range(1, len(argv)):
            if argv[i].startswith("-"):
                continue
            for v in CLI_VALUES:
                a = list(argv)
                a[i] = v
                out.append((f"cli {sub} arg{i}={v[:12]!r}", a))
    return out


def run_cli(f: Fixture) -> None:
    from densparse import cli

    for case, argv in cli_cases(f):
        argv = [a.replace("{out}", str(f.path())) for a in argv]
        print(json.dumps({"start": case}), flush=True)
        try:
            code = cli.main(argv)
            outcome = "ok" if code in (0, 1, 2) else f"WRONG exit status {code}"
        except SystemExit as e:  # argparse: status 2 with a usage message
            outcome = "ok" if e.code in (0, 2) else f"WRONG SystemExit {e.code}"
        except BaseException as e:
            outcome = classify(e, "argv")
            if outcome.startswith("raised"):  # escaped the CLI's own error handling: a traceback
                outcome = "WRONG traceback " + outcome
        print(json.dumps({"case": case, "param": "argv", "outcome": outcome}), flush=True)


def target(name: str, receiver: Any) -> Callable[..., Any]:
    attr = name.split(".", 1)[1] if "." in name else None
    if attr is None:
        return receiver
    return getattr(receiver, attr)


def classify(e: BaseException, param: str) -> str:
    kind = type(e).__name__
    if not isinstance(e, Exception) or kind in ("PanicException", "InternalError"):
        return f"BUG {kind}: {e}"[:300]
    if isinstance(
        e,
        (
            AttributeError,
            IndexError,
            ZeroDivisionError,
            RecursionError,
            NameError,
            UnboundLocalError,
            AssertionError,
            SystemError,
            OverflowError,
        ),
    ):
        return f"WRONG {kind}: {e}"[:300]
    return f"raised {kind}: {str(e)[:200]}"


def main() -> None:
    names = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        f = Fixture(Path(tmp))
        eps = entry_points(f)
        values = abusive_values()
        if names == ["cli"]:
            run_cli(f)
            return
        for name in names:
            make, kwargs = eps[name]
            for param in kwargs:
                for vname, value in values.items():
                    case = f"{name}({param}={vname})"
                    print(json.dumps({"start": case}), flush=True)
                    args = dict(kwargs)
                    for k, v in args.items():
                        if v is None and k == "path":
                            args[k] = str(f.path())
                    args[param] = value
                    try:
                        fn = target(name, make())
                        fn(**args)
                        outcome = "ok"
                    except BaseException as e:
                        outcome = classify(e, param)
                    print(
                        json.dumps({"case": case, "param": param, "outcome": outcome}), flush=True
                    )


def signature_params(name: str) -> list[str]:
    """Parameters of the public callable ``name`` (for the coverage check)."""
    obj: Any = densparse
    for part in name.split("."):
        obj = getattr(obj, part)
    sig = inspect.signature(obj)
    return [p for p in sig.parameters if p not in ("self", "cls", "show_progress", "progress")]


if __name__ == "__main__":
    main()
