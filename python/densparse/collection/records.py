"""Validation of the records users add: every problem is reported before anything changes."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from densparse.collection.segment import Record

_FIELDS = {"id", "text", "views", "metadata", "dense", "sparse", "colbert"}
_FLOAT16_MAX = 65504.0


def _vectors(value: Any, dim: Optional[int], what: str, rows: Optional[int] = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = np.atleast_2d(arr.astype(np.float32, copy=False))
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 1-D or 2-D, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} has dimension {arr.shape[1]}, the collection expects {dim}")
    if rows is not None and arr.shape[0] not in (1, rows):
        raise ValueError(
            f"{what} has {arr.shape[0]} rows: give 1 (the text) or {rows} (text + each view)"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or inf")
    return np.ascontiguousarray(arr)


def sparse_vector(value: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) from a pair or a {token id: weight} dict (FlagEmbedding's
    ``lexical_weights``, string keys allowed). Weights must be finite and >= 0."""
    if isinstance(value, Mapping):
        try:
            idx = np.fromiter((int(k) for k in value), dtype=np.int64, count=len(value))
        except (TypeError, ValueError):
            raise TypeError(f"{what}: dict keys must be token ids (int or digit strings)") from None
        vals = np.fromiter((float(v) for v in value.values()), dtype=np.float32, count=len(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        idx = np.asarray(value[0])
        vals = np.asarray(value[1], dtype=np.float32)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"{what}: indices must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64).ravel()
        vals = vals.ravel()
        if idx.shape != vals.shape:
            raise ValueError(f"{what}: {idx.size} indices but {vals.size} values")
    else:
        raise TypeError(f"{what} must be an (indices, values) pair or a {{token id: weight}} dict")
    if (idx < 0).any() or (idx > np.iinfo(np.uint32).max).any():
        raise ValueError(f"{what}: token ids must be in [0, 2**32)")
    if not np.isfinite(vals).all():
        raise ValueError(f"{what} contains NaN or inf")
    if (vals < 0).any():
        raise ValueError(f"{what} has negative weights: sparse weights must be >= 0")
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"{what} repeats a token id")
    return idx, vals


def _utf8(text: str, what: str) -> str:
    """Refuse what cannot be stored as UTF-8 (a lone surrogate), before anything changes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid UTF-8 text (a lone surrogate at position {e.start})"
        ) from None
    return text


_INT64 = (-(2**63), 2**63 - 1)


def _check_ints(value: Any, what: str) -> None:
    """Integers beyond 64 bits cannot be stored faithfully (nor filtered on)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{what}: integer {value} does not fit in 64 bits")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_ints(v, f"{what}.{k}")
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_ints(v, what)


class _Unusual(Exception):
    """A value the fast path leaves to the JSON round trip (non-str keys, tuples, ...)."""


def _plain_copy(v: Any, what: str) -> Any:
    """A copy of plain JSON data (exact types dict / list / str / int / float / bool /
    None, str keys), checked as the JSON round trip would check it, without the round trip."""
    t = type(v)
    if t is str:
        return v if v.isascii() else _utf8(v, what)
    if t is int:
        if not _INT64[0] <= v <= _INT64[1]:
            raise ValueError(f"{what}: integer {v} does not fit in 64 bits")
        return v
    if t is float:
        if v != v or v in (math.inf, -math.inf):
            raise TypeError(f"{what} must be JSON-like: {v} is not a finite number")
        return v
    if t is bool or v is None:
        return v
    if t is dict:
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _Unusual
            out[k if k.isascii() else _utf8(k, what)] = _plain_copy(x, f"{what}.{k}")
        return out
    if t is list:
        return [_plain_copy(x, what) for x in v]
    raise _Unusual


def _metadata(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict, not {type(value).__name__}")
    try:
        return _plain_copy(value, what)
    except _Unusual:
        pass
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{what} must be JSON-like (str, numbers, bools, None, lists, dicts): {e}"
        ) from None
    _utf8(text, what)
    _check_ints(value, what)
    return json.loads(text)


def _stack_dense(records: Sequence[Any], dim: Optional[int]) -> Optional[np.ndarray]:
    """The batch's dense vectors as one float32 matrix, checked in one pass, when every
    record carries a 1-D numpy vector of the collection's dimension (the usual bulk load);
    None otherwise, and then each record is checked on its own (with its own message)."""
    if dim is None or not isinstance(records, (list, tuple)) or not records:
        return None
    vecs = []
    for r in records:
        v = r.get("dense") if isinstance(r, Mapping) else None
        if (
            not isinstance(v, np.ndarray)
            or v.shape != (dim,)
            or v.dtype.kind not in "fiu"
            or v.dtype == np.float16
        ):
            return None
        vecs.append(v)
    m = np.stack(vecs).astype(np.float32, copy=False)
    if not np.isfinite(m).all():
        return None  # the per-record path names the record
    return m


def validate_records(
    records: Sequence[Mapping[str, Any]],
    dense_dim: Optional[int],
    colbert_dim: Optional[int],
) -> list[Record]:
    """Check and normalise a batch; raise on the first bad record, naming it."""
    if isinstance(records, (Mapping, str, bytes)):
        raise TypeError("records must be a list of dicts")
    out: list[Record] = []
    seen: set[str] = set()
    stacked = _stack_dense(records, dense_dim)
    for i, r in enumerate(records):
        what = f"records[{i}]"
        if not isinstance(r, Mapping):
            raise TypeError(f"{what} must be a dict, not {type(r).__name__}")
        unknown = set(r) - _FIELDS
        if unknown:
            raise ValueError(
                f"{what} has unknown fields {sorted(unknown)}; known: {sorted(_FIELDS)}"
            )
        rid = r.get("id")
        if not isinstance(rid, str) or not rid:
            raise TypeError(f"{what}['id'] must be a non-empty str, got {rid!r}")
        _utf8(rid, f"{what}['id']")
        if rid in seen:
            raise ValueError(f"duplicate id {rid!r} in this batch")
        seen.add(rid)
        what = f"record {rid!r}"
        text = r.get("text", "")
        if not isinstance(text, str):
            raise TypeError(f"{what}: text must be a str, not {type(text).__name__}")
        if not text.isascii():
            _utf8(text, f"{what}: text")
        views = r.get("views") or []
        if not isinstance(views, (list, tuple)):
            raise TypeError(f"{what}: views must be a list of str, not {type(views).__name__}")
        views = list(views)
        for j, v in enumerate(views):
            if not isinstance(v, str):
                raise TypeError(f"{what}: views[{j}] must be a str, not {type(v).__name__}")
            _utf8(v, f"{what}: views[{j}]")
        dense = None
        if r.get("dense") is not None:
            if dense_dim is None:
                raise ValueError(f"{what} has a dense vector but the collection has no dense_dim")
            if stacked is not None and not views:
                dense = stacked[i : i + 1]
            else:
                dense = _vectors(r["dense"], dense_dim, f"{what}: dense", rows=1 + len(views))
        sparse = None
        if r.get("sparse") is not None:
            sparse = sparse_vector(r["sparse"], f"{what}: sparse")
        colbert = None
        if r.get("colbert") is not None:
            colbert = _vectors(r["colbert"], colbert_dim, f"{what}: colbert")
            if colbert.size and np.abs(colbert).max() > _FLOAT16_MAX:
                raise ValueError(
                    f"{what}: colbert values must be within ±{_FLOAT16_MAX} (they are stored as "
                    "float16); normalise the vectors"
                )
        out.append(
            Record(
                id=rid,
                text=text,
                views=views,
                metadata=_metadata(r.get("metadata"), f"{what}: metadata"),
                dense=dense,
                sparse=sparse,
                colbert=colbert,
            )
        )
    return out


def check_query_vector(value: Any, dim: Optional[int], what: str) -> np.ndarray:
    if dim is None:
        raise ValueError(f"{what} given, but the collection has no dense vectors (dense_dim=None)")
    arr = np.ascontiguousarray(value, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise ValueError(f"{what} must be a 1-D vector of dimension {dim}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or inf")
    return arr
