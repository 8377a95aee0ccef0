"""Collection: routes equal their references across segments, filters, views, fusion,
persistence, crash safety, concurrency and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import densparse
from densparse import BM25, Analyzer, Collection, CorruptIndexError

# Subprocesses import densparse from where this test process did (the source tree with an
# in-place build, or the installed package).
DENSPARSE_ROOT = str(Path(densparse.__file__).resolve().parent.parent)

WORDS = [
    "apple",
    "banana",
    "cherry",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 15), p=p)) for _ in range(n)]


def make_records(n: int, dim: int = 8, seed: int = 0, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    texts = make_texts(n, seed)
    out = []
    for i, t in enumerate(texts):
        nnz = int(rng.integers(1, 6))
        idx = rng.choice(50, size=nnz, replace=False)
        out.append(
            {
                "id": f"d{start + i}",
                "text": t,
                "dense": rng.standard_normal(dim).astype(np.float32),
                "sparse": (idx, rng.random(nnz).astype(np.float32) + 0.01),
                "metadata": {
                    "year": 2000 + (start + i) % 10,
                    "lang": ["en", "zh", "fr"][(start + i) % 3],
                    "tags": ["a", "b"] if (start + i) % 4 == 0 else ["c"],
                },
            }
        )
    return out


def en() -> Analyzer:
    return Analyzer(language="en")


@pytest.fixture
def coll(tmp_path: Path) -> Collection:
    c = Collection.create(tmp_path / "c", dense_dim=8, analyzer=en(), auto_merge=False)
    for b in range(3):  # three segments
        c.add(make_records(40, seed=b, start=40 * b))
    return c


def all_records() -> list[dict]:
    return [r for b in range(3) for r in make_records(40, seed=b, start=40 * b)]


# ---------------------------------------------------------------- routes vs references
def test_bm25_route_equals_single_index_across_segments(coll: Collection) -> None:
    recs = all_records()
    assert coll.stats()["segments"] == 3
    ref = BM25(analyzer=en()).index([r["text"] for r in recs])
    for q in ["apple banana", "zulu yankee xray", "golf", "mike apple tango"]:
        scores = ref.get_scores(q)
        order = sorted(range(len(recs)), key=lambda i: (-scores[i], i))
        want = [(recs[i]["id"], scores[i]) for i in order if scores[i] > 0][:10]
        hits = coll.search(text=q, k=10, mode="bm25")
        assert [h.id for h in hits] == [w[0] for w in want]
        np.testing.assert_allclose([h.score for h in hits], [w[1] for w in want], rtol=1e-6)
        assert all(h.scores["bm25"] == h.score for h in hits)


def test_dense_route_equals_numpy(coll: Collection) -> None:
    recs = all_records()
    X = np.stack([r["dense"] for r in recs])
    q = np.random.default_rng(9).standard_normal(8).astype(np.float32)
    s = X @ q
    order = np.lexsort((np.arange(len(s)), -s))[:7]
    hits = coll.search(dense=q, k=7, mode="dense")
    assert [h.id for h in hits] == [recs[i]["id"] for i in order]
    np.testing.assert_allclose([h.score for h in hits], s[order], rtol=1e-5, atol=1e-6)


def test_sparse_route_equals_dot(coll: Collection) -> None:
    recs = all_records()
    q = {3: 0.5, 7: 1.0, 11: 0.25}
    s = np.array(
        [sum(q.get(int(i), 0.0) * v for i, v in zip(*r["sparse"])) for r in recs], np.float32
    )
    order = [i for i in np.lexsort((np.arange(len(s)), -s)) if s[i] > 0][:10]
    hits = coll.search(sparse=q, k=10, mode="sparse")
    assert [h.id for h in hits] == [recs[i]["id"] for i in order]
    np.testing.assert_allclose([h.score for h in hits], s[order], rtol=1e-5)


def test_hybrid_rrf_fuses_route_lists(coll: Collection) -> None:
    q = np.random.default_rng(3).standard_normal(8).astype(np.float32)
    bm = coll.search(text="apple golf", k=100, mode="bm25")
    de = coll.search(dense=q, k=100, mode="dense")
    want: dict[str, float] = {}
    for hits in (bm, de):
        for rank, h in enumerate(hits, start=1):
            want[h.id] = want.get(h.id, 0.0) + 1.0 / (60 + rank)
    hits = coll.search(text="apple golf", dense=q, k=10, candidates=100)
    ranked = sorted(want.items(), key=lambda kv: -kv[1])
    np.testing.assert_allclose([h.score for h in hits], [v for _, v in ranked[:10]], rtol=1e-5)
    assert set(hits[0].scores) == {"bm25", "dense"}
    by_id = {h.id: h.score for h in bm}
    for h in hits:
        if h.id in by_id:
            assert h.scores["bm25"] == pytest.approx(by_id[h.id], rel=1e-6)


def test_views_score_is_max_over_views(tmp_path: Path) -> None:
    c = Collection.create(tmp_path / "v", analyzer=en())
    c.add(
        [
            {"id": "a", "text": "tax law article one", "views": ["what is the penalty for fraud"]},
            {"id": "b", "text": "contract law article two"},
            {"id": "c", "text": "penalty fraud penalty fraud statute"},
        ]
    )
    rows = ["tax law article one", "what is the penalty for fraud"]
    rows += ["contract law article two", "penalty fraud penalty fraud statute"]
    ref = BM25(analyzer=en()).index(rows).get_scores("penalty for fraud")
    hits = c.search(text="penalty for fraud", mode="bm25", k=3)
    got = {h.id: h.score for h in hits}
    assert got["a"] == pytest.approx(max(ref[0], ref[1]), rel=1e-6)
    assert got["c"] == pytest.approx(ref[3], rel=1e-6)
    assert "b" not in got  # shares no term with the query


# ---------------------------------------------------------------- filters
@pytest.mark.parametrize(
    "flt, pred",
    [
        ({"lang": "zh"}, lambda m: m["lang"] == "zh"),
        ({"year": {"$gte": 2003, "$lt": 2006}}, lambda m: 2003 <= m["year"] < 2006),
        ({"lang": {"$in": ["en", "fr"]}}, lambda m: m["lang"] in ("en", "fr")),
        ({"lang": {"$nin": ["en"]}}, lambda m: m["lang"] != "en"),
        ({"tags": "a"}, lambda m: "a" in m["tags"]),
        (
            {"$or": [{"year": 2001}, {"lang": "fr"}]},
            lambda m: m["year"] == 2001 or m["lang"] == "fr",
        ),
        (
            {"$not": {"lang": "en"}, "year": {"$gt": 2004}},
            lambda m: m["lang"] != "en" and m["year"] > 2004,
        ),
        ({"missing": {"$exists": False}}, lambda m: True),
        ({"year": 2001.0}, lambda m: m["year"] == 2001),
    ],
)
def test_filters_apply_before_top_k(coll: Collection, flt: dict, pred) -> None:
    recs = all_records()
    ok = {r["id"] for r in recs if pred(r["metadata"])}
    q = np.random.default_rng(5).standard_normal(8).astype(np.float32)
    for kw in (
        {"dense": q, "mode": "dense"},
        {"text": "apple", "mode": "bm25"},
        {"dense": q, "text": "apple"},
    ):
        hits = coll.search(k=25, filter=flt, **kw)
        assert {h.id for h in hits} <= ok
        if kw.get("mode") == "dense":
            assert len(hits) == min(25, len(ok))  # k hits whenever k documents match


def test_filter_rejects_bad_specs(coll: Collection) -> None:
    q = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="unknown operator"):
        coll.search(dense=q, filter={"year": {"$between": [1, 2]}})
    with pytest.raises(TypeError, match="needs a number"):
        coll.search(dense=q, filter={"year": {"$gt": "2001"}})
    with pytest.raises(ValueError, match="unknown filter operator"):
        coll.search(dense=q, filter={"$xor": []})
    with pytest.raises(TypeError):
        coll.search(dense=q, filter=[("year", 1)])


# ---------------------------------------------------------------- writes
def test_add_get_delete_upsert(coll: Collection) -> None:
    assert len(coll) == 120
    r = coll.get("d5")
    assert r["text"] == all_records()[5]["text"]
    np.testing.assert_allclose(r["dense"], all_records()[5]["dense"])
    coll.delete(["d5", "d77"])
    assert len(coll) == 118 and "d5" not in coll
    with pytest.raises(KeyError):
        coll.get("d5")
    q = all_records()[77]["dense"]
    assert all(h.id != "d77" for h in coll.search(dense=q, mode="dense", k=120))
    coll.upsert([{"id": "d6", "text": "brand new words here", "dense": np.ones(8, np.float32)}])
    assert coll.get("d6")["text"] == "brand new words here" and len(coll) == 118
    assert coll.search(text="brand new", mode="bm25", k=1)[0].id == "d6"
    with pytest.raises(ValueError, match="already in the collection"):
        coll.add([{"id": "d7", "text": "x"}])
    with pytest.raises(KeyError, match="unknown"):
        coll.delete(["d8", "nope"])
    assert "d8" in coll  # nothing deleted by a failed call


def test_merge_keeps_results(tmp_path: Path) -> None:
    c = Collection.create(tmp_path / "m", dense_dim=8, analyzer=en(), auto_merge=False)
    for b in range(5):
        c.add(make_records(20, seed=b, start=20 * b))
    q = np.random.default_rng(1).standard_normal(8).astype(np.float32)
    before_bm = [(h.id, h.score) for h in c.search(text="apple kilo", mode="bm25", k=15)]
    before_de = [h.id for h in c.search(dense=q, mode="dense", k=15)]
    c.merge(max_segments=1)
    assert c.stats()["segments"] == 1
    after_bm = [(h.id, h.score) for h in c.search(text="apple kilo", mode="bm25", k=15)]
    assert [a for a, _ in after_bm] == [a for a, _ in before_bm]
    np.testing.assert_allclose([s for _, s in after_bm], [s for _, s in before_bm], rtol=1e-6)
    assert [h.id for h in c.search(dense=q, mode="dense", k=15)] == before_de
    c.close()
    again = Collection.open(tmp_path / "m")
    assert len(again) == 100 and again.stats()["segments"] == 1


def test_background_merge_bounds_segments(tmp_path: Path) -> None:
    c = Collection.create(tmp_path / "bg", dense_dim=8, analyzer=en(), max_segments=4)
    for b in range(12):
        c.add(make_records(5, seed=b, start=5 * b))
        if b == 6:
            c.delete(["d3", "d31"])
    c.wait_for_merges()
    c.merge(max_segments=4)
    assert c.stats()["segments"] <= 4
    assert len(c) == 58 and "d3" not in c and "d31" not in c
    assert sorted(c.ids()) == sorted(f"d{i}" for i in range(60) if i not in (3, 31))


# ---------------------------------------------------------------- persistence
def test_reopen_equals(coll: Collection, tmp_path: Path) -> None:
    coll.delete(["d1"])
    q = np.random.default_rng(2).standard_normal(8).astype(np.float32)
    want = [(h.id, h.score) for h in coll.search(text="apple", dense=q, k=10)]
    coll.close()
    for mmap in (True, False):
        c = Collection.open(tmp_path / "c", mmap=mmap, readonly=True)
        assert len(c) == 119 and "d1" not in c
        assert [(h.id, h.score) for h in c.search(text="apple", dense=q, k=10)] == want
        with pytest.raises(PermissionError):
            c.add([{"id": "z", "text": "z"}])


def test_corrupt_or_foreign_directory(coll: Collection, tmp_path: Path) -> None:
    coll.close()
    path = tmp_path / "c"
    seg = sorted((path / "segments").iterdir())[0]
    rec = seg / "records.dsr"
    data = rec.read_bytes()
    rec.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptIndexError, match="checksum"):
        Collection.open(path)
    rec.write_bytes(data)
    Collection.open(path, readonly=True)  # intact again
    idx = seg / "bm25.idx"
    raw = bytearray(idx.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    idx.write_bytes(bytes(raw))
    with pytest.raises(CorruptIndexError):
        Collection.open(path)
    with pytest.raises(FileNotFoundError):
        Collection.open(tmp_path / "nothing-here")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CorruptIndexError, match="not a densparse collection"):
        Collection.open(tmp_path / "foreign")
    (tmp_path / "foreign" / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match="unreadable"):
        Collection.open(tmp_path / "foreign")


_CRASH_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {python!r})
    import numpy as np
    from densparse import Analyzer, Collection
    from densparse.collection import store

    path, crash_after = sys.argv[1], int(sys.argv[2])
    c = Collection.open(path)
    real_write, calls = store.write_manifest, [0]

    def dying_write(dst, manifest):
        # Die in the middle of a save: the new segment files are written, the manifest
        # switch is next. SIGKILL: no cleanup, no atexit, like a power cut for this process.
        calls[0] += 1
        if calls[0] > crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(dst, manifest)

    store.write_manifest = dying_write
    for b in range(100):
        c.add([{{"id": f"x{{b}}-{{i}}", "text": f"crash test {{b}} {{i}}"}} for i in range(10)])
        print(len(c), flush=True)
        if b % 3 == 2:
            c.delete([f"x{{b}}-0"])
            print(len(c), flush=True)
    """
)


@pytest.mark.parametrize("crash_after", [0, 1, 4])
def test_killed_writer_keeps_last_commit(tmp_path: Path, crash_after: int) -> None:
    path = tmp_path / "crash"
    c = Collection.create(path, analyzer=en())
    c.add([{"id": "base", "text": "committed before the crash"}])
    c.close()
    script = tmp_path / "writer.py"
    script.write_text(_CRASH_WRITER.format(python=DENSPARSE_ROOT))
    proc = subprocess.run(
        [sys.executable, str(script), str(path), str(crash_after)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    committed = [int(x) for x in proc.stdout.split()]
    after = Collection.open(path)
    expected = committed[-1] if committed else 1
    assert len(after) == expected  # the last commit, complete; nothing lost
    assert after.get("base")["text"] == "committed before the crash"
    after.add([{"id": "after", "text": "the writer lock was released by the kill"}])
    assert len(after) == expected + 1
    # leftovers of the killed save were cleaned up by the next commit
    names = {p.name for p in (path / "segments").iterdir()}
    manifest = json.loads((path / "manifest.json").read_text())
    assert names == {s["name"] for s in manifest["segments"]}


def test_random_kills_never_lose_committed_state(tmp_path: Path) -> None:
    path = tmp_path / "rk"
    Collection.create(path, analyzer=en()).close()
    script = tmp_path / "writer.py"
    script.write_text(_CRASH_WRITER.format(python=DENSPARSE_ROOT))
    rng = np.random.default_rng(0)
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), "1000000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        seen: list[int] = []
        for _ in range(int(rng.integers(2, 12))):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(int(line))
        proc.kill()
        proc.wait()
        c = Collection.open(path, readonly=True)
        assert len(c) >= (seen[-1] if seen else 0)
        assert len(c) == len(c.ids())
        # the next writer starts over from the committed state
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {DENSPARSE_ROOT!r}); "
                f"from densparse import Collection; c = Collection.open({str(path)!r}); "
                "c.delete([i for i in c.ids() if i.startswith('x')]); c.close()",
            ],
            check=True,
        )


def test_second_writer_is_refused(coll: Collection, tmp_path: Path) -> None:
    code = (
        f"import sys; sys.path.insert(0, {DENSPARSE_ROOT!r}); "
        "from densparse import Collection; "
        f"c = Collection.open({str(tmp_path / 'c')!r}); "
        "c.add([{'id': 'other', 'text': 'x'}])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "another process is writing" in proc.stderr


# ---------------------------------------------------------------- concurrency
def test_searches_during_adds(tmp_path: Path) -> None:
    c = Collection.create(tmp_path / "cc", dense_dim=8, analyzer=en(), max_segments=3)
    c.add(make_records(30, seed=0))
    errors: list[BaseException] = []
    stop = threading.Event()
    q = np.random.default_rng(4).standard_normal(8).astype(np.float32)

    def reader() -> None:
        try:
            while not stop.is_set():
                n = len(c)
                hits = c.search(text="apple golf", dense=q, k=10)
                assert len(hits) == 10 and len({h.id for h in hits}) == 10
                assert len(c) >= n
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for b in range(1, 10):
        c.add(make_records(10, seed=b, start=1000 * b))
    stop.set()
    for t in threads:
        t.join()
    c.wait_for_merges()
    assert not errors, errors[0]
    assert len(c) == 120


# ---------------------------------------------------------------- bad input
def test_bad_records_and_queries(tmp_path: Path) -> None:
    c = Collection.create(tmp_path / "bad", dense_dim=4, analyzer=en())
    good = {"id": "a", "text": "hello", "dense": np.ones(4, np.float32)}
    cases = [
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], ValueError, "duplicate id"),
        ([{"id": "b", "dense": np.ones(5)}], ValueError, "dimension 5"),
        ([{"id": "b", "dense": [1.0, np.nan, 0, 0]}], ValueError, "NaN"),
        ([{"id": "b", "sparse": ([1, 2], [0.5, -1.0])}], ValueError, "negative"),
        ([{"id": "b", "sparse": {"x": 1.0}}], TypeError, "token ids"),
        ([{"id": 3, "text": "x"}], TypeError, "non-empty str"),
        ([{"id": "b", "txt": "x"}], ValueError, "unknown fields"),
        ([{"id": "b", "metadata": {"k": object()}}], TypeError, "JSON-like"),
        ("not a list", TypeError, "list of dicts"),
        ([], ValueError, "no records"),
    ]
    for recs, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            c.add(recs)
    assert len(c) == 0
    with pytest.raises(ValueError, match="empty"):
        c.search(text="hello")
    c.add([good])
    with pytest.raises(ValueError, match="dimension 4"):
        c.search(dense=np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        c.search(dense=np.array([np.inf, 0, 0, 0]))
    with pytest.raises(ValueError, match="k must be"):
        c.search(text="hello", k=0)
    with pytest.raises(ValueError, match="needs text"):
        c.search(dense=np.ones(4), mode="bm25")
    with pytest.raises(ValueError, match="nothing to search"):
        c.search()
    with pytest.raises(ValueError, match="mode"):
        c.search(text="x", mode="fuzzy")
    with pytest.raises(FileExistsError):
        Collection.create(tmp_path / "bad")
    nodense = Collection.create(tmp_path / "nd", analyzer=en())
    with pytest.raises(ValueError, match="no dense_dim"):
        nodense.add([good])
    assert len(c.search(text="hello", k=5)) == 1  # k larger than the collection


def test_chinese_collection_and_public_exports(tmp_path: Path) -> None:
    c = Collection.create(tmp_path / "zh", analyzer=Analyzer(language="zh"))
    c.add(
        [
            {"id": "1", "text": "房东不退押金怎么办", "metadata": {"type": "租房"}},
            {"id": "2", "text": "劳动合同解除的经济补偿", "metadata": {"type": "劳动"}},
        ]
    )
    assert c.search(text="押金", k=1)[0].id == "1"
    assert c.search(text="押金", k=2, filter={"type": "劳动"}) == []
    assert densparse.Collection is Collection
    assert os.path.exists(tmp_path / "zh" / "manifest.json")


def test_colbert_rescoring_joins_the_fusion(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    c = Collection.create(tmp_path / "cb", analyzer=en(), colbert_dim=6)
    recs = []
    for i, t in enumerate(make_texts(30, seed=4)):
        m = rng.standard_normal((int(rng.integers(1, 9)), 6)).astype(np.float32)
        recs.append(
            {
                "id": f"c{i}",
                "text": t,
                "colbert": m,
                "sparse": {
                    str(j): float(rng.random()) + 0.1 for j in rng.choice(20, 3, replace=False)
                },
            }
        )
    c.add(recs)
    qc = rng.standard_normal((4, 6)).astype(np.float32)
    qs = {"1": 0.7, "5": 0.4, "9": 1.0}  # FlagEmbedding lexical_weights: str token ids
    hits = c.search(text="apple", sparse=qs, colbert=qc, k=30, candidates=30)
    assert set(hits[0].scores) == {"bm25", "sparse", "colbert"}
    by_id = {r["id"]: r for r in recs}
    for h in hits:
        m = by_id[h.id]["colbert"].astype(np.float16).astype(np.float32)  # stored as float16
        want = float((qc @ m.T).max(axis=1).mean())
        assert h.scores["colbert"] == pytest.approx(want, rel=1e-5, abs=1e-6)
    got = c.get("c3")
    np.testing.assert_allclose(got["colbert"], recs[3]["colbert"], atol=1e-2)
    idx, val = got["sparse"]
    assert dict(zip(idx.tolist(), val.tolist())) == pytest.approx(
        {int(k): v for k, v in recs[3]["sparse"].items()}
    )


def test_real_data_scifact_segments_and_sparse_bm25_vectors(
    tmp_path: Path, scifact_corpus: list[dict]
) -> None:
    """On SciFact: a 3-segment Collection's BM25 route equals one BM25 index, and a
    SparseIndex over BM25 document vectors equals BM25 search."""
    from conftest import DATA, read_jsonl

    texts = [(d.get("title", "") + " " + d["text"]).strip() for d in scifact_corpus]
    queries = [q["text"] for q in read_jsonl(DATA / "scifact" / "queries.jsonl")][:60]
    ref = BM25(analyzer=en()).index(texts)
    c = Collection.create(tmp_path / "sf", analyzer=en(), auto_merge=False)
    third = len(texts) // 3 + 1
    for s in range(0, len(texts), third):
        c.add([{"id": str(i), "text": texts[i]} for i in range(s, min(s + third, len(texts)))])
    assert c.stats()["segments"] == 3
    sp = densparse.SparseIndex()
    sp.add(ref.encode_documents(texts))
    for q in queries:
        ids, scores = ref.search(q, k=10)
        hits = c.search(text=q, mode="bm25", k=10)
        assert [int(h.id) for h in hits] == ids[scores > 0].tolist()
        np.testing.assert_allclose([h.score for h in hits], scores[scores > 0], rtol=1e-5)
        sids, sscores = sp.search(ref.encode_queries([q])[0], k=10)
        np.testing.assert_allclose(sscores, scores, rtol=1e-5)
        assert sids.tolist() == ids.tolist()


def test_tiered_merge_policy_rewrites_each_document_a_logarithmic_number_of_times() -> None:
    from densparse.collection import merge_policy

    live: list[int] = []
    rewritten = 0
    most = 0
    for _ in range(2000):  # 2000 adds of 100 documents, each followed by the policy's merges
        live.append(100)
        while chosen := merge_policy.plan(live, live, max_segments=8):
            merged = sum(live[i] for i in chosen)
            rewritten += merged
            live = [x for i, x in enumerate(live) if i not in chosen] + [merged]
        most = max(most, len(live))
    n = sum(live)
    assert n == 200_000 and most <= 8
    levels = merge_policy.level(n) - merge_policy.level(100) + 1
    assert rewritten <= n * levels, (rewritten, n, levels)
    # "merge the smallest down to max_segments // 2" alone rewrites far more
    live, naive = [], 0
    for _ in range(2000):
        live.append(100)
        if len(live) > 8:
            live.sort()
            merged = sum(live[:5])
            naive += merged
            live = [*live[5:], merged]
    assert naive > 3 * rewritten
    # a mostly deleted segment is merged away at the next chance
    assert merge_policy.plan([10, 5000], [100, 5000], max_segments=8) == [0]
