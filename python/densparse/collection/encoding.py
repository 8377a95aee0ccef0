"""Vectors for records and queries from an Encoder (ONNX models), for a Collection that
encodes text itself: dense vectors for BGE / sentence-transformers models, lexical weights
for SPLADE, both for BGE-M3."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import numpy as np

from densparse.collection.segment import Record

EncoderLike = Union[str, "os.PathLike[str]", Any]


def load_encoder(encoder: EncoderLike) -> Any:
    """An Encoder instance, or one loaded from a model directory / repo id."""
    from densparse.models import Encoder

    if isinstance(encoder, Encoder):
        return encoder
    if isinstance(encoder, (str, os.PathLike)):
        return Encoder.from_pretrained(encoder)
    kind = type(encoder).__name__
    raise TypeError(f"encoder must be a densparse.Encoder or a model path, not {kind}")


def produces(encoder: Any) -> tuple[bool, bool]:
    """(dense, sparse): which vectors this encoder's family gives."""
    fam = encoder.family
    return fam != "splade", fam in ("splade", "bge-m3")


def _split(out: Any) -> tuple[Optional[np.ndarray], Optional[list]]:
    if isinstance(out, np.ndarray):
        return out, None
    if isinstance(out, dict):  # BGE-M3
        return out.get("dense_vecs"), out.get("lexical_weights")
    return None, list(out)  # SPLADE: a list of {token id: weight}


def encode_records(encoder: Any, records: list[Record], show_progress: Optional[bool]) -> None:
    """Fill in dense (text and every view) and sparse (text) vectors that records lack."""
    want_dense, want_sparse = produces(encoder)
    need_dense = [r for r in records if want_dense and r.dense is None]
    need_sparse = [r for r in records if want_sparse and r.sparse is None]
    if not need_dense and not need_sparse:
        return
    from densparse.collection.records import sparse_vector

    # One pass over every text any record needs (views only need dense vectors).
    rows: list[str] = []
    for r in need_dense:
        rows += [r.text, *r.views]
    dense_ids = {id(r) for r in need_dense}
    extra = [r.text for r in need_sparse if id(r) not in dense_ids]
    out = encoder.encode_corpus(rows + extra, show_progress=show_progress)
    dense, sparse = _split(out)
    pos = 0
    first_row = {}
    for r in need_dense:
        first_row[id(r)] = pos
        r.dense = np.ascontiguousarray(dense[pos : pos + 1 + len(r.views)], dtype=np.float32)
        pos += 1 + len(r.views)
    if sparse is not None:
        j = len(rows)
        for r in need_sparse:
            if id(r) in first_row:
                w = sparse[first_row[id(r)]]
            else:
                w, j = sparse[j], j + 1
            r.sparse = sparse_vector(w, f"record {r.id!r}: encoded sparse") if w else None


def encode_query(encoder: Any, text: str) -> tuple[Optional[np.ndarray], Optional[dict]]:
    """Dense and/or sparse query vectors (the family's query instruction included)."""
    dense, sparse = _split(encoder.encode_queries([text], show_progress=False))
    return (
        None if dense is None else np.asarray(dense[0], dtype=np.float32),
        None if sparse is None or not sparse[0] else sparse[0],
    )
