"""Exact search over shards: global BM25 statistics, per-route merge, fusion.

Every shard is searched per route (BM25, dense, sparse) for its best ``n`` documents, BM25
scoring with statistics summed over all shards, so a document's score is the one it would
have in a single collection of all documents. The global top ``n`` of a route is then the
best ``n`` of the union of the shards' lists, and fusion sees exactly the lists a single
collection would fuse.

Order: score descending, then id ascending. A single :class:`~densparse.Collection` orders
equal scores by insertion order instead; a shard is built in id order, so the two agree for
a collection also built in id order (and whenever no two scores tie).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from densparse._checks import MAX_K

ROUTES = ("bm25", "dense", "sparse")
MODES = ("hybrid", *ROUTES)
FUSIONS = ("rrf", "weighted", "m3")

#: (score, id) pairs, best first: score descending, id ascending.
RouteHits = list[tuple[float, str]]
#: (rows, total tokens, {token: df}) over live documents, as Collection.bm25_statistics.
Stats = tuple[int, int, dict[str, int]]


@dataclass
class Query:
    """One query: text for BM25, vectors for the dense and sparse routes."""

    text: Optional[str] = None
    dense: Optional[np.ndarray] = None
    sparse: Optional[tuple[list[int], list[float]]] = None


def as_query(q: Any) -> Query:
    """A Query from a Query, a str (text), or a mapping with ``text``, ``dense`` and
    ``sparse`` (``{token id: weight}`` or ``(indices, values)``) or ``sparse_indices`` +
    ``sparse_values`` (the columns :func:`densparse.distributed.encode` writes)."""
    if isinstance(q, Query):
        return q
    if isinstance(q, str):
        return Query(text=q)
    if not isinstance(q, Mapping):
        raise TypeError(f"a query must be a str, a Query or a mapping, not {type(q).__name__}")
    text = q.get("text")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"query text must be a str, not {type(text).__name__}")
    dense = q.get("dense")
    if dense is not None:
        dense = np.asarray(dense, dtype=np.float32)
    sparse = q.get("sparse")
    if sparse is None and q.get("sparse_indices") is not None:
        sparse = (list(q["sparse_indices"]), list(q.get("sparse_values") or []))
    elif isinstance(sparse, Mapping):
        sparse = ([int(i) for i in sparse], [float(v) for v in sparse.values()])
    return Query(text=text, dense=dense, sparse=sparse)


def wanted_routes(q: Query, mode: str) -> list[str]:
    """The routes a query is searched by, as :meth:`Collection.search` picks them."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    given = {
        "bm25": q.text is not None,
        "dense": q.dense is not None,
        "sparse": q.sparse is not None,
    }
    if mode != "hybrid":
        if not given[mode]:
            need = {"bm25": "text", "dense": "dense", "sparse": "sparse"}[mode]
            raise ValueError(f"mode={mode!r} needs the query's {need}")
        return [mode]
    out = [r for r in ROUTES if given[r]]
    if not out:
        raise ValueError("nothing to search with: a query needs text, dense and/or sparse")
    return out


def depth(k: int, mode: str, candidates: int) -> int:
    """How many documents each route contributes (as Collection.search)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)):
        raise TypeError(f"candidates must be an int, not {type(candidates).__name__}")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    k = min(int(k), MAX_K)
    return k if mode != "hybrid" else max(k, min(int(candidates), MAX_K))


def sum_stats(parts: Sequence[Optional[Stats]]) -> Optional[Stats]:
    """Statistics of the union of disjoint shards: sums of rows, tokens and every df."""
    got = [p for p in parts if p is not None]
    if not got:
        return None
    df: dict[str, int] = {}
    for _, _, d in got:
        for t, v in d.items():
            df[t] = df.get(t, 0) + int(v)
    return sum(int(p[0]) for p in got), sum(int(p[1]) for p in got), df


def merge_route(lists: Sequence[RouteHits], n: int) -> RouteHits:
    """The best ``n`` of the union of per-shard lists (a document lives in one shard)."""
    allhits = [h for lst in lists for h in lst]
    allhits.sort(key=lambda h: (-h[0], h[1]))
    return allhits[:n]


def shard_route(search: Callable[[int], list], n: int) -> RouteHits:
    """A shard's best ``n`` for a route by (score desc, id asc). ``search(kr)`` returns the
    shard's top ``kr`` Hits, ordered by score then storage order: fetch one more than
    needed, and more while documents tie with the n-th, so ties are cut by id exactly."""
    kr = n + 1
    while True:
        hits = search(min(kr, MAX_K))
        if len(hits) < kr or kr >= MAX_K or hits[-1].score < hits[n - 1].score:
            break
        kr *= 2
    out = [(float(h.score), h.id) for h in hits]
    out.sort(key=lambda h: (-h[0], h[1]))
    return out[:n]


def fuse_routes(
    lists: dict[str, RouteHits],
    k: int,
    fusion: str,
    weights: Optional[Mapping[str, float]],
    rrf_k: float,
    normalization: str,
) -> list[tuple[str, float, dict[str, Optional[float]]]]:
    """(id, score, {route: score}) best first: one route's list as is, several fused with
    :func:`densparse.fuse` exactly as :meth:`Collection.search` fuses them."""
    from densparse.fusion import fuse

    names = list(lists)
    if len(names) == 1:
        (name,) = names
        return [(i, s, {name: s}) for s, i in lists[name][:k]]
    # Integer ids in id order: fusion breaks ties by lower id, as by docno in a Collection.
    uniq = sorted({i for lst in lists.values() for _, i in lst})
    num = {i: j for j, i in enumerate(uniq)}
    inputs = [
        (
            np.asarray([num[i] for _, i in lists[r]], dtype=np.int64),
            np.asarray([s for s, _ in lists[r]], dtype=np.float32),
        )
        for r in names
    ]
    w = None
    if weights is not None:
        w = [float(weights.get(r, 1.0)) for r in names]
    elif fusion == "m3":
        default = {"dense": 0.4, "sparse": 0.2, "colbert": 0.4, "bm25": 0.2}
        w = [default[r] for r in names]
    res = fuse(inputs, method=fusion, k=rrf_k, weights=w, normalization=normalization, top_k=k)
    out = []
    for j, (docno, s) in enumerate(zip(res.ids.tolist(), res.scores.tolist())):
        rs = res.route_scores[j]
        scores = {r: (None if np.isnan(rs[c]) else float(rs[c])) for c, r in enumerate(names)}
        out.append((uniq[docno], s, scores))
    return out


def check_search_args(
    mode: str, fusion: str, rrf_k: Any, weights: Optional[Mapping[str, float]]
) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, not {fusion!r}")
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, (int, float, np.number)):
        raise ValueError(f"rrf_k must be a positive number, got {rrf_k!r}")
    if not 0 < rrf_k < math.inf:
        raise ValueError(f"rrf_k must be a positive number, got {rrf_k!r}")
    if weights is not None:
        unknown = set(weights) - set(ROUTES)
        if unknown:
            raise ValueError(f"weights for unknown routes {sorted(unknown)}")


def search_batch(
    stats_fn: Callable[[list[Optional[str]]], list[list[Optional[Stats]]]],
    hits_fn: Callable[..., list[list[dict[str, RouteHits]]]],
    queries: Sequence[Any],
    k: int = 10,
    mode: str = "hybrid",
    fusion: str = "rrf",
    weights: Optional[Mapping[str, float]] = None,
    filter: Optional[Any] = None,
    candidates: int = 100,
    rrf_k: float = 60,
    normalization: str = "minmax",
) -> list[list[tuple[str, float, dict[str, Optional[float]]]]]:
    """Search a batch of queries over groups of shards in two rounds.

    ``stats_fn(texts)`` returns, per group, each query's BM25 statistics (None where a query
    has no BM25 route); ``hits_fn(queries, stats, n, routes, filter)`` returns, per group,
    each query's ``{route: RouteHits}``. Round one sums the statistics, round two searches
    every shard with the sums; the merged lists are then fused.
    """
    check_search_args(mode, fusion, rrf_k, weights)
    qs = [as_query(q) for q in queries]
    n = depth(k, mode, candidates)
    k = min(int(k), MAX_K)
    want = [wanted_routes(q, mode) for q in qs]
    texts = [q.text if "bm25" in w else None for q, w in zip(qs, want)]
    stats: list[Optional[Stats]] = [None] * len(qs)
    if any(t is not None for t in texts):
        per_group = stats_fn(texts)
        stats = [sum_stats([g[i] for g in per_group]) for i in range(len(qs))]
    per_group_hits = hits_fn(qs, stats, n, want, filter)
    out = []
    for i, w in enumerate(want):
        lists = {r: merge_route([g[i].get(r, []) for g in per_group_hits], n) for r in w}
        out.append(fuse_routes(lists, k, fusion, weights, rrf_k, normalization))
    return out
