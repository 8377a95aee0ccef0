"""Index files written before BM25 and SparseIndex shared one posting-list module
(tests/fixtures/postings_v1, made by make.py there at commit ae1799f) load and give
the very hits and float32 scores they gave then, read or memory-mapped."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import densparse

FIX = Path(__file__).resolve().parent / "fixtures" / "postings_v1"


def _expected() -> dict:
    out: dict = defaultdict(list)
    for line in (FIX / "expected.txt").read_text().splitlines():
        name, qi, masked, rank, i, bits = line.split()
        hits = out[(name, int(qi), masked == "1")]
        assert len(hits) == int(rank)
        hits.append((int(i), int(bits, 16)))
    return out


def _queries(kind: str) -> list[list[str]]:
    lines = (FIX / "queries.txt").read_text().splitlines()
    return [ln.split()[2:] for ln in lines if ln.split()[0] == kind]


def _pair(p: str) -> tuple[int, float]:
    t, w = p.split(":")
    return int(t), float(np.uint32(int(w, 16)).view(np.float32))


def _bits(ids: np.ndarray, scores: np.ndarray) -> list[tuple[int, int]]:
    s = np.asarray(scores, dtype=np.float32).view(np.uint32)
    return [(int(i), int(b)) for i, b in zip(ids, s)]


@pytest.mark.parametrize("mmap", [False, True])
def test_bm25_v1_file(mmap: bool) -> None:
    want = _expected()
    bm = densparse.BM25.load(FIX / "bm25.idx", mmap=mmap)
    mask = (np.arange(bm.n_docs) % 3 != 0).astype(np.uint8)
    qs = _queries("bm25")
    assert len(qs) == 12
    for qi, q in enumerate(qs):
        for masked in (False, True):
            ids, scores = bm.search([q], k=10, mask=mask if masked else None)
            assert _bits(ids[0], scores[0]) == want[("bm25", qi, masked)], (qi, masked)


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
@pytest.mark.parametrize("mmap", [False, True])
def test_sparse_v1_files(dtype: str, mmap: bool, tmp_path: Path) -> None:
    want = _expected()
    name = f"sparse_{dtype}"
    idx = densparse.SparseIndex.load(FIX / f"{name}.idx", mmap=mmap)
    assert idx.dtype == dtype
    qs = [dict(_pair(p) for p in q) for q in _queries("sparse")]
    assert len(qs) == 12
    mask = (np.arange(1000) % 4 != 1).astype(np.uint8)
    for masked in (False, True):
        ids, scores = idx.search(qs, k=10, mask=mask if masked else None)
        for qi in range(len(qs)):
            assert _bits(ids[qi], scores[qi]) == want[(name, qi, masked)], (qi, masked)
    # Saved again in today's format: the same hits.
    idx.save(tmp_path / "again.idx")
    again = densparse.SparseIndex.load(tmp_path / "again.idx", mmap=mmap)
    ids, scores = again.search(qs, k=10)
    for qi in range(len(qs)):
        assert _bits(ids[qi], scores[qi]) == want[(name, qi, False)]
