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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from densparse import _core
from densparse.analysis import Analyzer
from densparse.collection.store import check_file, file_digest, fsync_path

RECORDS = "records.jsonl"  # format-1 segments: one JSON line per record
RECORD_STORE = "records.dsr"  # format 2: the columnar record store (densparse._core)
BM25_FILE = "bm25.idx"
DENSE_FILE = "dense.idx"
SPARSE_FILE = "sparse.idx"
COLBERT_FILE = "colbert.npy"
COLBERT_OFFSETS = "colbert_offsets.npy"
_FILES = (RECORDS, RECORD_STORE, BM25_FILE, DENSE_FILE, SPARSE_FILE, COLBERT_FILE, COLBERT_OFFSETS)


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


#: rows of dense vectors moved at a time by a merge
_MERGE_CHUNK = 65536


class Segment:
    """Immutable records + indexes. Build with :meth:`build`, or :meth:`load` from disk.

    Records live in a :class:`densparse._core.RecordStore` (memory-mapped from
    ``records.dsr``, or in memory until the segment is written): ids, texts, views,
    metadata and sparse vectors are read on demand, and filters are evaluated there."""

    def __init__(
        self,
        name: str,
        records: _core.RecordStore,
        bm25: _core.BM25Index,
        dense: Any,
        sparse: Any,
        colbert: Optional[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.name = name
        self.records = records
        self.n_docs: int = records.n_docs
        self.n_rows: int = records.n_docs + records.n_views_total
        self.bm25 = bm25
        self.total_tokens = int(bm25.total_tokens)
        self.dense = dense
        self.sparse = sparse
        self.colbert = colbert  # (vectors [T, d] float16, offsets [n_docs + 1] int64)

    # Rows are documents followed by their views; the maps are built on first use (a
    # search), not at open.
    @cached_property
    def first_row(self) -> np.ndarray:
        """Row of each document's text; ``first_row[n_docs] == n_rows``."""
        if self.n_rows == self.n_docs:
            out = np.arange(self.n_docs + 1, dtype=np.int64)
        else:
            counts = 1 + self.records.view_counts()
            out = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        out.setflags(write=False)
        return out

    @cached_property
    def row_doc(self) -> np.ndarray:
        """Document of each row."""
        if self.n_rows == self.n_docs:
            out = np.arange(self.n_docs, dtype=np.int64)
        else:
            out = np.repeat(np.arange(self.n_docs, dtype=np.int64), np.diff(self.first_row))
        out.setflags(write=False)
        return out

    # ------------------------------------------------------------ records
    def doc_of(self, doc_id: str) -> Optional[int]:
        """The document holding ``doc_id`` (live or not), or None."""
        return self.records.doc_of(doc_id)

    def id(self, doc: int) -> str:
        return self.records.id(doc)

    def ids(self, docs: Optional[np.ndarray] = None) -> list[str]:
        return self.records.ids(docs)

    def text(self, doc: int) -> str:
        return self.records.text(doc)

    def texts(self, docs: Optional[np.ndarray] = None) -> list[str]:
        return self.records.texts(docs)

    def views(self, doc: int) -> list[str]:
        return self.records.views(doc)

    def metadata(self, doc: int) -> dict:
        """The metadata as added (a new dict each call: callers may change it)."""
        return self.records.metadata(doc)

    def sparse_vector(self, doc: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(term ids int64, weights float32) as added, or None."""
        return self.records.sparse(doc)

    def filter_mask(self, spec: Mapping[str, Any]) -> np.ndarray:
        """bool [n_docs]: documents matching a filter (see collection.filters)."""
        return self.records.filter(spec)

    # ------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        name: str,
        records: Sequence[Record],
        cfg: BuildConfig,
        progress: Optional[Callable[[int], None]] = None,
        bm25: Optional[_core.BM25Index] = None,
    ) -> Segment:
        """A segment of ``records``; ``bm25`` is their BM25 index when the caller already
        has it (a merge reads it from the merged segments' postings), else it is built
        from the texts."""
        if bm25 is None:
            rows = [t for r in records for t in (r.text, *r.views)]
            bm25 = _core.BM25Index.from_texts(
                rows, cfg.analyzer, progress=progress, **cfg.bm25_params
            )
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
        writer = _core.RecordStoreWriter()
        for r in records:
            writer.add(r.id, r.text, r.views, r.metadata, r.sparse)
        return cls(name, writer.finish(), bm25, dense, sparse, colbert)

    @classmethod
    def merge(
        cls,
        name: str,
        sources: Sequence[tuple[Segment, np.ndarray]],
        cfg: BuildConfig,
        bm25: _core.BM25Index,
    ) -> Segment:
        """One segment of the live documents of ``sources`` ((segment, live mask) pairs), in
        order. Records are copied in Rust and dense vectors in chunks, one source segment at
        a time, with no Python object per document; sparse and ColBERT vectors are read per
        document (as their indexes are built from them). ``bm25`` is the BM25 index merged
        from the sources' postings."""
        writer = _core.RecordStoreWriter()
        dense = sparse = None
        if cfg.dense_dim is not None:
            from densparse.dense import DenseIndex

            dense = DenseIndex(cfg.dense_dim, dtype=cfg.dense_dtype, metric=cfg.metric)
        colbert: list[Optional[np.ndarray]] = []
        with_colbert = any(seg.colbert is not None for seg, _ in sources)
        sp_vecs: list[tuple[np.ndarray, np.ndarray]] = []
        sp_ids: list[int] = []
        row_base = doc_base = 0
        for seg, live in sources:
            docs = np.flatnonzero(live)
            writer.add_from(seg.records, docs.astype(np.int64))
            first = seg.first_row
            starts, ends = first[docs], first[docs + 1]
            counts = ends - starts  # each document's text row and view rows, in order
            src_rows = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(
                counts.sum(), dtype=np.int64
            )
            new_rows = row_base + np.arange(len(src_rows), dtype=np.int64)
            if dense is not None and seg.dense is not None and len(seg.dense):
                has = np.isin(src_rows, seg.dense.ids())
                rows, ids = src_rows[has], new_rows[has]
                for i in range(0, len(rows), _MERGE_CHUNK):
                    chunk = slice(i, i + _MERGE_CHUNK)
                    dense.add(seg.dense.get(rows[chunk]), ids=ids[chunk])
            if seg.sparse is not None and len(seg.sparse):
                # The vectors as added (the records keep them exactly; the index may round).
                for j, d in enumerate(docs.tolist()):
                    v = seg.sparse_vector(d)
                    if v is not None:
                        sp_vecs.append(v)
                        sp_ids.append(doc_base + j)
            if with_colbert:
                colbert.extend(seg.colbert_of(d) for d in docs.tolist())
            row_base += len(src_rows)
            doc_base += len(docs)
        if sp_vecs:
            from densparse.sparse import SparseIndex

            sparse = SparseIndex(dtype=cfg.sparse_dtype)
            sparse.add(sp_vecs, ids=np.asarray(sp_ids, np.int64))
        col = None
        if with_colbert and any(v is not None for v in colbert):
            lens = [0 if v is None else len(v) for v in colbert]
            offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            flat = np.concatenate([v for v in colbert if v is not None]).astype(np.float16)
            col = (flat, offsets)
        return cls(name, writer.finish(), bm25, dense, sparse, col)

    # ------------------------------------------------------------ persistence
    def write(self, directory: Path) -> dict[str, dict]:
        """Write every file into ``directory`` (fsynced); return {file: digest} of each,
        for the manifest."""
        directory.mkdir(parents=True, exist_ok=False)
        self.records.save(directory / RECORD_STORE)
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
        digests = digests_of(directory)
        # Read records and indexes from the files from now on: the in-memory copies built
        # by build() are freed, so a long-running writer does not keep in its heap every
        # segment it added (the mappings follow the files when the caller renames their
        # directory).
        self.records = _core.RecordStore.open(directory / RECORD_STORE, mmap=True)
        self.bm25 = _core.BM25Index.load(str(directory / BM25_FILE), mmap=True)
        if self.dense is not None:
            from densparse.dense import DenseIndex

            self.dense = DenseIndex.load(directory / DENSE_FILE, mmap=True)
        if self.sparse is not None:
            from densparse.sparse import SparseIndex

            self.sparse = SparseIndex.load(directory / SPARSE_FILE, mmap=True)
        if self.colbert is not None:
            self.colbert = (
                np.load(directory / COLBERT_FILE, mmap_mode="r", allow_pickle=False),
                self.colbert[1],
            )
        return digests

    @classmethod
    def load(cls, name: str, directory: Path, digests: dict[str, dict], mmap: bool) -> Segment:
        """Open a segment whose files the manifest names in ``digests``. A version-1
        manifest named only the records and ColBERT files: its index files are found by
        name (they check themselves)."""
        if not isinstance(digests, dict) or (RECORDS in digests) == (RECORD_STORE in digests):
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
        if RECORD_STORE in digests:
            # The manifest checked the header's CRC; the body is checked against it here,
            # by reading the file (not through the mapping: no memory stays resident).
            records = _core.RecordStore.open(directory / RECORD_STORE, mmap=mmap, verify=True)
        else:
            records = _legacy_records(directory / RECORDS)
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
        if bm25.n_docs != seg.n_rows:  # also catches a records file swapped for another
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


def _legacy_records(path: Path) -> _core.RecordStore:
    """A format-1 segment's records.jsonl, read into an in-memory record store."""
    writer = _core.RecordStoreWriter()
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                sparse = r.get("sparse")
                writer.add(
                    r["id"],
                    r["text"],
                    r.get("views", []),
                    r.get("metadata", {}),
                    None if sparse is None else (sparse[0], sparse[1]),
                )
        return writer.finish()
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError) as e:
        raise _core.CorruptIndexError(f"{path}: unreadable ({e!r})") from None
