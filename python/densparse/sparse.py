"""An inverted index for sparse vectors: learned sparse (BGE-M3 lexical weights,
SPLADE) and BM25 vectors, with exact top-k by dot product. The Python face of
``_core.SparseIndex``: input conversion lives here, everything else in Rust."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from densparse import _core
from densparse._checks import check_choice, check_k, check_mask, check_opt_positive, check_path

DTYPES = ("float32", "float16", "uint8")
SearchResult = tuple[np.ndarray, np.ndarray]
_EMPTY_I = np.zeros(0, np.int64)
_EMPTY_F = np.zeros(0, np.float32)


def _is_scipy_sparse(x: Any) -> bool:
    # Duck-typed so scipy stays optional: every scipy.sparse matrix/array has these.
    return hasattr(x, "tocsr") and hasattr(x, "nnz") and hasattr(x, "shape")


def _is_pair(x: Any) -> bool:
    """A single (indices, values) pair (a tuple of two 1-D sequences of numbers)."""
    if not (isinstance(x, tuple) and len(x) == 2):
        return False
    a = x[0]
    if isinstance(a, np.ndarray):
        return a.ndim == 1
    return isinstance(a, (list, tuple)) and all(not isinstance(t, (tuple, list, dict)) for t in a)


def _int_array(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integers, not {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{what} holds values too large for int64")
    return arr.astype(np.int64, copy=False)


def _csr_parts(x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scipy.sparse (any format) -> (indptr, indices, values) without a copy when
    already CSR with float32 data and int32/int64 indices."""
    if len(x.shape) != 2:
        raise ValueError(f"expected a 2-D sparse matrix, got shape {x.shape}")
    csr = x.tocsr()
    indptr, indices, data = csr.indptr, csr.indices, csr.data
    if indptr.dtype not in (np.int32, np.int64):
        indptr = indptr.astype(np.int64)
    if indices.dtype not in (np.int32, np.int64):
        indices = indices.astype(np.int64)
    if data.dtype != np.float32:
        if data.dtype.kind not in "fiub":
            raise TypeError(f"sparse matrix values must be numbers, not {data.dtype}")
        data = data.astype(np.float32)
    return (
        np.ascontiguousarray(indptr),
        np.ascontiguousarray(indices),
        np.ascontiguousarray(data),
    )


def _pairs_parts(pairs: Sequence[Any], what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[(indices, values), ...] -> CSR arrays (one concatenate, no Python loop per weight)."""
    idx_parts, val_parts = [], []
    for i, p in enumerate(pairs):
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise TypeError(f"{what} {i} must be an (indices, values) pair, not {type(p).__name__}")
        ind = np.asarray(p[0])
        val = np.asarray(p[1])
        if ind.ndim != 1 or val.ndim != 1:
            raise ValueError(f"{what} {i}: indices and values must be 1-D")
        if ind.shape[0] != val.shape[0]:
            raise ValueError(
                f"{what} {i}: {ind.shape[0]} indices but {val.shape[0]} values (lengths must match)"
            )
        if ind.size and ind.dtype.kind not in "iu":
            raise TypeError(f"{what} {i}: indices must be integers, not {ind.dtype}")
        if val.size and val.dtype.kind not in "fiub":
            raise TypeError(f"{what} {i}: values must be numbers, not {val.dtype}")
        idx_parts.append(ind.astype(np.int64, copy=False) if ind.size else _EMPTY_I)
        val_parts.append(val.astype(np.float32, copy=False) if val.size else _EMPTY_F)
    lens = np.fromiter((a.shape[0] for a in idx_parts), dtype=np.int64, count=len(idx_parts))
    indptr = np.zeros(len(idx_parts) + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    indices = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    values = np.concatenate(val_parts) if val_parts else np.zeros(0, np.float32)
    return indptr, indices, values


class SparseIndex:
    """Exact top-k search over sparse vectors (term id -> weight >= 0) by dot product.

    Args:
        dtype: how document weights are stored: ``"float32"`` (exact), ``"float16"``
            (relative error <= 2**-11) or ``"uint8"`` (per-term scale = max weight / 255,
            absolute error <= scale / 2).
        doc_top_n: keep only each document's ``doc_top_n`` largest weights (ties by lower
            term id) when it is added; ``None`` keeps all.

    Documents and queries may be given as a ``scipy.sparse`` matrix (rows = vectors,
    columns = term ids; any format), a list of ``(indices, values)`` pairs (what
    :meth:`densparse.BM25.encode_documents` returns), or a list of dicts
    ``{token id: weight}`` (FlagEmbedding's ``lexical_weights``: str keys like ``"1234"``
    are accepted). Weights must be finite and >= 0 (zeros are dropped); a term id may
    appear once per vector.

    Search is exact for the stored weights (block-max MaxScore pruning never changes
    results); ties are broken by lower document id. Long calls release the GIL; many
    threads may search while another adds or removes.
    """

    def __init__(self, dtype: str = "float32", doc_top_n: Optional[int] = None) -> None:
        check_choice(dtype, DTYPES, "dtype")
        self._idx = _core.SparseIndex(dtype, check_opt_positive(doc_top_n, "doc_top_n"))

    @classmethod
    def _wrap(cls, idx: _core.SparseIndex) -> SparseIndex:
        self = cls.__new__(cls)
        self._idx = idx
        return self

    # ------------------------------------------------------------ input forms
    @staticmethod
    def _kind(x: Any, what: str) -> tuple[str, Any, bool]:
        """(form, data, single) with form "csr" (data = arrays) or "dicts"."""
        if _is_scipy_sparse(x):
            return "csr", _csr_parts(x), False
        if isinstance(x, Mapping):
            return "dicts", [dict(x) if not isinstance(x, dict) else x], True
        if _is_pair(x):
            return "csr", _pairs_parts([x], what), True
        if isinstance(x, (str, bytes)) or not isinstance(x, Sequence):
            raise TypeError(
                f"{what} must be a scipy.sparse matrix, a list of (indices, values) pairs or a "
                f"list of dicts, not {type(x).__name__}"
            )
        items = list(x)
        if items and all(isinstance(d, dict) for d in items):
            return "dicts", items, False
        if items and any(isinstance(d, Mapping) for d in items):
            items = [dict(d) if isinstance(d, Mapping) else d for d in items]
            if all(isinstance(d, dict) for d in items):
                return "dicts", items, False
            raise TypeError(f"{what}: do not mix dicts with other forms in one list")
        return "csr", _pairs_parts(items, what), False

    # ------------------------------------------------------------ mutation
    def add(self, docs: Any, ids: Any = None) -> np.ndarray:
        """Add documents; returns their ids (int64).

        Args:
            docs: a scipy.sparse matrix, a list of (indices, values) pairs or a list of
                dicts (see the class docstring). A single dict or pair is one document.
            ids: non-negative ints, unique and not already in the index; ``None`` gives
                consecutive ids after the largest id ever used.
        """
        kind, data, _ = self._kind(docs, "document")
        ids_arr = None if ids is None else _int_array(ids, "ids")
        if kind == "csr":
            return self._idx.add_csr(*data, ids=ids_arr)
        return self._idx.add_dicts(data, ids=ids_arr)

    def remove(self, ids: Any) -> None:
        """Remove documents by id (never returned again). KeyError if an id is unknown
        (then nothing is removed); ValueError if an id repeats."""
        arr = _int_array(np.atleast_1d(np.asarray(ids)), "ids")
        self._idx.remove(arr)

    def compact(self) -> None:
        """Rewrite the postings without removed documents (also runs on its own once a
        quarter of the documents are removed)."""
        self._idx.compact()

    # ------------------------------------------------------------ search
    def search(
        self,
        queries: Any,
        k: int = 10,
        mask: Optional[np.ndarray] = None,
        threads: Optional[int] = None,
        query_top_n: Optional[int] = None,
        query_cut: Optional[float] = None,
    ) -> SearchResult:
        """Exact top-k by dot product for one query or a batch.

        Args:
            queries: any document form; a single dict or (indices, values) pair is one
                query and gives 1-D results.
            k: hits per query; k' = min(k, live documents) come back. Documents that
                match no query term follow with score 0, by lowest id.
            mask: optional 1-D bool/uint8 array indexed by document id: id i is
                eligible iff i < len(mask) and mask[i] != 0. Rows with fewer than k'
                eligible documents are padded with id -1 and score -inf.
            threads: worker threads for a batch (None: all cores). A batch of 32 or more
                queries is scored together (each posting list decoded once per group of
                queries); the results are those of searching the queries one by one.
            query_top_n: keep only each query's N largest weights (ties by lower term id).
            query_cut: drop query weights below ``query_cut`` x the query's largest weight
                (0 <= query_cut <= 1); applied before ``query_top_n``.

        Returns:
            (ids int64, scores float32) of shape [Q, k'] ([k'] for a single query),
            ordered by score descending, then id ascending.
        """
        k = check_k(k)
        m = check_mask(mask)
        if threads is not None:
            threads = check_opt_positive(threads, "threads")
        qtop = check_opt_positive(query_top_n, "query_top_n")
        cut = None
        if query_cut is not None:
            cut = float(query_cut)
            if not 0.0 <= cut <= 1.0:
                raise ValueError(f"query_cut must be in [0, 1], got {query_cut}")
        if len(self._idx) == 0:
            raise ValueError("the index is empty: add documents before searching")
        kind, data, single = self._kind(queries, "query")
        opts = dict(k=k, mask=m, threads=threads, query_top_n=qtop, query_cut=cut)
        if kind == "csr":
            ids, scores = self._idx.search_csr(*data, **opts)
        else:
            ids, scores = self._idx.search_dicts(data, **opts)
        if single:
            return ids[0], scores[0]
        return ids, scores

    # ------------------------------------------------------------ access
    def get(self, ids: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stored (dequantised) vectors of documents: [(term ids int64, weights float32)]."""
        return self._idx.get(_int_array(np.atleast_1d(np.asarray(ids)), "ids"))

    def ids(self) -> np.ndarray:
        """Ids of the documents in the index, in insertion order."""
        return self._idx.ids()

    # ------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save to one file (temporary file then rename: never half-written)."""
        self._idx.save(check_path(path))

    @classmethod
    def load(cls, path: Union[str, os.PathLike], mmap: bool = True) -> SparseIndex:
        """Load an index saved by :meth:`save` (memory-mapped by default).
        Raises CorruptIndexError for a corrupt, truncated or foreign file."""
        return cls._wrap(_core.SparseIndex.load(check_path(path), mmap=bool(mmap)))

    # ------------------------------------------------------------ facts
    def __len__(self) -> int:
        return len(self._idx)

    @property
    def dtype(self) -> str:
        """Storage type of document weights: "float32", "float16" or "uint8"."""
        return self._idx.dtype

    @property
    def doc_top_n(self) -> Optional[int]:
        return self._idx.doc_top_n

    @property
    def vocab_size(self) -> int:
        """1 + the largest term id indexed (0 when empty)."""
        return self._idx.vocab_size

    def stats(self) -> dict:
        """Sizes: n_docs, n_rows (removed included), n_deleted, n_segments, vocab_size,
        n_terms, n_postings, postings_bytes, bytes_per_posting."""
        return self._idx.stats()

    def __repr__(self) -> str:
        return f"SparseIndex(dtype={self.dtype!r}, doc_top_n={self.doc_top_n}, n_docs={len(self)})"
