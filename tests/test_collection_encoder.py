"""A Collection with an Encoder computes record and query vectors itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, need, read_jsonl
from densparse import Analyzer, Collection

MINILM = SHARED / "models" / "minilm-l6-int8-onnx"


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("onnxruntime")
    from densparse.models import Encoder

    return Encoder.from_pretrained(need(MINILM), provider="cpu")


def test_collection_encodes_records_and_queries(tmp_path: Path, encoder) -> None:
    docs = read_jsonl(need(SHARED / "data" / "scifact") / "corpus.jsonl")[:60]
    texts = [(d.get("title", "") + " " + d["text"]).strip() for d in docs]
    c = Collection.create(tmp_path / "c", analyzer=Analyzer(language="en"), encoder=encoder)
    assert c.dense_dim == 384
    c.add(
        [
            {"id": d["_id"], "text": t, "views": ["a question"] if i == 0 else []}
            for i, (d, t) in enumerate(zip(docs, texts))
        ]
    )
    # stored vectors equal the encoder's (text row, then the view's row)
    X = encoder.encode_corpus(texts)
    got = c.get(docs[1]["_id"])["dense"]
    np.testing.assert_allclose(got, X[1], atol=1e-6)
    assert c.get(docs[0]["_id"])["dense"].shape == (2, 384)
    q = "Which cells are involved in the immune response?"
    qv = encoder.encode_queries([q])[0]
    hits = c.search(text=q, mode="dense", k=5)
    s = X @ qv
    s[0] = max(s[0], float(encoder.encode_corpus(["a question"])[0] @ qv))  # max over views
    order = np.lexsort((np.arange(len(s)), -s))[:5]
    assert [h.id for h in hits] == [docs[i]["_id"] for i in order]
    np.testing.assert_allclose([h.score for h in hits], s[order], rtol=1e-4, atol=1e-5)
    hybrid = c.search(text=q, k=5)
    assert set(hybrid[0].scores) == {"bm25", "dense"}
    c.close()
    again = Collection.open(tmp_path / "c", readonly=True)  # the encoder comes back by path
    assert again.encoder is not None
    assert [h.id for h in again.search(text=q, mode="dense", k=5)] == [h.id for h in hits]
