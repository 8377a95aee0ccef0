"""Collection safety: one writer at a time, readers that never see a file vanish, writes
that fail change nothing, crashes that lose nothing acknowledged, damage that is always
detected, and BM25 statistics over live documents exactly.

Each scenario here failed on the engine before the generation protocol (see the
Collection-engine issue); the multi-process ones use real processes with bounded counts."""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import densparse
from densparse import Analyzer, Collection, CorruptIndexError
from densparse.collection import store
from densparse.collection.segment import Segment
from test_collection import WORDS as COLLECTION_WORDS

ROOT = str(Path(densparse.__file__).resolve().parent.parent)
WORDS = COLLECTION_WORDS[:13]


def records(n: int, start: int = 0, seed: int = 0, dim: int = 8) -> list[dict]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    out = []
    for i in range(start, start + n):
        nnz = int(rng.integers(1, 5))
        out.append(
            {
                "id": f"d{i}",
                "text": " ".join(rng.choice(WORDS, size=int(rng.integers(2, 12)), p=p)),
                "views": [" ".join(rng.choice(WORDS, size=3))] if i % 5 == 0 else [],
                "dense": rng.standard_normal((2 if i % 5 == 0 else 1, dim)).astype(np.float32),
                "sparse": (
                    rng.choice(40, size=nnz, replace=False),
                    rng.random(nnz).astype(np.float32) + 0.01,
                ),
                "metadata": {"n": i, "tag": ["x", "y"][i % 2]},
            }
        )
    return out


def en() -> Analyzer:
    return Analyzer(language="en")


def run_py(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.insert(0, {ROOT!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def scores(c: Collection, **query) -> dict[str, float]:
    n = max(len(c), 1)
    return {h.id: h.score for h in c.search(k=n, candidates=n, **query)}


def assert_same_scores(a: dict[str, float], b: dict[str, float]) -> None:
    assert set(a) == set(b)
    for k in a:
        assert abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(b[k])), (k, a[k], b[k])


# ---------------------------------------------------------------- one writer
def test_second_writer_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "c"
    a = Collection.create(path, dense_dim=8, analyzer=en())
    with pytest.raises(store.CollectionLockedError, match="another process is writing"):
        Collection.open(path)
    b = Collection.open(path, readonly=True)  # readers are welcome
    a.add(records(3))
    a.close()
    c = Collection.open(path)  # free again after close()
    c.add(records(2, start=3))
    del c  # dropped without close(): the lock goes with the object
    gc.collect()
    d = Collection.open(path)
    assert len(d) == 5 and len(b) == 0
    d.close()


def test_stale_writer_never_overwrites_a_newer_manifest(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c"
    Collection.create(path, dense_dim=8, analyzer=en()).close()
    a = Collection.open(path)
    # A file system that does not honour the lock lets a second writer in.
    monkeypatch.setattr(store.WriterLock, "acquire", lambda self: None)
    monkeypatch.setattr(store.WriterLock, "held", property(lambda self: True))
    b = Collection.open(path)
    a.add(records(2))
    with pytest.raises(store.CollectionLockedError, match="another writer committed"):
        b.add(records(2, start=10))
    assert "d10" not in b  # the refused write changed nothing in memory either
    assert sorted(Collection.open(path, readonly=True).ids()) == ["d0", "d1"]


_SERIAL_WRITER = """
import time
from densparse import Collection
from densparse.collection.store import CollectionLockedError
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    for _ in range(2000):
        try:
            c = Collection.open(path, auto_merge=(i % 3 == 0))
            break
        except CollectionLockedError:
            time.sleep(0.005)
    else:
        raise SystemExit("never got the lock")
    c.add([{"id": f"{who}-{i}", "text": f"writer {who} record {i}"}])
    c.close()
    print(f"{who}-{i}", flush=True)
"""


def test_two_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c"
    Collection.create(path, analyzer=en(), max_segments=3).close()
    prelude = f"import sys; sys.path.insert(0, {ROOT!r})\n"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", prelude + _SERIAL_WRITER, str(path), who, "12"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    acked = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        acked += out.split()
    assert len(acked) == 24
    c = Collection.open(path, readonly=True)
    assert sorted(c.ids()) == sorted(acked)


# ---------------------------------------------------------------- readers vs writer
_BUSY_WRITER = """
import numpy as np
from densparse import Analyzer, Collection
path, n = sys.argv[1], int(sys.argv[2])
c = Collection.open(path, max_segments=3)
rng = np.random.default_rng(0)
for i in range(n):
    c.add([{"id": f"w{i}-{j}", "text": f"apple writer {i} {j}", "dense": rng.standard_normal(8)}
           for j in range(3)])
    if i % 4 == 3:
        c.delete([f"w{i}-0"])
    if i % 10 == 9:
        c.merge(max_segments=1)
c.close()
open(sys.argv[3], "w").close()
"""

_BUSY_READER = """
import os, time
import numpy as np
from densparse import Collection
path, done, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
tries = errors = 0
q = np.ones(8, np.float32)
c = Collection.open(path, readonly=True)
while not os.path.exists(done) and tries < limit:
    tries += 1
    try:
        if tries % 2:
            c = Collection.open(path, readonly=True)
        else:
            c.reload()
        hits = c.search(text="apple", dense=q, k=5)
        assert len(hits) == min(5, len(c))
        for h in hits[:2]:
            c.get(h.id)
    except Exception as e:
        errors += 1
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
print(tries, errors)
"""


def test_readers_never_fail_during_commits_and_merges(tmp_path: Path) -> None:
    path = tmp_path / "c"
    c = Collection.create(path, dense_dim=8, analyzer=en())
    c.add([{"id": "seed", "text": "apple seed", "dense": np.ones(8, np.float32)}])
    c.close()
    done = tmp_path / "done"
    prelude = f"import sys; sys.path.insert(0, {ROOT!r})\n"

    def start(code: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", prelude + code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    readers = [start(_BUSY_READER, str(path), str(done), "3000") for _ in range(2)]
    writer = start(_BUSY_WRITER, str(path), "60", str(done))
    _, err = writer.communicate(timeout=600)
    assert writer.returncode == 0, err
    total = 0
    for r in readers:
        out, err = r.communicate(timeout=600)
        assert r.returncode == 0, err
        tries, errors = map(int, out.split())
        assert errors == 0, err[-2000:]
        total += tries
    assert total >= 100  # the readers really raced the writer
    final = Collection.open(path, readonly=True)
    assert len(final) == 1 + 60 * 3 - 15
    # once no reader holds them, old generations and their segments are gone
    w = Collection.open(path)
    w.add([{"id": "last", "text": "apple", "dense": np.ones(8, np.float32)}])
    w.close()
    final.close()
    w = Collection.open(path)
    w.delete(["last"])
    w.close()
    gens = sorted(p.name for p in (path / "generations").glob("*.json"))
    assert len(gens) == 1
    m = store.read_manifest(path)
    assert {p.name for p in (path / "segments").iterdir()} == {s["name"] for s in m["segments"]}


def test_reader_keeps_its_snapshot_while_the_writer_merges(tmp_path: Path) -> None:
    path = tmp_path / "c"
    w = Collection.create(path, dense_dim=8, analyzer=en(), auto_merge=False)
    for b in range(3):
        w.add(records(10, start=10 * b, seed=b))
    r = Collection.open(path, readonly=True, mmap=False)
    before = scores(r, text="apple golf", dense=np.ones(8, np.float32))
    w.delete(["d1", "d2"])
    w.merge(max_segments=1)
    # the reader's segments are still on disk: a fresh open of its generation would work
    for s in r._manifest["segments"]:
        assert (path / "segments" / s["name"]).exists()
    assert scores(r, text="apple golf", dense=np.ones(8, np.float32)) == before
    r.reload()
    assert len(r) == 28 and "d1" not in r
    w.add(records(1, start=99))  # a commit after the reader let go collects its segments
    names = {s["name"] for s in store.read_manifest(path)["segments"]}
    assert {p.name for p in (path / "segments").iterdir()} == names
    w.close()


# ---------------------------------------------------------------- failed writes
def test_failed_writes_change_nothing(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c"
    c = Collection.create(path, dense_dim=8, analyzer=en())
    c.add(records(5))
    before = (sorted(c.ids()), c.stats()["generation"])
    with pytest.raises(ValueError, match="lone surrogate"):
        c.add([{"id": "bad\ud800", "text": "x"}])
    with pytest.raises(ValueError, match="lone surrogate"):
        c.add([{"id": "ok", "text": "lone \udc00 surrogate"}])

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Segment, "write", full_disk)
        with pytest.raises(OSError, match="No space"):
            c.add(records(2, start=100))
        with pytest.raises(OSError, match="No space"):
            c.upsert(records(1, start=2))
    with monkeypatch.context() as m:
        m.setattr(store, "write_live", full_disk)
        with pytest.raises(OSError, match="No space"):
            c.delete(["d1"])
    assert (sorted(c.ids()), c.stats()["generation"]) == before
    assert "d100" not in c and "d1" in c and c.get("d2")["text"] == records(5)[2]["text"]
    c.add(records(1, start=200))  # the next good write commits only itself
    c.close()
    again = Collection.open(path, readonly=True)
    assert sorted(again.ids()) == sorted([*before[0], "d200"])


def test_full_disk_on_a_small_tmpfs(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")
    try:
        path = mnt / "c"
        c = Collection.create(path, dense_dim=64, analyzer=en(), auto_merge=False)
        acked: list[str] = []
        rng = np.random.default_rng(0)
        failed = 0
        for b in range(400):
            batch = [
                {"id": f"b{b}-{j}", "text": " ".join(WORDS) * 3, "dense": rng.random(64)}
                for j in range(20)
            ]
            try:
                c.add(batch)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                failed += 1
                assert not any(r["id"] in c for r in batch)
                if failed == 3:
                    break
                continue
            acked += [r["id"] for r in batch]
        assert failed == 3 and acked
        assert sorted(c.ids()) == sorted(acked)
        del c
        gc.collect()
        again = Collection.open(path, readonly=True)
        assert sorted(again.ids()) == sorted(acked)
        again.search(text="apple", k=3)
        again.close()
        del again
        gc.collect()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---------------------------------------------------------------- crashes
_KILLED_WRITER = """
import numpy as np
from densparse import Collection
path, seed = sys.argv[1], int(sys.argv[2])
c = Collection.open(path, max_segments=3)
rng = np.random.default_rng(seed)
i = 0
while True:
    op = rng.integers(0, 10)
    ids = c.ids()
    if op < 6 or not ids:
        batch = [f"s{seed}-{i}-{j}" for j in range(int(rng.integers(1, 4)))]
        c.add([{"id": d, "text": f"apple {d}", "dense": rng.standard_normal(8)} for d in batch])
        print("add", *batch, flush=True)
    elif op < 8:
        d = ids[int(rng.integers(len(ids)))]
        print("deleting", d, flush=True)  # killed after the commit, before the ack
        c.delete([d])
        print("del", d, flush=True)
    else:
        c.merge(max_segments=int(rng.integers(1, 3)))
        print("merge", flush=True)
    i += 1
"""


def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "c"
    Collection.create(path, dense_dim=8, analyzer=en()).close()
    prelude = f"import sys; sys.path.insert(0, {ROOT!r})\n"
    rng = np.random.default_rng(7)
    present: set[str] = set()
    for seed in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", prelude + _KILLED_WRITER, str(path), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        lines: list[str] = []
        want = int(rng.integers(3, 30))
        while len(lines) < want and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        time.sleep(float(rng.random()) * 0.05)  # die somewhere inside the next operation
        proc.kill()
        proc.wait()
        lines += proc.stdout.readlines()  # every acknowledgement printed before the kill
        assert lines, proc.stderr.read()
        maybe_gone: set[str] = set()  # deletes begun; done or not when the process died
        deleted: set[str] = set()
        for line in lines:
            op, *ids = line.split()
            if op == "add":
                present |= set(ids)
            elif op == "deleting":
                maybe_gone |= set(ids)
            elif op == "del":
                deleted |= set(ids)
        present -= deleted
        c = Collection.open(path, readonly=True)
        got = set(c.ids())
        assert present - maybe_gone <= got, sorted(present - maybe_gone - got)[:5]
        assert not deleted & got
        present = got  # later acknowledgements build on what is really there
        hits = c.search(text="apple", k=5)
        assert len(hits) == min(5, len(got))


# ---------------------------------------------------------------- merges
def test_merge_during_a_background_merge_waits(tmp_path: Path, monkeypatch) -> None:
    c = Collection.create(tmp_path / "c", dense_dim=8, analyzer=en(), max_segments=2)
    build = Segment.build.__func__

    def slow_build(cls, *a, **k):
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.3)  # a background merge is surely running when merge() is called
        return build(cls, *a, **k)

    monkeypatch.setattr(Segment, "build", classmethod(slow_build))
    for b in range(6):
        c.add(records(4, start=4 * b, seed=b))
    t = threading.Thread(target=c.merge, kwargs={"max_segments": 1})
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "merge() deadlocked behind the background merge"
    c.wait_for_merges()
    c.merge(max_segments=1)
    assert c.stats()["segments"] == 1 and len(c) == 24
    c.close()


# ---------------------------------------------------------------- damage
def _collection_with_everything(path: Path) -> Collection:
    c = Collection.create(path, dense_dim=8, analyzer=en(), colbert_dim=4, auto_merge=False)
    rng = np.random.default_rng(3)
    for b in range(3):
        recs = records(8, start=8 * b, seed=b)
        for r in recs:
            r["colbert"] = rng.standard_normal((3, 4)).astype(np.float32)
        c.add(recs)
    c.delete(["d3", "d12"])
    return c


def test_missing_index_files_are_corrupt(tmp_path: Path) -> None:
    _collection_with_everything(tmp_path / "c").close()
    for name in ("dense.idx", "sparse.idx", "bm25.idx", "colbert.npy", "records.dsr"):
        work = tmp_path / name
        shutil.copytree(tmp_path / "c", work)
        seg = sorted((work / "segments").iterdir())[1]
        (seg / name).unlink()
        with pytest.raises(CorruptIndexError, match="missing"):
            Collection.open(work, readonly=True)


def test_hits_and_get_are_fresh_objects(tmp_path: Path) -> None:
    c = Collection.create(tmp_path / "c", dense_dim=8, analyzer=en())
    c.add([{"id": "a", "text": "apple", "metadata": {"tags": ["x"], "n": {"m": 1}}}])
    hit = c.search(text="apple", k=1)[0]
    hit.metadata["tags"].append("y")
    hit.metadata["n"]["m"] = 2
    c.get("a")["metadata"]["tags"].append("z")
    assert c.get("a")["metadata"] == {"tags": ["x"], "n": {"m": 1}}
    assert c.search(text="apple", k=1, filter={"tags": "y"}) == []


_MUTATOR = """
import json, os, random, shutil, sys, zlib
import numpy as np
from densparse import Collection, CorruptIndexError
src, work, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
want = json.load(open(sys.argv[5])) if n else None
q = np.linspace(-1, 1, 8).astype(np.float32)

QUERIES = (
    {"text": "apple golf"},
    {"dense": q.tolist()},
    {"sparse": ([1, 2, 3], [1.0, 0.5, 0.2])},
    {"text": "kilo", "dense": q.tolist(), "colbert": np.ones((2, 4), np.float32)},
    {"text": "apple", "filter": {"tag": "x"}},
)

def results(c):
    out = []
    for kw in QUERIES:
        out.append([[h.id, round(h.score, 5), h.text, h.metadata] for h in c.search(k=30, **kw)])
    out.append(sorted(c.ids()))
    g = c.get(sorted(c.ids())[0])
    out.append([g["text"], g["metadata"], np.asarray(g["dense"]).round(5).tolist()])
    return out

rng = random.Random(seed)
counts = {"corrupt": 0, "identical": 0}
for t in range(n):
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work)
    files = sorted(p for p in (os.path.join(d, f) for d, _, fs in os.walk(work) for f in fs)
                   if not p.endswith(".lock"))
    f = rng.choice(files)
    kind = rng.choice(["flip", "flip", "flip", "truncate", "delete", "swap", "zero"])
    data = bytearray(open(f, "rb").read())
    if kind == "flip" and data:
        i = rng.randrange(len(data)); data[i] ^= 1 << rng.randrange(8)
        open(f, "wb").write(data)
    elif kind == "truncate":
        open(f, "wb").write(data[: rng.randrange(len(data) + 1)])
    elif kind == "delete":
        os.remove(f)
    elif kind == "zero" and data:
        i = rng.randrange(len(data)); j = min(len(data), i + rng.randrange(1, 64))
        data[i:j] = bytes(j - i); open(f, "wb").write(data)
    elif kind == "swap":
        g = rng.choice(files)
        a, b = open(f, "rb").read(), open(g, "rb").read()
        open(f, "wb").write(b); open(g, "wb").write(a)
    try:
        c = Collection.open(work, readonly=True, encoder=None)
        got = json.loads(json.dumps(results(c)))
    except CorruptIndexError:
        counts["corrupt"] += 1
        continue
    except FileNotFoundError as e:  # the manifest itself deleted: no collection here
        if "manifest.json missing" in str(e):
            counts["corrupt"] += 1
            continue
        raise
    if got != want:
        raise SystemExit(f"trial {t}: {kind} of {os.path.relpath(f, work)} gave different results")
    counts["identical"] += 1
print(json.dumps(counts))
"""


def test_random_damage_is_detected_or_harmless(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _collection_with_everything(src).close()
    # the undamaged answers, computed in a subprocess exactly as the trials compute them
    undamaged = "print(json.dumps(results(Collection.open(src, readonly=True))))"
    code = _MUTATOR.replace("rng = random.Random(seed)", undamaged + "; raise SystemExit")
    want = tmp_path / "want.json"
    r = run_py(code, str(src), str(tmp_path / "w"), "0", "0", "/dev/null")
    assert r.returncode == 0, r.stderr
    want.write_text(r.stdout)
    total = {"corrupt": 0, "identical": 0}
    for seed in range(4):
        r = run_py(
            _MUTATOR, str(src), str(tmp_path / f"w{seed}"), str(seed), "300", str(want), timeout=600
        )
        assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
        for k, v in json.loads(r.stdout).items():
            total[k] += v
    assert total["corrupt"] + total["identical"] == 1200
    assert total["corrupt"] > 300 and total["identical"] > 0


# ---------------------------------------------------------------- exact statistics
@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_bm25_after_deletes_equals_a_fresh_index(tmp_path: Path, method: str) -> None:
    recs = records(90, seed=5)
    c = Collection.create(
        tmp_path / "c", dense_dim=8, analyzer=en(), bm25_method=method, auto_merge=False
    )
    for b in range(3):
        c.add(recs[30 * b : 30 * (b + 1)])
    rng = np.random.default_rng(1)
    gone = {f"d{i}" for i in rng.choice(90, size=25, replace=False)}
    c.delete(sorted(gone))
    fresh = Collection.create(tmp_path / "f", dense_dim=8, analyzer=en(), bm25_method=method)
    fresh.add([r for r in recs if r["id"] not in gone])
    for q in ("apple", "golf kilo", "mike lima juliet", "banana apple cherry"):
        assert_same_scores(scores(c, text=q, mode="bm25"), scores(fresh, text=q, mode="bm25"))
    c.close()
    again = Collection.open(tmp_path / "c", readonly=True)
    assert_same_scores(
        scores(again, text="golf kilo", mode="bm25"), scores(fresh, text="golf kilo", mode="bm25")
    )


# ---------------------------------------------------------------- model test
def test_random_operations_equal_a_fresh_single_segment_build(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    path = tmp_path / "c"
    c = Collection.create(path, dense_dim=8, analyzer=en(), max_segments=3)
    reference: dict[str, dict] = {}
    pool = records(200, seed=2)
    q_dense = rng.standard_normal(8).astype(np.float32)
    q_sparse = ([1, 5, 7, 20], [1.0, 0.5, 0.7, 0.2])
    for step in range(40):
        op = rng.integers(0, 10)
        if op < 4 or not reference:
            batch = [
                pool[int(i)] for i in rng.choice(200, size=int(rng.integers(1, 8)), replace=False)
            ]
            batch = [r for r in batch if r["id"] not in reference]
            if batch:
                c.add(batch)
                reference.update({r["id"]: r for r in batch})
        elif op < 6:
            batch = [
                dict(pool[int(i)], text=f"golf {step} apple")
                for i in rng.choice(200, size=3, replace=False)
            ]
            c.upsert(batch)
            reference.update({r["id"]: r for r in batch})
        elif op < 8:
            ids = sorted(reference)
            gone = [ids[int(i)] for i in rng.choice(len(ids), size=min(len(ids), 4), replace=False)]
            c.delete(gone)
            for d in gone:
                del reference[d]
        elif op < 9:
            c.merge(max_segments=int(rng.integers(1, 3)))
        else:
            c.close()
            c = Collection.open(path, max_segments=3)
        if step % 8 == 7 and reference:
            c.wait_for_merges()
            fresh = Collection.create(tmp_path / f"f{step}", dense_dim=8, analyzer=en())
            fresh.add(list(reference.values()))
            assert sorted(c.ids()) == sorted(reference)
            for query in (
                {"text": "golf apple", "mode": "bm25"},
                {"dense": q_dense, "mode": "dense"},
                {"sparse": q_sparse, "mode": "sparse"},
                # weighted fusion: RRF ranks would depend on how ties are ordered
                {"text": "kilo golf", "dense": q_dense, "sparse": q_sparse, "fusion": "weighted"},
                {"text": "apple", "filter": {"tag": "x"}, "mode": "bm25"},
            ):
                assert_same_scores(scores(c, **query), scores(fresh, **query))
            d = sorted(reference)[0]
            got, want = c.get(d), reference[d]
            assert got["text"] == want["text"] and got["metadata"] == want["metadata"]
    c.close()


# ---------------------------------------------------------------- version 1
def test_version_1_collection_opens_and_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "c"
    c = _collection_with_everything(path)
    c.close()
    q = {"text": "apple golf", "dense": np.ones(8, np.float32)}
    want = scores(Collection.open(path, readonly=True), **q)
    # rewrite it as today's version-1 layout: no checksum, no generation copies, only the
    # records and ColBERT files named
    m = json.loads((path / "manifest.json").read_text())
    m["version"] = 1
    del m["checksum"]
    for s in m["segments"]:
        s["files"] = {f: v for f, v in s["files"].items() if not f.endswith(".idx")}
        for v in s["files"].values():
            v.pop("check", None)
    (path / "manifest.json").write_text(json.dumps(m))
    shutil.rmtree(path / "generations")
    assert_same_scores(scores(Collection.open(path, readonly=True), **q), want)

    def upgrade() -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "densparse", "upgrade", str(path)]
        env = {**os.environ, "PYTHONPATH": ROOT}
        return subprocess.run(cmd, capture_output=True, text=True, env=env)

    r = upgrade()
    assert r.returncode == 0, r.stderr
    m = store.read_manifest(path)
    assert m["version"] == store.VERSION
    assert all("bm25.idx" in s["files"] and "dense.idx" in s["files"] for s in m["segments"])
    assert_same_scores(scores(Collection.open(path, readonly=True), **q), want)
    r = upgrade()
    assert r.returncode == 0 and "already" in r.stdout + r.stderr


def test_merge_reads_postings_instead_of_analysing_again(tmp_path: Path, monkeypatch) -> None:
    from densparse import _core
    from densparse.collection import segment

    c = Collection.create(tmp_path / "c", dense_dim=8, analyzer=en(), auto_merge=False)
    for b in range(3):
        c.add(records(30, start=30 * b, seed=b))
    c.delete(["d1", "d31", "d62", "d63"])
    q = {"text": "golf apple kilo", "mode": "bm25"}
    before = scores(c, **q)

    class NoAnalysis:
        """The segment module's view of _core, with text analysis for BM25 forbidden."""

        class BM25Index:
            @staticmethod
            def from_texts(*a, **k):
                raise AssertionError("the merge analysed the texts again")

            load = staticmethod(_core.BM25Index.load)
            merge = staticmethod(_core.BM25Index.merge)

        def __getattr__(self, name: str):
            return getattr(_core, name)

    monkeypatch.setattr(segment, "_core", NoAnalysis())
    c.merge(max_segments=1)
    assert c.stats()["segments"] == 1 and len(c) == 86
    assert_same_scores(scores(c, **q), before)
    c.close()
    monkeypatch.undo()
    assert_same_scores(scores(Collection.open(tmp_path / "c", readonly=True), **q), before)
