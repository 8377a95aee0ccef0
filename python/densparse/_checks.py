"""Argument checks shared by the index wrappers (BM25, DenseIndex, SparseIndex)."""

from __future__ import annotations

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
    return int(x)


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
