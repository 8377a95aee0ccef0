"""densparse.distributed on a local Ray (num_cpus=2): a sharded collection built by Ray
tasks and searched locally, from Ray actors and as a Dataset equals one Collection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _distributed_util import (
    DIM,
    as_rows,
    assert_same,
    reference,
    search_kwargs,
    synthetic_queries,
    synthetic_records,
)

ray = pytest.importorskip(
    "ray", reason="densparse.distributed needs Ray: pip install densparse[ray]"
)
pytest.importorskip("ray.data")

import densparse.distributed as dd  # noqa: E402
from densparse import CorruptIndexError  # noqa: E402
from densparse.distributed import manifest as mf  # noqa: E402

MODES = ("bm25", "dense", "sparse", "hybrid")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, cluster):
    """Records, queries, a reference Collection and sharded builds with 2, 3 and 7 shards."""
    tmp = tmp_path_factory.mktemp("dist")
    recs = synthetic_records(240)
    ref = reference(tmp / "ref", recs)
    built = {}
    for n in (2, 3, 7):
        ds = ray.data.from_items(as_rows(recs), override_num_blocks=4)
        built[n] = dd.build_collection(ds, tmp / f"s{n}", shards=n, dense_dim=DIM)
    return recs, synthetic_queries(12), ref, built


@pytest.mark.parametrize("n", [2, 3, 7])
def test_sharded_equals_single_collection(corpus, n: int) -> None:
    recs, queries, ref, built = corpus
    m = mf.read_manifest(built[n])
    assert [s["name"] for s in m["shards"]] == [mf.shard_name(i) for i in range(n)]
    assert m["totals"]["documents"] == len(recs)
    rows, total, _ = ref.bm25_statistics([])
    assert (m["totals"]["rows"], m["totals"]["total_tokens"]) == (rows, total)
    with dd.open_sharded(built[n], readonly=True) as sc:
        assert len(sc) == len(recs) and sorted(r["id"] for r in recs)[5] in sc
        for s in range(n):  # every document lives in the shard its id hashes to
            ids = sc._group.shards[s].ids()
            assert all(dd.shard_of(i, n) == s for i in ids)
        for q in queries:
            for mode in MODES:
                kw = search_kwargs(q, mode)
                want = ref.search(k=10, candidates=30, **kw)
                got = sc.search(k=10, candidates=30, **kw)
                assert_same(got, want, f"{n} shards, {mode}, {q['text']!r}")
                if mode == "hybrid":
                    for g, w in zip(got, want):  # each route's own score, None where absent
                        assert g.scores.keys() == w.scores.keys()
                        for r, v in w.scores.items():
                            assert (g.scores[r] is None) == (v is None)
                            assert v is None or abs(g.scores[r] - v) <= 1e-5
                    assert [h.text for h in got] == [h.text for h in want]
        # fusion variants and filters take the same path as a Collection's
        q = queries[0]
        for extra in (
            {"fusion": "weighted", "weights": {"bm25": 0.3, "dense": 1.0}},
            {"fusion": "weighted", "normalization": "dbsf"},
            {"filter": {"n": {"$in": [1, 3]}}},
        ):
            kw = search_kwargs(q, "hybrid")
            assert_same(sc.search(k=8, **kw, **extra), ref.search(k=8, **kw, **extra), str(extra))


def test_searcher_actors_and_dataset_search(corpus) -> None:
    _, queries, ref, built = corpus
    with dd.ShardedSearcher(built[7], shards_per_actor=4, num_cpus=0.5) as searcher:
        assert searcher.assignment == [[0, 1, 2, 3], [4, 5, 6]]
        for q in queries[:4]:
            for mode in MODES:
                kw = search_kwargs(q, mode)
                assert_same(searcher.search(k=10, **kw), ref.search(k=10, **kw), mode)
        qrows = [
            {
                "id": q["id"],
                "text": q["text"],
                "dense": q["dense"].tolist(),
                "sparse_indices": list(q["sparse"]),
                "sparse_values": list(q["sparse"].values()),
            }
            for q in queries
        ]
        out = dd.search(searcher, ray.data.from_items(qrows), k=7, mode="hybrid", batch_size=5)
        rows = {r["query_id"]: r for r in out.take_all()}
    assert sorted(rows) == sorted(q["id"] for q in queries)
    for q in queries:
        want = ref.search(k=7, **search_kwargs(q, "hybrid"))
        assert list(rows[q["id"]]["ids"]) == [h.id for h in want]
        np.testing.assert_allclose(rows[q["id"]]["scores"], [h.score for h in want], atol=1e-5)
    # from a path: the searcher is started and stopped by dd.search
    out = dd.search(
        built[3], ray.data.from_items(qrows[:3]), k=5, mode="bm25", shards_per_actor=2, num_cpus=0.5
    ).take_all()
    for r, q in zip(
        sorted(out, key=lambda r: r["query_id"]), sorted(queries[:3], key=lambda q: q["id"])
    ):
        want = ref.search(q["text"], k=5, mode="bm25")
        assert (r["query_id"], list(r["ids"])) == (q["id"], [h.id for h in want])


def test_writes_route_to_the_owning_shard_and_keep_bm25_exact(corpus, tmp_path: Path) -> None:
    recs, queries, _, _ = corpus
    extra = synthetic_records(30, seed=7, prefix="e")
    ds = ray.data.from_items(as_rows(recs), override_num_blocks=2)
    path = dd.build_collection(ds, tmp_path / "w", shards=3, dense_dim=DIM)
    ref = reference(tmp_path / "ref", recs)
    gone = [r["id"] for r in recs[::9]]
    new_text = {"id": recs[1]["id"], "text": "apple apple zulu", "dense": recs[1]["dense"]}
    with dd.ShardedSearcher(path, shards_per_actor=2, num_cpus=0.5, readonly=False) as s:
        s.add(extra)
        s.delete(gone)
        s.upsert([new_text])
        with pytest.raises(KeyError):
            s.delete(["nope", recs[2]["id"]])  # deletes nothing
        ref.add(extra)
        ref.delete(gone)
        ref.upsert([new_text])
        for q in queries:
            # BM25 statistics of the live documents: equal scores; ties may order
            # differently (added documents are last in the Collection, by id here)
            got = s.search(q["text"], k=15, mode="bm25")
            want = ref.search(q["text"], k=15, mode="bm25")
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
            g = {(round(h.score, 4), h.id) for h in got if h.score > got[-1].score + 1e-4}
            w = {(round(h.score, 4), h.id) for h in want if h.score > want[-1].score + 1e-4}
            assert g == w
            assert_same(
                s.search(dense=q["dense"], k=10, mode="dense"),
                ref.search(dense=q["dense"], k=10, mode="dense"),
            )
    m = mf.read_manifest(path)
    assert m["totals"]["documents"] == len(ref) == len(recs) + 30 - len(gone)
    assert (m["totals"]["rows"], m["totals"]["total_tokens"]) == ref.bm25_statistics([])[:2]
    with dd.open_sharded(path) as sc:  # and on one machine after the actors are gone
        assert len(sc) == len(ref) and recs[2]["id"] in sc and gone[0] not in sc
        assert sc.get(recs[1]["id"])["text"] == "apple apple zulu"
        sc.delete([extra[0]["id"]])
        assert mf.read_manifest(path)["totals"]["documents"] == len(ref) - 1


def test_manifest_checks_and_bad_input(corpus, tmp_path: Path) -> None:
    _, _, _, built = corpus
    p = built[2]
    raw = (p / mf.MANIFEST).read_text()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / mf.MANIFEST).write_text(raw.replace('"documents": ', '"documents": 1'))
    with pytest.raises(CorruptIndexError):
        dd.open_sharded(bad)
    with pytest.raises(FileNotFoundError):
        dd.open_sharded(tmp_path)
    with pytest.raises(FileExistsError):
        dd.build_collection(ray.data.from_items([{"id": "a", "text": "x"}]), p, shards=2)
    with pytest.raises(ValueError):
        dd.build_collection(
            ray.data.from_items([{"id": "a", "text": "x"}]), tmp_path / "z", shards=0
        )
    with dd.open_sharded(p, readonly=True) as sc:
        with pytest.raises(ValueError, match="mode"):
            sc.search("apple", mode="colbert")
        with pytest.raises(ValueError, match="needs"):
            sc.search("apple", mode="dense")
        with pytest.raises(ValueError):
            sc.search("apple", k=0)
        with pytest.raises(TypeError):
            sc.search_many([3])
        with pytest.raises(TypeError):
            sc._group.write("add", ["not a record"])
        with pytest.raises(TypeError):
            sc.delete([3])
    assert (
        dd.shard_of("abc", 7)
        == dd.shard_of("abc", 7)
        == int.from_bytes(__import__("hashlib").blake2b(b"abc", digest_size=8).digest(), "big") % 7
    )


# ------------------------------------------------------------------ SciFact and STARD
def shared_corpus(name: str) -> tuple[list[dict], list[str]]:
    from conftest import DATA, need, read_jsonl

    d = need(DATA / name)
    rng = np.random.default_rng(5)
    recs = []
    for r in read_jsonl(d / "corpus.jsonl"):
        recs.append(
            {
                "id": r["_id"],
                "text": f"{r.get('title', '')} {r['text']}".strip(),
                # random vectors: the routes' arithmetic is what is compared, not relevance
                "dense": rng.standard_normal(32).astype(np.float32).tolist(),
                "sparse": {int(i): float(rng.random()) + 0.01 for i in rng.choice(500, 6, False)},
            }
        )
    queries = [r["text"] for r in read_jsonl(d / "queries.jsonl")][:15]
    return recs, queries


@pytest.mark.parametrize("name", ["scifact", "stard"])
def test_shared_corpora_sharded_equal_single(name: str, cluster, tmp_path: Path) -> None:
    from densparse import Analyzer

    recs, texts = shared_corpus(name)
    analyzer = Analyzer(language="zh") if name == "stard" else Analyzer()
    ref = reference(tmp_path / "ref", recs, analyzer, dim=32)
    rng = np.random.default_rng(6)
    queries = [
        {
            "text": t,
            "dense": rng.standard_normal(32).astype(np.float32),
            "sparse": {int(i): 1.0 for i in rng.choice(500, 4, False)},
        }
        for t in texts
    ]
    rows = as_rows(recs)
    for n in (2, 3, 7):
        ds = ray.data.from_items(rows, override_num_blocks=4)
        path = dd.build_collection(
            ds, tmp_path / f"s{n}", shards=n, dense_dim=32, analyzer=analyzer
        )
        with dd.open_sharded(path, readonly=True) as sc:
            assert len(sc) == len(recs)
            for q in queries:
                for mode in MODES:
                    kw = search_kwargs(q, mode)
                    want = ref.search(k=10, candidates=50, **kw)
                    got = sc.search(k=10, candidates=50, **kw)
                    assert_same(got, want, f"{name}, {n} shards, {mode}, {q['text'][:30]!r}")


def test_encode_equals_the_encoder(cluster) -> None:
    from conftest import SHARED, need
    from densparse import Encoder

    model = need(SHARED / "models" / "minilm-l6-int8-onnx")
    texts = [f"document {i} about {w}" for i, w in enumerate(["rent", "deposit", "court"] * 7)]
    ds = ray.data.from_items([{"id": f"t{i}", "text": t} for i, t in enumerate(texts)])
    out = dd.encode(ds, str(model), batch_size=8, num_cpus=1, concurrency=2, max_length=64)
    rows = sorted(out.take_all(), key=lambda r: int(r["id"][1:]))
    enc = Encoder.from_pretrained(model)
    want = enc.encode(texts, max_length=64)
    assert [r["text"] for r in rows] == texts
    np.testing.assert_allclose(np.stack([r["dense"] for r in rows]), want, atol=1e-5)
    q = dd.encode(ds.limit(3), str(model), query=True, num_cpus=1).take_all()
    np.testing.assert_allclose(
        np.stack([r["dense"] for r in sorted(q, key=lambda r: r["id"])]),
        enc.encode_queries(texts[:3]),
        atol=1e-5,
    )
    with pytest.raises(Exception, match="sparse"):
        dd.encode(ds, str(model), outputs=("sparse",), num_cpus=1).take_all()
