"""Hard-negative mining (FlagEmbedding recipe; docs/algorithms.md), torch-free.

For each training query: retrieve the top ``range_end`` candidates (densparse BM25, a dense
:class:`densparse.Encoder` + :class:`densparse.DenseIndex`, or a :class:`densparse.Collection`),
keep ranks ``[range_start, range_end)``, remove the positives and the query itself, sample
``negative_number`` of them with a seeded RNG, and backfill from random documents when too
few are left. See :func:`mine_hard_negatives` for the exact rules.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from densparse._progress import Progress, wants_progress
from densparse.train.data import (
    MODES,
    Corpus,
    PairStats,
    Qrels,
    corpus_texts,
    qd_pairs,
    qq_pairs,
    validate_record,
)

log = logging.getLogger(__name__)

__all__ = ["add_hard_negatives", "mine_hard_negatives"]

#: Queries per BM25 batch search (one progress step each).
BM25_CHUNK = 1024
LANGUAGES = ("auto", "en", "zh")


def _check_int(name: str, v: object, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    return int(v)


def _check_common(
    range_start: object, range_end: object, negative_number: object, seed: object, prompt: object
) -> tuple[int, int, int, int]:
    range_start = _check_int("range_start", range_start, 0)
    range_end = _check_int("range_end", range_end, 1)
    if range_end <= range_start:
        raise ValueError(f"range_end ({range_end}) must be > range_start ({range_start})")
    negative_number = _check_int("negative_number", negative_number, 0)
    seed = _check_int("seed", seed, 0)
    if prompt is not None and not isinstance(prompt, str):
        raise TypeError("prompt must be a str")
    return range_start, range_end, negative_number, seed


def _rng(seed: int, qid: str) -> random.Random:
    """One RNG per record, seeded by (seed, query id): a query's negatives do not depend on
    which other queries are mined with it (given the same candidates)."""
    return random.Random(f"densparse-mine:{seed}:{qid}")


# ---------------------------------------------------------------------------- retrieval
def _bm25_rankings(
    texts: list[str],
    eligible: np.ndarray,
    queries: list[str],
    k: int,
    analyzer: Any,
    language: str,
    threads: Optional[int],
    progress: bool,
) -> list[np.ndarray]:
    from densparse.analysis import Analyzer
    from densparse.bm25 import BM25

    if analyzer is None:
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
        analyzer = Analyzer(language=language)
    bm25 = BM25(analyzer=analyzer).index(texts, show_progress=progress)
    mask = eligible.astype(np.uint8)
    out: list[np.ndarray] = []
    with Progress(len(queries), "BM25 search", progress, unit="query") as tick:
        for lo in range(0, len(queries), BM25_CHUNK):
            batch = queries[lo : lo + BM25_CHUNK]
            ids, scores = bm25.search(batch, k=k, threads=threads, mask=mask)
            for row_ids, row_scores in zip(ids, scores):
                # no shared term (score 0) or mask padding (-1): not a candidate
                out.append(row_ids[(row_ids >= 0) & (row_scores > 0)])
            if tick:
                tick(len(batch))
    return out


def _dense_rankings(
    encoder: Any,
    texts: list[str],
    eligible: np.ndarray,
    queries: list[str],
    k: int,
    query_instruction: Optional[str],
    batch_size: int,
    max_length: Optional[int],
    threads: Optional[int],
    progress: Optional[bool],
) -> list[np.ndarray]:
    from densparse.dense import DenseIndex

    if encoder.family == "splade":
        raise ValueError(
            "a SPLADE encoder gives sparse vectors: mine with a dense model or with BM25"
        )
    kw: dict[str, Any] = {}
    if encoder.family == "bge-m3":
        kw = dict(return_dense=True, return_sparse=False, return_colbert=False)
    if max_length is not None:
        kw["max_length"] = _check_int("max_length", max_length, 1)
    doc_ids = np.flatnonzero(eligible)
    log.info("encoding %d documents and %d queries with %s", len(doc_ids), len(queries), encoder)
    dv = encoder.encode_corpus(
        [texts[i] for i in doc_ids], batch_size=batch_size, show_progress=progress, **kw
    )
    qv = encoder.encode_queries(
        queries,
        batch_size=batch_size,
        show_progress=progress,
        query_instruction=query_instruction,
        **kw,
    )
    if isinstance(dv, dict):
        dv, qv = dv["dense_vecs"], qv["dense_vecs"]
    dv, qv = np.asarray(dv, np.float32), np.asarray(qv, np.float32)
    index = DenseIndex(dv.shape[1])
    index.add(dv, ids=doc_ids)
    ids, _ = index.search(qv, k=k, threads=threads)
    return [row[row >= 0] for row in ids]


def _collection_rankings(
    collection: Any,
    position: dict[str, int],
    queries: list[str],
    k: int,
    mode: str,
    progress: bool,
) -> list[np.ndarray]:
    out = []
    unknown: dict[str, None] = {}
    with Progress(len(queries), "Collection search", progress, unit="query") as tick:
        for q in queries:
            hits = collection.search(text=q, k=k, mode=mode)
            row = []
            for h in hits:
                i = position.get(h.id)
                if i is None:
                    unknown[h.id] = None
                else:
                    row.append(i)
            out.append(np.asarray(row, np.int64))
            if tick:
                tick(1)
    if unknown:
        some = ", ".join(repr(u) for u in list(unknown)[:5])
        log.warning(
            "%d documents of the collection are not in the corpus and were skipped (e.g. %s)",
            len(unknown),
            some,
        )
    return out


# ---------------------------------------------------------------------------- sampling
def _backfill(
    rng: random.Random,
    need: int,
    n_pool: int,
    blocked: set[int],
    ok: Any,
) -> list[int]:
    """``need`` distinct random pool positions not in ``blocked`` and passing ``ok``."""
    got: list[int] = []
    seen = set(blocked)
    tries = 0
    limit = 20 * need + 64
    while len(got) < need and tries < limit:
        tries += 1
        i = rng.randrange(n_pool)
        if i in seen:
            continue
        seen.add(i)
        if ok(i):
            got.append(i)
    if len(got) < need:  # a small or crowded pool: draw from what is left
        rest = [i for i in range(n_pool) if i not in seen and ok(i)]
        got += rng.sample(rest, min(need - len(got), len(rest)))
    return got


def _mine(
    records: list[dict[str, Any]],
    pool_ids: Optional[list[str]],
    pool_texts: list[str],
    stats: dict[str, Any],
    *,
    kind: str,
    retriever: Any,
    self_ids: bool,
    range_start: int,
    range_end: int,
    negative_number: int,
    seed: int,
    language: str,
    analyzer: Any,
    query_instruction: Optional[str],
    collection_mode: str,
    batch_size: int,
    max_length: Optional[int],
    prompt: Optional[str],
    threads: Optional[int],
    show_progress: Optional[bool],
) -> None:
    """Retrieve, filter, sample and backfill: sets ``neg`` (and ``neg_ids`` when the pool
    has ids) of every record in place and adds to ``stats``."""
    position = {} if pool_ids is None else {d: i for i, d in enumerate(pool_ids)}
    stripped = [t.strip() for t in pool_texts]
    eligible = np.array([bool(t) for t in stripped], dtype=bool)
    qtexts = [r["query"] for r in records]
    progress = wants_progress(show_progress, len(records) + len(pool_texts))

    rankings: list[np.ndarray]
    if negative_number == 0:
        rankings = [np.zeros(0, np.int64)] * len(records)
    elif kind == "bm25":
        log.info("mining with BM25 over %d texts for %d queries", len(pool_texts), len(records))
        rankings = _bm25_rankings(
            pool_texts, eligible, qtexts, range_end, analyzer, language, threads, progress
        )
    elif kind == "collection":
        rankings = _collection_rankings(
            retriever, position, qtexts, range_end, collection_mode, progress
        )
    else:
        from densparse.collection.encoding import load_encoder

        enc = load_encoder(retriever)
        rankings = _dense_rankings(
            enc,
            pool_texts,
            eligible,
            qtexts,
            range_end,
            query_instruction,
            batch_size,
            max_length,
            threads,
            show_progress,
        )

    n_pool = len(pool_texts)
    for n, (rec, ranked) in enumerate(zip(records, rankings)):
        qid = rec.get("query_id", f"#{n}")
        rng = _rng(seed, qid)
        banned_ids = {position[p] for p in rec.get("pos_ids", ()) if p in position}
        if self_ids and qid in position:
            banned_ids.add(position[qid])
        ranked = [int(i) for i in ranked[:range_end]]
        # the query, its positives, and the top ranks (likely false negatives), by text too
        banned_texts = {rec["query"].strip()} | {p.strip() for p in rec["pos"]}
        banned_texts |= {stripped[i] for i in ranked[:range_start]}

        def ok(i: int, banned_ids=banned_ids, banned_texts=banned_texts) -> bool:
            return eligible[i] and i not in banned_ids and stripped[i] not in banned_texts

        cands, seen_texts = [], set()
        for i in ranked[range_start:]:
            if ok(i) and stripped[i] not in seen_texts:
                seen_texts.add(stripped[i])
                cands.append(i)
        if len(cands) > negative_number:
            keep = set(rng.sample(range(len(cands)), negative_number))
            chosen = [c for j, c in enumerate(cands) if j in keep]  # rank order
        else:
            chosen = cands
        mined = len(chosen)
        need = negative_number - mined
        if need > 0:
            blocked = set(chosen) | set(ranked[:range_start])

            def fill_ok(i: int, ok=ok, seen_texts=seen_texts) -> bool:
                if not ok(i) or stripped[i] in seen_texts:
                    return False
                seen_texts.add(stripped[i])
                return True

            chosen = chosen + _backfill(rng, need, n_pool, blocked, fill_ok)
        rec["neg"] = [pool_texts[i] for i in chosen]
        if pool_ids is not None:
            rec["neg_ids"] = [pool_ids[i] for i in chosen]
        if prompt is not None:
            rec["prompt"] = prompt
        stats["negatives"] += len(chosen)
        stats["mined"] += mined
        stats["backfilled"] += len(chosen) - mined
        if len(chosen) < negative_number:
            stats["short"] += 1
    if stats["short"]:
        log.warning(
            "%d of %d queries got fewer than %d negatives: the pool (%d texts) is too small",
            stats["short"],
            len(records),
            negative_number,
            n_pool,
        )
    log.info(
        "mined %d records: %d negatives (%d from ranks [%d, %d), %d backfilled)",
        len(records),
        stats["negatives"],
        stats["mined"],
        range_start,
        range_end,
        stats["backfilled"],
    )


def mine_hard_negatives(
    corpus: Optional[Corpus],
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    retriever: Any = "bm25",
    mode: str = "qd",
    range_start: int = 2,
    range_end: int = 200,
    negative_number: int = 15,
    seed: int = 0,
    language: str = "auto",
    analyzer: Any = None,
    query_instruction: Optional[str] = None,
    collection_mode: str = "hybrid",
    batch_size: int = 32,
    max_length: Optional[int] = None,
    prompt: Optional[str] = None,
    skip_unknown: bool = False,
    threads: Optional[int] = None,
    show_progress: Optional[bool] = None,
    return_stats: bool = False,
) -> Union[list[dict[str, Any]], tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Build training records with hard negatives.

    Args:
        corpus: ``{doc_id: {"title", "text"}}`` (BEIR) or ``{doc_id: text}``; a document's
            text is ``title + " " + text`` (see :func:`densparse.train.data.doc_text`).
            May be ``None`` in ``"qq"`` mode (then qrels' document ids are not checked).
        queries: ``{query_id: text}``.
        qrels: ``{query_id: {doc_id: relevance}}``; relevance > 0 is positive. Unknown query
            or document ids are a ValueError listing a few (``skip_unknown=True``: dropped
            with a warning). Queries without a positive are dropped (counted, logged).
        retriever: ``"bm25"`` (densparse BM25, Lucene variant, k1 1.5, b 0.75, over the
            candidate pool), a :class:`densparse.Encoder` or a model directory (dense: pool
            and queries are encoded — queries with the query instruction — and searched
            exactly with a :class:`densparse.DenseIndex`), or a :class:`densparse.Collection`
            (searched by text with ``collection_mode``; its ids must be corpus ids, others
            are skipped with a warning; ``"qd"`` mode only).
        mode: ``"qd"`` (question -> document, default: the pool is the corpus) or ``"qq"``
            (question -> question / FAQ: queries sharing a relevant document are positives
            of each other; the pool is ``queries``, so negatives are other questions).
        range_start, range_end: candidate ranks ``[range_start, range_end)`` (0 = the top
            hit, positives and the query itself included in the counting) are sampled from.
            Ranks below ``range_start`` are the likeliest false negatives: they (and texts
            equal to theirs) are never used, not even by the backfill.
        negative_number: negatives per query (0 = none).
        seed: sampling seed; the output is a pure function of the inputs and the seed.
        language: ``"auto"``, ``"en"`` or ``"zh"``: the BM25 analyzer's language (ignored
            when ``analyzer`` is given).
        analyzer: a :class:`densparse.Analyzer` for BM25.
        query_instruction: dense retrievers: override the model's query instruction
            (``""`` = none).
        collection_mode: the ``mode`` of ``Collection.search`` (``"hybrid"``, ``"bm25"``,
            ``"dense"``...).
        batch_size: dense encoding batch size.
        max_length: dense: truncate texts at this many tokens (default: the model's
            maximum); shorter is faster on long documents.
        prompt: written as ``"prompt"`` into every record when given.
        threads: search threads (None: all cores).
        show_progress: progress bars (None: on a terminal for large jobs).
        return_stats: also return a dict of counts.

    Rules: a candidate is excluded when it is a positive (by id), the query itself (same
    id in ``"qq"`` mode) or has the same text (stripped) as the query or as a positive; a
    text already chosen is not chosen twice; BM25 candidates must share a term with the
    query (score > 0). When fewer than ``negative_number`` candidates remain, all are taken
    and random pool documents (not excluded, not blank, not among the top ``range_start``,
    not chosen) fill up; only a pool too small to fill up leaves a record short (counted
    and logged). Negatives are ordered by rank, then backfill.

    Returns:
        Records ``{"query", "pos", "neg", "query_id", "pos_ids", "neg_ids"}`` (+ ``"prompt"``)
        in qrels order; ``neg_ids`` are document ids (query ids in ``"qq"`` mode). With
        ``return_stats=True``: ``(records, stats)``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    range_start, range_end, negative_number, seed = _check_common(
        range_start, range_end, negative_number, seed, prompt
    )
    if not isinstance(queries, Mapping):
        raise TypeError(f"queries must be a dict {{query_id: text}}, not {type(queries).__name__}")
    kind = _retriever_kind(retriever)
    if kind == "collection" and mode == "qq":
        raise ValueError("a Collection retriever holds documents: use mode='qd' with it")

    pstats = PairStats()
    if mode == "qd":
        if corpus is None:
            raise ValueError("mode='qd' needs a corpus")
        records = qd_pairs(corpus, queries, qrels, skip_unknown=skip_unknown, stats=pstats)
        pool_ids, pool_texts = corpus_texts(corpus)
    else:
        doc_ids = None if corpus is None else corpus_texts(corpus)[0]
        records = qq_pairs(queries, qrels, doc_ids=doc_ids, skip_unknown=skip_unknown, stats=pstats)
        pool_ids = list(queries)
        pool_texts = [queries[q] for q in pool_ids]
    stats: dict[str, Any] = {
        "mode": mode,
        "judged_queries": pstats.queries,
        "records": len(records),
        "dropped_no_positive": pstats.no_positive,
        "dropped_empty_query": pstats.empty_query,
        "pool": len(pool_ids),
        "negatives": 0,
        "mined": 0,
        "backfilled": 0,
        "short": 0,
    }
    if not records:
        raise ValueError(
            f"no training pairs: none of the {pstats.queries} judged queries has a positive"
        )
    _mine(
        records,
        pool_ids,
        pool_texts,
        stats,
        kind=kind,
        retriever=retriever,
        self_ids=mode == "qq",
        range_start=range_start,
        range_end=range_end,
        negative_number=negative_number,
        seed=seed,
        language=language,
        analyzer=analyzer,
        query_instruction=query_instruction,
        collection_mode=collection_mode,
        batch_size=batch_size,
        max_length=max_length,
        prompt=prompt,
        threads=threads,
        show_progress=show_progress,
    )
    return (records, stats) if return_stats else records


def add_hard_negatives(
    records: Sequence[Mapping[str, Any]],
    pool: Union[Sequence[str], Mapping[str, Union[str, Mapping[str, Any]]], None] = None,
    *,
    retriever: Any = "bm25",
    range_start: int = 2,
    range_end: int = 200,
    negative_number: int = 15,
    seed: int = 0,
    language: str = "auto",
    analyzer: Any = None,
    query_instruction: Optional[str] = None,
    collection_mode: str = "hybrid",
    batch_size: int = 32,
    max_length: Optional[int] = None,
    prompt: Optional[str] = None,
    threads: Optional[int] = None,
    show_progress: Optional[bool] = None,
    return_stats: bool = False,
) -> Union[list[dict[str, Any]], tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Mine hard negatives for existing records (e.g. a training JSONL without ``neg``):
    FlagEmbedding's ``hn_mine`` on densparse retrieval.

    Args:
        records: dicts with ``query`` (non-empty str) and ``pos`` (non-empty list of str);
            an existing ``neg`` is replaced, other keys are kept (the input is not modified).
        pool: the candidate texts: a list of texts, or ``{doc_id: text or {"title", "text"}}``
            (then ``neg_ids`` are written, and a record's ``pos_ids`` are excluded by id).
            ``None``: every distinct ``pos`` and ``neg`` text of ``records`` (as
            FlagEmbedding does without a candidate pool).
        retriever: and the other keyword arguments: as :func:`mine_hard_negatives`, with its
            exclusion, sampling and backfill rules (positives and the query are excluded by text). A
            :class:`densparse.Collection` retriever needs a ``{doc_id: ...}`` pool.

    Returns:
        New records; with ``return_stats=True``: ``(records, stats)``.
    """
    range_start, range_end, negative_number, seed = _check_common(
        range_start, range_end, negative_number, seed, prompt
    )
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise TypeError("records must be a list of dicts")
    out: list[dict[str, Any]] = []
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ValueError(f"records[{i}]: expected a dict, got {type(r).__name__}")
        rec = dict(r)
        rec["neg"] = []
        rec.pop("neg_ids", None)
        validate_record(rec, f"records[{i}]")
        out.append(rec)
    if not out:
        raise ValueError("records is empty")
    pool_ids: Optional[list[str]]
    if pool is None:
        seen: dict[str, None] = {}
        for r in records:
            for t in list(r["pos"]) + list(r.get("neg") or []):
                seen[t] = None
        pool_ids, pool_texts = None, list(seen)
    elif isinstance(pool, Mapping):
        pool_ids, pool_texts = corpus_texts(pool)
    elif isinstance(pool, (str, bytes)) or not isinstance(pool, Sequence):
        raise TypeError("pool must be a list of texts or a dict {doc_id: text}")
    else:
        pool_ids, pool_texts = None, list(pool)
        for i, t in enumerate(pool_texts):
            if not isinstance(t, str):
                raise TypeError(f"pool[{i}] must be a str, not {type(t).__name__}")
    if not pool_texts:
        raise ValueError("the candidate pool is empty")
    kind = _retriever_kind(retriever)
    if kind == "collection" and pool_ids is None:
        raise ValueError("a Collection retriever needs a pool {doc_id: text} with its ids")
    stats: dict[str, Any] = {
        "records": len(out),
        "pool": len(pool_texts),
        "negatives": 0,
        "mined": 0,
        "backfilled": 0,
        "short": 0,
    }
    _mine(
        out,
        pool_ids,
        pool_texts,
        stats,
        kind=kind,
        retriever=retriever,
        self_ids=False,
        range_start=range_start,
        range_end=range_end,
        negative_number=negative_number,
        seed=seed,
        language=language,
        analyzer=analyzer,
        query_instruction=query_instruction,
        collection_mode=collection_mode,
        batch_size=batch_size,
        max_length=max_length,
        prompt=prompt,
        threads=threads,
        show_progress=show_progress,
    )
    return (out, stats) if return_stats else out


def _retriever_kind(retriever: Any) -> str:
    from densparse.collection import Collection
    from densparse.models import Encoder

    if isinstance(retriever, str) and retriever == "bm25":
        return "bm25"
    if isinstance(retriever, Collection):
        return "collection"
    if isinstance(retriever, (Encoder, str, os.PathLike)):
        return "dense"
    raise TypeError(
        "retriever must be 'bm25', a densparse.Encoder, a model directory or a "
        f"densparse.Collection, not {type(retriever).__name__}"
    )
