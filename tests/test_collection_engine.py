"""The Rust search engine behind Collection: collection-wide BM25 statistics that shards
of one corpus can sum (the hook a sharded collection uses), and lookups by id."""

from __future__ import annotations

import numpy as np
import pytest
from tests.test_collection import make_texts

from densparse import Collection


def _records(texts: list[str], prefix: str = "d") -> list[dict]:
    rng = np.random.default_rng(3)
    return [
        {"id": f"{prefix}{i}", "text": t, "dense": rng.standard_normal(8).astype(np.float32)}
        for i, t in enumerate(texts)
    ]


@pytest.mark.parametrize("method", ["lucene", "bm25+", "bm25l"])
def test_summed_shard_statistics_score_like_one_collection(tmp_path, method):
    recs = _records(make_texts(240, seed=5))
    whole = Collection.create(tmp_path / "whole", dense_dim=8, bm25_method=method)
    whole.add(recs)
    whole.delete([f"d{i}" for i in range(0, 240, 7)])
    shards = []
    for s in range(3):
        c = Collection.create(tmp_path / f"shard{s}", dense_dim=8, bm25_method=method)
        mine = [r for i, r in enumerate(recs) if i % 3 == s]
        c.add(mine[:40])
        c.add(mine[40:])  # two segments per shard
        c.delete([r["id"] for r in mine if int(r["id"][1:]) % 7 == 0])
        shards.append(c)
    for query in ["apple banana", "zulu yankee apple apple", "kilo"]:
        parts = [c.bm25_statistics(query) for c in shards]
        n, total, df = sum(p[0] for p in parts), sum(p[1] for p in parts), {}
        for p in parts:
            for t, d in p[2].items():
                df[t] = df.get(t, 0) + d
        assert (n, total, df) == whole.bm25_statistics(query)
        hits = [
            h
            for c in shards
            for h in c.search(text=query, mode="bm25", k=20, bm25_stats=(n, total, df))
        ]
        hits.sort(key=lambda h: -h.score)
        want = whole.search(text=query, mode="bm25", k=20)
        assert [round(h.score, 4) for h in hits[:20]] == [round(h.score, 4) for h in want]
        got = {h.id: h.score for h in hits}
        for h in want:
            assert got[h.id] == pytest.approx(h.score, rel=1e-5)
    for c in (whole, *shards):
        c.close()


def test_statistics_hook_rejects_bad_input(tmp_path):
    c = Collection.create(tmp_path / "c")
    c.add([{"id": "a", "text": "apple banana"}, {"id": "b", "text": "cherry"}])
    with pytest.raises(TypeError):
        c.bm25_statistics(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.search(text="apple", bm25_stats=("x", 1, {}))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.search(text="apple", bm25_stats=(0, 0, {}))
    with pytest.raises(ValueError, match="df"):
        c.search(text="apple", bm25_stats=(1, 5, {"apple": 3}))  # df above n
    (apple,) = c.analyzer.tokenize("apple")  # tokens are analysed forms (stemmed here)
    assert c.bm25_statistics([apple, "zzz"]) == (2, 3, {apple: 1, "zzz": 0})
    c.close()


def test_get_and_contains_follow_upserts_and_deletes(tmp_path):
    c = Collection.create(tmp_path / "c")
    c.add([{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
    c.upsert([{"id": "a", "text": "three"}])
    assert c.get("a")["text"] == "three" and "b" in c
    c.delete(["b"])
    assert "b" not in c and "zz" not in c
    with pytest.raises(KeyError):
        c.get("b")
    c.close()
