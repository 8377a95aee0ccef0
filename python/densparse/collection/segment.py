"""One immutable segment of a Collection: its records and its per-route indexes.

A segment never changes once built (deletions live outside it, as a mask held by the
collection), so readers can use it without locks. Rows and documents:

* documents are numbered ``0..n_docs`` in the segment (their order of arrival);
* every document has one or more *views* (its text, then any extra texts such as
  generated questions or a title); BM25 and the dense index work on views ("rows"),
  and a document's route score is the max over its views;
* the sparse index and ColBERT vectors are per document.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from densparse import _core
from densparse.analysis import Analyzer
from densparse.collection.filters import FilterEvaluator
from densparse.collection.store import check_file, file_digest, fsync_path

RECORDS = "records.jsonl"
BM25_FILE = "bm25.idx"
DENSE_FILE = "dense.idx"
SPARSE_FILE = "sparse.idx"
COLBERT_FILE = "colbert.npy"
COLBERT_OFFSETS = "colbert_offsets.npy"
_FILES = (RECORDS, BM25_FILE, DENSE_FILE, SPARSE_FILE, COLBERT_FILE, COLBERT_OFFSETS)


@dataclass
class Record:
    """A validated record, as a segment stores it."""

    id: str
    text: str
    views: list[str]
    metadata: dict
    dense: Optional[np.ndarray]  # [1 + len(views), dim] or [1, dim] (text only) or None
    sparse: Optional[tuple[np.ndarray, np.ndarray]]  # (term ids int64, weights float32)
    colbert: Optional[np.ndarray]  # [n_tokens, dim] float32

    def to_json(self) -> dict:
        sparse = None if self.sparse is None else [self.sparse[0].tolist(), self.sparse[1].tolist()]
        return record_json(self.id, self.text, self.views, self.metadata, sparse)


def record_json(
    doc_id: str, text: str, views: list[str], metadata: dict, sparse: Optional[list]
) -> dict:
    """One line of a segment's records file: empty fields are left out."""
    out: dict[str, Any] = {"id": doc_id, "text": text}
    if views:
        out["views"] = views
    if metadata:
        out["metadata"] = metadata
    if sparse is not None:
        out["sparse"] = sparse
    return out


@dataclass(frozen=True)
class BuildConfig:
    """What every segment of one collection shares."""

    analyzer: Analyzer
    bm25_params: dict
    dense_dim: Optional[int]
    dense_dtype: str
    metric: str
    sparse_dtype: str
    colbert_dim: Optional[int]


def digests_of(directory: Path) -> dict[str, dict]:
    """{file: digest} of the segment files present in ``directory``, for the manifest."""
    return {f: file_digest(directory / f) for f in _FILES if (directory / f).exists()}


class Segment:
    """Immutable records + indexes. Build with :meth:`build`, or :meth:`load` from disk."""

    def __init__(
        self,
        name: str,
        records: list[dict],
        bm25: _core.BM25Index,
        dense: Any,
        sparse: Any,
        colbert: Optional[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.name = name
        self.ids: list[str] = [r["id"] for r in records]
        self.texts: list[str] = [r["text"] for r in records]
        self.views: list[list[str]] = [r.get("views", []) for r in records]
        self.metadata: list[dict] = [r.get("metadata", {}) for r in records]
        self.sparse_vectors: list[Optional[list]] = [r.get("sparse") for r in records]
        self.doc_of_id: dict[str, int] = {d: i for i, d in enumerate(self.ids)}
        counts = np.fromiter((1 + len(v) for v in self.views), dtype=np.int64, count=len(records))
        self.row_doc = np.repeat(np.arange(len(records), dtype=np.int64), counts)
        self.first_row = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.bm25 = bm25
        self.total_tokens = int(bm25.total_tokens)
        self.dense = dense
        self.sparse = sparse
        self.colbert = colbert  # (vectors [T, d] float16, offsets [n_docs + 1] int64)
        self.filters = FilterEvaluator(self.metadata)

    @property
    def n_docs(self) -> int:
        return len(self.ids)

    @property
    def n_rows(self) -> int:
        return len(self.row_doc)

    # ------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        name: str,
        records: Sequence[Record],
        cfg: BuildConfig,
        progress: Optional[Callable[[int], None]] = None,
    ) -> Segment:
        rows = [t for r in records for t in (r.text, *r.views)]
        bm25 = _core.BM25Index.from_texts(rows, cfg.analyzer, progress=progress, **cfg.bm25_params)
        dense = None
        if cfg.dense_dim is not None:
            from densparse.dense import DenseIndex

            dense = DenseIndex(cfg.dense_dim, dtype=cfg.dense_dtype, metric=cfg.metric)
            vecs, row_ids, row = [], [], 0
            for r in records:
                if r.dense is not None:
                    vecs.append(r.dense)
                    row_ids.extend(range(row, row + len(r.dense)))
                row += 1 + len(r.views)
            if vecs:
                dense.add(np.concatenate(vecs), ids=np.asarray(row_ids, dtype=np.int64))
        sparse = None
        with_sparse = [(i, r.sparse) for i, r in enumerate(records) if r.sparse is not None]
        if with_sparse:
            from densparse.sparse import SparseIndex

            sparse = SparseIndex(dtype=cfg.sparse_dtype)
            sparse.add(
                [s for _, s in with_sparse], ids=np.asarray([i for i, _ in with_sparse], np.int64)
            )
        colbert = None
        if any(r.colbert is not None for r in records):
            dim = cfg.colbert_dim
            lens = [0 if r.colbert is None else len(r.colbert) for r in records]
            offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            flat = np.concatenate([r.colbert for r in records if r.colbert is not None]).astype(
                np.float16
            )
            assert dim is None or flat.shape[1] == dim
            colbert = (flat, offsets)
        return cls(name, [r.to_json() for r in records], bm25, dense, sparse, colbert)

    # ------------------------------------------------------------ persistence
    def write(self, directory: Path) -> dict[str, dict]:
        """Write every file into ``directory`` (fsynced); return {file: digest} of each,
        for the manifest."""
        directory.mkdir(parents=True, exist_ok=False)
        with open(directory / RECORDS, "w", encoding="utf-8") as f:
            for i in range(self.n_docs):
                rec = record_json(
                    self.ids[i],
                    self.texts[i],
                    self.views[i],
                    self.metadata[i],
                    self.sparse_vectors[i],
                )
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.bm25.save(str(directory / BM25_FILE), "")
        if self.dense is not None:
            self.dense.save(directory / DENSE_FILE)
        if self.sparse is not None:
            self.sparse.save(directory / SPARSE_FILE)
        if self.colbert is not None:
            for fname, arr in ((COLBERT_FILE, self.colbert[0]), (COLBERT_OFFSETS, self.colbert[1])):
                with open(directory / fname, "wb") as f:
                    np.save(f, arr, allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
        fsync_path(directory)
        return digests_of(directory)

    @classmethod
    def load(cls, name: str, directory: Path, digests: dict[str, dict], mmap: bool) -> Segment:
        """Open a segment whose files the manifest names in ``digests``. A version-1
        manifest named only the records and ColBERT files: its index files are found by
        name (they check themselves)."""
        if not isinstance(digests, dict) or RECORDS not in digests:
            raise _core.CorruptIndexError(f"{directory}: damaged manifest entry (files)")
        for fname, expected in digests.items():
            if fname not in _FILES:
                raise _core.CorruptIndexError(f"{directory}: manifest names unknown file {fname!r}")
            check_file(directory / fname, expected)
        named = (
            set(digests)
            if BM25_FILE in digests
            else set(_FILES) & {f.name for f in directory.iterdir()}
        )
        if BM25_FILE not in named:
            raise _core.CorruptIndexError(f"{directory / BM25_FILE}: missing")
        if (COLBERT_FILE in named) != (COLBERT_OFFSETS in named):
            raise _core.CorruptIndexError(f"{directory}: ColBERT vectors without offsets")
        try:
            with open(directory / RECORDS, encoding="utf-8") as f:
                records = [json.loads(line) for line in f]
        except (ValueError, UnicodeDecodeError) as e:
            raise _core.CorruptIndexError(f"{directory / RECORDS}: unreadable ({e})") from None
        bm25 = _core.BM25Index.load(str(directory / BM25_FILE), mmap=mmap)
        dense = sparse = None
        if DENSE_FILE in named:
            from densparse.dense import DenseIndex

            dense = DenseIndex.load(directory / DENSE_FILE, mmap=mmap)
        if SPARSE_FILE in named:
            from densparse.sparse import SparseIndex

            sparse = SparseIndex.load(directory / SPARSE_FILE, mmap=mmap)
        colbert = None
        if COLBERT_FILE in named:
            mode = "r" if mmap else None
            colbert = (
                np.load(directory / COLBERT_FILE, mmap_mode=mode, allow_pickle=False),
                np.load(directory / COLBERT_OFFSETS, allow_pickle=False),
            )
        seg = cls(name, records, bm25, dense, sparse, colbert)
        if bm25.n_docs != seg.n_rows:
            raise _core.CorruptIndexError(
                f"{directory}: BM25 index has {bm25.n_docs} rows, records say {seg.n_rows}"
            )
        return seg

    # ------------------------------------------------------------ access
    def dense_of(self, doc: int) -> Optional[np.ndarray]:
        """The document's dense vectors (text row, then views), or None."""
        if self.dense is None:
            return None
        rows = np.arange(self.first_row[doc], self.first_row[doc + 1], dtype=np.int64)
        try:
            return self.dense.get(rows)
        except KeyError:
            return None

    def colbert_of(self, doc: int) -> Optional[np.ndarray]:
        if self.colbert is None:
            return None
        a, b = self.colbert[1][doc], self.colbert[1][doc + 1]
        if a == b:
            return None
        return np.asarray(self.colbert[0][a:b], dtype=np.float32)
