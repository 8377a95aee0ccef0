"""A snapshot's segments as the search engine sees them, and ColBERT re-scoring.

Routes (BM25, dense, sparse) and their fusion run in one call into Rust
(:class:`densparse._core.Snapshot`, built from each :class:`Part`'s reader); ColBERT
re-scoring of their candidates stays here, since its vectors are numpy files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from densparse import _core
from densparse.collection.segment import Segment

Hits = tuple[np.ndarray, np.ndarray]  # (docnos int64, scores float32), best first
EMPTY: Hits = (np.zeros(0, np.int64), np.zeros(0, np.float32))


@dataclass(frozen=True)
class Part:
    """A segment as one snapshot sees it."""

    seg: Segment
    live: np.ndarray  # bool [n_docs]; copied, never changed in place, when documents go
    n_live: int
    live_file: Optional[str]  # file holding `live` on disk; None when not yet written
    base: int = 0  # docno of the segment's first document in this snapshot
    # this Part's reader, built on first search (a new `live` gets a new dict)
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    def reader(self) -> _core.SegmentReader:
        """The Rust view of this segment with this live set (built once per Part: the
        deleted documents' BM25 statistics are cached in it)."""
        got = self.cache.get("reader")
        if got is None:
            seg = self.seg
            got = self.cache["reader"] = _core.SegmentReader(
                seg.records,
                seg.bm25,
                None if seg.dense is None else seg.dense._core,
                None if seg.sparse is None else seg.sparse._idx,
                None if self.n_live == seg.n_docs else self.live,
            )
        return got


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
