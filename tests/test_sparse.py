"""densparse.SparseIndex against scipy/numpy exhaustive references."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import densparse
from densparse import CorruptIndexError, SparseIndex

sp = pytest.importorskip("scipy.sparse")

DTYPES = ["float32", "float16", "uint8"]
# Search strategies (same results): "maxscore" forces block-max MaxScore on every segment,
# "auto" lets small segments (all of these tests' indexes) go term at a time.
STRATEGIES = ["maxscore", "auto"]


def set_strategy(ix: SparseIndex, strategy: str) -> SparseIndex:
    ix._idx._set_dense_rows(0 if strategy == "maxscore" else 1 << 16)
    return ix


# --------------------------------------------------------------------------- helpers
def zipf_csr(n, vocab, mean_nnz, seed, dyadic=False):
    """Random CSR (float32) with Zipfian term ids, unique per row, positive weights."""
    rng = np.random.default_rng(seed)
    lens = rng.poisson(mean_nnz, n).clip(0, None)
    total = int(lens.sum())
    u = rng.random(total)
    terms = (np.exp(u * np.log(vocab + 1.0)) - 1.0).astype(np.int64).clip(0, vocab - 1)
    doc = np.repeat(np.arange(n, dtype=np.int64), lens)
    keys = np.sort(doc * vocab + terms)
    keys = keys[np.concatenate([[True], np.diff(keys) != 0])] if keys.size else keys
    doc, terms = keys // vocab, keys % vocab
    if dyadic:
        w = rng.integers(1, 5, keys.size).astype(np.float32) / 8
    else:
        w = (0.05 + rng.lognormal(0, 0.7, keys.size)).astype(np.float32)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(doc, minlength=n), out=indptr[1:])
    return sp.csr_matrix((w, terms.astype(np.int32), indptr), shape=(n, vocab))


def stored_matrix(ix: SparseIndex, ids, vocab):
    """The index's stored (dequantised) weights as CSR rows in the order of ``ids``."""
    rows = ix.get(ids)
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(t) for t, _ in rows], out=indptr[1:])
    ind = np.concatenate([t for t, _ in rows]) if rows else np.zeros(0, np.int64)
    val = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((val, ind, indptr), shape=(len(rows), vocab))


def reference(X, doc_ids, Q, k, mask=None):
    """Exhaustive top-k: scores in float64 rounded to float32, order (score desc, id asc),
    unmatched eligible documents with score 0 by id, padding -1 / -inf."""
    doc_ids = np.asarray(doc_ids, np.int64)
    S = np.asarray((X.astype(np.float64) @ Q.astype(np.float64).T).todense()).T.astype(np.float32)
    eligible = np.ones(len(doc_ids), bool)
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        if len(m) == 0:
            eligible[:] = False
        else:
            eligible = (doc_ids < len(m)) & m[np.minimum(doc_ids, len(m) - 1)]
    kk = min(k, len(doc_ids))
    out_ids = np.full((Q.shape[0], kk), -1, np.int64)
    out_sc = np.full((Q.shape[0], kk), -np.inf, np.float32)
    for qi in range(Q.shape[0]):
        s = S[qi][eligible]
        d = doc_ids[eligible]
        order = np.lexsort((d, -s))[:kk]
        out_ids[qi, : len(order)] = d[order]
        out_sc[qi, : len(order)] = s[order]
    return out_ids, out_sc, S


def assert_topk(ids, scores, ref_ids, ref_scores, S_by_id=None, exact_ids=True):
    assert ids.shape == ref_ids.shape and scores.shape == ref_scores.shape
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    if exact_ids:
        np.testing.assert_array_equal(ids, ref_ids)
    else:
        # Ties within float noise may order differently: check the scores of the ids.
        for qi in range(ids.shape[0]):
            ok = ids[qi] >= 0
            want = S_by_id(qi, ids[qi][ok])
            np.testing.assert_allclose(scores[qi][ok], want, rtol=1e-5, atol=1e-6)
            assert len(set(ids[qi][ok].tolist())) == ok.sum()


def build(X, dtype="float32", **kw):
    ix = SparseIndex(dtype=dtype, **kw)
    ix.add(X)
    return ix


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_parity_with_scipy_on_stored_weights(dtype, strategy):
    V = 3000
    X = zipf_csr(4000, V, 40, seed=1)
    Q = zipf_csr(60, V, 25, seed=2)
    ix = set_strategy(build(X, dtype), strategy)
    assert len(ix) == 4000 and ix.dtype == dtype
    ids_all = np.arange(4000)
    Xs = stored_matrix(ix, ids_all, V)
    for k in (1, 10, 100):
        ids, scores = ix.search(Q, k=k)
        r_ids, r_sc, S = reference(Xs, ids_all, Q, k)
        assert_topk(ids, scores, r_ids, r_sc, lambda qi, d, S=S: S[qi][d], exact_ids=False)
        # Ids agree exactly but for (rare) near-ties within float rounding.
        assert (ids == r_ids).mean() > 0.98


@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_quantisation_error_bound_vs_float32(dtype):
    V = 2000
    X = zipf_csr(2000, V, 30, seed=3)
    ix = build(X, dtype)
    Xs = stored_matrix(ix, np.arange(2000), V).tocsr()
    Xc, Sc = X.tocsc(), Xs.tocsc()
    if dtype == "float16":
        Xd = X.toarray().astype(np.float64)
        Sd = Xs.toarray().astype(np.float64)
        err = np.abs(Sd - Xd)
        nz = Xd > 0
        assert np.all(err[nz] <= 2.0**-11 * Xd[nz] + 2.0**-25)
        np.testing.assert_array_equal(
            Sd[nz & (Sd > 0)], X.toarray()[nz & (Sd > 0)].astype(np.float16).astype(np.float64)
        )
    else:
        for t in range(V):
            a = Xc.data[Xc.indptr[t] : Xc.indptr[t + 1]].astype(np.float64)
            if a.size == 0:
                continue
            scale = np.float32(a.max()) / np.float32(255)
            dense_true = np.zeros(2000)
            dense_true[Xc.indices[Xc.indptr[t] : Xc.indptr[t + 1]]] = a
            dense_st = np.zeros(2000)
            dense_st[Sc.indices[Sc.indptr[t] : Sc.indptr[t + 1]]] = Sc.data[
                Sc.indptr[t] : Sc.indptr[t + 1]
            ]
            assert np.all(np.abs(dense_true - dense_st) <= scale / 2 * (1 + 1e-5) + 1e-7)
    # Scores: |s_stored - s_true| <= sum_t q_t * err_t, checked against the float32 truth.
    Q = zipf_csr(20, V, 15, seed=4)
    _, sc = ix.search(Q, k=5)
    true = (X.astype(np.float64) @ Q.astype(np.float64).T).toarray().T
    stored = (Xs.astype(np.float64) @ Q.astype(np.float64).T).toarray().T
    bound = (np.abs(X - Xs).astype(np.float64) @ Q.astype(np.float64).T).toarray().T
    assert np.all(np.abs(stored - true) <= bound + 1e-6)
    np.testing.assert_allclose(sc, -np.sort(-stored, axis=1)[:, :5], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pruned_equals_exhaustive_adversarial(dtype, strategy):
    """Frequent terms, heavy ties (dyadic weights, exact sums), long queries."""
    V = 500
    rng = np.random.default_rng(5)
    X = zipf_csr(3000, V, 30, seed=6, dyadic=True).tolil()
    X[:, 0] = 0.125  # a term in every document
    X[::2, 1] = 0.5  # another in half of them
    X = X.tocsr().astype(np.float32)
    ix = set_strategy(build(X, dtype), strategy)
    Xs = stored_matrix(ix, np.arange(3000), V)
    # Long queries (up to every term), few-term queries on the frequent terms, ties.
    lens = rng.integers(1, 300, 30)
    qs = [zipf_csr(1, V, n, seed=s, dyadic=True) for s, n in enumerate(lens)]
    qs.append(sp.csr_matrix(np.eye(1, V, 0, dtype=np.float32)))
    qs.append(sp.csr_matrix((np.ones(V, np.float32), np.arange(V), [0, V]), shape=(1, V)))
    Q = sp.vstack(qs).tocsr()
    for k in (1, 7, 50, 3000):
        ids, scores = ix.search(Q, k=k)
        r_ids, r_sc, _ = reference(Xs, np.arange(3000), Q, k)
        assert_topk(ids, scores, r_ids, r_sc)


# --------------------------------------------------------------------------- input forms
def csr_to_pairs(X):
    X = X.tocsr()
    return [
        (X.indices[a:b].copy(), X.data[a:b].copy()) for a, b in zip(X.indptr[:-1], X.indptr[1:])
    ]


def csr_to_dicts(X, str_keys):
    out = []
    for ind, val in csr_to_pairs(X):
        if str_keys:
            out.append({str(int(t)): np.float32(w) for t, w in zip(ind, val)})
        else:
            out.append({int(t): float(w) for t, w in zip(ind, val)})
    return out


def test_three_input_forms_give_identical_results():
    V = 1000
    X = zipf_csr(800, V, 20, seed=7)
    Q = zipf_csr(30, V, 10, seed=8)
    docs_forms = [
        X,
        X.tocoo(),
        X.tocsc(),
        csr_to_pairs(X),
        [(list(map(int, i)), list(map(float, v))) for i, v in csr_to_pairs(X)],
        csr_to_dicts(X, True),
        csr_to_dicts(X, False),
    ]
    q_forms = [Q, csr_to_pairs(Q), csr_to_dicts(Q, True), csr_to_dicts(Q, False)]
    results = []
    for d in docs_forms:
        ix = SparseIndex()
        np.testing.assert_array_equal(ix.add(d), np.arange(800))
        for q in q_forms:
            results.append(ix.search(q, k=10))
    for ids, sc in results[1:]:
        np.testing.assert_array_equal(ids, results[0][0])
        np.testing.assert_array_equal(sc, results[0][1])
    # Single query forms give 1-D results equal to row 0 of the batch.
    ix = build(X)
    for single in (csr_to_dicts(Q, True)[0], csr_to_pairs(Q)[0]):
        ids, sc = ix.search(single, k=10)
        assert ids.shape == (10,)
        np.testing.assert_array_equal(ids, results[0][0][0])


def test_flagembedding_lexical_weights():
    from collections import defaultdict

    docs = []
    for w in ({"6": 0.31, "2041": 0.12, "98765": 0.05}, {"6": 0.2, "33": 0.44}):
        d = defaultdict(int)
        for k, v in w.items():
            d[k] = np.float32(v) if k != "33" else np.float16(v)
        docs.append(d)
    ix = SparseIndex()
    ix.add(docs)
    assert ix.vocab_size == 98766
    ids, sc = ix.search({"6": np.float32(1.0), "33": 2}, k=2)
    np.testing.assert_array_equal(ids, [1, 0])
    np.testing.assert_allclose(sc, [0.2 + 2 * float(np.float16(0.44)), 0.31], rtol=1e-6)


# --------------------------------------------------------------------------- BM25
def test_bm25_vectors_give_bm25_search():
    texts = [
        "the quick brown fox jumps over the lazy dog",
        "a quick brown dog outpaces a quick fox",
        "lazy dogs sleep all day long",
        "foxes are quick and clever animals",
        "the dog and the fox are friends",
        "brown bears eat honey",
        "honey is sweet and sticky",
        "clever dogs learn tricks quickly",
        "sleeping all day is what lazy cats do",
        "the fox hunts at night while the dog sleeps",
    ] * 3
    texts = [t + f" doc{i}" for i, t in enumerate(texts)]
    queries = ["quick fox", "lazy dog sleeps", "honey bears", "clever quick dog fox", "night"]
    bm = densparse.BM25(method="lucene").index(texts)
    ix = SparseIndex()
    ix.add(bm.encode_documents(texts))
    for k in (3, 10, 40):
        b_ids, b_sc = bm.search(queries, k=k)
        s_ids, s_sc = ix.search(bm.encode_queries(queries), k=k)
        np.testing.assert_allclose(s_sc, b_sc, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(s_ids, b_ids)


# --------------------------------------------------------------------------- pruning options
def test_doc_top_n_keeps_largest_with_ties_by_lower_term():
    ix = SparseIndex(doc_top_n=3)
    ix.add([([9, 1, 5, 3, 7], [0.5, 0.5, 0.9, 0.1, 0.5]), ([2], [1.0])])
    (t0, w0), (t1, _) = ix.get([0, 1])
    np.testing.assert_array_equal(t0, [1, 5, 7])
    np.testing.assert_allclose(w0, [0.5, 0.9, 0.5])
    np.testing.assert_array_equal(t1, [2])
    assert ix.doc_top_n == 3
    # Same as adding the pruned vectors to an unpruned index.
    X = zipf_csr(500, 300, 30, seed=9)
    a = SparseIndex(doc_top_n=10)
    a.add(X)
    pruned = []
    for ind, val in csr_to_pairs(X):
        order = np.lexsort((ind, -val))[:10]
        pruned.append((ind[order], val[order]))
    b = SparseIndex()
    b.add(pruned)
    Q = zipf_csr(20, 300, 10, seed=10)
    for x, y in zip(a.search(Q, k=10), b.search(Q, k=10)):
        np.testing.assert_array_equal(x, y)


def test_query_pruning_semantics():
    X = zipf_csr(1000, 400, 25, seed=11)
    ix = build(X)
    Q = zipf_csr(20, 400, 30, seed=12)
    for n in (1, 5, 12):
        manual = []
        for ind, val in csr_to_pairs(Q):
            order = np.lexsort((ind, -val))[:n]
            manual.append((ind[order], val[order]))
        a = ix.search(Q, k=10, query_top_n=n)
        b = ix.search(manual, k=10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    for cut in (0.0, 0.3, 0.8, 1.0):
        manual = [(i[v >= cut * v.max()], v[v >= cut * v.max()]) for i, v in csr_to_pairs(Q)]
        a = ix.search(Q, k=10, query_cut=cut)
        b = ix.search(manual, k=10)
        np.testing.assert_array_equal(a[0], b[0])
    # cut first, then top-n
    manual = []
    for i, v in csr_to_pairs(Q):
        keep = v >= 0.2 * v.max()
        i, v = i[keep], v[keep]
        order = np.lexsort((i, -v))[:4]
        manual.append((i[order], v[order]))
    a = ix.search(Q, k=10, query_cut=0.2, query_top_n=4)
    np.testing.assert_array_equal(a[0], ix.search(manual, k=10)[0])


# --------------------------------------------------------------------------- masks, fill
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_masks_fill_and_padding(strategy):
    V = 300
    X = zipf_csr(500, V, 5, seed=13)
    X = sp.vstack([X, sp.csr_matrix((3, V), dtype=np.float32)]).tocsr()  # empty docs
    ix = set_strategy(build(X), strategy)
    Q = zipf_csr(15, V, 3, seed=14)
    rng = np.random.default_rng(15)
    ids_all = np.arange(503)
    for mask in (
        rng.random(503) < 0.3,
        (rng.random(503) < 0.5).astype(np.uint8) * 7,
        np.zeros(503, bool),
        np.ones(40, bool),
        np.ones(10_000, np.uint8),
        np.zeros(0, bool),
    ):
        for k in (5, 100, 503, 1000):
            ids, sc = ix.search(Q, k=k, mask=mask)
            r_ids, r_sc, _ = reference(X, ids_all, Q, k, mask)
            assert_topk(ids, sc, r_ids, r_sc)
    # No mask: documents that match nothing fill in with score 0 by id.
    ids, sc = ix.search({299_999: 1.0}, k=4)
    np.testing.assert_array_equal(ids, [0, 1, 2, 3])
    np.testing.assert_array_equal(sc, [0, 0, 0, 0])


# --------------------------------------------------------------------------- mutation
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_remove_and_add_interleaved(dtype, strategy):
    V = 400
    rng = np.random.default_rng(16)
    ix = set_strategy(SparseIndex(dtype=dtype), strategy)
    live = {}  # id -> row of the CSR X_all
    X_all = zipf_csr(3000, V, 15, seed=17)
    pos = 0
    next_auto = 0
    Q = zipf_csr(12, V, 8, seed=18)
    for step in range(25):
        n = int(rng.integers(1, 200))
        chunk = X_all[pos : pos + n]
        if step % 3 == 1:
            ids = np.unique(rng.integers(10**6, 10**7, size=chunk.shape[0]))
            rng.shuffle(ids)
            ids = ids[~np.isin(ids, list(live))]
            chunk = chunk[: len(ids)]
            got = ix.add(chunk, ids=ids)
            np.testing.assert_array_equal(got, ids)
        else:
            got = ix.add(chunk)
            np.testing.assert_array_equal(got, np.arange(next_auto, next_auto + chunk.shape[0]))
        next_auto = max(next_auto, int(got.max()) + 1)
        for i, d in enumerate(got):
            live[int(d)] = pos + i
        pos += chunk.shape[0]
        if step % 2 == 0 and live:
            n_rm = min(len(live), int(rng.integers(1, 120)))
            rm = rng.choice(list(live), size=n_rm, replace=False)
            ix.remove(rm)
            for d in rm:
                del live[int(d)]
        assert len(ix) == len(live)
        keys = np.array(sorted(live), np.int64)
        Xs = stored_matrix(ix, keys, V)
        for k in (1, 10, 50):
            ids, sc = ix.search(Q, k=k)
            r_ids, r_sc, _ = reference(Xs, keys, Q, k)
            assert_topk(ids, sc, r_ids, r_sc)
            assert np.isin(ids[ids >= 0], keys).all()
    np.testing.assert_array_equal(np.sort(ix.ids()), np.array(sorted(live)))
    assert ix.stats()["n_segments"] <= 16


def test_removed_never_returned_and_compaction():
    X = zipf_csr(1000, 200, 10, seed=19)
    ix = build(X)
    ix.remove(np.arange(0, 1000, 7))
    st = ix.stats()
    assert st["n_deleted"] == len(range(0, 1000, 7)) and st["n_docs"] == 1000 - st["n_deleted"]
    ids, _ = ix.search(zipf_csr(20, 200, 10, seed=20), k=1000)
    assert not np.isin(ids, np.arange(0, 1000, 7)).any()
    more = np.arange(1, 1000, 3)
    ix.remove(more[more % 7 != 0])  # past a quarter: compacts on its own
    assert ix.stats()["n_deleted"] == 0
    ix.compact()
    ids, _ = ix.search({1: 1.0}, k=1000)
    assert len(ids) == len(ix)
    with pytest.raises(KeyError):
        ix.remove([0])  # already removed


# --------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_round_trip(tmp_path, dtype):
    V = 500
    X = zipf_csr(1500, V, 20, seed=21)
    ix = SparseIndex(dtype=dtype, doc_top_n=15)
    ix.add(X[:1000])
    ix.add(X[1000:], ids=np.arange(5000, 5500))
    ix.remove([3, 5, 5001])
    Q = zipf_csr(25, V, 10, seed=22)
    mask = np.random.default_rng(1).random(6000) < 0.5
    want = ix.search(Q, k=10)
    want_m = ix.search(Q, k=10, mask=mask)
    p = tmp_path / "a.idx"
    ix.save(p)
    for mmap in (True, False):
        lo = SparseIndex.load(p, mmap=mmap)
        assert len(lo) == len(ix) and lo.dtype == dtype and lo.doc_top_n == 15
        assert lo.stats() == ix.stats()
        for a, b in zip(lo.search(Q, k=10), want):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(lo.search(Q, k=10, mask=mask), want_m):
            np.testing.assert_array_equal(a, b)
        # Save a loaded (mmapped) index, load again, keep mutating.
        p2 = tmp_path / f"b{mmap}.idx"
        lo.save(p2)
        lo2 = SparseIndex.load(p2, mmap=not mmap)
        for a, b in zip(lo2.search(Q, k=10), want):
            np.testing.assert_array_equal(a, b)
        new = lo2.add(X[:5])
        np.testing.assert_array_equal(new, np.arange(5500, 5505))
        lo2.remove([0])
        assert len(lo2) == len(ix) + 4


def test_corrupt_truncated_foreign_files(tmp_path):
    ix = build(zipf_csr(300, 100, 10, seed=23))
    p = tmp_path / "s.idx"
    ix.save(p)
    raw = p.read_bytes()
    bad = bytearray(raw)
    bad[len(bad) // 2] ^= 0x5A
    (tmp_path / "flip.idx").write_bytes(bytes(bad))
    (tmp_path / "trunc.idx").write_bytes(raw[: len(raw) - 17])
    (tmp_path / "junk.idx").write_bytes(b"hello world" * 10)
    (tmp_path / "empty.idx").write_bytes(b"")
    bm = densparse.BM25().index(["a b c", "b c d"])
    bm.save(tmp_path / "bm25.idx")
    for name in ("flip", "trunc", "junk", "empty", "bm25"):
        for mmap in (True, False):
            with pytest.raises(CorruptIndexError):
                SparseIndex.load(tmp_path / f"{name}.idx", mmap=mmap)
    with pytest.raises(CorruptIndexError):
        densparse.BM25.load(p)
    with pytest.raises(FileNotFoundError):
        SparseIndex.load(tmp_path / "missing.idx")


# --------------------------------------------------------------------------- threads
def test_concurrent_searches_while_adding():
    V = 800
    X = zipf_csr(6000, V, 20, seed=24)
    Q = zipf_csr(40, V, 10, seed=25)
    S = (X.astype(np.float64) @ Q.astype(np.float64).T).toarray().T.astype(np.float32)
    ix = set_strategy(SparseIndex(), "maxscore")
    ix.add(X[:1000])
    errors = []
    done = threading.Event()

    def searcher(seed):
        rng = np.random.default_rng(seed)
        try:
            while not done.is_set():
                k = int(rng.integers(1, 30))
                ids, sc = ix.search(Q, k=k, threads=int(rng.integers(1, 3)))
                n = len(ix)
                assert ids.shape[1] <= n
                for qi in range(Q.shape[0]):
                    ok = ids[qi] >= 0
                    np.testing.assert_allclose(sc[qi][ok], S[qi][ids[qi][ok]], rtol=1e-5, atol=1e-6)
                    assert np.all(np.diff(sc[qi]) <= 0)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for start in range(1000, 6000, 250):
        ix.add(X[start : start + 250])
    done.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    ids, sc = ix.search(Q, k=10)
    r_ids, r_sc, _ = reference(X, np.arange(6000), Q, 10)
    assert_topk(ids, sc, r_ids, r_sc, lambda qi, d: S[qi][d], exact_ids=False)


def test_many_threads_and_single_thread_agree():
    X = zipf_csr(3000, 1000, 30, seed=26)
    Q = zipf_csr(64, 1000, 20, seed=27)
    ix = build(X)
    a = ix.search(Q, k=10, threads=1)
    b = ix.search(Q, k=10, threads=4)
    c = ix.search(Q, k=10)
    set_strategy(ix, "maxscore")
    d = ix.search(Q, k=10)
    for x, y, z, w in zip(a, b, c, d):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
        np.testing.assert_allclose(x, w, rtol=1e-6)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_batch_equals_per_query_and_scipy(dtype, strategy):
    """A large batch returns, query for query, what a one-query call returns, and scipy's
    exhaustive top-k. "auto" (small segments) scores the batch with shared term-at-a-time
    passes over groups of queries; "maxscore" runs MaxScore per query, with bit-identical
    scores."""
    V = 5000
    # Several segments (two adds), removed rows and shuffled ids on the second.
    X = zipf_csr(7000, V, 40, seed=41)
    Q = zipf_csr(150, V, 30, seed=42)
    ix = SparseIndex(dtype=dtype)
    ids1 = np.arange(5000)
    ids2 = 100_000 - 7 * np.arange(2000)
    ix.add(X[:5000], ids=ids1)
    ix.add(X[5000:], ids=ids2)
    set_strategy(ix, strategy)
    gone = ids1[::11]
    ix.remove(gone)
    doc_ids = np.concatenate([ids1, ids2])
    keep = ~np.isin(doc_ids, gone)
    Xs = stored_matrix(ix, doc_ids[keep], V)
    mask = (np.arange(100_001) % 5 != 0).astype(np.uint8)
    for m in (None, mask):
        for k in (1, 10, 50, 9000):
            for threads in (1, 3):
                ids, sc = ix.search(Q, k=k, threads=threads, mask=m)
                for qi in range(0, Q.shape[0], 7):
                    row = Q[qi]
                    one_ids, one_sc = ix.search((row.indices, row.data), k=k, mask=m)
                    np.testing.assert_array_equal(ids[qi], one_ids)
                    if strategy == "maxscore":
                        np.testing.assert_array_equal(sc[qi], one_sc)
                    else:
                        np.testing.assert_allclose(sc[qi], one_sc, rtol=1e-6, atol=0)
            r_ids, r_sc, _ = reference(Xs, doc_ids[keep], Q, k, mask=m)
            np.testing.assert_allclose(sc, r_sc, rtol=1e-5, atol=1e-6)
            assert (ids == r_ids).mean() > 0.98


# --------------------------------------------------------------------------- bad input
def test_bad_document_weights():
    ix = SparseIndex()
    with pytest.raises(ValueError, match="finite"):
        ix.add([([1, 2], [0.5, np.nan])])
    with pytest.raises(ValueError, match="finite"):
        ix.add([{1: np.inf}])
    with pytest.raises(ValueError, match="negative"):
        ix.add([([1, 2], [0.5, -0.1])])
    with pytest.raises(ValueError, match="negative"):
        ix.add(sp.csr_matrix(np.array([[0, -1.0]], np.float32)))
    with pytest.raises(ValueError, match="duplicate term"):
        ix.add([([1, 2, 1], [0.5, 0.1, 0.2])])
    with pytest.raises(ValueError, match="duplicate term"):
        ix.add([{"1": 0.5, 1: 0.2}])
    with pytest.raises(ValueError, match="duplicate term"):
        ix.add([([3, 3], [0.0, 0.2])])
    dup = sp.csr_matrix((np.ones(2, np.float32), np.array([4, 4]), np.array([0, 2])), shape=(1, 9))
    with pytest.raises(ValueError, match="duplicate term"):
        ix.add(dup)
    with pytest.raises(ValueError, match="float16"):
        SparseIndex("float16").add([{1: 70000.0}])
    assert len(ix) == 0  # nothing was added by a failed call


def test_bad_keys_lengths_and_types():
    ix = SparseIndex()
    with pytest.raises(ValueError, match="not an integer"):
        ix.add([{"abc": 0.5}])
    with pytest.raises(ValueError, match="not an integer"):
        ix.add([{"1.5": 0.5}])
    with pytest.raises(TypeError, match="not an integer"):
        ix.add([{1.5: 0.5}])
    with pytest.raises(TypeError, match="not a number"):
        ix.add([{1: "x"}])
    with pytest.raises(ValueError, match="lengths must match"):
        ix.add([([1, 2, 3], [0.5, 0.1])])
    with pytest.raises(TypeError, match="integers"):
        ix.add([([1.0, 2.0], [0.5, 0.1])])
    with pytest.raises(ValueError, match="out of range"):
        ix.add([([-1], [0.5])])
    with pytest.raises(TypeError):
        ix.add("not documents")
    with pytest.raises(TypeError):
        ix.add(42)
    with pytest.raises(ValueError):
        SparseIndex(dtype="int8")
    with pytest.raises(ValueError):
        SparseIndex(doc_top_n=0)


def test_bad_ids():
    ix = SparseIndex()
    with pytest.raises(ValueError, match="duplicate id"):
        ix.add([{1: 1.0}, {2: 1.0}], ids=[5, 5])
    with pytest.raises(ValueError, match=">= 0"):
        ix.add([{1: 1.0}], ids=[-3])
    with pytest.raises(ValueError, match="ids for"):
        ix.add([{1: 1.0}], ids=[1, 2])
    with pytest.raises(TypeError):
        ix.add([{1: 1.0}], ids=[1.5])
    ix.add([{1: 1.0}], ids=[7])
    with pytest.raises(ValueError, match="already"):
        ix.add([{1: 1.0}], ids=[7])
    with pytest.raises(KeyError):
        ix.remove([8])
    with pytest.raises(KeyError):
        ix.remove([-1])
    with pytest.raises(KeyError):
        ix.remove([7, 8])
    assert len(ix) == 1  # a failed remove changes nothing
    with pytest.raises(ValueError, match="duplicate"):
        ix.remove([7, 7])
    assert len(ix) == 1
    np.testing.assert_array_equal(ix.add([{2: 1.0}]), [8])


def test_bad_search_arguments():
    ix = SparseIndex()
    with pytest.raises(ValueError, match="empty"):
        ix.search({1: 1.0})
    ix.add([{1: 1.0}, {2: 0.5}])
    with pytest.raises(ValueError, match="k must be"):
        ix.search({1: 1.0}, k=0)
    with pytest.raises(TypeError):
        ix.search({1: 1.0}, k=2.5)
    with pytest.raises(TypeError, match="dtype"):
        ix.search({1: 1.0}, mask=np.ones(3, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        ix.search({1: 1.0}, mask=np.ones(3, np.int64))
    with pytest.raises(TypeError):
        ix.search({1: 1.0}, mask=[True, False])
    with pytest.raises(ValueError, match="1-D"):
        ix.search({1: 1.0}, mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="negative"):
        ix.search({1: -1.0})
    with pytest.raises(ValueError, match="finite"):
        ix.search([([1], [np.nan])])
    with pytest.raises(ValueError, match="duplicate"):
        ix.search(([1, 1], [1.0, 1.0]))
    with pytest.raises(ValueError):
        ix.search({1: 1.0}, query_top_n=0)
    with pytest.raises(ValueError):
        ix.search({1: 1.0}, query_cut=1.5)
    with pytest.raises(ValueError):
        ix.search({1: 1.0}, threads=0)
    ids, sc = ix.search({1: 1.0}, k=5)
    np.testing.assert_array_equal(ids, [0, 1])  # k' = min(k, live docs)
    np.testing.assert_array_equal(sc, [1.0, 0.0])
    ids, sc = ix.search([], k=1) if False else ix.search([{}], k=1)
    np.testing.assert_array_equal(ids, [[0]])
