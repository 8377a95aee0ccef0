"""Which segments to merge after a write: a log-structured (tiered) policy, as in Lucene's
LogMergePolicy and tantivy's LogMergePolicy.

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

import math
from collections.abc import Sequence

MERGE_FACTOR = 3
FLOOR_DOCS = 1
#: a segment with more than this share of deleted documents is merged at the next chance
DELETED_SHARE = 0.5


def level(live_docs: int, factor: int = MERGE_FACTOR, floor_docs: int = FLOOR_DOCS) -> int:
    return int(math.log(max(live_docs, floor_docs) / floor_docs, factor) + 1e-9)


def plan(
    live: Sequence[int],
    total: Sequence[int],
    max_segments: int,
    factor: int = MERGE_FACTOR,
    floor_docs: int = FLOOR_DOCS,
) -> list[int]:
    """Indices of the segments to merge next (empty: nothing to do). ``live`` and ``total``
    are each segment's live and stored document counts."""
    n = len(live)
    levels: dict[int, list[int]] = {}
    for i in range(n):
        levels.setdefault(level(live[i], factor, floor_docs), []).append(i)
    for lv in sorted(levels):
        members = levels[lv]
        if len(members) >= factor:
            return sorted(members, key=lambda i: live[i])[:factor]
    mostly_deleted = [i for i in range(n) if total[i] and 1 - live[i] / total[i] > DELETED_SHARE]
    if mostly_deleted:
        # merged with the smallest segment of its level (or alone, to drop its deletions)
        i = mostly_deleted[0]
        peers = [j for j in levels[level(live[i], factor, floor_docs)] if j != i]
        return sorted([i, *sorted(peers, key=lambda j: live[j])[:1]])
    if n > max_segments:  # just enough of the smallest to get back under the cap
        return sorted(range(n), key=lambda i: live[i])[: max(2, n - max_segments + 1)]
    return []
