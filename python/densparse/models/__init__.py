"""Torch-free encoders: ONNX graphs run by onnxruntime, tokenised by ``tokenizers``.

- :mod:`~densparse.models.families`: detect the model family from a directory.
- :mod:`~densparse.models.session`: onnxruntime sessions (CPU / CUDA, threads, IO binding).
- :mod:`~densparse.models.batching`: tokenisation, length-sorted token-budget batches.
- :mod:`~densparse.models.pooling`: CLS / mean / max pooling, SPLADE, BGE-M3 heads, scores.
- :mod:`~densparse.models.heads`: BGE-M3 head weights without torch.
- :mod:`~densparse.models.encoder`: :class:`Encoder`.
- :mod:`~densparse.models.chunking`: late chunking.
- :mod:`~densparse.models.reranker`: :class:`Reranker` (cross-encoders).
"""

from densparse.models.encoder import Encoder
from densparse.models.families import FAMILIES, ModelSpec, detect_family
from densparse.models.pooling import colbert_score, compute_lexical_matching_score
from densparse.models.reranker import Reranker

__all__ = [
    "FAMILIES",
    "Encoder",
    "ModelSpec",
    "Reranker",
    "colbert_score",
    "compute_lexical_matching_score",
    "detect_family",
]
