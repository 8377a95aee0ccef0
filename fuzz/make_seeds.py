"""Write the committed seed corpus of the fuzz targets (small valid inputs of each kind).

Run from the repository root with densparse installed: ``python fuzz/make_seeds.py``.
The Rust file targets recompute the checksum of every input, so the fuzzer mutates the
structure behind it; these seeds give it valid files to start from.
"""

from __future__ import annotations

import random
import struct
import tempfile
from pathlib import Path

import numpy as np

import densparse
from densparse import _core

ROOT = Path(__file__).resolve().parent


def put(target: str, name: str, data: bytes) -> None:
    d = ROOT / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def pyput(target: str, name: str, data: bytes) -> None:
    d = ROOT / "python" / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def main() -> None:
    rng = random.Random(1)
    nrng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        words = [f"w{i}" for i in range(40)]
        docs = [
            " ".join(rng.choice(words[: 1 + rng.randrange(40)]) for _ in range(8))
            for _ in range(150)
        ]
        for method in ["lucene", "bm25+"]:
            bm = densparse.BM25(analyzer=densparse.Analyzer(language="en"), method=method).index(
                docs
            )
            bm.save(t / "x.bm25")
            put("bm25_file", method, (t / "x.bm25").read_bytes())
        for dtype in ["float32", "float16", "int8"]:
            idx = densparse.DenseIndex(4, dtype=dtype)
            idx.add(nrng.standard_normal((6, 4)).astype(np.float32))
            idx.save(t / "x.dense")
            put("dense_file", dtype, (t / "x.dense").read_bytes())
        for dtype in ["float32", "float16", "uint8"]:
            sp = densparse.SparseIndex(dtype=dtype)
            rows = [{rng.randrange(30): rng.random() + 0.1 for _ in range(4)} for _ in range(140)]
            sp.add(rows)
            sp.add(rows[:3])
            sp.remove([1])
            sp.save(t / "x.sparse")
            put("sparse_file", dtype, (t / "x.sparse").read_bytes())
        w = _core.RecordStoreWriter()
        w.add(
            "a",
            "text a",
            ["v1"],
            {"year": 2001, "tags": ["x", "y"], "ok": True},
            ([1, 7], [0.5, 1.5]),
        )
        w.add("b", "中文", [], {"year": 1999.5, "tags": "x", "meta": {"n": [1, "a"]}, "z": None})
        w.add("c", "", ["v2", "v3"], {}, None)
        w.finish().save(t / "x.rec")
        put("records_file", "small", (t / "x.rec").read_bytes())
    put("analyzer", "mixed", "今天纽约的天气真好啊，The Running dogs of Europe! 3.5万元".encode())
    put("analyzer", "bad-utf8", b"\xe4\xb8\xad\xff\xfe abc \xe6\x96")
    put("dense_add", "rows", bytes([3]) + struct.pack("<12f", *nrng.standard_normal(12)))
    put(
        "sparse_add",
        "csr",
        bytes([0]) + struct.pack("<12I", 0, 2, 3, 4, 1, 5, 0, 9, *[0x3F800000] * 4),
    )
    pyput("readers", "qrels", b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    pyput(
        "readers",
        "corpus",
        b'{"_id": "d1", "title": "t", "text": "x"}\n{"_id": "d2", "text": "y"}\n',
    )
    pyput("readers", "run", b"q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 1.0 tag\n")
    pyput("readers", "trec-qrels", b"q1 0 d1 1\nq2 0 d3 2\n")
    for target in ["records", "filters"]:
        for i in range(3):
            pyput(target, str(i), bytes(rng.randrange(256) for _ in range(64)))


if __name__ == "__main__":
    main()
