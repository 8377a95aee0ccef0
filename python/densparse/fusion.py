"""Result-list fusion for hybrid search: RRF, weighted normalised sums, BGE-M3 mean.

The arithmetic lives in the Rust core (``densparse_core::fusion``); this module
only turns Python inputs into arrays and results into :class:`FusedResult`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from densparse import _core
from densparse._checks import MAX_K

__all__ = ["METHODS", "NORMALIZATIONS", "FusedResult", "fuse"]

METHODS = ("rrf", "weighted", "m3")
NORMALIZATIONS = ("minmax", "dbsf", "none")

RouteResult = Union[tuple[Any, Any], Mapping[int, float]]


class FusedResult(NamedTuple):
    """One query's fused list.

    Attributes:
        ids: int64 [n], the documents, best first.
        scores: float32 [n], fused scores (computed in float64), descending;
            equal scores are ordered by lower id.
        route_scores: float32 [n, n_routes], each route's original score of the
            document, NaN where the document was not in that route's list.
    """

    ids: np.ndarray
    scores: np.ndarray
    route_scores: np.ndarray


def _ids_array(x: Any, where: str) -> np.ndarray:
    a = np.asarray(x)
    if a.size == 0 and a.dtype.kind in "fiu":
        return np.ascontiguousarray(a, dtype=np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{where}: ids must be integers, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{where}: ids must fit in int64")
    return np.ascontiguousarray(a, dtype=np.int64)


def _scores_array(x: Any, where: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{where}: scores must be real numbers, got dtype {a.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(a, dtype=np.float32)
        if a.dtype.kind == "f" and a.dtype.itemsize > 4 and (np.isinf(out) & np.isfinite(a)).any():
            raise ValueError(f"{where}: a finite score overflows float32")
    return out


def _route(obj: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    where = f"results[{i}]"
    if isinstance(obj, Mapping):
        ids = _ids_array(list(obj.keys()), where)
        scores = _scores_array(list(obj.values()), where)
        return ids.reshape(-1), scores.reshape(-1)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise TypeError(
            f"{where} must be an (ids, scores) pair or a dict {{id: score}}, "
            f"not {type(obj).__name__}"
        )
    ndim = np.ndim(obj[0])
    if ndim not in (1, 2):
        raise ValueError(f"{where}: ids must be 1-D (one query) or 2-D (a batch), not {ndim}-D")
    ids = _ids_array(obj[0], where)
    scores = _scores_array(obj[1], where)
    if ids.shape != scores.shape:
        raise ValueError(f"{where}: ids shape {ids.shape} and scores shape {scores.shape} differ")
    return ids, scores


def fuse(
    results: Sequence[RouteResult],
    method: str = "rrf",
    k: float = 60,
    weights: Optional[Sequence[float]] = None,
    normalization: str = "minmax",
    top_k: Optional[int] = None,
) -> Union[FusedResult, list[FusedResult]]:
    """Fuse ranked result lists from several retrievers (routes) into one.

    Args:
        results: one entry per route: an ``(ids, scores)`` pair of arrays or lists
            (1-D for one query, as an index returns it; or 2-D ``[Q, k_route]`` for
            a batch of Q queries), or a dict ``{id: score}`` (one query). Within a
            list, rank = order by score descending, ties by lower id (input order
            does not matter). Entries with id ``-1`` or score ``-inf`` are padding
            and are ignored. Ids are any int64.
        method: ``"rrf"`` (reciprocal rank fusion: ``sum_l w_l / (k + rank_l)``, rank
            from 1), ``"weighted"`` (``sum_l w_l * norm_l(score)``), or ``"m3"`` (BGE-M3
            weighted mean of raw scores: ``sum_l w_l * s_l / sum_l w_l``). A document
            missing from a list contributes 0 from that list.
        k: the RRF constant, > 0 (Cormack et al. use 60, Qdrant uses 2). Only rrf.
        weights: one weight >= 0 per route. Default 1 each; for ``"m3"`` with exactly
            three routes, ``[0.4, 0.2, 0.4]`` (dense, sparse, ColBERT).
        normalization: for ``"weighted"`` only: ``"minmax"`` ((s - min) / (max - min);
            a constant list gives 1.0), ``"dbsf"`` (mean ± 3 sample std mapped to
            [0, 1] and clipped; a one-element or constant list gives 0.5), or
            ``"none"`` (raw scores).
        top_k: keep this many best documents (default: all).

    Returns:
        A :class:`FusedResult` ``(ids, scores, route_scores)`` for 1-D input or
        dicts; for 2-D input, a list of them, one per query (fused in parallel).

    Raises:
        ValueError: unknown method or normalization, weights of the wrong length or
            negative, k <= 0 for rrf, ids/scores length mismatch, a duplicate id in
            one list, a NaN or +inf score, different query counts between routes.
        TypeError: results not in one of the shapes above.
    """
    if isinstance(results, (str, bytes, Mapping)) or not isinstance(results, Sequence):
        raise TypeError(
            "results must be a list with one (ids, scores) pair or dict per route, "
            f"not {type(results).__name__}"
        )
    if len(results) == 0:
        raise ValueError("results is empty: give at least one route's result list")
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, not {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}: expected one of {METHODS}")
    if not isinstance(normalization, str):
        raise TypeError(f"normalization must be a str, not {type(normalization).__name__}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"unknown normalization {normalization!r}: expected one of {NORMALIZATIONS}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)):
        raise TypeError(f"k must be a number, not {type(k).__name__}")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise TypeError(f"top_k must be an int or None, not {type(top_k).__name__}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        top_k = min(int(top_k), MAX_K)  # more than every candidate keeps them all
    w = None
    if weights is not None:
        wa = np.asarray(weights)
        if wa.ndim != 1 or wa.dtype.kind not in "fiu":
            raise TypeError("weights must be a 1-D sequence of numbers (one per route)")
        w = [float(x) for x in wa]

    routes = [_route(r, i) for i, r in enumerate(results)]
    ndims = {ids.ndim for ids, _ in routes}
    if len(ndims) > 1:
        raise ValueError(
            "results mix one-query (1-D or dict) and batch (2-D) routes: give every "
            "route in the same form"
        )
    kw = dict(method=method, k=float(k), weights=w, normalization=normalization, top_k=top_k)
    if ndims == {1}:
        return FusedResult(*_core.fuse(routes, **kw))
    return [FusedResult(*t) for t in _core.fuse_batch(routes, **kw)]
