"""Open time and RSS growth of a Collection, in a fresh process.

    python benches/bench_collection_open.py build DIR --n 100000   # synthetic records
    python benches/bench_collection_open.py open DIR               # fresh process: JSON line

Records as in issue 10's scale benchmark: texts of 30-90 words from a Zipfian vocabulary,
384-d unit float32 vectors, metadata ``bucket`` (int 0-9) and ``year`` (int 1990-2024),
added in batches of 10,000 (one segment each, no merge). ``open`` measures, in the process
it runs in: RSS (VmRSS) and wall time of ``Collection.open(DIR, readonly=True)``, then one
filtered dense search and 1,000 ``get()`` calls.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(path: Path, n: int, batch: int = 10_000, seed: int = 0) -> None:
    from densparse import Collection

    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(30_000)]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    c = Collection.create(path, dense_dim=384, auto_merge=False, max_segments=1000)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        lens = rng.integers(30, 91, m)
        words = rng.choice(len(vocab), size=int(lens.sum()), p=p)
        vecs = rng.standard_normal((m, 384), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        recs, at = [], 0
        for i in range(m):
            text = " ".join(vocab[w] for w in words[at : at + lens[i]])
            at += lens[i]
            recs.append(
                {
                    "id": f"doc-{start + i}",
                    "text": text,
                    "dense": vecs[i],
                    "metadata": {
                        "bucket": int(rng.integers(0, 10)),
                        "year": int(rng.integers(1990, 2025)),
                    },
                }
            )
        c.add(recs)
    c.close()
    print(json.dumps({"built": n, "seconds": round(time.perf_counter() - t0, 1)}))


def open_(path: Path) -> None:
    import densparse  # noqa: F401  (imports and the extension are not part of the growth)
    from densparse import Collection

    q = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    before = rss_mb()
    t0 = time.perf_counter()
    c = Collection.open(path, readonly=True, encoder=None)
    t_open = time.perf_counter() - t0
    after = rss_mb()
    t0 = time.perf_counter()
    hits = c.search(dense=q, k=10, filter={"bucket": {"$in": [1, 2, 3]}, "year": {"$gte": 2010}})
    t_search = time.perf_counter() - t0
    ids = [f"doc-{i}" for i in np.random.default_rng(2).integers(0, len(c), 1000)]
    t0 = time.perf_counter()
    for i in ids:
        c.get(i)
    t_get = (time.perf_counter() - t0) / len(ids)
    print(
        json.dumps(
            {
                "documents": len(c),
                "segments": len(c.stats()["segment_sizes"]),
                "open_s": round(t_open, 3),
                "rss_growth_mb": round(after - before, 1),
                "first_filtered_search_ms": round(t_search * 1e3, 1),
                "get_us": round(t_get * 1e6, 1),
                "hits": len(hits),
            }
        )
    )
    c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["build", "open"])
    ap.add_argument("path", type=Path)
    ap.add_argument("--n", type=int, default=100_000)
    a = ap.parse_args()
    if a.what == "build":
        build(a.path, a.n)
    else:
        open_(a.path)


if __name__ == "__main__":
    main()
