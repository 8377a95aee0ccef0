"""BM25: parity with bm25s, exact pruning, sparse vectors, persistence, bad input, threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

import densparse
from conftest import DATA, need
from densparse import BM25, Analyzer

METHODS = ["lucene", "robertson", "atire", "bm25l", "bm25+"]


def zipf_corpus(n_docs: int, vocab: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 80, n_docs)
    return [[f"w{t}" for t in (rng.zipf(1.3, size=n) % vocab)] for n in lens]


def bm25s_scores(corpus_tokens, queries, method):
    """Scores from bm25s for pre-tokenized input, one row per query."""
    bm25s = pytest.importorskip("bm25s", reason="bm25s is the BM25 reference (pip install bm25s)")
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in corpus_tokens]
    ret = bm25s.BM25(method=method, k1=1.5, b=0.75, delta=0.5)
    ret.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
    out = []
    for q in queries:
        out.append(ret.get_scores([t for t in q if t in vocab]))
    return np.array(out)


@pytest.mark.parametrize("method", METHODS)
def test_bm25s_parity_synthetic(method):
    docs = zipf_corpus(2000, 3000, seed=1)
    queries = zipf_corpus(50, 3500, seed=2)
    ref = bm25s_scores(docs, queries, method)
    bm = BM25(method=method).index(docs)
    got = np.array([bm.get_scores(q) for q in queries])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_bm25s_parity_scifact(method, scifact_corpus):
    import json

    an = Analyzer(language="en")
    docs = an.tokenize_batch([d["title"] + " " + d["text"] for d in scifact_corpus])
    with open(need(DATA / "scifact" / "queries.jsonl"), encoding="utf-8") as f:
        queries = an.tokenize_batch([json.loads(line)["text"] for line in f][:300])
    ref = bm25s_scores(docs, queries, method)
    bm = BM25(method=method).index(docs)
    got = np.array([bm.get_scores(q) for q in queries])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # search() agrees with the exhaustive scores.
    ids, scores = bm.search(queries, k=10)
    for q in range(len(queries)):
        np.testing.assert_allclose(scores[q], got[q][ids[q]], rtol=1e-6)
        assert np.all(np.sort(got[q])[::-1][:10] <= scores[q][0] + 1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_pruned_search_equals_exhaustive(method):
    docs = zipf_corpus(5000, 2000, seed=3)
    queries = zipf_corpus(200, 2500, seed=4)
    bm = BM25(method=method).index(docs)
    for k in (1, 10, 1000):
        ids, scores = bm.search(queries, k=k)
        for qi, q in enumerate(queries):
            full = bm.get_scores(q)
            order = np.lexsort((np.arange(len(full)), -full))[:k]
            np.testing.assert_allclose(scores[qi], full[order], rtol=1e-6)
            same = ids[qi] == order
            # Ids may only differ inside runs of equal scores.
            assert np.allclose(scores[qi][~same], full[order][~same], rtol=1e-6)


def test_search_shapes_and_single_query():
    bm = BM25(analyzer=Analyzer(language="en")).index(
        ["red apple", "green apple pie", "blue sky", "apple apple"]
    )
    ids, scores = bm.search("apple", k=2)
    assert ids.shape == (2,) and ids.dtype == np.int64 and scores.dtype == np.float32
    ids, scores = bm.search(["apple", "sky"], k=10)
    assert ids.shape == (2, 4)  # k' = min(k, N)
    assert ids[1][0] == 2
    assert scores[1][1:].tolist() == [0.0, 0.0, 0.0]  # non-matching documents fill in by id
    ids2, _ = bm.search([["appl"], ["sky"]], k=4)  # token lists
    np.testing.assert_array_equal(ids, ids2)
    assert bm.search("apple", k=10, threads=1)[0].tolist() == bm.search("apple", k=10)[0].tolist()


def test_sparse_vectors_dot_to_scores():
    docs = zipf_corpus(300, 400, seed=5)
    bm = BM25().index(docs)
    dvecs = bm.encode_documents(docs)
    qvecs = bm.encode_queries(zipf_corpus(20, 400, seed=6))
    for (qi, qv), q in zip(qvecs, zipf_corpus(20, 400, seed=6)):
        scores = bm.get_scores(q) if len(qi) else np.zeros(len(docs), np.float32)
        for d, (di, dv) in enumerate(dvecs):
            _, a, b = np.intersect1d(qi, di, return_indices=True)
            assert float(qv[a] @ dv[b]) == pytest.approx(float(scores[d]), rel=1e-5, abs=1e-5)
    assert dvecs[0][0].dtype == np.int64 and dvecs[0][1].dtype == np.float32


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(tmp_path, mmap):
    an = Analyzer(language="auto", stopwords=["the"])
    an.add_word("石墨烯", 100)
    texts = ["石墨烯材料的应用", "the graphene material", "押金退还", "apple"] * 5
    bm = BM25(method="bm25+", k1=1.2, b=0.5, delta=1.0, analyzer=an).index(texts)
    p = tmp_path / "i.bm25"
    bm.save(p)
    bm2 = BM25.load(p, mmap=mmap)
    assert (bm2.method, bm2.k1, bm2.b, bm2.delta) == ("bm25+", pytest.approx(1.2), 0.5, 1.0)
    assert bm2.analyzer.config == an.config
    for q in ["石墨烯", "graphene materials", "押金"]:
        a, b = bm.search(q, k=5), bm2.search(q, k=5)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_failed_save_keeps_existing_file(tmp_path):
    bm = BM25().index(["a b", "c d"])
    p = tmp_path / "i.bm25"
    bm.save(p)
    before = p.read_bytes()
    with pytest.raises(OSError):
        bm.save(tmp_path / "missing-dir" / "i.bm25")
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["i.bm25"]  # no temporary left behind


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="empty corpus"):
        BM25().index([])
    with pytest.raises(TypeError, match=r"corpus\[1\] is int"):
        BM25().index(["ok", 5])
    with pytest.raises(TypeError, match="single string"):
        BM25().index("just one string")
    with pytest.raises(ValueError, match="unknown BM25 method"):
        BM25(method="bm26")
    with pytest.raises(ValueError, match="out of range"):
        BM25(b=2.0).index(["a"])
    bm = BM25().index(["alpha beta", "beta gamma", "delta"])
    with pytest.raises(ValueError, match="empty"):
        bm.search("", k=3)
    with pytest.raises(ValueError, match="empty"):
        bm.search("   ")
    with pytest.raises(ValueError, match="empty"):
        bm.get_scores([])
    with pytest.raises(ValueError, match="k must be >= 1"):
        bm.search("alpha", k=0)
    with pytest.raises(TypeError, match="k must be an int"):
        bm.search("alpha", k=2.5)
    ids, _ = bm.search("alpha", k=100)  # k > N: N results, not an error
    assert len(ids) == 3
    with pytest.raises(TypeError, match=r"queries\[1\]"):
        bm.search(["alpha", 3])
    with pytest.raises(RuntimeError, match="no index"):
        BM25().search("x")
    with pytest.raises(ValueError, match="threads"):
        bm.search(["alpha"], threads=0)

    p = tmp_path / "i.bm25"
    bm.save(p)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "corrupt.bm25"
    bad.write_bytes(bytes(data))
    with pytest.raises(densparse.CorruptIndexError, match="checksum"):
        BM25.load(bad)
    (tmp_path / "trunc.bm25").write_bytes(p.read_bytes()[:-9])
    with pytest.raises(densparse.CorruptIndexError, match="truncated"):
        BM25.load(tmp_path / "trunc.bm25")
    (tmp_path / "foreign.bin").write_bytes(b"PK\x03\x04 this is a zip file, not an index" * 10)
    with pytest.raises(densparse.CorruptIndexError, match="not a densparse"):
        BM25.load(tmp_path / "foreign.bin")
    wrong_kind = bytearray(p.read_bytes())
    wrong_kind[8:12] = b"DENS"
    (tmp_path / "kind.bin").write_bytes(bytes(wrong_kind))
    with pytest.raises(densparse.CorruptIndexError, match="not a"):
        BM25.load(tmp_path / "kind.bin")
    with pytest.raises(FileNotFoundError):
        BM25.load(tmp_path / "nope.bm25")
    assert issubclass(densparse.CorruptIndexError, ValueError)


def test_threads_give_same_results():
    docs = zipf_corpus(20000, 5000, seed=7)
    queries = zipf_corpus(400, 6000, seed=8)
    bm = BM25().index(docs)
    want = bm.search(queries, k=10, threads=1)
    results: dict[int, tuple] = {}

    def work(n):
        results[n] = bm.search(queries, k=10, threads=2)

    ts = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(results) == 8
    for ids, scores in results.values():
        np.testing.assert_array_equal(ids, want[0])
        np.testing.assert_array_equal(scores, want[1])


def test_threads_are_capped_at_the_cores() -> None:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs /proc to count the process's OS threads")

    def os_threads() -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith("Threads:"))
        return int(line.split()[1])

    bm = BM25(analyzer=Analyzer(language="en")).index(["a b", "b c", "c d"] * 10)
    want = bm.search([["b"]] * 4, k=3, threads=1)
    before = os_threads()
    for t in (10_000, 5_000, 999):  # one shared pool, at most one thread per core
        got = bm.search([["b"]] * 4, k=3, threads=t)
        np.testing.assert_array_equal(got[0], want[0])
    assert os_threads() - before <= (os.cpu_count() or 1)


def test_query_of_many_distinct_tokens_counts_each_once() -> None:
    bm = BM25(analyzer=Analyzer(language="en")).index(["t1 t2", "t2 t3", "t9"])
    q = [f"t{i}" for i in range(100_000)] + ["t2", "t2"]
    s = bm.get_scores(q)
    r = bm.get_scores(["t1", "t2", "t2", "t2", "t3", "t9"])
    np.testing.assert_allclose(s, r, rtol=1e-6)


def test_index_is_compact():
    docs = zipf_corpus(20000, 5000, seed=9)
    st = BM25().index(docs).stats()
    assert st["bytes_per_posting"] <= 5.0, st
