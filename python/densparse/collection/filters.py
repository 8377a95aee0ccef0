"""Metadata filters: a small query language compiled to a boolean mask per segment.

A filter is a dict, as in MongoDB / Qdrant-style payload filters::

    {"year": 2020}                              # equality (shorthand for {"$eq": 2020})
    {"lang": {"$in": ["zh", "en"]}}             # membership; "$nin" is its negation
    {"year": {"$gte": 2018, "$lt": 2022}}       # ranges: $gt $gte $lt $lte (numbers only)
    {"source": {"$ne": "wiki"}}                 # not equal (also true when the field is missing)
    {"tags": "law"}                             # on a list-valued field: any element matches
    {"meta.author": "Li"}                       # dotted paths reach into nested dicts
    {"draft": {"$exists": False}}
    {"$and": [...]}, {"$or": [...]}, {"$not": {...}}

Several keys in one dict are ANDed. Equality is by value, so 1 == 1.0 and True is not 1
(booleans only equal booleans). Range operators compare numbers only (bools excluded);
a document whose field is missing or not a number never satisfies a range.

Collections evaluate filters in Rust (``densparse._core.RecordStore.filter``, over the
typed metadata columns of each segment's record store). This module is the reference
implementation of the semantics: the Rust filter is tested to give the same masks as
:class:`FilterEvaluator` on random metadata and random filters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

FilterSpec = Mapping[str, Any]

_RANGE = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}
_FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$exists", *_RANGE}
_MISSING = object()


def _key(v: Any) -> Any:
    """Hashable equality key: bools apart from numbers, 1 == 1.0, NaN never equal."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        f = float(v)
        return ("nan", id(v)) if math.isnan(f) else ("num", f)
    if isinstance(v, str):
        return ("str", v)
    if v is None:
        return ("null",)
    raise TypeError(f"cannot filter on a value of type {type(v).__name__}: {v!r}")


def _get_path(meta: Mapping[str, Any], path: str) -> Any:
    cur: Any = meta
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


class Column:
    """One metadata field over a segment's documents, for fast filtering."""

    def __init__(self, metadata: Sequence[Mapping[str, Any]], path: str) -> None:
        n = len(metadata)
        self.present = np.zeros(n, dtype=bool)
        self.codes = np.full(n, -1, dtype=np.int64)  # scalar equality key code, -1 = none
        self.numbers = np.full(n, np.nan, dtype=np.float64)  # numeric value for ranges
        self.lists: dict[int, list[Any]] = {}  # list-valued docs (any element matches)
        self.code_of: dict[Any, int] = {}
        for d, meta in enumerate(metadata):
            v = _get_path(meta, path)
            if v is _MISSING:
                continue
            self.present[d] = True
            if isinstance(v, list):
                self.lists[d] = v
                continue
            if isinstance(v, dict):
                continue  # a sub-document only answers $exists
            self.codes[d] = self.code_of.setdefault(_key(v), len(self.code_of))
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.numbers[d] = float(v)

    def equals_any(self, values: Sequence[Any]) -> np.ndarray:
        keys = {_key(v) for v in values}
        codes = [self.code_of[k] for k in keys if k in self.code_of]
        mask = np.isin(self.codes, codes) if codes else np.zeros(len(self.codes), dtype=bool)
        for d, items in self.lists.items():
            mask[d] = any(_safe_key(x) in keys for x in items)
        return mask

    def compare(self, op: str, bound: Any) -> np.ndarray:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound):
            raise TypeError(f"{op} needs a number, not {bound!r}")
        with np.errstate(invalid="ignore"):
            mask = _RANGE[op](self.numbers, float(bound))
        for d, items in self.lists.items():
            mask[d] = any(
                isinstance(x, (int, float))
                and not isinstance(x, bool)
                and bool(_RANGE[op](float(x), float(bound)))
                for x in items
            )
        return mask


def _safe_key(v: Any) -> Any:
    try:
        return _key(v)
    except TypeError:
        return None


def validate(spec: Optional[FilterSpec]) -> None:
    """Raise a clear error for a malformed filter before any search runs."""
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        raise TypeError(f"filter must be a dict, not {type(spec).__name__}")
    for key, cond in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, (list, tuple)) or not cond:
                raise ValueError(f"{key} needs a non-empty list of filters")
            for c in cond:
                validate(c)
        elif key == "$not":
            validate(cond)
        elif key.startswith("$"):
            raise ValueError(f"unknown filter operator {key!r}")
        elif isinstance(cond, Mapping) and any(str(k).startswith("$") for k in cond):
            for op, arg in cond.items():
                if op not in _FIELD_OPS:
                    raise ValueError(f"unknown operator {op!r} on field {key!r}")
                if op in ("$in", "$nin"):
                    if not isinstance(arg, (list, tuple, set)):
                        raise TypeError(f"{op} on {key!r} needs a list")
                    for v in arg:
                        _key(v)
                elif op in _RANGE:
                    if isinstance(arg, bool) or not isinstance(arg, (int, float)):
                        raise TypeError(f"{op} on {key!r} needs a number, not {arg!r}")
                elif op == "$exists":
                    if not isinstance(arg, bool):
                        raise TypeError(f"$exists on {key!r} needs True or False")
                else:
                    _key(arg)
        else:
            _key(cond)


class FilterEvaluator:
    """Evaluates filters over one segment's metadata, caching a column per field."""

    def __init__(self, metadata: Sequence[Mapping[str, Any]]) -> None:
        self._metadata = metadata
        self._columns: dict[str, Column] = {}

    def column(self, path: str) -> Column:
        col = self._columns.get(path)
        if col is None:
            col = self._columns[path] = Column(self._metadata, path)
        return col

    def mask(self, spec: FilterSpec) -> np.ndarray:
        n = len(self._metadata)
        out = np.ones(n, dtype=bool)
        for key, cond in spec.items():
            if key == "$and":
                for c in cond:
                    out &= self.mask(c)
            elif key == "$or":
                any_ = np.zeros(n, dtype=bool)
                for c in cond:
                    any_ |= self.mask(c)
                out &= any_
            elif key == "$not":
                out &= ~self.mask(cond)
            elif isinstance(cond, Mapping) and any(str(k).startswith("$") for k in cond):
                for op, arg in cond.items():
                    out &= self._field(key, op, arg)
            else:
                out &= self._field(key, "$eq", cond)
        return out

    def _field(self, path: str, op: str, arg: Any) -> np.ndarray:
        col = self.column(path)
        if op == "$eq":
            return col.equals_any([arg])
        if op == "$ne":
            return ~col.equals_any([arg])
        if op == "$in":
            return col.equals_any(list(arg))
        if op == "$nin":
            return ~col.equals_any(list(arg))
        if op == "$exists":
            return col.present.copy() if arg else ~col.present
        return col.compare(op, arg)
