"""DenseIndex and MaxSim: parity with numpy exhaustive search, masks, removal, persistence,
threads, and every kind of bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import densparse
from densparse import CorruptIndexError, DenseIndex, maxsim, maxsim_rerank

DTYPES = ["float32", "float16", "int8"]


def rand(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def np_topk(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int):
    """Exhaustive reference in float64: score desc, then id asc."""
    s = q.astype(np.float64) @ x.astype(np.float64).T
    out_ids, out_s = [], []
    for row in s:
        order = np.lexsort((ids, -row))[:k]
        out_ids.append(ids[order])
        out_s.append(row[order])
    return np.array(out_ids), np.array(out_s)


def dequant(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return x
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    scale = np.abs(x).max(axis=1, keepdims=True) / 127
    q = np.clip(np.round(x / np.where(scale == 0, 1, scale)), -127, 127)
    return (q * scale).astype(np.float32)


# ------------------------------------------------------------------ parity


@pytest.mark.parametrize("dim", [1, 7, 384])
@pytest.mark.parametrize("nq", [1, 3, 64])
def test_float32_exact_parity(dim, nq):
    x = rand(2000, dim, 1)
    q = rand(nq, dim, 2)
    ix = DenseIndex(dim)
    ids = ix.add(x)
    assert ids.dtype == np.int64 and (ids == np.arange(2000)).all()
    got_i, got_s = ix.search(q, k=10)
    want_i, want_s = np_topk(x, ids, q, 10)
    assert got_i.shape == (nq, 10) and got_i.dtype == np.int64 and got_s.dtype == np.float32
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
    if dim > 1:  # dim 1 has near-ties everywhere
        assert (got_i == want_i).all()


@pytest.mark.parametrize("nq", [1, 16])
def test_ties_broken_by_id(nq):
    # Small integers: every path computes exact scores, so ties are true ties.
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, size=(3000, 8)).astype(np.float32)
    ids = rng.permutation(10_000)[:3000]
    ix = DenseIndex(8)
    ix.add(x, ids=ids)
    q = rng.integers(-2, 3, size=(nq, 8)).astype(np.float32)
    got_i, got_s = ix.search(q, k=50)
    want_i, want_s = np_topk(x, ids, q, 50)
    assert (got_i == want_i).all()
    assert (got_s == want_s).all()


@pytest.mark.parametrize("dtype", ["float16", "int8"])
@pytest.mark.parametrize("nq", [1, 32])
def test_quantized_parity(dtype, nq):
    d = 96
    x = rand(3000, d, 4)
    q = rand(nq, d, 5)
    ix = DenseIndex(d, dtype=dtype)
    ids = ix.add(x)
    xd = ix.get(ids)  # the stored vectors, dequantised
    ref = dequant(x, dtype)
    if dtype == "float16":
        np.testing.assert_array_equal(xd, ref)
    else:  # numpy rounds half to even, Rust half away from zero: at most one step apart
        step = np.abs(x).max(axis=1, keepdims=True) / 127
        assert (np.abs(xd - ref) <= step * 1.001).all()
        assert (np.abs(xd - ref) > 1e-6).mean() < 1e-3
    got_i, got_s = ix.search(q, k=10)
    want_i, want_s = np_topk(xd, ids, q, 10)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-4, atol=1e-4)
    assert (got_i[:, :3] == want_i[:, :3]).all()
    # Bounded error against the float32 truth.
    true = q.astype(np.float64) @ x.T.astype(np.float64)
    approx = q.astype(np.float64) @ xd.T.astype(np.float64)
    if dtype == "float16":
        bound = (np.abs(q) @ np.abs(x).T) * 2.0**-11
    else:
        bound = np.abs(q).sum(axis=1, keepdims=True) * (np.abs(x).max(axis=1) / 254)[None, :]
    assert (np.abs(true - approx) <= bound + 1e-5).all()
    true_top = np.sort(true, axis=1)[:, ::-1][:, :10]
    assert np.abs(got_s - true_top).max() <= bound.max() * 2 + 1e-4


def test_cosine():
    d = 32
    x = rand(1000, d, 6) * np.random.default_rng(7).uniform(0.1, 10, size=(1000, 1)).astype(
        np.float32
    )
    q = rand(5, d, 8)
    ix = DenseIndex(d, metric="cosine")
    ids = ix.add(x)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    got_i, got_s = ix.search(q * 3, k=10)
    want_i, want_s = np_topk(xn, ids, qn, 10)
    assert (got_i == want_i).all()
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
    assert got_s.max() <= 1.0 + 1e-5
    np.testing.assert_allclose(ix.get([0, 1]), xn[:2], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="zeros"):
        ix.add(np.zeros(d))
    with pytest.raises(ValueError, match="zeros"):
        ix.search(np.zeros(d))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_equals_one_by_one(dtype):
    d = 64
    x = rand(5000, d, 9)
    q = rand(20, d, 10)
    ix = DenseIndex(d, dtype=dtype)
    ix.add(x)
    bi, bs = ix.search(q, k=10)
    for j in range(len(q)):
        oi, os_ = ix.search(q[j], k=10)
        assert oi.shape == (10,)
        np.testing.assert_allclose(bs[j], os_, rtol=1e-5, atol=1e-5)
        assert (bi[j][:5] == oi[:5]).all()
    ti, _ = ix.search(q, k=10, threads=1)
    assert (ti[:, :5] == bi[:, :5]).all()


def test_input_dtypes_and_k_larger_than_index():
    ix = DenseIndex(4)
    ix.add(np.eye(4, dtype=np.float64))
    ix.add(np.ones((1, 4), dtype=np.float16))
    ix.add([0.5, 0.5, 0.5, 0.5])
    assert len(ix) == 6
    ids, _ = ix.search(np.asfortranarray(np.eye(2, 4)), k=100)
    assert ids.shape == (2, 6)
    assert list(ids[0][:3]) == [0, 4, 5]  # 0 and 4 tie at 1.0: lower id first
    ids1, _ = ix.search([1, 0, 0, 0], k=1)
    assert list(ids1) == [0]


# ------------------------------------------------------------------ masks


@pytest.mark.parametrize("nq", [1, 8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_mask(nq, dtype):
    d = 16
    x = rand(3000, d, 11)
    q = rand(nq, d, 12)
    ix = DenseIndex(d, dtype=dtype)
    ids = ix.add(x)
    rng = np.random.default_rng(13)
    mask = rng.random(2500) < 0.1  # ids >= 2500 are never eligible
    got_i, got_s = ix.search(q, k=20, mask=mask)
    elig = np.flatnonzero(mask)
    assert np.isin(got_i, elig).all()
    _, want_s = np_topk(ix.get(ids)[elig], ids[elig], q, 20)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-4, atol=1e-4)
    # uint8 mask works the same; few eligible -> padding.
    m8 = np.zeros(3000, dtype=np.uint8)
    m8[[5, 2999]] = 7
    got_i, got_s = ix.search(q, k=4, mask=m8)
    assert sorted(got_i[0][:2]) == [5, 2999]
    assert (got_i[:, 2:] == -1).all() and np.isneginf(got_s[:, 2:]).all()
    # Nothing eligible.
    got_i, _ = ix.search(q, k=3, mask=np.zeros(0, dtype=bool))
    assert (got_i == -1).all()


# ------------------------------------------------------------------ remove / compact


@pytest.mark.parametrize("dtype", DTYPES)
def test_remove_compact_add(dtype):
    d = 24
    x = rand(1000, d, 14)
    ix = DenseIndex(d, dtype=dtype)
    ids = ix.add(x, ids=np.arange(1000) * 2)
    q = rand(6, d, 15)
    gone = ids[:100]
    ix.remove(gone)
    assert len(ix) == 900 and 0 not in ix and 200 in ix
    got_i, _ = ix.search(q, k=50)
    assert not np.isin(got_i, gone).any()
    live = ids[100:]
    want_i, _ = np_topk(ix.get(live), live, q, 50)
    assert (got_i[:, :10] == want_i[:, :10]).all()
    with pytest.raises(KeyError):
        ix.remove([0])
    with pytest.raises(KeyError):
        ix.get([0])
    with pytest.raises(KeyError):
        ix.remove([202, 3])  # 3 was never added: nothing is removed
    assert 202 in ix
    ix.remove(ids[100:400])  # passes the compaction share
    assert ix._core.n_removed == 0 and ix._core.rows == 600
    ix.compact()
    assert (ix.ids() == ids[400:]).all()
    new = ix.add(rand(3, d, 16))
    assert list(new) == [1999, 2000, 2001]  # after the largest id ever held (1998)
    ix.add(x[:1], ids=[0])  # a removed id can come back
    got_i, _ = ix.search(x[0], k=1)
    assert got_i[0] == 0


# ------------------------------------------------------------------ persistence


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_save_load(tmp_path, dtype, metric):
    d = 40
    ix = DenseIndex(d, dtype=dtype, metric=metric)
    ix.add(rand(700, d, 17), ids=np.arange(700) + 5)
    ix.remove([10, 11])
    q = rand(9, d, 18)
    want = ix.search(q, k=7)
    p = tmp_path / "x.dense"
    ix.save(p)
    for mmap in (True, False):
        lx = DenseIndex.load(p, mmap=mmap)
        assert (lx.dim, lx.dtype, lx.metric, len(lx)) == (d, dtype, metric, 698)
        got = lx.search(q, k=7)
        assert (got[0] == want[0]).all() and (got[1] == want[1]).all()
        assert (lx.ids() == ix.ids()).all()
        np.testing.assert_array_equal(lx.get([5, 704]), ix.get([5, 704]))
        # A loaded index is still mutable (copy on write when mapped).
        new = lx.add(rand(2, d, 19))
        assert list(new) == [705, 706]
        lx.remove([5])
        assert len(lx) == 699
    # Saving over a mapped file works too.
    m = DenseIndex.load(p)
    m.save(p)
    assert len(DenseIndex.load(p)) == 698


def test_corrupt_files(tmp_path):
    ix = DenseIndex(8)
    ix.add(rand(50, 8, 20))
    p = tmp_path / "x.dense"
    ix.save(p)
    data = p.read_bytes()
    bad = tmp_path / "bad.dense"
    bad.write_bytes(data[:-5])
    with pytest.raises(CorruptIndexError, match="truncated"):
        DenseIndex.load(bad)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(CorruptIndexError, match="checksum"):
        DenseIndex.load(bad, mmap=False)
    bad.write_bytes(b"not an index at all")
    with pytest.raises(CorruptIndexError):
        DenseIndex.load(bad)
    bm = densparse.BM25().index([["a", "b"], ["c"]])
    bm.save(tmp_path / "bm.idx")
    with pytest.raises(CorruptIndexError, match="not a"):
        DenseIndex.load(tmp_path / "bm.idx")
    with pytest.raises(FileNotFoundError):
        DenseIndex.load(tmp_path / "missing.dense")


# ------------------------------------------------------------------ threads


def test_threads_search_while_adding():
    d = 32
    base = rand(4000, d, 21)
    ix = DenseIndex(d)
    ix.add(base)
    q = rand(4, d, 22)
    want_i, want_s = ix.search(q, k=5)
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher():
        try:
            while not stop.is_set():
                i, s = ix.search(q, k=5)
                # New vectors are tiny: they never displace the original top 5.
                assert (i == want_i).all()
                np.testing.assert_allclose(s, want_s, rtol=1e-5)
                i1, _ = ix.search(q[0], k=5)
                assert (i1 == want_i[0]).all()
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=searcher) for _ in range(8)]
    for t in ts:
        t.start()
    for j in range(30):
        ix.add(rand(200, d, 100 + j) * 1e-3)
    stop.set()
    for t in ts:
        t.join()
    assert not errors, errors[0]
    assert len(ix) == 4000 + 30 * 200


# ------------------------------------------------------------------ maxsim


def np_maxsim(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    q64 = q.astype(np.float64)
    return np.array([(q64 @ p.T.astype(np.float64)).max(axis=1).mean() for p in docs])


def test_maxsim_reference():
    rng = np.random.default_rng(23)
    d = 128
    q = rand(32, d, 24)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    docs = [rand(int(n), d, 30 + i) for i, n in enumerate(rng.integers(1, 300, 40))]
    docs.append(rand(1, d, 99))  # a 1-row passage
    got = maxsim(q, docs)
    assert got.dtype == np.float32 and got.shape == (41,)
    np.testing.assert_allclose(got, np_maxsim(q, docs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(maxsim(q, docs, threads=1), got, rtol=1e-6)
    # Small shapes (the non-GEMM path) and float64 / float16 input.
    small = [rand(2, 3, 1), rand(1, 3, 2)]
    np.testing.assert_allclose(
        maxsim(rand(1, 3, 3).astype(np.float64), small),
        np_maxsim(rand(1, 3, 3), small),
        rtol=1e-5,
    )
    # Odd shapes: query rows and passage rows not multiples of 4, dim not a multiple of 16.
    q7 = rand(7, 33, 50)
    odd = [rand(n, 33, 60 + n) for n in (1, 2, 5, 9, 130)]
    np.testing.assert_allclose(maxsim(q7, odd), np_maxsim(q7, odd), rtol=1e-5, atol=1e-5)
    order, scores = maxsim_rerank(q, docs, k=5)
    ref = np_maxsim(q, docs)
    assert list(order) == list(np.lexsort((np.arange(len(ref)), -got))[:5])
    np.testing.assert_allclose(scores, ref[order], rtol=1e-5, atol=1e-5)
    assert order.dtype == np.int64
    # Ties go to the lower position.
    same = [docs[0], docs[0].copy(), docs[1]]
    order, _ = maxsim_rerank(q, same)
    assert list(order[:2]) in ([0, 1],) or list(order[1:]) == [0, 1]
    assert list(order).index(0) < list(order).index(1)
    assert len(maxsim(q, [])) == 0


def test_maxsim_bad_input():
    q = rand(4, 8, 1)
    with pytest.raises(ValueError, match="columns"):
        maxsim(q, [rand(3, 7, 2)])
    with pytest.raises(ValueError, match="no rows"):
        maxsim(q, [np.zeros((0, 8), dtype=np.float32)])
    with pytest.raises(ValueError):
        maxsim(np.zeros((0, 8), dtype=np.float32), [rand(3, 8, 2)])
    with pytest.raises(ValueError, match="2-D"):
        maxsim(q, [rand(3, 8, 2)[0]])
    bad = q.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        maxsim(bad, [rand(3, 8, 2)])
    with pytest.raises(ValueError, match="non-finite"):
        maxsim(q, [np.full((2, 8), np.inf, dtype=np.float32)])
    with pytest.raises(TypeError):
        maxsim(q, [np.array([["a"] * 8])])
    with pytest.raises(ValueError):
        maxsim_rerank(q, [rand(3, 8, 2)], k=0)


# ------------------------------------------------------------------ bad input


def test_bad_input():
    with pytest.raises(ValueError, match="dtype"):
        DenseIndex(4, dtype="float64")
    with pytest.raises(ValueError, match="metric"):
        DenseIndex(4, metric="l2")
    with pytest.raises(ValueError):
        DenseIndex(0)
    with pytest.raises(TypeError):
        DenseIndex("4")  # type: ignore[arg-type]
    ix = DenseIndex(4)
    with pytest.raises(ValueError, match="empty"):
        ix.search(np.ones(4))
    with pytest.raises(ValueError, match="dim=4"):
        ix.add(np.ones((2, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        ix.add(np.array([[1, 2, np.nan, 4]]))
    with pytest.raises(ValueError, match="non-finite"):
        ix.add(np.array([1, np.inf, 3, 4]))
    with pytest.raises(ValueError, match=">= 0"):
        ix.add(np.ones((1, 4)), ids=[-1])
    with pytest.raises(ValueError, match="twice"):
        ix.add(np.ones((2, 4)), ids=[3, 3])
    with pytest.raises(ValueError, match="ids for"):
        ix.add(np.ones((2, 4)), ids=[3])
    with pytest.raises(TypeError):
        ix.add(np.ones((2, 4)), ids=[1.5, 2.5])
    with pytest.raises(TypeError):
        ix.add(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(ValueError, match="3-D"):
        ix.add(np.ones((1, 1, 4)))
    assert len(ix) == 0  # nothing was added by the failed calls
    ix.add(np.ones((2, 4)), ids=[3, 7])
    with pytest.raises(ValueError, match="already"):
        ix.add(np.ones((1, 4)), ids=[7])
    with pytest.raises(ValueError, match="k must be"):
        ix.search(np.ones(4), k=0)
    with pytest.raises(TypeError):
        ix.search(np.ones(4), k=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim=4"):
        ix.search(np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        ix.search(np.array([np.nan, 1, 1, 1]))
    with pytest.raises(TypeError, match="mask"):
        ix.search(np.ones(4), mask=np.ones(8, dtype=np.int64))
    with pytest.raises(TypeError, match="mask"):
        ix.search(np.ones(4), mask=[True] * 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        ix.search(np.ones(4), mask=np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="threads"):
        ix.search(np.ones(4), threads=0)
    with pytest.raises(KeyError):
        ix.get([4])
    with pytest.raises(KeyError):
        ix.remove(99)
    with pytest.raises(ValueError, match=">= 0"):
        ix.remove([-3])
    h = DenseIndex(2, dtype="float16")
    with pytest.raises(ValueError, match="float16 range"):
        h.add(np.array([1e6, 0.0]))
    assert len(h) == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_float16_input(dtype, metric):
    x = rand(300, 12, 40).astype(np.float16)
    a, b = DenseIndex(12, dtype=dtype, metric=metric), DenseIndex(12, dtype=dtype, metric=metric)
    a.add(x)
    b.add(x.astype(np.float32))
    np.testing.assert_array_equal(a.get(np.arange(300)), b.get(np.arange(300)))
    bad = x.copy()
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        a.add(bad)
    with pytest.raises(ValueError, match="dim=12"):
        a.add(np.ones((2, 5), dtype=np.float16))
    assert len(a) == 300
