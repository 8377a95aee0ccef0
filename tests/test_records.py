"""The Rust record store and filters: round trips equal what was added, filters equal the
Python FilterEvaluator (the reference semantics) on random metadata and random specs,
unfaithful values are refused, damaged files never panic."""

from __future__ import annotations

import json
import math
import random
import zlib
from pathlib import Path

import numpy as np
import pytest

from densparse import CorruptIndexError, _core
from densparse.collection.filters import FilterEvaluator, validate


def build(records: list[dict]) -> _core.RecordStore:
    w = _core.RecordStoreWriter()
    for r in records:
        w.add(r["id"], r.get("text", ""), r.get("views"), r.get("metadata"), r.get("sparse"))
    return w.finish()


RECORDS = [
    {
        "id": "a",
        "text": "first text",
        "metadata": {"year": 2020, "lang": "en", "score": 2.0, "tags": ["x", "y"]},
        "sparse": (np.array([3, 1], np.int64), np.array([0.5, 2.0], np.float32)),
    },
    {
        "id": "b-二",
        "text": "二零二零",
        "views": ["view one", "view two"],
        "metadata": {"z": None, "meta": {"author": "Li", "n": [1, "a", [2]]}, "big": -(2**63)},
    },
    {"id": "c", "text": "", "views": [""], "sparse": ([], [])},
    {"id": "d", "text": "dd", "metadata": {"a.b": 1, "ok": True, "e": 1e300, "f": -0.0}},
]


@pytest.mark.parametrize("mmap", [True, False])
def test_round_trip(tmp_path: Path, mmap: bool) -> None:
    mem = build(RECORDS)
    mem.save(tmp_path / "r.dsr")
    s = _core.RecordStore.open(tmp_path / "r.dsr", mmap=mmap)
    s.verify()
    size, crc = _core.file_digest(tmp_path / "r.dsr")
    data = (tmp_path / "r.dsr").read_bytes()
    assert (size, crc) == (len(data), zlib.crc32(data))
    for store in (mem, s):
        assert len(store) == store.n_docs == 4
        assert store.ids() == [r["id"] for r in RECORDS]
        assert store.texts(np.array([3, 0], np.int64)) == ["dd", "first text"]
        assert store.view_counts().tolist() == [0, 2, 1, 0]
        assert store.n_views_total == 3
        for d, r in enumerate(RECORDS):
            assert store.id(d) == r["id"] and store.doc_of(r["id"]) == d
            assert store.text(d) == r["text"]
            assert store.views(d) == r.get("views", [])
            meta = store.metadata(d)
            want = r.get("metadata", {})
            # equal, in the same key order, with the same int / float kinds
            assert json.dumps(meta) == json.dumps(want)
            assert [type(v) for v in meta.values()] == [type(v) for v in want.values()]
            meta["new"] = 1  # a fresh dict each call
            assert "new" not in store.metadata(d)
            sp = store.sparse(d)
            if "sparse" not in r:
                assert sp is None
            else:
                assert sp[0].dtype == np.int64 and sp[1].dtype == np.float32
                assert sp[0].tolist() == list(r["sparse"][0])
                assert sp[1].tolist() == list(r["sparse"][1])
        assert store.doc_of("zz") is None
        assert store.docs_of(["d", "zz", "a"]).tolist() == [3, -1, 0]
        assert store.field_names() == [
            "big", "e", "f", "lang", "meta", "meta.author", "meta.n", "ok", "score", "tags",
            "year", "z",
        ]  # fmt: skip
        with pytest.raises(IndexError):
            store.text(4)
        with pytest.raises(IndexError):
            store.id(-1)


def test_id_lookup_at_scale() -> None:
    ids = [f"doc-{i}-{'x' * (i % 7)}" for i in range(20_000)]
    w = _core.RecordStoreWriter()
    for i in ids:
        w.add(i)
    s = w.finish()
    order = np.random.default_rng(0).permutation(len(ids))
    got = s.docs_of([ids[i] for i in order])
    assert got.tolist() == order.tolist()
    assert s.docs_of(["doc-1", "", "doc-20000-"]).tolist() == [-1, -1, -1]


@pytest.mark.parametrize(
    "meta, field",
    [
        ({"n": 2**63}, "n"),
        ({"a": {"b": [1, -(2**63) - 1]}}, "a.b"),
        ({"x": float("nan")}, "x"),
        ({"x": {"y": float("inf")}}, "x.y"),
    ],
)
def test_refuses_unfaithful_values(meta: dict, field: str) -> None:
    w = _core.RecordStoreWriter()
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        w.add("a", metadata=meta)
    assert len(w) == 0  # nothing half-added


def test_bad_input() -> None:
    w = _core.RecordStoreWriter()
    with pytest.raises(TypeError, match="JSON-like"):
        w.add("a", metadata={"k": object()})
    with pytest.raises(TypeError, match="keys must be str"):
        w.add("a", metadata={1: "x"})
    with pytest.raises(ValueError, match="non-empty"):
        w.add("")
    with pytest.raises(UnicodeEncodeError):
        w.add("\ud800")
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        w.add("a", sparse=([-1], [1.0]))
    w.add("a")
    w.add("a")
    with pytest.raises(ValueError, match="duplicate id"):
        w.finish()
    with pytest.raises(ValueError, match="finished"):
        w.add("b")


# ---------------------------------------------------------------- filters vs Python
KEYS = ["a", "b", "c", "tags", "n"]
STRS = ["x", "y", "z", ""]


def rand_scalar(rng: random.Random):
    return rng.choice(
        [
            lambda: rng.randint(-3, 3),
            lambda: float(rng.randint(-3, 3)),
            lambda: rng.choice([0.5, -1.5, 2.25]),
            lambda: rng.choice([True, False]),
            lambda: rng.choice(STRS),
            lambda: None,
        ]
    )()


def rand_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if r < 0.55:
        return rand_scalar(rng)
    if r < 0.7:
        return [rng.choice(STRS) for _ in range(rng.randint(0, 3))]
    if r < 0.85:
        return [rand_scalar(rng) if rng.random() < 0.8 else [1] for _ in range(rng.randint(0, 3))]
    if depth < 2:
        return rand_meta(rng, depth + 1)
    return rand_scalar(rng)


def rand_meta(rng: random.Random, depth: int = 0) -> dict:
    out = {}
    for k in rng.sample(KEYS, rng.randint(0, len(KEYS))):
        out[k] = rand_value(rng, depth)
    if rng.random() < 0.1:
        out["a.b"] = rand_scalar(rng)  # unreachable by a path: never matches "a.b"
    return out


def rand_path(rng: random.Random) -> str:
    return ".".join(rng.choice(KEYS) for _ in range(rng.choice([1, 1, 1, 1, 1, 2, 3])))


def rand_filter(rng: random.Random, depth: int = 0) -> dict:
    r = rng.random()
    if depth < 3 and r < 0.25:
        op = rng.choice(["$and", "$or"])
        return {op: [rand_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 3 and r < 0.35:
        return {"$not": rand_filter(rng, depth + 1)}
    out: dict = {}
    for _ in range(rng.randint(1, 2)):
        path = rand_path(rng)
        kind = rng.random()
        if kind < 0.3:
            out[path] = rand_scalar(rng)
            continue
        ops: dict = {}
        for _ in range(rng.randint(1, 2)):
            op = rng.choice(["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"])
            if op in ("$eq", "$ne"):
                ops[op] = rand_scalar(rng)
            elif op in ("$in", "$nin"):
                ops[op] = [rand_scalar(rng) for _ in range(rng.randint(0, 4))]
            elif op == "$exists":
                ops[op] = rng.random() < 0.5
            else:
                ops[op] = rng.choice([rng.randint(-3, 3), rng.uniform(-3, 3), 0.5, 2**70])
        out[path] = ops
    return out


def test_filters_equal_python_evaluator() -> None:
    rng = random.Random(1234)
    cases = 0
    for trial in range(12):
        n = rng.choice([1, 7, 64, 130])
        metas = [json.loads(json.dumps(rand_meta(rng))) for _ in range(n)]
        store = build([{"id": str(i), "metadata": m} for i, m in enumerate(metas)])
        ref = FilterEvaluator(metas)
        for _ in range(300):
            spec = rand_filter(rng)
            want = ref.mask(spec)
            got = store.filter(spec)
            assert got.dtype == np.bool_ and got.shape == (n,)
            if not np.array_equal(got, want):
                bad = int(np.flatnonzero(got != want)[0])
                raise AssertionError(
                    f"trial {trial}: {spec} on {metas[bad]!r}: rust {got[bad]}, python {want[bad]}"
                )
            cases += 1
    assert cases == 3600


def test_nan_and_huge_filter_values() -> None:
    metas = [{"x": 1.5}, {"x": 2**62}, {"x": [1.5, "a"]}, {}]
    store = build([{"id": str(i), "metadata": m} for i, m in enumerate(metas)])
    ref = FilterEvaluator(metas)
    nan = float("nan")
    for spec in (
        {"x": nan},
        {"x": {"$ne": nan}},
        {"x": {"$in": [nan, 1.5]}},
        {"x": 2**62},
        {"x": {"$gte": 2**62}},
        {"x": {"$lt": 2**80}},
        {"x": {"$in": (1.5,)}},
        {"x": {"$nin": {1.5}}},
    ):
        assert store.filter(spec).tolist() == ref.mask(spec).tolist(), spec


@pytest.mark.parametrize(
    "spec",
    [
        {"year": {"$between": [1, 2]}},
        {"year": {"$gt": "2001"}},
        {"year": {"$gt": True}},
        {"$xor": []},
        {"$and": []},
        {"$or": {"a": 1}},
        [("year", 1)],
        {"x": [1, 2]},
        {"x": {"a": 1}},
        {"x": {"$in": "abc"}},
        {"x": {"$in": [[1]]}},
        {"x": {"$eq": {"a": 1}}},
        {"x": {"$exists": 1}},
        {"x": {"$eq": 1, "y": 2}},
        {"x": object()},
        {"$not": [1]},
    ],
)
def test_bad_specs_raise_as_python(spec) -> None:
    with pytest.raises((TypeError, ValueError)) as ref:
        validate(spec)
    store = build([{"id": "a", "metadata": {"x": 1}}])
    with pytest.raises(type(ref.value)) as got:
        store.filter(spec)
    with pytest.raises(type(ref.value)):
        _core.validate_filter(spec)
    if "unknown" in str(ref.value) or "needs" in str(ref.value):
        assert str(got.value) == str(ref.value)


def test_damaged_files_raise_corrupt_never_panic(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    recs = [
        {"id": f"d{i}", "text": f"text {i}", "metadata": {"n": i, "t": ["a", str(i % 3)]}}
        for i in range(40)
    ]
    build(recs).save(tmp_path / "good.dsr")
    good = (tmp_path / "good.dsr").read_bytes()
    p = tmp_path / "bad.dsr"
    outcomes = {"open": 0, "read": 0, "ok": 0}
    for trial in range(400):
        data = bytearray(good)
        if trial % 4 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] ^= int(rng.integers(1, 256))
        p.write_bytes(bytes(data))
        try:
            s = _core.RecordStore.open(p)
        except CorruptIndexError:
            outcomes["open"] += 1
            continue
        try:
            for d in range(len(s)):
                s.id(d), s.text(d), s.views(d), s.metadata(d), s.sparse(d)
            s.docs_of([r["id"] for r in recs])
            s.filter({"$or": [{"n": {"$gte": 10}}, {"t": "a"}, {"m": {"$exists": True}}]})
            outcomes["ok"] += 1
        except (CorruptIndexError, IndexError):
            outcomes["read"] += 1
        if len(data) == len(good) and (data[32:36] != good[32:36] or data[40:] != good[40:]):
            with pytest.raises(CorruptIndexError):
                s.verify()  # the header's CRC covers all but the header
    assert outcomes["open"] > 0 and outcomes["read"] + outcomes["ok"] > 0


def test_filter_on_large_store_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    n = 50_000
    bucket = rng.integers(0, 10, n)
    year = rng.integers(1990, 2025, n)
    w = _core.RecordStoreWriter()
    for i in range(n):
        w.add(str(i), metadata={"bucket": int(bucket[i]), "year": int(year[i])})
    s = w.finish()
    got = s.filter({"bucket": {"$in": [1, 2, 3]}, "year": {"$gte": 2010}})
    want = np.isin(bucket, [1, 2, 3]) & (year >= 2010)
    assert np.array_equal(got, want)
    assert math.isclose(got.mean(), want.mean())


# ---------------------------------------------------------------- in a Collection
def _v1_collection(path: Path) -> tuple[list, dict]:
    """A collection in today's format, its answers, then rewritten as format version 1
    (records.jsonl segments, a version-1 manifest)."""
    from densparse import Analyzer, Collection
    from densparse.collection import store

    rng = np.random.default_rng(0)
    c = Collection.create(path, dense_dim=4, analyzer=Analyzer(language="en"))
    for b in range(2):
        recs = []
        for i in range(20 * b, 20 * b + 20):
            r = {
                "id": f"d{i}",
                "text": f"apple {'golf ' * (i % 3)}kilo {i}",
                "dense": rng.standard_normal(4).astype(np.float32),
                "metadata": {"n": i, "x": i / 4, "tags": ["a", str(i % 3)], "m": {"k": i % 2}},
            }
            if i % 4 == 0:
                r["views"] = [f"view {i} golf"]
            if i % 3 == 0:
                r["sparse"] = ([1, 2 + i % 5], [0.5, 1.0])
            recs.append(r)
        c.add(recs)
    c.delete(["d3", "d25"])
    q = {"text": "golf kilo", "dense": np.ones(4, np.float32), "k": 30}
    flt = {"$or": [{"tags": "1"}, {"x": {"$gte": 7}}], "m.k": 0}
    want = [
        [(h.id, round(h.score, 5), h.text, h.metadata) for h in c.search(**q)],
        [(h.id, round(h.score, 5)) for h in c.search(**q, filter=flt)],
        [(h.id, round(h.score, 5)) for h in c.search(sparse=([2, 3], [1.0, 1.0]), k=30)],
    ]
    got = {i: c.get(i) for i in c.ids()}
    c.close()
    m = json.loads((path / "manifest.json").read_text())
    m["version"] = 1
    del m["checksum"]
    for s in m["segments"]:
        seg = path / "segments" / s["name"]
        rs = _core.RecordStore.open(seg / "records.dsr")
        with open(seg / "records.jsonl", "w", encoding="utf-8") as f:
            for d in range(len(rs)):
                line: dict = {"id": rs.id(d), "text": rs.text(d)}
                if rs.views(d):
                    line["views"] = rs.views(d)
                if rs.metadata(d):
                    line["metadata"] = rs.metadata(d)
                sp = rs.sparse(d)
                if sp is not None:
                    line["sparse"] = [sp[0].tolist(), sp[1].tolist()]
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        del rs
        (seg / "records.dsr").unlink()
        s["files"] = {"records.jsonl": store.file_digest(seg / "records.jsonl")}
    (path / "manifest.json").write_text(json.dumps(m))
    import shutil

    shutil.rmtree(path / "generations")
    return want, got


def test_version_1_segments_still_open(tmp_path: Path) -> None:
    from densparse import Collection

    want, got = _v1_collection(tmp_path / "c")
    c = Collection.open(tmp_path / "c", readonly=True)
    q = {"text": "golf kilo", "dense": np.ones(4, np.float32), "k": 30}
    flt = {"$or": [{"tags": "1"}, {"x": {"$gte": 7}}], "m.k": 0}
    assert [
        [(h.id, round(h.score, 5), h.text, h.metadata) for h in c.search(**q)],
        [(h.id, round(h.score, 5)) for h in c.search(**q, filter=flt)],
        [(h.id, round(h.score, 5)) for h in c.search(sparse=([2, 3], [1.0, 1.0]), k=30)],
    ] == want
    assert sorted(c.ids()) == sorted(got)
    for i, g in got.items():
        r = c.get(i)
        assert json.dumps(r["metadata"]) == json.dumps(g["metadata"])
        assert r["text"] == g["text"] and r.get("views") == g.get("views")
        assert ("sparse" in r) == ("sparse" in g)
        if "sparse" in r:
            assert r["sparse"][0].tolist() == g["sparse"][0].tolist()
    c.close()
    # a writer on the old collection adds format-2 segments beside the old ones
    c = Collection.open(tmp_path / "c", auto_merge=False)
    c.add([{"id": "new", "text": "golf golf", "metadata": {"n": -1}}])
    c.merge(max_segments=1)
    assert c.search(text="golf", k=1, filter={"n": -1})[0].id == "new"
    assert c.get("d0")["metadata"] == got["d0"]["metadata"]
    c.close()
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["version"] == 2 and len(m["segments"]) == 1
    assert "records.dsr" in m["segments"][0]["files"]


def test_collection_get_and_hits_read_the_store(tmp_path: Path) -> None:
    from densparse import Analyzer, Collection

    c = Collection.create(tmp_path / "c", analyzer=Analyzer(language="en"))
    with pytest.raises(ValueError, match=r"metadata.*big"):
        c.add([{"id": "a", "metadata": {"big": 2**64}}])
    with pytest.raises((ValueError, TypeError)):
        c.add([{"id": "a", "metadata": {"x": float("nan")}}])
    meta = {"z": 1, "a": 2.0, "m": {"b": [1, "x", None]}, "t": True}
    c.add([{"id": "a", "text": "apple pie", "metadata": meta}])
    got = c.get("a")["metadata"]
    assert json.dumps(got) == json.dumps(meta) and type(got["a"]) is float
    assert c.search(text="apple", k=1, filter={"m.b": "x"})[0].metadata == meta
    assert c.search(text="apple", k=1, filter={"m.b": 2}) == []
    c.close()


def test_filters_from_threads_and_mappings() -> None:
    """The store is shared by threads (filters run without the GIL) and any Mapping is a
    filter spec."""
    import threading
    from types import MappingProxyType

    rng = np.random.default_rng(5)
    n = 20_000
    tag = rng.integers(0, 50, n)
    w = _core.RecordStoreWriter()
    for i in range(n):
        w.add(str(i), metadata={"t": f"k{tag[i]}", "i": i})
    s = w.finish()
    specs = [{"t": {"$in": [f"k{j}", f"k{j + 1}"]}, "i": {"$lt": 15_000}} for j in range(40)]
    want = [np.isin(tag, [j, j + 1]) & (np.arange(n) < 15_000) for j in range(40)]
    errors: list = []

    def work(offset: int) -> None:
        for j in range(40):
            jj = (j + offset) % 40
            if not np.array_equal(s.filter(specs[jj]), want[jj]):
                errors.append(jj)

    threads = [threading.Thread(target=work, args=(o,)) for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    spec = MappingProxyType({"t": MappingProxyType({"$eq": "k3"})})
    assert np.array_equal(s.filter(spec), tag == 3)


def test_committed_segments_read_their_file(tmp_path: Path) -> None:
    """After a commit, a writer's new segment reads its records from the mapped file (the
    in-memory copy is dropped), and answers stay the same."""
    from densparse import Analyzer, Collection

    c = Collection.create(tmp_path / "c", analyzer=Analyzer(language="en"), autocommit=False)
    c.add([{"id": f"d{i}", "text": f"apple {i}", "metadata": {"i": i}} for i in range(50)])
    seg = c._parts[0].seg
    mem = seg.records
    before = [
        (h.id, h.score, h.metadata) for h in c.search(text="apple", k=5, filter={"i": {"$lt": 9}})
    ]
    c.commit()
    assert seg.records is not mem and seg.records.n_docs == 50
    after = [
        (h.id, h.score, h.metadata) for h in c.search(text="apple", k=5, filter={"i": {"$lt": 9}})
    ]
    assert after == before and c.get("d7")["metadata"] == {"i": 7}
    c.close()
