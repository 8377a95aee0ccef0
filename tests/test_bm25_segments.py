"""BM25 segments: global statistics, document masks and their bad input.

A collection split into segment indexes, each searched with the statistics of
the whole collection, must give exactly what one index over the collection
gives; masks must restrict results exactly as filtering the exhaustive scores.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from densparse import BM25
from densparse.bm25 import GlobalStats

METHODS = ["lucene", "robertson", "atire", "bm25l", "bm25+"]
K1, B, DELTA = 1.5, 0.75, 0.5


def seg_corpus(n: int, seg: int, max_len: int, seed: int) -> list[list[str]]:
    """Zipfian documents with a segment's own length range and some words only it has."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, max_len, n)
    words = rng.zipf(1.3, size=int(lens.sum())) % 3000
    own = rng.random(int(lens.sum())) < 0.1
    toks = [f"s{seg}x{w % 300}" if o else f"w{w}" for w, o in zip(words.tolist(), own.tolist())]
    out, i = [], 0
    for n_tok in lens.tolist():
        out.append(toks[i : i + n_tok])
        i += n_tok
    return out


def make_queries(n: int, n_segs: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    qs = []
    for i in range(n):
        q = [f"w{w}" for w in (rng.zipf(1.3, size=int(rng.integers(1, 6))) % 3500).tolist()]
        # A word of one segment only (or of none: segment n_segs does not exist).
        q.append(f"s{int(rng.integers(0, n_segs + 1))}x{int(rng.integers(0, 320))}")
        if i % 3 == 0:
            q.append(q[0])
        if i % 7 == 0:
            q = [f"s{i % n_segs}x{int(rng.integers(0, 50))}"]  # only in one segment
        qs.append(q)
    return qs


def numpy_scores(docs: list[list[str]], q: list[str], method: str) -> np.ndarray:
    """Reference BM25 (docs/algorithms.md "BM25 variants", as bm25s) in float64 numpy."""
    n = len(docs)
    lens = np.array([len(d) for d in docs], dtype=np.float64)
    avgdl = lens.sum() / n
    kn = K1 * (1 - B + B * lens / avgdl)
    counts = [Counter(d) for d in docs]
    df = Counter(t for c in counts for t in c)
    out = np.zeros(n)
    for t in q:
        d = df.get(t, 0)
        if d == 0:
            continue
        idf = {
            "lucene": math.log(1 + (n - d + 0.5) / (d + 0.5)),
            "robertson": math.log(max((n - d + 0.5) / (d + 0.5), 1.0)),
            "atire": math.log(n / d),
            "bm25l": math.log((n + 1) / (d + 0.5)),
            "bm25+": math.log((n + 1) / d),
        }[method]
        tf = np.array([c.get(t, 0) for c in counts], dtype=np.float64)
        if method in ("lucene", "robertson"):
            part = tf / (tf + kn)
        elif method == "atire":
            part = tf * (K1 + 1) / (tf + kn)
        elif method == "bm25l":
            c = tf / (kn / K1)
            part = (K1 + 1) * (c + DELTA) / (K1 + c + DELTA)
        else:
            part = (K1 + 1) * tf / (kn + tf) + DELTA
        out += idf * part
    return out


def global_stats(segs: list[BM25], queries: list[list[str]]) -> GlobalStats:
    n = sum(s.n_docs for s in segs)
    total = sum(s.total_tokens for s in segs)
    toks = {t for q in queries for t in q}
    df = {t: sum(s.doc_freqs([t])[t] for s in segs) for t in toks}
    return GlobalStats(n, total / n, df)


def assert_same_hits(ids, scores, want_ids, want_scores, exhaustive):
    """Scores rel 1e-6; ids equal except among scores equal to that precision."""
    assert ids.shape == want_ids.shape
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6, atol=1e-7)
    real = ids >= 0
    np.testing.assert_allclose(exhaustive[ids[real]], scores[real], rtol=1e-6, atol=1e-7)
    differ = ids != want_ids
    np.testing.assert_allclose(scores[differ], want_scores[differ], rtol=1e-6, atol=1e-7)
    assert len(set(ids[real].tolist())) == int(real.sum())


def reference_top(scores: np.ndarray, k: int, mask=None):
    """(ids, scores) of the k best eligible docs by score desc then id asc, padded."""
    ids = np.arange(len(scores))
    if mask is not None:
        m = np.zeros(len(scores), dtype=bool)
        m[: min(len(mask), len(scores))] = mask[: len(scores)].astype(bool)
        ids = ids[m]
    order = np.lexsort((ids, -scores[ids].astype(np.float64)))[: min(k, len(scores))]
    top = ids[order]
    kk = min(k, len(scores))
    out_ids = np.full(kk, -1, dtype=np.int64)
    out_scores = np.full(kk, -np.inf, dtype=np.float32)
    out_ids[: len(top)] = top
    out_scores[: len(top)] = scores[top]
    return out_ids, out_scores


def merge(per_segment, offsets, k):
    """Merge per-segment (ids, scores) rows into global top-k rows."""
    q = per_segment[0][0].shape[0]
    out_ids, out_scores = [], []
    for r in range(q):
        hits = []
        for (ids, sc), off in zip(per_segment, offsets):
            hits += [(float(s), int(i) + off) for i, s in zip(ids[r], sc[r]) if i >= 0]
        hits.sort(key=lambda h: (-h[0], h[1]))
        hits = hits[:k]
        out_ids.append([h[1] for h in hits])
        out_scores.append([h[0] for h in hits])
    return np.array(out_ids), np.array(out_scores, dtype=np.float32)


def check_collection(parts, queries, method, ks=(1, 10, 100), numpy_ref=False):
    docs = [d for p in parts for d in p]
    whole = BM25(method=method).index(docs)
    segs = [BM25(method=method).index(p) for p in parts]
    offsets = np.cumsum([0] + [len(p) for p in parts])[:-1].tolist()
    stats = global_stats(segs, queries)
    assert stats.avgdl == whole._idx.avgdl  # bit-exact, as documented
    for qi, q in enumerate(queries):
        want = whole.get_scores(q)
        if numpy_ref:
            np.testing.assert_allclose(want, numpy_scores(docs, q, method), rtol=1e-5, atol=1e-6)
        got = np.concatenate([s.get_scores(q, stats=stats) for s in segs])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=f"{method} q{qi}")
    for k in ks:
        want_ids, want_scores = whole.search(queries, k=k)
        per = [s.search_with_stats(queries, k, stats) for s in segs]
        for (ids, _), s in zip(per, segs):
            assert ids.shape == (len(queries), min(k, s.n_docs))
        ids, scores = merge(per, offsets, k)
        for r, q in enumerate(queries):
            assert_same_hits(ids[r], scores[r], want_ids[r], want_scores[r], whole.get_scores(q))


@pytest.mark.parametrize("method", METHODS)
def test_segments_small_dense(method):
    parts = [seg_corpus(700, 0, 20, 1), seg_corpus(500, 1, 80, 2), seg_corpus(300, 2, 6, 3)]
    check_collection(parts, make_queries(40, 3, 4), method, ks=(1, 10, 100, 2000), numpy_ref=True)


@pytest.fixture(scope="module")
def big_parts():
    # Two segments above 65,536 documents (block-max MaxScore) and one small
    # (term at a time); average lengths far apart on both sides of the global one.
    return [
        seg_corpus(67_000, 0, 12, 11),
        seg_corpus(66_000, 1, 50, 12),
        seg_corpus(2_000, 2, 30, 13),
    ]


@pytest.mark.parametrize("method", METHODS)
def test_segments_big_maxscore(method, big_parts):
    check_collection(big_parts, make_queries(25, 3, 14), method, ks=(1, 10, 100))


def test_one_segment_with_own_stats_equals_plain_search():
    docs = seg_corpus(800, 0, 30, 5)
    bm = BM25(method="bm25l").index(docs)
    queries = make_queries(20, 1, 6)
    stats = global_stats([bm], queries)
    a = bm.search(queries, k=15)
    b = bm.search_with_stats(queries, 15, stats)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# ---------------------------------------------------------------- masks


def masks(n: int, seed: int):
    rng = np.random.default_rng(seed)
    few = np.zeros(n, dtype=bool)
    few[[3, n - 1]] = True
    return {
        "half": rng.random(n) < 0.5,
        "sparse_u8": (rng.random(n) < 0.005).astype(np.uint8) * 9,
        "few": few,
        "empty": np.zeros(0, dtype=bool),
        "none_set": np.zeros(n, dtype=np.uint8),
        "short": np.ones(n // 3, dtype=bool),
        "longer": np.ones(n + 50, dtype=np.uint8),
    }


def check_masks(bm: BM25, queries, stats=None):
    n = bm.n_docs
    for name, mask in masks(n, 1).items():
        for k in (1, 10, 500):
            if stats is None:
                ids, scores = bm.search(queries, k=k, mask=mask)
            else:
                ids, scores = bm.search_with_stats(queries, k, stats, mask=mask)
            assert ids.shape == scores.shape == (len(queries), min(k, n))
            for r, q in enumerate(queries):
                ex = bm.get_scores(q, stats=stats)
                want_ids, want_scores = reference_top(ex, k, mask)
                assert_same_hits(ids[r], scores[r], want_ids, want_scores, ex)
                real = ids[r][ids[r] >= 0]
                assert np.all(real < len(mask)) and np.all(mask[real] != 0), name
                assert np.all(scores[r][ids[r] < 0] == -np.inf)
                assert np.all(ids[r][len(real) :] == -1)  # padding only at the end


@pytest.mark.parametrize("method", METHODS)
def test_masks_dense(method):
    docs = seg_corpus(3000, 0, 40, 21)
    bm = BM25(method=method).index(docs)
    queries = make_queries(15, 1, 22)
    check_masks(bm, queries)
    other = BM25(method=method).index(seg_corpus(1000, 1, 10, 23))
    check_masks(bm, queries, global_stats([bm, other], queries))


@pytest.mark.parametrize("method", ["lucene", "bm25l", "bm25+"])
def test_masks_maxscore(method, big_parts):
    bm = BM25(method=method).index(big_parts[0])
    queries = make_queries(8, 3, 24)
    check_masks(bm, queries)
    other = BM25(method=method).index(big_parts[2])
    check_masks(bm, queries, global_stats([bm, other], queries))


def test_mask_single_query_and_text_queries():
    texts = ["alpha beta gamma", "alpha alpha", "beta gamma delta", "delta omega", "alpha"]
    bm = BM25(method="lucene").index(texts)
    mask = np.array([False, True, False, True], dtype=bool)
    ids, scores = bm.search([["alpha"]], k=3, mask=mask)
    assert ids.tolist() == [[1, 3, -1]]
    assert scores[0, 2] == -np.inf and scores[0, 1] == 0.0
    ids, _ = bm.search(["alpha", "delta"], k=2, mask=mask)  # texts, analysed in Rust
    assert ids.tolist() == [[1, 3], [3, 1]]
    ids, scores = bm.search("alpha", k=5, mask=np.zeros(0, dtype=np.uint8))  # one query
    assert ids.tolist() == [-1] * 5 and np.all(np.isneginf(scores))


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small():
    return BM25().index([["a", "b"], ["b", "c"], ["c", "d", "a"]])


@pytest.mark.parametrize(
    "mask, exc",
    [
        ([1, 0, 1], TypeError),
        (np.ones(3, dtype=np.float32), TypeError),
        (np.ones(3, dtype=np.int64), TypeError),
        (np.ones((3, 1), dtype=bool), ValueError),
        ("101", TypeError),
    ],
)
def test_bad_masks(small, mask, exc):
    with pytest.raises(exc, match="mask"):
        small.search([["a"]], k=2, mask=mask)
    # The binding checks too (the Collection may call it directly).
    with pytest.raises((TypeError, ValueError), match="mask"):
        small._idx.search_tokens([["a"]], k=2, mask=mask)


def test_strided_mask_is_fine(small):
    m = np.array([1, 9, 0, 9, 1, 9], dtype=np.uint8)[::2]
    ids, _ = small.search([["a"]], k=3, mask=m)  # m = [1, 0, 1]
    assert ids.tolist() == [[0, 2, -1]]
    ids, _ = small._idx.search_tokens([["a"]], k=3, mask=m)
    assert ids.tolist() == [[0, 2, -1]]


GOOD = (3, 7 / 3, {"a": 2})


@pytest.mark.parametrize(
    "stats, exc, match",
    [
        ((3, 2.0, {"a": -1}), ValueError, "df"),
        ((0, 2.0, {"a": 2}), ValueError, "n_docs"),
        ((-4, 2.0, {"a": 2}), ValueError, "n_docs"),
        ((3, 0.0, {"a": 2}), ValueError, "avgdl"),
        ((3, -1.0, {"a": 2}), ValueError, "avgdl"),
        ((3, float("nan"), {"a": 2}), ValueError, "avgdl"),
        ((3, float("inf"), {"a": 2}), ValueError, "avgdl"),
        ((3, 2.0, {"a": 4}), ValueError, "df"),  # above n_docs
        (("3", 2.0, {"a": 2}), TypeError, "n_docs"),
        ((3.0, 2.0, {"a": 2}), TypeError, "n_docs"),
        ((3, "2", {"a": 2}), TypeError, "avgdl"),
        ((3, 2.0, [("a", 2)]), TypeError, "df"),
        ((3, 2.0, {1: 2}), TypeError, "df"),
        ((3, 2.0, {"a": 2.5}), TypeError, "df"),
        ((3, 2.0), TypeError, "stats"),
        ([3, 2.0, {"a": 2}], TypeError, "stats"),
        (None, TypeError, "stats"),
    ],
)
def test_bad_stats(small, stats, exc, match):
    with pytest.raises(exc, match=match):
        small.search_with_stats([["a"]], 2, stats)
    if stats is not None:
        with pytest.raises(exc, match=match):
            small.get_scores(["a"], stats=stats)
        # Same error class straight from the binding.
        with pytest.raises(exc):
            small._idx.search_tokens([["a"]], k=2, global_stats=stats)


def test_good_stats_and_facts(small):
    ids, _ = small.search_with_stats([["a"]], 2, GOOD)
    assert ids.shape == (1, 2)
    assert small.total_tokens == 7 and small.stats()["total_tokens"] == 7
    assert small.doc_freqs(["a", "zz"]) == {"a": 2, "zz": 0}
    # A token missing from df counts as absent from the collection.
    s = small.get_scores(["a", "zz"], stats=GlobalStats(3, 7 / 3, {"a": 2}))
    np.testing.assert_allclose(s, small.get_scores(["a"]), rtol=1e-7)


def test_threads_with_alternating_stats():
    """Concurrent searches with two different collection avgdls (the kn cache
    is shared and replaced) give the same results as serial ones."""
    import threading

    docs = seg_corpus(2000, 0, 30, 31)
    bm = BM25(method="bm25+").index(docs)
    queries = make_queries(20, 1, 32)
    base = global_stats([bm], queries)
    stats = [
        GlobalStats(base.n_docs * 2, base.avgdl * 1.3, {t: d * 2 for t, d in base.df.items()}),
        GlobalStats(base.n_docs * 3, base.avgdl * 0.7, {t: d * 3 for t, d in base.df.items()}),
    ]
    want = [bm.search_with_stats(queries, 10, s) for s in stats]
    errors = []

    def work(i):
        try:
            for _ in range(20):
                ids, scores = bm.search_with_stats(queries, 10, stats[i % 2], threads=1)
                np.testing.assert_array_equal(ids, want[i % 2][0])
                np.testing.assert_array_equal(scores, want[i % 2][1])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]
