"""Argument checks shared by the index wrappers (BM25, DenseIndex, SparseIndex)."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any, Optional

import numpy as np

#: Larger ``k`` are the same request (every index clips k to its size): clipping keeps any
#: Python int, 2**64 included, from overflowing the native size type.
MAX_K = 2**40


def check_k(k: Any, what: str = "k") -> int:
    """``k`` as an int >= 1 (at most :data:`MAX_K`)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{what} must be an int, not {type(k).__name__}")
    if k < 1:
        raise ValueError(f"{what} must be >= 1, got {k}")
    return min(int(k), MAX_K)


def check_opt_positive(x: Any, what: str) -> Optional[int]:
    """None, or ``x`` as an int >= 1 (``threads``, ``doc_top_n``, ...)."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{what} must be an int or None, not {type(x).__name__}")
    if x < 1:
        raise ValueError(f"{what} must be >= 1 (or None), got {x}")
    # Larger values ask for "all" (threads are capped at the cores): clipped like k.
    return min(int(x), MAX_K)


def check_real(x: Any, what: str) -> float:
    """``x`` (an int or float, not a bool) as a float; the range is checked by its user."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number, not {type(x).__name__}")
    try:
        return float(x)
    except OverflowError:
        raise ValueError(f"{what}={x} is out of range") from None


def check_choice(x: Any, choices: Collection[str], what: str) -> str:
    """``x`` as one of the strings ``choices``."""
    if not isinstance(x, str):
        raise TypeError(
            f"{what} must be a str, one of {', '.join(choices)}; not {type(x).__name__}"
        )
    if x not in choices:
        raise ValueError(f"unknown {what} {x!r}: expected one of {', '.join(choices)}")
    return x


def check_path(path: Any, what: str = "path") -> str:
    """``path`` (str, bytes or os.PathLike) as a str the operating system can take."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise TypeError(f"{what} must be a str or os.PathLike, not {type(path).__name__}") from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    try:
        os.fsencode(p)
    except UnicodeEncodeError:
        raise ValueError(f"{what} {p!r} cannot be encoded as a file name") from None
    if "\0" in p:
        raise ValueError(f"{what} contains a NUL character")
    return p


def check_mask(mask: Any) -> Optional[np.ndarray]:
    """None, or a document mask as a 1-D uint8 array (a view for bool and uint8 input):
    document id i is eligible iff ``i < len(mask) and mask[i]``."""
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a 1-D numpy bool or uint8 array, not {type(mask).__name__}")
    if mask.dtype not in (np.bool_, np.uint8):
        raise TypeError(f"mask must have dtype bool or uint8, not {mask.dtype}")
    if mask.ndim != 1:
        raise ValueError(f"mask must be 1-D (indexed by document id), got shape {mask.shape}")
    return np.ascontiguousarray(mask).view(np.uint8)
