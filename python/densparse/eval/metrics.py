"""Ranking metrics with the trec_eval definitions (pytrec_eval is the reference).

:func:`evaluate` reproduces trec_eval 9.x as wrapped by ``pytrec_eval`` (the
``pytrec-eval-terrier`` package), including these details that are easy to get wrong:

Ordering
    The order of documents in ``run`` is ignored. Each query's documents are sorted by score
    descending, and documents with *equal* scores by docid in **descending** byte order
    (trec_eval sorts with ``strcmp(docno2, docno1)``): with scores tied, ``"b"`` comes before
    ``"a"`` and ``"9"`` before ``"100"`` before ``"10"``. Python compares ``str`` by code
    point, which is the same order as comparing UTF-8 bytes, so this holds for any text.
    Scores are compared as 64-bit floats; ``-0.0`` equals ``0.0``. NaN scores are rejected.

Relevance
    A document is relevant when its qrels grade is >= 1 (trec_eval's default relevance
    level). Documents missing from the qrels, judged 0, or judged negative all count as
    non-relevant with gain 0: trec_eval maps negative grades to "unjudged", so they never
    subtract from DCG and are not counted in the ideal ranking.

Metrics (``k`` is the cutoff; ranks count from 1)
    ``ndcg@k``      trec_eval ``ndcg_cut_k``: DCG = sum over the top k of grade / log2(rank + 1)
                    (linear gain, so grade 2 counts twice grade 1); IDCG is the DCG of the
                    query's positive grades sorted descending, cut at k.
    ``recall@k``    ``recall_k``: relevant documents in the top k / all relevant documents.
    ``precision@k`` ``P_k``: relevant documents in the top k / k (always divided by k, even
                    when fewer than k documents were retrieved). ``p@k`` is an alias.
    ``map@k``       ``map_cut_k``: sum over relevant documents at rank r <= k of
                    (relevant documents up to r) / r, divided by *all* relevant documents.
    ``mrr@k``       1 / rank of the first relevant document if it is within the top k, else 0.
                    trec_eval's ``recip_rank`` has no cutoff; ``mrr@k`` equals ``recip_rank``
                    on the run cut to its top k documents in the order above.

Which queries are averaged
    Only queries that have at least one relevant document (grade >= 1) in ``qrels`` are
    evaluated. Of those, queries present in ``run`` are evaluated (a query present with no
    documents scores 0) and queries absent from ``run`` are skipped, as trec_eval and
    pytrec_eval do; with ``missing_as_zero=True`` they count as 0 instead (the stricter,
    BEIR-leaderboard-style convention). Queries in ``run`` but not in ``qrels`` are ignored.

    Difference from pytrec_eval: pytrec_eval also returns queries whose qrels hold no
    relevant document (all grades <= 0), with every measure 0, and trec_eval's summary
    averages them in as zeros. Their nDCG is undefined (IDCG = 0), so they are left out of
    both the means and the per-query output here. None of the BEIR test/dev splits shipped
    with densparse has such queries.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["DEFAULT_METRICS", "evaluate"]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10", "map@100")

# Accepted spellings (lower-cased) -> canonical metric name.
_KINDS = {
    "ndcg": "ndcg",
    "recall": "recall",
    "mrr": "mrr",
    "map": "map",
    "precision": "precision",
    "p": "precision",
}
_METRIC_RE = re.compile(r"^\s*([a-z]+)\s*@\s*(\d+)\s*$")

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


def _parse_metrics(metrics: str | Iterable[str]) -> list[tuple[str, str, int]]:
    """Turn metric names into ``(canonical_name, kind, k)``, in order, without duplicates."""
    if isinstance(metrics, str):  # evaluate(..., metrics="ndcg@10") should not iterate chars
        metrics = (metrics,)
    specs: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    for name in metrics:
        if not isinstance(name, str):
            raise TypeError(f"metric names must be strings, got {name!r}")
        m = _METRIC_RE.match(name.lower())
        kind = _KINDS.get(m.group(1)) if m else None
        if m is None or kind is None:
            raise ValueError(
                f"unknown metric {name!r}: expected NAME@K with NAME one of "
                "ndcg, recall, mrr, map, precision (or p) and K a positive integer"
            )
        k = int(m.group(2))
        if k <= 0:
            raise ValueError(f"metric {name!r}: the cutoff must be a positive integer")
        canonical = f"{kind}@{k}"
        if canonical not in seen:
            seen.add(canonical)
            specs.append((canonical, kind, k))
    if not specs:
        raise ValueError("no metric requested")
    return specs


def _relevant_ranks(
    qid: str, docs: Mapping[str, float], positives: Mapping[str, int]
) -> tuple[list[int], list[float]]:
    """Ranks (1-based, trec_eval order) and grades of the retrieved relevant documents,
    sorted by rank.

    Only the relevant documents need a rank, so instead of sorting the whole run this
    counts, for each of them, the documents with a higher score (a binary search in the
    sorted scores) plus the tied documents with a larger docid (trec_eval's tie-break).
    """
    n = len(docs)
    if n == 0:
        return [], []
    scores = np.fromiter(docs.values(), dtype=np.float64, count=n)
    if np.isnan(scores).any():
        raise ValueError(f"run for query {qid!r} contains a NaN score")
    hit_ids = [d for d in positives if d in docs]
    if not hit_ids:
        return [], []
    # np.float64(x) converts exactly as np.fromiter did, so equal scores stay equal.
    hit_scores = np.array([docs[d] for d in hit_ids], dtype=np.float64)
    sorted_scores = np.sort(scores)
    right = np.searchsorted(sorted_scores, hit_scores, side="right")
    left = np.searchsorted(sorted_scores, hit_scores, side="left")
    ranks = (n - right + 1).tolist()  # 1 + number of strictly higher scores
    tied = np.flatnonzero(right - left > 1)
    if tied.size:
        all_ids = list(docs)
        tied_ids_by_score: dict[float, list[str]] = {}
        for i in tied.tolist():
            s = float(hit_scores[i])
            same = tied_ids_by_score.get(s)
            if same is None:
                same = sorted(all_ids[j] for j in np.flatnonzero(scores == s).tolist())
                tied_ids_by_score[s] = same
            # Tied documents with a larger docid come first in trec_eval's order.
            ranks[i] += len(same) - bisect_right(same, hit_ids[i])
    order = sorted(range(len(hit_ids)), key=ranks.__getitem__)
    return [ranks[i] for i in order], [float(positives[hit_ids[i]]) for i in order]


def _query_metrics(
    ranks: list[int],
    gains: list[float],
    ideal_gains: list[float],
    specs: list[tuple[str, str, int]],
    max_k: int,
) -> list[float]:
    """All requested metrics of one query from its relevant documents' ranks."""
    n_rel = len(ideal_gains)
    # Prefix sums in rank order, accumulated left to right as trec_eval does.
    dcg = [0.0]
    ap = [0.0]
    for i, (r, g) in enumerate(zip(ranks, gains)):
        if r > max_k:
            break
        dcg.append(dcg[-1] + g / math.log2(r + 1))
        ap.append(ap[-1] + (i + 1) / r)
    idcg = [0.0]
    for i, g in enumerate(ideal_gains[:max_k]):
        idcg.append(idcg[-1] + g / math.log2(i + 2))

    values = []
    for _, kind, k in specs:
        c = bisect_right(ranks, k, hi=len(dcg) - 1)  # relevant documents in the top k
        if kind == "ndcg":
            v = dcg[c] / idcg[min(k, n_rel)]
        elif kind == "recall":
            v = c / n_rel
        elif kind == "precision":
            v = c / k
        elif kind == "map":
            v = ap[c] / n_rel
        else:  # mrr
            v = 1.0 / ranks[0] if c else 0.0
        values.append(v)
    return values


def evaluate(
    qrels: Qrels,
    run: Run,
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    per_query: bool = False,
    missing_as_zero: bool = False,
) -> dict[str, float] | dict[str, dict[str, float]]:
    """Evaluate a run against qrels with trec_eval's definitions.

    See the module docstring for the exact definitions, the tie-break (equal scores are
    ordered by docid descending, as trec_eval does) and which queries are averaged.

    Args:
        qrels: ``{qid: {docid: grade}}``; grades >= 1 are relevant, 0 and negative are not.
        run: ``{qid: {docid: score}}``; higher scores rank first, the dict order is ignored.
        metrics: names such as ``"ndcg@10"``, ``"recall@100"``, ``"mrr@10"``, ``"map@100"``,
            ``"precision@5"`` / ``"P@5"``; case-insensitive. A single name may be passed.
        per_query: return each query's value instead of the mean.
        missing_as_zero: count queries of ``qrels`` (with a relevant document) that are
            absent from ``run`` as 0 instead of skipping them.

    Returns:
        ``{metric: mean}``, or with ``per_query=True`` ``{metric: {qid: value}}``, keyed by
        the canonical lower-case metric name (``"P@5"`` becomes ``"precision@5"``) in the
        order requested.

    Raises:
        ValueError: an unknown metric name, a NaN score, or no query to evaluate (usually
            query ids that differ between ``qrels`` and ``run``, e.g. ``1`` vs ``"1"``).
        TypeError: document ids in ``run`` that are not strings.
    """
    specs = _parse_metrics(metrics)
    max_k = max(k for _, _, k in specs)
    per_metric: list[dict[str, float]] = [{} for _ in specs]
    zeros = [0.0] * len(specs)

    for qid, judged in qrels.items():
        positives = {d: g for d, g in judged.items() if g > 0}
        if not positives:
            continue  # no relevant document: nDCG undefined, skipped (see module doc)
        docs = run.get(qid)
        if docs is None:
            if not missing_as_zero:
                continue
            values = zeros
        else:
            if docs and not isinstance(next(iter(docs)), str):
                raise TypeError(
                    f"document ids of query {qid!r} in the run must be strings, "
                    f"got {type(next(iter(docs))).__name__}"
                )
            ranks, gains = _relevant_ranks(qid, docs, positives)
            ideal = sorted((float(g) for g in positives.values()), reverse=True)
            values = _query_metrics(ranks, gains, ideal, specs, max_k)
        for out, v in zip(per_metric, values):
            out[qid] = v

    if not per_metric[0]:
        sample_run = next(iter(run), None)
        sample_qrels = next(iter(qrels), None)
        raise ValueError(
            "no query to evaluate: no query of the qrels with a relevant document is in the "
            f"run (qrels ids look like {sample_qrels!r}, run ids like {sample_run!r})"
        )
    if per_query:
        return {name: out for (name, _, _), out in zip(specs, per_metric)}
    return {
        name: math.fsum(out.values()) / len(out) for (name, _, _), out in zip(specs, per_metric)
    }
