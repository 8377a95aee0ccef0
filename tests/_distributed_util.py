"""Helpers shared by the densparse.distributed tests: records, a reference Collection and
the comparison of two result lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from densparse import Analyzer, Collection

WORDS = [
    "apple",
    "banana",
    "cherry",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
]
DIM = 8
VOCAB = 200


def random_sparse(rng: np.random.Generator) -> dict[int, float]:
    idx = rng.choice(VOCAB, size=int(rng.integers(2, 8)), replace=False)
    return {int(i): float(v) for i, v in zip(idx, rng.random(len(idx)).astype(np.float32) + 0.01)}


def synthetic_records(n: int, seed: int = 0, prefix: str = "d") -> list[dict]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 15)), p=p))
        out.append(
            {
                "id": f"{prefix}{i:05d}",
                "text": text,
                "dense": rng.standard_normal(DIM).astype(np.float32).tolist(),
                "sparse": random_sparse(rng),
                "metadata": {"n": i % 5},
            }
        )
    return out


def synthetic_queries(n: int, seed: int = 100) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "id": f"q{j}",
            "text": " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5)))),
            "dense": rng.standard_normal(DIM).astype(np.float32),
            "sparse": random_sparse(rng),
        }
        for j in range(n)
    ]


def as_rows(records: list[dict]) -> list[dict]:
    """Records as Dataset rows: sparse as sparse_indices + sparse_values columns."""
    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if k != "sparse"}
        row["sparse_indices"] = list(r["sparse"])
        row["sparse_values"] = list(r["sparse"].values())
        rows.append(row)
    return rows


def reference(path: Path, records: list[dict], analyzer: Any = None, dim: int = DIM) -> Collection:
    """One Collection of every record, added in id order (a sharded collection orders
    equal scores by id; a Collection by insertion order)."""
    col = Collection.create(path, dense_dim=dim, analyzer=analyzer or Analyzer())
    col.add(sorted(records, key=lambda r: r["id"]))
    return col


def assert_same(got: list, want: list, what: str = "") -> None:
    """Same ids in the same order, scores equal to 1e-5."""
    gi = [getattr(h, "id", h[0] if isinstance(h, tuple) else None) for h in got]
    wi = [h.id for h in want]
    assert gi == wi, f"{what}: ids differ\n{gi}\n{wi}"
    gs = [getattr(h, "score", h[1] if isinstance(h, tuple) else None) for h in got]
    np.testing.assert_allclose(gs, [h.score for h in want], rtol=0, atol=1e-5, err_msg=what)


def search_kwargs(q: dict, mode: str) -> dict:
    return {"text": q.get("text"), "dense": q.get("dense"), "sparse": q.get("sparse"), "mode": mode}
