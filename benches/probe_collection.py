"""A collection made by bench_collection_scale.py (e.g. 10M records with int8 vectors, left with
--keep or cut short after its ingest), probed step by step in fresh processes:

    python3 benches/probe_collection.py PATH fill N    # add the batches of N records it lacks
    python3 benches/probe_collection.py PATH probe     # open read-only, then 40 queries per mode
    python3 benches/probe_collection.py PATH merge     # merge(max_segments=1) in a writer

Each step prints one JSON line (times, RSS, latencies). Used for the 10M figures in RESULTS.md,
where the full benchmark run would not fit the session.
"""

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, "benches")
import bench_collection_scale as b

path = Path(sys.argv[1])
step = sys.argv[2]


def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6


if step == "probe":
    import densparse

    r0 = rss_mb()
    t = time.perf_counter()
    c = densparse.Collection.open(path, readonly=True, encoder=None)
    t_open = time.perf_counter() - t
    r_open = rss_mb() - r0
    d = b.Data(10, 10, 20261201)
    qs = d.queries(100)
    out = {
        "docs": len(c),
        "segments": c.stats()["segments"],
        "open_s": t_open,
        "rss_open_mb": r_open,
    }
    for mode in ("bm25", "hybrid", "hybrid+filter"):
        ts = []
        for text, vec in qs[:40]:
            t = time.perf_counter()
            if mode == "bm25":
                c.search(text=text, k=10, mode="bm25")
            else:
                c.search(
                    text=text,
                    dense=vec,
                    k=10,
                    candidates=100,
                    rrf_k=b.RRF_K,
                    filter=b.FILTER_DS if mode == "hybrid+filter" else None,
                )
            ts.append(time.perf_counter() - t)
        out[mode + "_p50_ms"] = 1000 * float(np.median(ts[3:]))
        out[mode + "_p99_ms"] = 1000 * float(np.percentile(ts[3:], 99))
    out["rss_after_mb"] = rss_mb()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(json.dumps(out))
elif step == "merge":
    import densparse

    c = densparse.Collection.open(path, encoder=None, auto_merge=False)
    t = time.perf_counter()
    c.merge(max_segments=1)
    c.close()
    print(
        json.dumps(
            {
                "merge_s": time.perf_counter() - t,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
            }
        )
    )
elif step == "fill":
    import densparse

    n_total = int(sys.argv[3])
    c = densparse.Collection.open(path, encoder=None, auto_merge=False)
    have = len(c)
    data = b.Data(n_total, 10_000, 20261201)
    eng = b.Densparse.__new__(b.Densparse)
    eng.c = c
    t = time.perf_counter()
    added = 0
    for bi, start in enumerate(range(0, n_total, 10_000)):
        if start < have:
            continue
        # the batch exactly as Data.batches() makes it (same seeds), without the ones before
        rng = np.random.default_rng([data.seed, 1, bi])
        m = 10_000
        lens = rng.integers(b.WORDS[0], b.WORDS[1] + 1, size=m)
        words = data.vocab[data._words(rng, int(lens.sum()))].tolist()
        ends = np.cumsum(lens).tolist()
        starts = [0, *ends[:-1]]
        cols = {
            "id": [f"doc{start + i:09d}" for i in range(m)],
            "text": [" ".join(words[a:z]) for a, z in zip(starts, ends)],
            "dense": b.unit_rows(rng, m, b.DIM),
            "bucket": rng.integers(0, 10, size=m),
            "year": rng.integers(b.YEARS[0], b.YEARS[1] + 1, size=m),
        }
        eng.add(cols)
        added += m
    c.close()
    print(
        json.dumps({"had": have, "added": added, "docs_per_s": added / (time.perf_counter() - t)})
    )
