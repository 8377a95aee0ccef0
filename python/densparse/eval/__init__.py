"""Retrieval evaluation: BEIR and TREC file formats and trec_eval-exact metrics.

Pure Python + numpy; nothing here needs the compiled extension.

Typical use::

    from densparse.eval import evaluate, load_beir, write_run

    ds = load_beir("data/scifact", split="test")
    run = {qid: search(text) for qid, text in ds.queries.items()}  # {qid: {docid: score}}
    evaluate(ds.qrels, run)  # {"ndcg@10": ..., "recall@100": ..., "mrr@10": ..., "map@100": ...}
    write_run("scifact.run", run, tag="bm25")

Metric definitions, the trec_eval tie-break (equal scores ordered by docid *descending*) and
which queries are averaged are documented in :mod:`densparse.eval.metrics`.
"""

from .beir import BeirDataset, load_beir, load_corpus, load_qrels, load_queries
from .metrics import DEFAULT_METRICS, evaluate
from .trec import read_qrels_trec, read_run, write_run

__all__ = [
    "DEFAULT_METRICS",
    "BeirDataset",
    "evaluate",
    "load_beir",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "read_qrels_trec",
    "read_run",
    "write_run",
]
