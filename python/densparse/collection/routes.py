"""Retrieval routes over a snapshot of segments: BM25, dense, sparse, ColBERT re-scoring.

Each route returns the exact top-k documents of the whole collection for that route, as
(score, docno) pairs, where ``docno`` numbers the documents of the snapshot (segment base +
position). Scoring happens in the Rust indexes; this module only asks each segment for its
best documents and merges them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from densparse.analysis import Analyzer
from densparse.collection.segment import Segment

Hits = tuple[np.ndarray, np.ndarray]  # (docnos int64, scores float32), best first
EMPTY: Hits = (np.zeros(0, np.int64), np.zeros(0, np.float32))

#: BM25 variants whose non-matching documents score exactly 0 (bm25l / bm25+ give every
#: document a positive constant for the query terms it lacks).
_ZERO_FOR_NO_MATCH = ("lucene", "robertson", "atire")


@dataclass(frozen=True)
class DeletedRows:
    """What the deleted documents of a segment contribute to its BM25 statistics."""

    rows: int
    tokens: int
    df: dict[str, int]


@dataclass(frozen=True)
class Part:
    """A segment as one snapshot sees it."""

    seg: Segment
    live: np.ndarray  # bool [n_docs]; copied, never changed in place, when documents go
    n_live: int
    live_file: Optional[str]  # file holding `live` on disk; None when not yet written
    base: int = 0  # docno of the segment's first document in this snapshot
    # DeletedRows for this `live`, computed on first BM25 use (a new `live` gets a new dict)
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    def deleted_rows(self, analyzer: Analyzer) -> DeletedRows:
        """Rows, tokens and document frequencies of the deleted documents, found by
        analysing their texts again: exact, and costs time in the number deleted."""
        got = self.cache.get("deleted")
        if got is None:
            seg = self.seg
            texts = [
                t for d in np.flatnonzero(~self.live).tolist() for t in (seg.text(d), *seg.views(d))
            ]
            df: Counter[str] = Counter()
            tokens = 0
            for toks in analyzer.tokenize_batch(texts) if texts else []:
                tokens += len(toks)
                df.update(set(toks))
            got = self.cache["deleted"] = DeletedRows(len(texts), tokens, dict(df))
        return got

    def doc_mask(self, filter_mask: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """Eligible documents, or None when all are."""
        if filter_mask is None:
            return None if self.n_live == self.seg.n_docs else self.live
        return filter_mask & self.live


def _first_per_doc(
    search: Callable[[int], tuple[np.ndarray, np.ndarray]],
    row_doc: Optional[np.ndarray],
    k: int,
    n_rows: int,
    positive_only: bool,
) -> Hits:
    """Top ``k`` documents by max over their rows: take the ranked rows, keep each
    document's first (best) row; fetch more rows until k documents are found or the
    ranked list is exhausted. Exact, since a document's best row ranks first."""
    kr = min(n_rows, k if row_doc is None else 2 * k)
    while True:
        ids, scores = search(kr)
        # Padding (-1 / -inf) and, for term routes, non-matching documents (score 0) form
        # the tail of the ranked list.
        ok = (scores > 0) if positive_only else (ids >= 0)
        n_ok = int(ok.sum())
        exhausted = n_ok < len(ids)
        ids, scores = ids[:n_ok], scores[:n_ok]
        docs = ids
        if row_doc is not None:
            docs = row_doc[ids]
            _, first = np.unique(docs, return_index=True)
            first.sort()
            docs, scores = docs[first], scores[first]
        if len(docs) >= k or exhausted or len(ids) < kr or kr >= n_rows:
            return docs[:k], scores[:k]
        kr = min(n_rows, kr * 4)


def merge_hits(per_segment: Sequence[tuple[Part, Hits]], k: int) -> Hits:
    """Global top-k from per-segment (local docs, scores): score desc, docno asc."""
    if not per_segment:
        return EMPTY
    docnos = np.concatenate([p.base + d for p, (d, _) in per_segment]).astype(np.int64)
    scores = np.concatenate([s for _, (_, s) in per_segment]).astype(np.float32)
    order = np.lexsort((docnos, -scores))[:k]
    return docnos[order], scores[order]


def bm25_counts(
    parts: Sequence[Part], tokens: Sequence[str], analyzer: Analyzer
) -> tuple[int, int, dict[str, int]]:
    """Rows of live documents, their total number of tokens, and df per token over them:
    sums over collections (shards) give the statistics of their union."""
    n, total = 0, 0
    df = dict.fromkeys(set(tokens), 0)
    for p in parts:
        n += p.seg.bm25.n_docs
        total += p.seg.total_tokens
        gone = p.deleted_rows(analyzer) if p.n_live < p.seg.n_docs else None
        if gone is not None:
            n -= gone.rows
            total -= gone.tokens
        for t in df:
            df[t] += p.seg.bm25.df(t) - (gone.df.get(t, 0) if gone else 0)
    return n, total, df


def bm25_stats(
    parts: Sequence[Part], tokens: list[str], analyzer: Analyzer
) -> Optional[tuple[int, float, dict]]:
    """Collection-wide BM25 statistics over the rows of live documents (documents, average
    length, df per query token), so that every segment scores exactly as one index built
    over the live documents would (Lucene and tantivy count deleted documents until a
    merge). None for a single segment without deletions (its own statistics are exact)."""
    if len(parts) == 1 and parts[0].n_live == parts[0].seg.n_docs:
        return None
    n, total, df = bm25_counts(parts, tokens, analyzer)
    return n, total / n, df


def bm25_route(
    parts: Sequence[Part],
    masks: Sequence[Optional[np.ndarray]],
    tokens: list[str],
    k: int,
    method: str,
    analyzer: Analyzer,
    stats: Optional[tuple[int, float, dict]] = None,
) -> Hits:
    """``stats``: (rows, average length, df per token) to score with instead of the
    collection's own (e.g. statistics summed over the shards of a sharded collection)."""
    if stats is None:
        stats = bm25_stats(parts, tokens, analyzer)
    positive_only = method in _ZERO_FOR_NO_MATCH
    out = []
    for p, m in zip(parts, masks):
        seg = p.seg
        row_mask = None if m is None else m[seg.row_doc]
        if row_mask is not None and not row_mask.any():
            continue

        def search(kr: int, seg: Segment = seg, row_mask: Optional[np.ndarray] = row_mask):
            ids, sc = seg.bm25.search_tokens(
                [tokens], k=kr, threads=1, mask=row_mask, global_stats=stats
            )
            return ids[0], sc[0]

        out.append((p, _first_per_doc(search, seg.row_doc, k, seg.n_rows, positive_only)))
    return merge_hits(out, k)


def dense_route(
    parts: Sequence[Part], masks: Sequence[Optional[np.ndarray]], query: np.ndarray, k: int
) -> Hits:
    out = []
    for p, m in zip(parts, masks):
        seg = p.seg
        if seg.dense is None or len(seg.dense) == 0:
            continue
        row_mask = None if m is None else m[seg.row_doc]
        if row_mask is not None and not row_mask.any():
            continue

        def search(kr: int, seg: Segment = seg, row_mask: Optional[np.ndarray] = row_mask):
            kr = min(kr, len(seg.dense))
            return seg.dense.search(query, k=kr, mask=row_mask, threads=1)

        hits = _first_per_doc(search, seg.row_doc, k, len(seg.dense), False)
        out.append((p, hits))
    return merge_hits(out, k)


def sparse_route(
    parts: Sequence[Part], masks: Sequence[Optional[np.ndarray]], query: object, k: int
) -> Hits:
    out = []
    for p, m in zip(parts, masks):
        seg = p.seg
        if seg.sparse is None or len(seg.sparse) == 0:
            continue
        if m is not None and not m.any():
            continue

        def search(kr: int, seg: Segment = seg, m: Optional[np.ndarray] = m):
            kr = min(kr, len(seg.sparse))
            return seg.sparse.search(query, k=kr, mask=m, threads=1)

        # Documents sharing no term with the query score 0: they are not hits.
        out.append((p, _first_per_doc(search, None, k, len(seg.sparse), True)))
    return merge_hits(out, k)


def colbert_route(
    locate: Callable[[int], tuple[Part, int]], candidates: np.ndarray, query: np.ndarray
) -> Hits:
    """MaxSim scores of the candidate documents that have ColBERT vectors."""
    from densparse import maxsim

    docs, vecs = [], []
    for docno in candidates.tolist():
        p, d = locate(docno)
        v = p.seg.colbert_of(d)
        if v is not None:
            docs.append(docno)
            vecs.append(v)
    if not docs:
        return EMPTY
    scores = np.asarray(maxsim(query, vecs), dtype=np.float32)
    docnos = np.asarray(docs, dtype=np.int64)
    order = np.lexsort((docnos, -scores))
    return docnos[order], scores[order]
