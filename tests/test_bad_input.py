"""Inputs that used to be accepted and break later, or fail with the wrong exception: each is
refused at the door with a clear ValueError / TypeError (or, for sizes that only ask for
"everything", clipped and answered correctly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from densparse import BM25, Analyzer, Collection, fuse


@pytest.fixture(scope="module")
def bm() -> BM25:
    return BM25(analyzer=Analyzer(language="en")).index(["apple pie", "apple tart", "pear"])


@pytest.fixture
def coll(tmp_path: Path) -> Collection:
    c = Collection.create(
        tmp_path / "c", dense_dim=4, analyzer=Analyzer(language="en"), colbert_dim=2
    )
    c.add([{"id": "a", "text": "apple pie", "dense": np.ones(4)}])
    return c


CASES = [
    # (what, call(bm, coll), exception, message)
    ("BM25 threads=-1", lambda bm, c: bm.search(["apple"], threads=-1), ValueError, "threads"),
    ("BM25 threads=0", lambda bm, c: bm.search(["apple"], threads=0), ValueError, "threads"),
    ("BM25 threads='2'", lambda bm, c: bm.search(["apple"], threads="2"), TypeError, "threads"),
    ("BM25 k=0", lambda bm, c: bm.search(["apple"], k=0), ValueError, "k"),
    ("keywords k=0", lambda bm, c: Analyzer(language="en").keywords("a b", k=0), ValueError, "k"),
    ("keywords k=-1", lambda bm, c: Analyzer(language="en").keywords("a b", k=-1), ValueError, "k"),
    (
        "create k1=nan",
        lambda bm, c: Collection.create(c.path.parent / "x1", k1=float("nan")),
        ValueError,
        "k1",
    ),
    ("create b=5", lambda bm, c: Collection.create(c.path.parent / "x2", b=5), ValueError, "b"),
    (
        "create delta=-1",
        lambda bm, c: Collection.create(c.path.parent / "x3", delta=-1),
        ValueError,
        "delta",
    ),
    ("views='abc'", lambda bm, c: c.add([{"id": "v", "views": "abc"}]), TypeError, "views"),
    (
        "metadata 10**400",
        lambda bm, c: c.add([{"id": "m", "metadata": {"n": 10**400}}]),
        ValueError,
        "64 bits",
    ),
    (
        "metadata -2**63-1",
        lambda bm, c: c.add([{"id": "m", "metadata": {"x": [-(2**63) - 1]}}]),
        ValueError,
        "64 bits",
    ),
    (
        "colbert 1e6",
        lambda bm, c: c.add([{"id": "cb", "colbert": [[1e6, 0.0]]}]),
        ValueError,
        "float16",
    ),
    ("id lone surrogate", lambda bm, c: c.add([{"id": "\ud800"}]), ValueError, "surrogate"),
    (
        "candidates=-5",
        lambda bm, c: c.search(text="apple", candidates=-5),
        ValueError,
        "candidates",
    ),
    (
        "candidates=1.5",
        lambda bm, c: c.search(text="apple", candidates=1.5),
        TypeError,
        "candidates",
    ),
    ("rrf_k=0", lambda bm, c: c.search(text="apple", rrf_k=0), ValueError, "rrf_k"),
    ("merge max_segments=0", lambda bm, c: c.merge(max_segments=0), ValueError, "max_segments"),
]


@pytest.mark.parametrize("what, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_refused_at_the_door(bm, coll, what, call, exc, match) -> None:
    before = sorted(coll.ids())
    with pytest.raises(exc, match=match):
        call(bm, coll)
    assert sorted(coll.ids()) == before  # nothing changed


def test_sparse_automatic_ids_do_not_wrap() -> None:
    from densparse import SparseIndex

    ix = SparseIndex()
    ix.add([([1], [1.0])], ids=np.array([2**63 - 1]))
    with pytest.raises(ValueError, match="2\\*\\*63 - 1"):
        ix.add([([1], [1.0])])
    assert len(ix) == 1


def test_huge_sizes_mean_everything(bm, coll) -> None:
    ids, _ = bm.search("apple", k=2**64)  # k' = min(k, N)
    assert len(ids) == 3 and sorted(ids[:2].tolist()) == [0, 1]
    assert [h.id for h in coll.search(text="apple", k=2**64, candidates=2**70)] == ["a"]
    got = bm.search([["apple"]], k=3, threads=10_000)
    np.testing.assert_array_equal(got[0], bm.search([["apple"]], k=3, threads=1)[0])
    assert fuse([([1, 2], [0.5, 0.4])], top_k=2**64).ids.tolist() == [1, 2]


def test_internal_error_is_an_ordinary_exception() -> None:
    # A Rust panic surfaces as InternalError (rust/python/src/guard.rs), which `except
    # Exception` catches, unlike PyO3's PanicException (a BaseException).
    import densparse

    assert "InternalError" in densparse.__all__
    assert issubclass(densparse.InternalError, RuntimeError)
    assert issubclass(densparse.InternalError, Exception)
    assert "bug" in (densparse.InternalError.__doc__ or "")
