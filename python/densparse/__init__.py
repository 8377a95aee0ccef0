"""densparse: the retrieval half of RAG, with a Rust core.

Quick tour::

    import densparse
    bm25 = densparse.BM25(analyzer=densparse.Analyzer(language="auto"))
    bm25.index(["房东不退押金怎么办", "How to get a deposit back"])
    ids, scores = bm25.search("押金", k=2)

The documentation site (``docs/``, built with ``mkdocs build``) covers the whole API:
analysis, BM25, dense and sparse indexes, the Collection, encoders, export, fine-tuning and
evaluation.
"""

from __future__ import annotations

import logging

from densparse._core import CorruptIndexError, InternalError, __version__
from densparse.analysis import Analyzer
from densparse.bm25 import BM25
from densparse.collection import Collection, Hit
from densparse.dense import DenseIndex, maxsim, maxsim_rerank
from densparse.fusion import FusedResult, fuse
from densparse.models import Encoder, Reranker
from densparse.sparse import SparseIndex

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BM25",
    "Analyzer",
    "Collection",
    "CorruptIndexError",
    "DenseIndex",
    "Encoder",
    "FusedResult",
    "Hit",
    "InternalError",
    "Reranker",
    "SparseIndex",
    "__version__",
    "fuse",
    "maxsim",
    "maxsim_rerank",
]
