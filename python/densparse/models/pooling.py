"""Pooling of token outputs, in numpy (docs/algorithms.md, "Model outputs").

Every function takes a padded batch and its attention mask and gives each row's result from
that row's unmasked positions only, so batched results equal one-by-one results.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EPS = 1e-12


def l2_normalize(x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Rows divided by max(||row||, eps) (torch.nn.functional.normalize)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(np.float32, copy=False)


def cls_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(hidden[:, 0], dtype=np.float32)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)[:, :, None]
    total = (hidden * m).sum(axis=1, dtype=np.float64)
    count = np.maximum(m.sum(axis=1, dtype=np.float64), 1e-9)
    return (total / count).astype(np.float32)


def mean_sqrt_len_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)[:, :, None]
    total = (hidden * m).sum(axis=1, dtype=np.float64)
    count = np.maximum(m.sum(axis=1, dtype=np.float64), 1e-9)
    return (total / np.sqrt(count)).astype(np.float32)


def max_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # sentence-transformers sets masked positions to -1e9 before the max
    h = np.where(mask[:, :, None] > 0, hidden, np.float32(-1e9))
    return h.max(axis=1).astype(np.float32)


DENSE_POOLINGS = {
    "cls": cls_pool,
    "mean": mean_pool,
    "mean_sqrt_len": mean_sqrt_len_pool,
    "max": max_pool,
}


def _to_dict(ids: np.ndarray, weights: np.ndarray, drop: Iterable[int]) -> dict[str, float]:
    """Max weight per token id, ids in ``drop`` and weights <= 0 removed; keys are str(id)
    like FlagEmbedding's lexical_weights."""
    keep = weights > 0
    dropped = np.fromiter(drop, dtype=np.int64) if drop else np.zeros(0, np.int64)
    if dropped.size:
        keep &= ~np.isin(ids, dropped)
    ids, weights = ids[keep], weights[keep]
    if ids.size == 0:
        return {}
    uniq, inv = np.unique(ids, return_inverse=True)
    best = np.full(uniq.size, -np.inf, dtype=np.float32)
    np.maximum.at(best, inv, weights.astype(np.float32))
    return {str(int(i)): float(w) for i, w in zip(uniq, best)}


def m3_sparse(
    token_weights: np.ndarray, input_ids: np.ndarray, mask: np.ndarray, special_ids: Iterable[int]
) -> list[dict[str, float]]:
    """BGE-M3 lexical weights from per-token weights relu(sparse_linear(H)) [b, L] (or
    [b, L, 1]): special ids and weights <= 0 dropped, max weight per token id."""
    w = np.asarray(token_weights, dtype=np.float32)
    if w.ndim == 3:
        w = w[..., 0]
    w = np.maximum(w, 0)
    drop = frozenset(special_ids)
    out = []
    for row in range(w.shape[0]):
        n = int(mask[row].sum())
        out.append(_to_dict(input_ids[row, :n], w[row, :n], drop))
    return out


def m3_colbert(colbert: np.ndarray, mask: np.ndarray, *, includes_cls: bool) -> list[np.ndarray]:
    """BGE-M3 ColBERT rows: colbert_linear(H[:, 1:]) rows, L2-normalised, the first
    sum(mask) - 1 kept (drops CLS, keeps the final </s>).

    Args:
        colbert: [b, L, d] when ``includes_cls`` (one row per position) or [b, L - 1, d]
            (already H[:, 1:], as FlagEmbedding's head outputs it).
    """
    c = np.asarray(colbert, dtype=np.float32)
    if includes_cls:
        c = c[:, 1:]
    out = []
    for row in range(c.shape[0]):
        n = max(int(mask[row].sum()) - 1, 0)
        out.append(l2_normalize(c[row, :n]))
    return out


def splade_pool(
    logits: np.ndarray, input_ids: np.ndarray, mask: np.ndarray
) -> list[dict[str, float]]:
    """SPLADE: weight(v) = max over unmasked positions of log(1 + relu(logits[:, v]))."""
    out = []
    for row in range(logits.shape[0]):
        n = int(mask[row].sum())
        w = np.log1p(np.maximum(logits[row, :n].astype(np.float32), 0)).max(axis=0) if n else None
        if w is None:
            out.append({})
            continue
        nz = np.flatnonzero(w > 0)
        out.append({str(int(v)): float(w[v]) for v in nz})
    return out


def compute_lexical_matching_score(a: dict, b: dict) -> float:
    """Sum over shared token ids of w_a * w_b (FlagEmbedding's lexical matching score)."""
    if len(a) > len(b):
        a, b = b, a
    return float(sum(float(w) * float(b[k]) for k, w in a.items() if k in b))


def colbert_score(q: np.ndarray, p: np.ndarray) -> float:
    """Mean over query rows of the max over passage rows of the dot product."""
    q = np.asarray(q, dtype=np.float32)
    p = np.asarray(p, dtype=np.float32)
    if q.ndim != 2 or p.ndim != 2 or q.shape[1] != p.shape[1]:
        raise ValueError(
            f"colbert_score needs [n, d] and [m, d] arrays, got {q.shape} and {p.shape}"
        )
    if q.shape[0] == 0 or p.shape[0] == 0:
        return 0.0
    return float((q @ p.T).max(axis=1).mean())
