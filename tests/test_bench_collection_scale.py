"""The scale benchmark's data and checks (benches/bench_collection_scale.py): the records are
what its results say they are, and its filter means the same in every engine."""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import densparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))
import bench_collection_scale as bench


@pytest.fixture(scope="module")
def data():
    return bench.Data(n=2_500, batch=1_000, seed=7)


def test_vocabulary_is_one_token_per_word(data):
    words = data.vocab.tolist()
    assert len(words) == len(set(words)) == bench.VOCAB
    an = densparse.Analyzer(language="en")
    sample = words[:2000]
    assert an.tokenize_batch(sample) == [[w] for w in sample]


def test_batches_are_deterministic_and_as_described(data):
    batches = list(data.batches())
    again = list(bench.Data(n=2_500, batch=1_000, seed=7).batches())
    assert [len(b["id"]) for b in batches] == [1000, 1000, 500]
    ids = [i for b in batches for i in b["id"]]
    assert ids == [f"doc{i:09d}" for i in range(2_500)]
    for b, c in zip(batches, again):
        assert b["text"] == c["text"]
        np.testing.assert_array_equal(b["dense"], c["dense"])
        lens = np.array([len(t.split()) for t in b["text"]])
        assert lens.min() >= bench.WORDS[0] and lens.max() <= bench.WORDS[1]
        np.testing.assert_allclose(np.linalg.norm(b["dense"], axis=1), 1.0, rtol=1e-5)
        assert b["dense"].shape[1] == bench.DIM
        assert set(b["bucket"].tolist()) <= set(range(10))
        assert b["year"].min() >= bench.YEARS[0] and b["year"].max() <= bench.YEARS[1]


def test_word_frequencies_follow_zipf(data):
    counts = Counter(w for b in data.batches() for t in b["text"] for w in t.split())
    total = sum(counts.values())
    rank = {w: r for r, w in enumerate(data.vocab.tolist(), start=1)}
    expected = 1.0 / np.arange(1, bench.VOCAB + 1) ** bench.ZIPF_S
    expected /= expected.sum()
    for w in data.vocab[:5].tolist():
        # ~150k words: the top ranks' shares are within a few percent of 1/(r H).
        assert counts[w] / total == pytest.approx(expected[rank[w] - 1], rel=0.05)


def test_queries_skip_the_most_frequent_words(data):
    qs = data.queries(200)
    top = set(data.vocab[:20].tolist())
    assert all(2 <= len(t.split()) <= 5 and not set(t.split()) & top for t, _ in qs)
    assert qs[0][0] == data.queries(200)[0][0]


def test_filter_selects_the_same_records_in_densparse_and_the_predicate(tmp_path, data):
    cols = next(data.batches())
    e = bench.Densparse(tmp_path / "c", create=True)
    e.add(cols)
    want = {
        i
        for i, b, y in zip(cols["id"], cols["bucket"].tolist(), cols["year"].tolist())
        if bench.passes_filter(b, y)
    }
    hits = e.c.search(dense=cols["dense"][0], k=1000, mode="dense", filter=bench.FILTER_DS)
    assert {h.id for h in hits} == want
    e.close()


def test_filter_means_the_same_in_lancedb(tmp_path, data):
    pytest.importorskip("lancedb")
    cols = next(data.batches())
    e = bench.Lance(tmp_path / "l", create=True)
    e.add(cols)
    got = e.t.search().where(bench.FILTER_LANCE).select(["id"]).limit(10_000).to_arrow()
    want = {
        i
        for i, b, y in zip(cols["id"], cols["bucket"].tolist(), cols["year"].tolist())
        if bench.passes_filter(b, y)
    }
    assert set(got["id"].to_pylist()) == want


def test_overlap_and_tree_rss():
    assert bench.overlap([["a", "b"], ["c", "d"]], [["b", "a"], ["c", "x"]]) == 0.75
    own = bench._rss_kb(bench.os.getpid())
    assert bench.tree_rss_kb() >= own > 0


def test_filter_means_the_same_in_milvus_lite(tmp_path, data):
    pytest.importorskip("milvus_lite")
    pytest.importorskip("pymilvus")
    cols = next(data.batches())
    e = bench.Milvus(tmp_path / "m", create=True)
    try:
        e.add(cols)
        e.finish()
        got = e.c.query("docs", filter=bench.FILTER_MILVUS, output_fields=["id"], limit=10_000)
    finally:
        e.close()
    want = {
        i
        for i, b, y in zip(cols["id"], cols["bucket"].tolist(), cols["year"].tolist())
        if bench.passes_filter(b, y)
    }
    assert {r["id"] for r in got} == want
