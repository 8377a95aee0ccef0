"""Exact dense vector search and ColBERT MaxSim: the Python face of the Rust core."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np

from densparse import _core
from densparse._checks import check_choice, check_k, check_mask, check_opt_positive, check_path

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "int8")
METRICS = ("ip", "cosine")
#: Largest vector dimension (the index files' limit too).
MAX_DIM = 1 << 20
_FLOATS = (np.float32, np.float16, np.float64)
ArrayLike = Union[np.ndarray, Sequence[float], Sequence[Sequence[float]]]


def _as_f32(x: ArrayLike, what: str) -> np.ndarray:
    """float32 C-contiguous view of ``x`` (copies only when dtype or layout differ)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "f" or arr.dtype.type not in _FLOATS:
        if arr.dtype.kind in "iu" and arr.size > 0:
            arr = arr.astype(np.float32)
        elif arr.size == 0 and arr.dtype == np.float64:
            pass
        else:
            raise TypeError(f"{what} must be a float32, float16 or float64 array, not {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _rows(x: ArrayLike, dim: int, what: str) -> tuple[np.ndarray, bool]:
    """[n, dim] float32 and whether the input was one 1-D vector."""
    arr = _as_f32(x, what)
    if arr.ndim == 1:
        arr, single = arr.reshape(1, -1), True
    elif arr.ndim == 2:
        single = False
    else:
        raise ValueError(f"{what} must be 1-D (one vector) or 2-D [n, dim], got {arr.ndim}-D")
    if arr.shape[1] != dim:
        raise ValueError(f"{what} have {arr.shape[1]} columns but the index has dim={dim}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    return arr, single


def _id_array(ids: Union[int, Sequence[int], np.ndarray], what: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of ints, got {arr.ndim}-D")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, not {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{what} must fit in int64")
    if (arr < 0).any():
        raise ValueError(f"{what} must be >= 0 (got {int(arr.min())})")
    return np.ascontiguousarray(arr, dtype=np.int64)


class DenseIndex:
    """Exact (brute-force) dense vector index with SIMD kernels in Rust.

    Args:
        dim: vector width.
        dtype: storage type: ``"float32"`` (exact), ``"float16"`` (half the bytes,
            relative error <= 2**-11 per component) or ``"int8"`` (a quarter of the
            bytes; per-vector symmetric scale ``max|x| / 127``, each component off by
            at most ``max|x| / 254``).
        metric: ``"ip"`` (inner product, default) or ``"cosine"`` (vectors and
            queries are L2-normalised; stored vectors are kept normalised).

    Results are exact for the stored vectors: score descending, ties broken by the
    lower id. Every call releases the GIL; searches run concurrently from many
    threads while additions and removals take a write lock.
    """

    def __init__(self, dim: int, dtype: str = "float32", metric: str = "ip") -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dim must be an int, not {type(dim).__name__}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if dim > MAX_DIM:
            raise ValueError(f"dim must be <= {MAX_DIM}, got {dim}")
        check_choice(dtype, DTYPES, "dtype")
        check_choice(metric, METRICS, "metric")
        self._core = _core.DenseIndexCore(int(dim), dtype, metric)

    @classmethod
    def _wrap(cls, core: _core.DenseIndexCore) -> DenseIndex:
        obj = cls.__new__(cls)
        obj._core = core
        return obj

    # ------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Vector width."""
        return self._core.dim

    @property
    def dtype(self) -> str:
        """Storage type: "float32", "float16" or "int8"."""
        return self._core.dtype

    @property
    def metric(self) -> str:
        """ "ip" or "cosine"."""
        return self._core.metric

    def __len__(self) -> int:
        return len(self._core)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, (int, np.integer)) and self._core.contains(int(id))

    def __repr__(self) -> str:
        return (
            f"DenseIndex(dim={self.dim}, dtype={self.dtype!r}, metric={self.metric!r}, "
            f"len={len(self)})"
        )

    def ids(self) -> np.ndarray:
        """Ids of the stored vectors in insertion order (int64)."""
        return self._core.ids()

    # ------------------------------------------------------------ changes
    def add(
        self, vectors: ArrayLike, ids: Optional[Union[Sequence[int], np.ndarray]] = None
    ) -> np.ndarray:
        """Add vectors: a 2-D array [n, dim] (float32, float16 or float64) or one 1-D vector.

        ``ids`` (non-negative, distinct, not already present) default to sequential
        ids after the largest id this index has ever held. Returns the ids (int64).
        NaN or infinite values, a wrong width, and duplicate or negative ids raise
        ValueError before anything is added.
        """
        raw = np.asarray(vectors)
        if raw.dtype == np.float16 and raw.ndim in (1, 2):
            # float16 goes to Rust as is (no float32 copy); float16 storage keeps it.
            arr = np.ascontiguousarray(raw.reshape(1, -1) if raw.ndim == 1 else raw)
            if arr.shape[1] != self.dim:
                raise ValueError(
                    f"vectors have {arr.shape[1]} columns but the index has dim={self.dim}"
                )
            if arr.shape[0] == 0:
                raise ValueError("vectors is empty")
        else:
            arr, _ = _rows(raw, self.dim, "vectors")
        id_arr = None
        if ids is not None:
            id_arr = _id_array(ids)
            if len(id_arr) != len(arr):
                raise ValueError(f"got {len(id_arr)} ids for {len(arr)} vectors")
        return self._core.add(arr, id_arr)

    def remove(self, ids: Union[int, Sequence[int], np.ndarray]) -> None:
        """Remove vectors by id (KeyError if one is absent; then nothing is removed).

        Removed rows are tombstoned and dropped from storage automatically once
        they exceed a quarter of the rows (or by :meth:`compact`)."""
        self._core.remove(_id_array(ids))

    def compact(self) -> None:
        """Drop removed rows from storage now (ids and results do not change)."""
        self._core.compact()

    def get(self, ids: Union[int, Sequence[int], np.ndarray]) -> np.ndarray:
        """Stored vectors of ``ids`` as float32 [n, dim] (dequantised for float16/int8,
        normalised under cosine). KeyError for an unknown id."""
        return self._core.get(_id_array(ids))

    # ------------------------------------------------------------ search
    def search(
        self,
        queries: ArrayLike,
        k: int = 10,
        mask: Optional[np.ndarray] = None,
        threads: Optional[int] = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by inner product (or cosine).

        Args:
            queries: [Q, dim] array, or one 1-D vector.
            k: hits per query; k' = min(k, len(self)) come back.
            mask: optional 1-D bool/uint8 array indexed by id: id i is eligible iff
                ``i < len(mask) and mask[i]``. Queries with fewer than k' eligible
                vectors are padded with id -1 and score -inf.
            threads: worker threads (None: all cores; 1: the calling thread only).

        Returns:
            (ids int64, scores float32) of shape [Q, k'] ([k'] for a 1-D query),
            score descending, ties by lower id.
        """
        k = check_k(k)
        if len(self) == 0:
            raise ValueError("the index is empty: add vectors before searching")
        q, single = _rows(queries, self.dim, "queries")
        ids, scores = self._core.search(
            q, k, check_mask(mask), check_opt_positive(threads, "threads")
        )
        if single:
            return ids[0], scores[0]
        return ids, scores

    # ------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save to one file (temporary file + rename: never half-written). Removed
        vectors are not written."""
        self._core.save(check_path(path))
        log.info("saved dense index (%d vectors) to %s", len(self), path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], mmap: bool = True) -> DenseIndex:
        """Load an index saved by :meth:`save`. With ``mmap=True`` the vectors are
        searched in place from the memory-mapped file (zero copy). A corrupt,
        truncated or foreign file raises :class:`densparse.CorruptIndexError`."""
        return cls._wrap(_core.DenseIndexCore.load(check_path(path), mmap=bool(mmap)))


def _maxsim_args(query_vecs: ArrayLike, doc_vecs_list: Sequence[ArrayLike]):
    q = _as_f32(query_vecs, "query_vecs")
    if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] == 0:
        raise ValueError(f"query_vecs must be a non-empty 2-D array [m, dim], got shape {q.shape}")
    if isinstance(doc_vecs_list, np.ndarray) and doc_vecs_list.ndim == 2:
        raise TypeError("doc_vecs_list must be a list of 2-D arrays (one per passage)")
    docs = []
    for i, d in enumerate(doc_vecs_list):
        a = _as_f32(d, f"doc_vecs_list[{i}]")
        if a.ndim != 2:
            raise ValueError(f"doc_vecs_list[{i}] must be 2-D [n, dim], got {a.ndim}-D")
        if a.shape[1] != q.shape[1]:
            raise ValueError(
                f"doc_vecs_list[{i}] has {a.shape[1]} columns but query_vecs has {q.shape[1]}"
            )
        if a.shape[0] == 0:
            raise ValueError(f"doc_vecs_list[{i}] has no rows")
        docs.append(a)
    return q, docs


def maxsim(
    query_vecs: ArrayLike, doc_vecs_list: Sequence[ArrayLike], threads: Optional[int] = None
) -> np.ndarray:
    """ColBERT late-interaction scores: for each passage p (an [n_i, dim] array),
    ``(1/m) * sum_i max_j dot(q_i, p_j)`` over the m query rows (FlagEmbedding's
    ``colbert_score``). Returns float32 [len(doc_vecs_list)]."""
    q, docs = _maxsim_args(query_vecs, doc_vecs_list)
    return _core.maxsim(q, docs, check_opt_positive(threads, "threads"))


def maxsim_rerank(
    query_vecs: ArrayLike,
    doc_vecs_list: Sequence[ArrayLike],
    k: Optional[int] = None,
    threads: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank candidate passages by MaxSim: (positions int64, scores float32), best
    first, ties by lower position; the top ``k`` (all when None)."""
    k = check_opt_positive(k, "k")
    q, docs = _maxsim_args(query_vecs, doc_vecs_list)
    return _core.maxsim_rerank(q, docs, k, check_opt_positive(threads, "threads"))
