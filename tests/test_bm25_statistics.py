"""Collection.bm25_statistics and search(bm25_stats=...): collections over parts of a corpus,
searched with their summed statistics, score BM25 exactly as one collection over all of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.test_collection import WORDS as ALL_WORDS

from densparse import BM25, Analyzer, Collection

WORDS = ALL_WORDS[:12]


def texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 12), p=p)) for _ in range(n)]


def records(n: int, seed: int = 0) -> list[dict]:
    return [{"id": f"d{i:04d}", "text": t} for i, t in enumerate(texts(n, seed))]


QUERIES = ["apple banana", "kilo lima juliet", "cherry", "golf hotel india echo", "zzz apple"]


def test_summed_statistics_equal_one_collection(tmp_path: Path) -> None:
    recs = records(300)
    whole = Collection.create(tmp_path / "whole")
    whole.add(recs)
    # One half in several segments with deletions (deleted texts must leave the sums),
    # the other a single segment without deletions.
    a = Collection.create(tmp_path / "a", auto_merge=False)
    a.add(recs[:80])
    gone = [{"id": "gone1", "text": "apple apple kilo"}, {"id": "gone2", "text": "lima"}]
    a.add(recs[80:150] + gone)
    a.delete(["gone1", "gone2"])
    b = Collection.create(tmp_path / "b")
    b.add(recs[150:])
    assert a.stats()["segments"] == 2 and a.stats()["deleted_not_merged"] == 2
    for q in QUERIES:
        sa, sb, sw = a.bm25_statistics(q), b.bm25_statistics(q), whole.bm25_statistics(q)
        summed = (sa[0] + sb[0], sa[1] + sb[1], {t: sa[2][t] + sb[2][t] for t in sa[2]})
        assert summed == sw
        ref = {h.id: h.score for h in whole.search(q, k=300, mode="bm25")}
        got = {}
        for c in (a, b):
            got.update({h.id: h.score for h in c.search(q, k=300, mode="bm25", bm25_stats=summed)})
        assert got.keys() == ref.keys()
        np.testing.assert_allclose([got[i] for i in ref], list(ref.values()), rtol=0, atol=1e-5)
        # without the summed statistics each half scores with its own: different numbers
        own = {h.id: h.score for h in b.search(q, k=300, mode="bm25")}
        if own and "zzz" not in q:
            assert any(abs(own[i] - ref[i]) > 1e-4 for i in own)


def test_statistics_of_a_single_segment_match_bm25(tmp_path: Path) -> None:
    recs = records(120, seed=3)
    col = Collection.create(tmp_path / "c")
    col.add(recs)
    an = Analyzer()
    toks = [an.tokenize(r["text"]) for r in recs]
    rows, total, df = col.bm25_statistics("apple kilo zzz")
    assert rows == 120 and total == sum(len(t) for t in toks)
    qt = an.tokenize("apple kilo zzz")  # analysed: stemmed tokens
    assert sorted(df) == sorted(qt) and len(qt) == 3
    for t in qt:
        assert df[t] == sum(t in set(d) for d in toks)
    assert df[qt[2]] == 0 and df[qt[0]] > 0
    assert col.bm25_statistics(qt[:1]) == (rows, total, {qt[0]: df[qt[0]]})
    # the hook with the collection's own statistics changes nothing
    ref = col.search("apple kilo", k=20, mode="bm25")
    same = col.search("apple kilo", k=20, mode="bm25", bm25_stats=col.bm25_statistics("apple kilo"))
    assert [h.id for h in same] == [h.id for h in ref]
    np.testing.assert_allclose([h.score for h in same], [h.score for h in ref], atol=1e-5)
    # and equals a plain BM25 index over the same texts
    scores = BM25().index([r["text"] for r in recs]).get_scores("apple kilo")
    np.testing.assert_allclose(sorted(scores, reverse=True)[:20], [h.score for h in ref], atol=1e-5)


def test_bad_bm25_stats(tmp_path: Path) -> None:
    col = Collection.create(tmp_path / "c")
    col.add(records(10))
    with pytest.raises(TypeError):
        col.search("apple", mode="bm25", bm25_stats=[1, 2])
    with pytest.raises(ValueError, match="rows"):
        col.search("apple", mode="bm25", bm25_stats=(0, 0, {"apple": 0}))
    with pytest.raises(ValueError, match="df"):
        col.search("apple", mode="bm25", bm25_stats=(5, 20, {"apple": 9}))
    with pytest.raises(ValueError, match="no df"):
        col.search("apple banana", mode="bm25", bm25_stats=(50, 200, {"apple": 3}))
    with pytest.raises(TypeError):
        col.search("apple", mode="bm25", bm25_stats=(50, 200, ["apple"]))
    with pytest.raises(TypeError):
        col.bm25_statistics(3)
