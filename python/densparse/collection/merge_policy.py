"""Which segments to merge after a write: a log-structured (tiered) policy, as in Lucene's
LogMergePolicy and tantivy's LogMergePolicy (in the Rust core, ``collection::merge_policy``).

Segments fall into levels by size: level ``L`` holds segments of ``f**L`` to ``f**(L+1)``
live documents (``f`` the merge factor, 3). When a level holds ``f`` segments they are
merged into one segment of the next level, so a document is rewritten about once per level:
``log_f(N / batch)`` times over the life of a collection of N documents added in batches.
Merging the smallest segments whenever there are too many rewrites far more (in the test,
2,000 adds of 100 documents: 7.7 rewrites per document here, 50 that way).
``max_segments`` stays a hard cap (searches touch every segment): above it, just enough of
the smallest segments are merged. A segment that is mostly deleted documents is merged at
the next chance, so deleted documents do not linger.
"""

from __future__ import annotations

from collections.abc import Sequence

from densparse import _core

MERGE_FACTOR = 3
FLOOR_DOCS = 1


def level(live_docs: int, factor: int = MERGE_FACTOR, floor_docs: int = FLOOR_DOCS) -> int:
    """The level of a segment with ``live_docs`` live documents."""
    return _core.merge_level(live_docs, factor, floor_docs)


def plan(
    live: Sequence[int],
    total: Sequence[int],
    max_segments: int,
    factor: int = MERGE_FACTOR,
    floor_docs: int = FLOOR_DOCS,
) -> list[int]:
    """Indices of the segments to merge next (empty: nothing to do). ``live`` and ``total``
    are each segment's live and stored document counts."""
    return _core.merge_plan(list(live), list(total), max_segments, factor, floor_docs)
