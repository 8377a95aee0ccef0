"""Training losses: InfoNCE for embedders (group and in-batch negatives), group
cross-entropy for rerankers.

For B queries with embeddings ``q`` [B, d] and B groups of G passages ``p`` [B*G, d] (row
``i*G`` is query i's positive, rows ``i*G+1 .. i*G+G-1`` its hard negatives):

    s[i, j] = (q_i . p_j) / tau                       (a [B, B*G] score matrix)
    loss    = mean_i  -log( exp(s[i, i*G]) / sum_j exp(s[i, j]) )

Every other query's passages are in-batch negatives for query i. With ``in_batch=False``
only query i's own group is scored ([B, G], target column 0). This is FlagEmbedding's
``_compute_in_batch_neg_loss`` / ``_compute_no_in_batch_neg_loss`` (cross-entropy, mean
reduction); sentence-transformers' MultipleNegativesRankingLoss is the in-batch case with
scale 20, i.e. tau = 0.05.

Embeddings are expected L2-normalised by the caller (so q . p is the cosine); pass
``normalize=True`` to have them normalised here.

Rerankers (cross-encoders) score each (query, passage) pair with one logit; for B groups of G
pairs (the positive first) :func:`group_cross_entropy` is the cross-entropy of each group's G
logits with target 0, mean over groups (FlagEmbedding's reranker loss).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["group_cross_entropy", "info_nce", "score_matrix"]


def _check(q: torch.Tensor, p: torch.Tensor, group_size: Optional[int]) -> int:
    if not isinstance(q, torch.Tensor) or not isinstance(p, torch.Tensor):
        raise TypeError("q and p must be torch tensors")
    if q.ndim != 2 or p.ndim != 2:
        raise ValueError(f"q and p must be 2-D, got shapes {tuple(q.shape)} and {tuple(p.shape)}")
    if q.shape[1] != p.shape[1]:
        raise ValueError(f"q has dim {q.shape[1]} but p has dim {p.shape[1]}")
    b = q.shape[0]
    if b == 0:
        raise ValueError("q is empty")
    if group_size is None:
        if p.shape[0] % b:
            raise ValueError(f"p has {p.shape[0]} rows, not a multiple of the {b} queries")
        group_size = p.shape[0] // b
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
    if p.shape[0] != b * group_size:
        raise ValueError(
            f"p must have B*G = {b}*{group_size} = {b * group_size} rows, got {p.shape[0]}"
        )
    return group_size


def score_matrix(
    q: torch.Tensor,
    p: torch.Tensor,
    temperature: float = 0.02,
    group_size: Optional[int] = None,
    *,
    in_batch: bool = True,
    normalize: bool = False,
) -> torch.Tensor:
    """The logits InfoNCE takes: [B, B*G] (``in_batch``) or [B, G] scores divided by tau."""
    g = _check(q, p, group_size)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if normalize:
        q = F.normalize(q, dim=-1)
        p = F.normalize(p, dim=-1)
    if in_batch:
        return q @ p.transpose(0, 1) / temperature
    groups = p.reshape(q.shape[0], g, p.shape[1])  # [B, G, d]
    return torch.einsum("bd,bgd->bg", q, groups) / temperature


def info_nce(
    q: torch.Tensor,
    p: torch.Tensor,
    temperature: float = 0.02,
    group_size: Optional[int] = None,
    *,
    in_batch: bool = True,
    normalize: bool = False,
) -> torch.Tensor:
    """InfoNCE loss (cross-entropy, mean over queries) of FlagEmbedding's recipe.

    Args:
        q: query embeddings [B, d].
        p: passage embeddings [B*G, d]; rows ``i*G .. i*G+G-1`` are query i's group, its
            positive first.
        temperature: tau; scores are ``q . p / tau`` (FlagEmbedding default 0.02).
        group_size: G (default: ``p.shape[0] // B``, which must divide exactly).
        in_batch: score each query against every passage of the batch (target column
            ``i*G``); ``False``: only against its own group (target column 0).
        normalize: L2-normalise ``q`` and ``p`` first (leave ``False`` when the caller
            already did).

    Returns:
        A scalar tensor (differentiable).

    Raises:
        ValueError: shapes that do not fit B and G, temperature <= 0, or G = 1 without
            in-batch negatives (a single candidate: nothing to contrast).
    """
    g = _check(q, p, group_size)
    if not in_batch and g == 1:
        raise ValueError("in_batch=False with group_size=1 leaves no negative to contrast with")
    scores = score_matrix(q, p, temperature, g, in_batch=in_batch, normalize=normalize)
    b = q.shape[0]
    if in_batch:
        target = torch.arange(b, device=scores.device) * g
    else:
        target = torch.zeros(b, dtype=torch.long, device=scores.device)
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()  # softmax over B*G logits in fp32 under autocast
    return F.cross_entropy(scores, target)


def group_cross_entropy(logits: torch.Tensor, group_size: int) -> torch.Tensor:
    """Cross-entropy over groups of reranker logits, the first of each group the target.

    Args:
        logits: B*G pair scores, shape [B*G], [B*G, 1] or [B, G]; rows ``i*G .. i*G+G-1``
            are group i, its positive first.
        group_size: G >= 2 (one positive and at least one negative).

    Returns:
        ``mean_i -log softmax(logits_i)[0]`` as a scalar tensor (differentiable; computed in
        float32 or wider even under fp16/bf16 autocast).

    Raises:
        TypeError: ``logits`` is not a tensor.
        ValueError: G < 2, or a shape that is not B whole groups of G.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError("logits must be a torch tensor")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size must be an int >= 2, got {group_size!r}")
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.ndim == 1:
        if logits.shape[0] == 0 or logits.shape[0] % group_size:
            raise ValueError(
                f"{logits.shape[0]} logits are not whole groups of group_size={group_size}"
            )
        logits = logits.reshape(-1, group_size)
    elif logits.ndim != 2 or logits.shape[1] != group_size or logits.shape[0] == 0:
        raise ValueError(
            f"logits must be [B*G], [B*G, 1] or [B, G] with G={group_size}, "
            f"got shape {tuple(logits.shape)}"
        )
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)
