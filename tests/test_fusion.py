"""Fusion: each method vs a plain-Python reference, ties, route scores, batch, bad input."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import densparse
from densparse import FusedResult, fuse

NEG_INF = float("-inf")


# ---------------------------------------------------------------- reference


def ref_fuse(routes, method="rrf", k=60.0, weights=None, normalization="minmax", top_k=None):
    """Plain-Python fusion, float64, lists summed in their given order.

    routes: list of (ids, scores) with scores already float32 values.
    Returns (ids, fused float64 scores, route_scores rows).
    """
    n = len(routes)
    if weights is None:
        weights = [0.4, 0.2, 0.4] if method == "m3" and n == 3 else [1.0] * n
    fused: dict[int, float] = {}
    raw: dict[int, list[float]] = {}
    for li, (ids, scores) in enumerate(routes):
        w = float(weights[li])
        entries = [
            (int(i), float(s)) for i, s in zip(ids, scores) if int(i) != -1 and float(s) != NEG_INF
        ]
        entries.sort(key=lambda e: (-e[1], e[0]))
        vals = [s for _, s in entries]
        if method == "rrf":
            contrib = [w / (k + (r + 1)) for r in range(len(entries))]
        elif method == "m3" or normalization == "none":
            contrib = [w * s for s in vals]
        elif normalization == "minmax":
            if not vals:
                contrib = []
            else:
                mx, mn = max(vals), min(vals)
                contrib = [w if mx == mn else w * ((s - mn) / (mx - mn)) for s in vals]
        else:  # dbsf
            m = len(vals)
            if m == 0:
                contrib = []
            else:
                mean = sum(vals) / m
                var = sum((s - mean) * (s - mean) for s in vals) / (m - 1) if m > 1 else 0.0
                std = math.sqrt(var)
                if std == 0.0:
                    contrib = [w * 0.5 for _ in vals]
                else:
                    lo, hi = mean - 3.0 * std, mean + 3.0 * std
                    contrib = [w * min(max((s - lo) / (hi - lo), 0.0), 1.0) for s in vals]
        for (d, s), c in zip(entries, contrib):
            fused[d] = fused.get(d, 0.0) + c
            raw.setdefault(d, [math.nan] * n)[li] = s
    if method == "m3":
        total = sum(float(x) for x in weights)
        fused = {d: f / total for d, f in fused.items()}
    order = sorted(fused, key=lambda d: (-fused[d], d))
    if top_k is not None:
        order = order[:top_k]
    return order, [fused[d] for d in order], [raw[d] for d in order]


def check(got: FusedResult, want, n_routes: int) -> None:
    ids, scores, raw = want
    assert isinstance(got, FusedResult)
    assert got.ids.dtype == np.int64 and got.scores.dtype == np.float32
    assert got.route_scores.dtype == np.float32
    assert got.route_scores.shape == (len(ids), n_routes)
    np.testing.assert_array_equal(got.ids, np.array(ids, dtype=np.int64))
    np.testing.assert_array_equal(got.scores, np.array(scores, dtype=np.float64).astype(np.float32))
    np.testing.assert_array_equal(
        got.route_scores, np.array(raw, dtype=np.float32).reshape(len(ids), n_routes)
    )


def random_route(rng, pool):
    """A shuffled list with overlaps, ties, padding; sometimes empty, single or constant."""
    kind = rng.integers(0, 8)
    n = {0: 0, 1: 1}.get(int(kind), int(rng.integers(2, 30)))
    ids = rng.choice(pool, size=min(n, len(pool)), replace=False)
    if kind == 2:
        scores = np.full(len(ids), rng.normal(), dtype=np.float32)  # constant list
    elif kind == 3:
        scores = rng.normal(size=len(ids)).astype(np.float32) * 100
    else:
        scores = (rng.integers(0, 6, size=len(ids)) / 4).astype(np.float32)  # many ties
    ids, scores = list(ids), list(scores)
    for _ in range(int(rng.integers(0, 3))):  # padding
        if rng.random() < 0.5:
            ids.append(-1)
            scores.append(np.float32(0.0))
        else:
            ids.append(int(rng.choice(pool)) + 10**12)
            scores.append(np.float32(NEG_INF))
    perm = rng.permutation(len(ids))
    return (
        np.array([ids[i] for i in perm], dtype=np.int64),
        np.array([scores[i] for i in perm], dtype=np.float32),
    )


CONFIGS = [
    dict(method="rrf"),
    dict(method="rrf", k=2),
    dict(method="rrf", k=0.5),
    dict(method="weighted", normalization="minmax"),
    dict(method="weighted", normalization="dbsf"),
    dict(method="weighted", normalization="none"),
    dict(method="m3"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_matches_reference(cfg):
    rng = np.random.default_rng(7)
    for trial in range(300):
        n_routes = int(rng.integers(1, 5))
        pool = rng.choice(np.arange(-(10**15), 10**15, 10**9), size=int(rng.integers(1, 40)))
        pool = np.unique(pool[pool != -1])
        routes = [random_route(rng, pool) for _ in range(n_routes)]
        kw = dict(cfg)
        if trial % 3 == 1:
            kw["weights"] = list(rng.uniform(0.0, 2.0, size=n_routes).round(3))
        if trial % 4 == 2:
            kw["top_k"] = int(rng.integers(0, 12))
        if kw["method"] == "m3" and kw.get("weights") is not None and sum(kw["weights"]) == 0:
            continue
        got = fuse(routes, **kw)
        check(got, ref_fuse(routes, **kw), n_routes)


def test_rrf_by_hand_and_tie_rule():
    # Route 0 ranks 10, 20, 30 (given unsorted); route 1 ranks 30, 20.
    r = fuse([([20, 10, 30], [0.5, 0.9, 0.1]), {20: 1.0, 30: 2.0}])
    assert r.ids.tolist() == [30, 20, 10]
    want = [1 / 63 + 1 / 61, 1 / 62 + 1 / 62, 1 / 61]
    np.testing.assert_array_equal(r.scores, np.float32(want))
    np.testing.assert_array_equal(
        r.route_scores, np.float32([[0.1, 2.0], [0.5, 1.0], [0.9, np.nan]])
    )
    # Equal scores within a list: lower id takes the better rank.
    r = fuse([([7, 3, 5], [1.0, 1.0, 1.0])], k=1)
    assert r.ids.tolist() == [3, 5, 7]
    np.testing.assert_allclose(r.scores, [1 / 2, 1 / 3, 1 / 4], rtol=1e-7)
    # Equal fused scores: lower id first.
    r = fuse([{9: 1.0}, {4: 5.0}, {-3: 0.1}])
    assert r.ids.tolist() == [-3, 4, 9]
    assert len(set(r.scores.tolist())) == 1


def test_minmax_dbsf_m3_by_hand():
    a = ([1, 2, 3], [1.0, 3.0, 2.0])
    b = ([2, 4], [5.0, 5.0])
    r = fuse([a, b], method="weighted")  # minmax; constant list b -> 1.0
    assert r.ids.tolist() == [2, 4, 3, 1]
    assert r.scores.tolist() == [2.0, 1.0, 0.5, 0.0]
    r = fuse([a, b], method="weighted", normalization="dbsf", weights=[2, 1])
    # a: mean 2, sample std 1 -> (s + 1) / 6; b: std 0 -> 0.5.
    np.testing.assert_allclose(r.scores, [2 * 4 / 6 + 0.5, 1.0, 2 * 2 / 6, 0.5], rtol=1e-6)
    assert r.ids.tolist() == [2, 3, 1, 4]
    c = ([3], [4.0])
    r = fuse([a, b, c], method="m3")  # default weights 0.4, 0.2, 0.4
    assert r.ids.tolist() == [3, 2, 4, 1]
    np.testing.assert_allclose(r.scores, [2.4, 2.2, 1.0, 0.4], rtol=1e-6)
    r = fuse([a, b], method="m3")  # two lists: equal weights
    np.testing.assert_allclose(r.scores[0], (3 + 5) / 2)
    # dbsf clips an outlier to 1.
    ids = np.arange(20)
    s = np.zeros(20, np.float32)
    s[5] = 100
    r = fuse([(ids, s)], method="weighted", normalization="dbsf")
    assert r.ids[0] == 5 and r.scores[0] == 1.0 and (r.scores >= 0).all()
    # Single-element lists.
    assert fuse([{8: 3.0}], method="weighted").scores.tolist() == [1.0]
    assert fuse([{8: 3.0}], method="weighted", normalization="dbsf").scores.tolist() == [0.5]


def test_padding_empty_and_top_k():
    r = fuse([([4, -1, 9, 2], [1.0, 0.0, -np.inf, 0.5]), ([], [])])
    assert r.ids.tolist() == [4, 2]
    assert r.route_scores.shape == (2, 2) and np.isnan(r.route_scores[:, 1]).all()
    e = fuse([([], []), {}])
    assert e.ids.shape == (0,) and e.scores.shape == (0,) and e.route_scores.shape == (0, 2)
    full = fuse([([1, 2, 3], [3, 2, 1])])
    assert fuse([([1, 2, 3], [3, 2, 1])], top_k=2).ids.tolist() == full.ids[:2].tolist()
    assert fuse([([1, 2, 3], [3, 2, 1])], top_k=0).ids.shape == (0,)
    assert fuse([([1, 2, 3], [3, 2, 1])], top_k=99).ids.tolist() == [1, 2, 3]
    # Input forms: lists, numpy of other int/float dtypes, dicts, extreme int64 ids.
    big = np.iinfo(np.int64)
    r = fuse([(np.array([big.max, big.min], np.int64), np.array([1, 2], np.float64))])
    assert r.ids.tolist() == [big.min, big.max]
    r = fuse([(np.array([5, 6], np.uint32), np.array([1, 2], np.int32))])
    assert r.ids.tolist() == [6, 5]
    ids, _scores, rs = fuse([{1: 0.5}])  # NamedTuple unpacks
    assert ids.tolist() == [1] and rs.shape == (1, 1)


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(3)
    q = 25
    pool = np.arange(60)
    routes = []
    for width in (10, 4, 15):
        ids = np.stack([rng.choice(pool, width, replace=False) for _ in range(q)])
        scores = (rng.integers(0, 5, size=(q, width)) / 2).astype(np.float32)
        ids[0, :2] = -1  # padding rows
        scores[1, -3:] = -np.inf
        routes.append((ids, scores))
    for cfg in [*CONFIGS, dict(method="weighted", weights=[1, 0, 2], top_k=5)]:
        batch = fuse(routes, **cfg)
        assert isinstance(batch, list) and len(batch) == q
        for i in range(q):
            one = fuse([(ids[i], s[i]) for ids, s in routes], **cfg)
            for a, b in zip(batch[i], one):
                np.testing.assert_array_equal(a, b)
            check(one, ref_fuse([(ids[i], s[i]) for ids, s in routes], **cfg), 3)
    assert fuse([(np.zeros((0, 3), np.int64), np.zeros((0, 3), np.float32))]) == []


def test_threads():
    rng = np.random.default_rng(1)
    routes = [(rng.permutation(200)[:100], rng.random(100).astype(np.float32)) for _ in range(3)]
    want = fuse(routes, method="m3")
    errors = []

    def run():
        for _ in range(200):
            got = fuse(routes, method="m3")
            if got.ids.tolist() != want.ids.tolist():
                errors.append("differs")

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


@pytest.mark.parametrize(
    ("args", "kw", "exc", "match"),
    [
        ([{1: 1.0}], dict(method="sum"), ValueError, "unknown fusion method"),
        ([{1: 1.0}], dict(method="weighted", normalization="l2"), ValueError, "normalization"),
        ([{1: 1.0}], dict(method=None), TypeError, "method"),
        ([{1: 1.0}, {2: 1.0}], dict(weights=[1.0]), ValueError, "1 weights for 2"),
        ([{1: 1.0}, {2: 1.0}], dict(weights=[1.0, -0.5]), ValueError, "weights"),
        ([{1: 1.0}], dict(weights=[float("nan")]), ValueError, "weights"),
        ([{1: 1.0}], dict(method="m3", weights=[0.0]), ValueError, "sum of the weights"),
        ([{1: 1.0}], dict(k=0), ValueError, "k > 0"),
        ([{1: 1.0}], dict(k=-60), ValueError, "k > 0"),
        ([{1: 1.0}], dict(k=True), TypeError, "k must be"),
        ([{1: 1.0}], dict(top_k=-1), ValueError, "top_k"),
        ([{1: 1.0}], dict(top_k=2.5), TypeError, "top_k"),
        ([([1, 2], [1.0])], {}, ValueError, "shape"),
        ([([1, 2, 1], [1.0, 2.0, 3.0])], {}, ValueError, "more than once"),
        ([([1, 2], [1.0, float("nan")])], {}, ValueError, "NaN"),
        ([([1, 2], [1.0, float("inf")])], {}, ValueError, r"\+inf"),
        ([([1.5, 2], [1.0, 2.0])], {}, TypeError, "ids must be integers"),
        ([(["a"], [1.0])], {}, TypeError, "ids must be integers"),
        ([([1], ["x"])], {}, TypeError, "scores"),
        ([{"a": 1.0}], {}, TypeError, "ids must be integers"),
        ([[1, 2, 3]], {}, TypeError, "pair"),
        ([5], {}, TypeError, "pair"),
        ([(1, 2)], {}, ValueError, "1-D"),
        ([(np.zeros((1, 1, 1), np.int64), np.zeros((1, 1, 1)))], {}, ValueError, "1-D"),
        ([], {}, ValueError, "empty"),
        ({1: 1.0}, {}, TypeError, "results must be a list"),
        ("abc", {}, TypeError, "results must be a list"),
        (
            [([1], [1.0]), (np.ones((2, 1), np.int64), np.ones((2, 1)))],
            {},
            ValueError,
            "mix",
        ),
        (
            [
                (np.ones((2, 1), np.int64), np.ones((2, 1))),
                (np.ones((3, 1), np.int64), np.ones((3, 1))),
            ],
            {},
            ValueError,
            "queries",
        ),
        (
            [(np.array([[1, 2], [3, 3]]), np.ones((2, 2)))],
            {},
            ValueError,
            "query 1: .*more than once",
        ),
        (
            [(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, np.nan]]))],
            {},
            ValueError,
            "query 1: .*NaN",
        ),
        ([(np.array([2**63 + 5], np.uint64), [1.0])], {}, ValueError, "int64"),
        ([([1, 2], [1.0, -1e39])], {}, ValueError, "overflows float32"),
    ],
)
def test_bad_input(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        fuse(args, **kw)


def test_exported():
    assert densparse.fuse is fuse
    assert "fuse" in densparse.__all__ and "FusedResult" in densparse.__all__
    assert fuse.__doc__ and "rrf" in fuse.__doc__


def test_many_lists_need_top_k_not_gigabytes():
    rng = np.random.default_rng(0)
    lists = [
        (rng.choice(5000, size=10, replace=False), np.arange(10, 0, -1.0)) for _ in range(65_536)
    ]
    got = fuse(lists, method="rrf", top_k=10)
    want: dict[int, float] = {}
    for ids, _ in lists:
        for rank, i in enumerate(ids.tolist(), start=1):
            want[i] = want.get(i, 0.0) + 1.0 / (60 + rank)
    best = sorted(want.items(), key=lambda x: (-x[1], x[0]))[:10]
    assert got.ids.tolist() == [i for i, _ in best]
    np.testing.assert_allclose(got.scores, [s for _, s in best], rtol=1e-6)
    assert got.route_scores.shape == (10, 65_536)
    with pytest.raises(ValueError, match="top_k"):
        fuse(lists, method="rrf")
