"""Retrieval quality on real data (../shared/data), and metric parity on real BM25 runs."""

from __future__ import annotations

import pytest

from conftest import DATA, need
from densparse import BM25, Analyzer
from densparse.eval import evaluate, load_beir


def bm25_run(name: str, split: str, language: str, use_title: bool, k: int = 100):
    ds = load_beir(need(DATA / name), split=split)
    ids = list(ds.corpus)
    texts = [
        f"{ds.corpus[i]['title']} {ds.corpus[i]['text']}" if use_title else ds.corpus[i]["text"]
        for i in ids
    ]
    bm = BM25(analyzer=Analyzer(language=language)).index(texts)
    qids = list(ds.queries)
    hit_ids, hit_scores = bm.search([ds.queries[q] for q in qids], k=k)
    run = {
        q: {ids[i]: float(s) for i, s in zip(hit_ids[n], hit_scores[n])} for n, q in enumerate(qids)
    }
    return ds, run


def test_scifact_ndcg_at_least_bm25s():
    # BEIR convention: title + text. bm25s (Lucene, stopwords, Snowball) gets 0.686.
    ds, run = bm25_run("scifact", "test", "en", use_title=True)
    res = evaluate(ds.qrels, run, metrics=("ndcg@10", "recall@100"))
    assert res["ndcg@10"] >= 0.686, res
    assert res["recall@100"] >= 0.90, res


def test_stard_ndcg_with_chinese_defaults():
    # jieba cut_for_search + bm25s gets 0.478; our Chinese defaults add Han n-grams.
    ds, run = bm25_run("stard", "dev", "zh", use_title=False)
    res = evaluate(ds.qrels, run, metrics=("ndcg@10", "recall@100"))
    assert res["ndcg@10"] >= 0.50, res


@pytest.mark.parametrize("name,split,language", [("scifact", "test", "en"), ("stard", "dev", "zh")])
def test_metrics_equal_pytrec_eval_on_real_runs(name, split, language):
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec_eval is the metric reference")
    ds, run = bm25_run(name, split, language, use_title=False, k=1000)
    measures = {
        "ndcg_cut_10",
        "ndcg_cut_100",
        "recall_100",
        "recall_10",
        "map_cut_100",
        "recip_rank",
    }
    ref = pytrec_eval.RelevanceEvaluator(ds.qrels, measures).evaluate(run)
    ours = evaluate(
        ds.qrels,
        run,
        metrics=("ndcg@10", "ndcg@100", "recall@10", "recall@100", "map@100", "mrr@1000"),
        per_query=True,
    )
    names = {
        "ndcg@10": "ndcg_cut_10",
        "ndcg@100": "ndcg_cut_100",
        "recall@10": "recall_10",
        "recall@100": "recall_100",
        "map@100": "map_cut_100",
        "mrr@1000": "recip_rank",
    }
    for ours_name, ref_name in names.items():
        for q, v in ours[ours_name].items():
            assert v == pytest.approx(ref[q][ref_name], abs=1e-6), (ours_name, q)
