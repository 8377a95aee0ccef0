#!/usr/bin/env python3
"""Load test of ``densparse serve`` against what users run today: sentence-transformers behind
a plain FastAPI endpoint, and ``infinity-emb`` where it is installed.

Every server runs in its own process on a loopback port; the load comes from this process
(asyncio + httpx, ``--clients`` concurrent clients, each sending its next request when the
last one is answered). Per workload and client count: requests/s, p50 and p99 latency, errors
(any status but 200, or a transport error).

Workloads:

* ``embed-query``    ``POST /embed``, one SciFact query per request.
* ``embed-passage``  ``POST /embed``, one SciFact passage (title + text) per request.
* ``search``         hybrid search (BM25 + dense, RRF) of one query over ``--docs`` passages:
                     densparse ``POST /collections/kb/search``; the baseline endpoint encodes
                     the query and takes a numpy dense top 10 (it does no BM25 and no fusion:
                     less work than densparse).
* ``mixed``          80% searches, 20% upserts of one passage (encoded by the server).
                     densparse commits each write to disk before answering; the baseline
                     appends to an in-memory matrix under a lock (no durability).

Model: all-MiniLM-L6-v2 from ``../shared/models``: densparse serves the fp32 ONNX export of
``minilm-l6-fp32`` (made once with ``densparse.export``, cached under ``--work-dir``), the
baseline and infinity serve ``minilm-l6-fp32`` with PyTorch fp32. Max length 256 everywhere,
``--threads`` intra-op threads for every engine.

    python3 benches/bench_serve.py --quick     # smoke test, a minute; numbers meaningless
    python3 benches/bench_serve.py             # bounded: --requests per cell, --seconds cap

Results go to ``--out`` (benches/RESULTS.md) between ``<!-- bench_serve:start -->`` and
``<!-- bench_serve:end -->``. Needs the ``bench`` extra (sentence-transformers, torch) and the
``serve`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    densparse,
    fmt_num,
    fmt_ratio,
    log,
    machine_info,
    md_table,
    package_versions,
    run_header,
    set_log_name,
    write_results,
)

set_log_name("bench_serve")
MARK_START, MARK_END = "<!-- bench_serve:start -->", "<!-- bench_serve:end -->"
SECTION_TITLE = "## HTTP service under load (bench_serve.py)"
SHARED = REPO.parent / "shared"
MAX_LENGTH = 256
WORKLOADS = ("embed-query", "embed-passage", "search", "mixed")
OURS = "densparse serve"
BASELINE = "sentence-transformers + FastAPI"
INFINITY = "infinity-emb"


# --------------------------------------------------------------------------- data
def read_scifact(n_docs: int) -> tuple[list[dict], list[str]]:
    d = SHARED / "data" / "scifact"
    docs = []
    with open(d / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            title, text = r.get("title") or "", r.get("text") or ""
            docs.append({"id": str(r["_id"]), "text": f"{title} {text}".strip()})
            if len(docs) >= n_docs + 500:  # the rest feed the upserts
                break
    with open(d / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in f]
    return docs, queries


def fp32_onnx_dir(work: Path) -> Path:
    out = work / "minilm-l6-fp32-onnx"
    if (out / "model.onnx").is_file():
        return out
    from densparse.export import export_model

    log(f"exporting minilm-l6-fp32 -> {out}")
    export_model(SHARED / "models" / "minilm-l6-fp32", out, kind="st")
    return out


def corpus_vectors(work: Path, onnx_dir: Path, docs: list[dict], threads: int) -> np.ndarray:
    path = work / f"corpus_{len(docs)}.npy"
    if path.is_file():
        return np.load(path)
    log(f"encoding {len(docs)} passages for the collection (once; cached)")
    enc = densparse.Encoder.from_pretrained(
        onnx_dir, provider="cpu", max_length=MAX_LENGTH, threads=threads
    )
    vecs = enc.encode_corpus([d["text"] for d in docs], show_progress=False)
    np.save(path, vecs)
    return vecs


def make_collection(work: Path, onnx_dir: Path, docs: list[dict], vecs: np.ndarray) -> Path:
    """A fresh collection (the mixed workload writes into it) of ``docs`` with their vectors,
    whose encoder is the fp32 export."""
    import shutil

    path = work / "kb"
    shutil.rmtree(path, ignore_errors=True)
    col = densparse.Collection.create(path, encoder=str(onnx_dir))
    col.add([{"id": d["id"], "text": d["text"], "dense": v} for d, v in zip(docs, vecs)])
    col.close()
    return path


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, name: str, cmd: list[str], port: int, log_path: Path, env=None) -> None:
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self._log = open(log_path, "wb")  # noqa: SIM115  (open while the server runs)
        self.log_path = log_path
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def wait(self, path: str, timeout: float) -> bool:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def start_ours(args, onnx_dir: Path, kb: Path) -> Proc:
    port = free_port()
    cmd = [sys.executable, "-m", "densparse", "serve", "--model", str(onnx_dir)]
    # the service's own CPU plan (--model-workers x --threads = the cores) unless told
    cmd += ["--collection", f"kb={kb}", "--port", str(port), "-q"]
    if args.serve_threads:
        cmd += ["--threads", str(args.serve_threads)]
    cmd += ["--max-concurrent-requests", "1024"]
    return Proc(OURS, cmd, port, args.work_dir / "ours.log", env={"PYTHONPATH": _pythonpath()})


def _pythonpath() -> str:
    return str(Path(densparse.__file__).resolve().parents[1])


def start_baseline(args, vec_path: Path) -> Proc:
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--baseline-server", str(port)]
    cmd += ["--threads", str(args.threads), "--baseline-vectors", str(vec_path)]
    return Proc(BASELINE, cmd, port, args.work_dir / "baseline.log")


def start_infinity(args) -> Optional[Proc]:
    exe = args.infinity_exe or _which("infinity_emb")
    if exe is None:
        return None
    port = free_port()
    cmd = [exe, "v2", "--model-id", str(SHARED / "models" / "minilm-l6-fp32"), "--port", str(port)]
    cmd += ["--engine", "torch", "--device", "cpu", "--no-bettertransformer"]
    cmd += ["--batch-size", "32", "--host", "127.0.0.1"]
    env = {"OMP_NUM_THREADS": str(args.threads), "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    return Proc(INFINITY, cmd, port, args.work_dir / "infinity.log", env=env)


def _which(name: str) -> Optional[str]:
    import shutil

    return shutil.which(name)


# --------------------------------------------------------------------------- the baseline
class Embed(BaseModel):
    inputs: list[str]


class Search(BaseModel):
    text: str
    k: int = 10


class Upsert(BaseModel):
    records: list[dict]


def baseline_app(vec_path: Path, threads: int):
    """What users write: a FastAPI endpoint around SentenceTransformer.encode (plain ``def``
    endpoints, so FastAPI runs them in its thread pool) and a numpy dense top 10."""
    import threading

    import torch
    from fastapi import FastAPI
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(SHARED / "models" / "minilm-l6-fp32"), device="cpu")
    model.max_seq_length = MAX_LENGTH
    state = {"vecs": np.load(vec_path), "ids": [str(i) for i in range(len(np.load(vec_path)))]}
    lock = threading.Lock()
    app = FastAPI()

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/embed")
    def embed(req: Embed):
        return encode(req.inputs).tolist()

    @app.post("/collections/kb/search")
    def search(req: Search):
        q = encode([req.text])[0]
        vecs, ids = state["vecs"], state["ids"]
        scores = vecs @ q
        top = np.argsort(-scores)[: req.k]
        return {"hits": [{"id": ids[i], "score": float(scores[i])} for i in top]}

    @app.post("/collections/kb/upsert")
    def upsert(req: Upsert):
        v = encode([r["text"] for r in req.records])
        with lock:
            state["vecs"] = np.concatenate([state["vecs"], v])
            state["ids"] = state["ids"] + [r["id"] for r in req.records]
        return {"upserted": len(req.records)}

    return app


def run_baseline_server(port: int, vec_path: Path, threads: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(vec_path, threads), host="127.0.0.1", port=port, log_level="warning")


# --------------------------------------------------------------------------- load
def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += [c for c, (ppid, _) in stats.items() if ppid == p]
    return total


class Cell:
    def __init__(self, engine: str, workload: str, clients: int) -> None:
        self.engine, self.workload, self.clients = engine, workload, clients
        self.latencies: list[float] = []
        self.errors = 0
        self.wall = 0.0
        self.error_sample: Optional[str] = None
        self.server_cpu = float("nan")  # CPU seconds the server used during the cell

    @property
    def cpu_ms(self) -> float:
        """Server CPU per answered request: what a request costs, whatever share of a busy
        machine the server got."""
        n = len(self.latencies)
        return self.server_cpu / n * 1000 if n else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall > 0 else float("nan")

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies), q)) * 1000


def request_for(workload: str, engine: str, rng: random.Random, pools: dict) -> tuple[str, dict]:
    q = pools["queries"][rng.randrange(len(pools["queries"]))]
    if workload == "embed-query":
        return _embed(engine, [q])
    if workload == "embed-passage":
        return _embed(engine, [pools["passages"][rng.randrange(len(pools["passages"]))]])
    if workload == "mixed" and rng.random() < 0.2:
        doc = pools["new"][rng.randrange(len(pools["new"]))]
        rec = {"id": f"new-{rng.randrange(10**9)}", "text": doc["text"]}
        return "/collections/kb/upsert", {"records": [rec]}
    return "/collections/kb/search", {"text": q, "k": 10}


def _embed(engine: str, texts: list[str]) -> tuple[str, dict]:
    if engine == INFINITY:
        return "/embeddings", {"input": texts, "model": "minilm-l6-fp32"}
    # truncate as sentence-transformers does (TEI's default refuses texts over the max length)
    return "/embed", {"inputs": texts, "truncate": True}


async def drive(
    url: str,
    engine: str,
    workload: str,
    clients: int,
    n: int,
    seconds: float,
    pools: dict,
    pid: Optional[int] = None,
) -> Cell:
    import httpx

    cell = Cell(engine, workload, clients)
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    done = [0]
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(worker: int) -> None:
            rng = random.Random(worker * 7919 + len(workload))
            while done[0] < n and time.perf_counter() < deadline:
                done[0] += 1
                path, body = request_for(workload, engine, rng, pools)
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, json=body)
                    ok = r.status_code == 200
                    if not ok and cell.error_sample is None:
                        cell.error_sample = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as e:
                    ok = False
                    if cell.error_sample is None:
                        cell.error_sample = repr(e)[:200]
                if ok:
                    cell.latencies.append(time.perf_counter() - t0)
                else:
                    cell.errors += 1

        cpu0 = cpu_seconds(pid) if pid else float("nan")
        t0 = time.perf_counter()
        await asyncio.gather(*(one(w) for w in range(clients)))
        cell.wall = time.perf_counter() - t0
        if pid:
            cell.server_cpu = cpu_seconds(pid) - cpu0
    return cell


# --------------------------------------------------------------------------- main
def run(args) -> None:
    if not (SHARED / "models").is_dir():
        sys.exit("bench_serve needs the shared models and data (the shared folder beside the repo)")
    info = machine_info()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    docs, queries = read_scifact(args.docs)
    corpus, new_docs = docs[: args.docs], docs[args.docs :]
    onnx_dir = fp32_onnx_dir(args.work_dir)
    vecs = corpus_vectors(args.work_dir, onnx_dir, corpus, args.threads)
    vec_path = args.work_dir / f"corpus_{len(corpus)}.npy"
    pools = {"queries": queries, "passages": [d["text"] for d in corpus], "new": new_docs}
    workloads = [w for w in args.workloads.split(",") if w]
    clients = [int(c) for c in args.clients.split(",")]

    cells: list[Cell] = []
    notes: list[str] = []
    engines = [OURS, BASELINE] + ([INFINITY] if not args.no_infinity else [])
    for engine in engines:
        if engine == OURS:
            # a fresh collection each run: the mixed workload writes into it
            proc = start_ours(
                args, onnx_dir, make_collection(args.work_dir, onnx_dir, corpus, vecs)
            )
        elif engine == BASELINE:
            proc = start_baseline(args, vec_path)
        else:
            proc = start_infinity(args)
            if proc is None:
                notes.append("infinity-emb: not installed here (`infinity_emb` not found): skipped")
                continue
        health = "/health"
        log(f"starting {engine}")
        if not proc.wait(health, args.start_timeout):
            tail = proc.log_path.read_text(errors="replace")[-1500:]
            proc.stop()
            notes.append(f"{engine}: did not start within {args.start_timeout:.0f}s: skipped")
            log(f"{engine} did not start:\n{tail}")
            continue
        try:
            for workload in workloads:
                if engine == INFINITY and workload in ("search", "mixed"):
                    continue  # an embedding server only
                # warm-up: a few requests so first-call costs are not measured
                asyncio.run(drive(proc.url, engine, workload, 4, 20, 30, pools))
                for c in clients:
                    cell = asyncio.run(
                        drive(
                            proc.url,
                            engine,
                            workload,
                            c,
                            args.requests,
                            args.seconds,
                            pools,
                            proc.proc.pid,
                        )
                    )
                    log(
                        f"{engine:<32} {workload:<14} clients={c:<3} "
                        f"{cell.rps:8.1f} req/s  p50 {cell.pct(50):7.1f} ms  "
                        f"p99 {cell.pct(99):7.1f} ms  cpu/req {cell.cpu_ms:6.1f} ms  "
                        f"errors {cell.errors}"
                        + (f" ({cell.error_sample})" if cell.error_sample else "")
                    )
                    cells.append(cell)
        finally:
            proc.stop()
    section = report(args, info, cells, notes, len(corpus))
    print(section)
    if not args.no_write:
        write_results(args.out, section, MARK_START, MARK_END)
        log(f"wrote {args.out}")


def report(args, info: dict, cells: list[Cell], notes: list[str], n_docs: int) -> str:
    from_cmd = " — `--quick`: numbers meaningless" if args.quick else ""
    vers = package_versions(
        (
            "fastapi",
            "uvicorn",
            "onnxruntime",
            "onnxruntime-gpu",
            "torch",
            "sentence-transformers",
            "infinity-emb",
        )
    )
    lines = [MARK_START, SECTION_TITLE, ""]
    lines += run_header(info, from_cmd)
    lines += [
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Model: all-MiniLM-L6-v2, fp32, CPU, max length {MAX_LENGTH}; densparse serves the "
        "ONNX export with its default CPU plan "
        f"({_plan(args)}), the others PyTorch with {args.threads} threads.",
        f"- Load: clients in this process (asyncio + httpx) on loopback, each sending its next "
        f"request when the last is answered; at most {args.requests} requests or "
        f"{args.seconds:g}s per cell, after 20 warm-up requests per workload. The clients share "
        "the machine's cores with the server: on 2 cores, they take a part of the CPU the "
        "server would have (the same for every engine).",
        f"- Search: {n_docs} SciFact passages; densparse runs hybrid (BM25 + dense, RRF, top 10) "
        "on a Collection; the baseline encodes the query and takes a numpy dense top 10 (no BM25, "
        "no fusion). Mixed: 80% searches, 20% one-passage upserts (densparse commits each write "
        "to disk before answering; the baseline appends to an in-memory matrix).",
        "",
    ]
    rows = []
    for c in cells:
        rows.append(
            [
                c.workload,
                str(c.clients),
                c.engine,
                str(len(c.latencies) + c.errors),
                fmt_num(c.rps),
                fmt_num(c.pct(50)),
                fmt_num(c.pct(99)),
                fmt_num(c.cpu_ms),
                str(c.errors),
            ]
        )
    headers = ["workload", "clients", "engine", "requests", "req/s", "p50 ms", "p99 ms"]
    lines.append(md_table([*headers, "server CPU ms/req", "errors"], rows))
    lines += [
        "",
        "Ratio densparse / baseline (requests/s and, independent of the CPU share each server "
        "got on the shared machine, requests per server CPU-second; p99 lower is better):",
        "",
    ]
    ratio_rows, ratios, p99_ok, errors = [], [], True, 0
    by = {(c.engine, c.workload, c.clients): c for c in cells}
    for c in cells:
        errors += c.errors if c.engine == OURS else 0
        if c.engine != OURS:
            continue
        b = by.get((BASELINE, c.workload, c.clients))
        if b is None or not b.latencies:
            continue
        r = c.rps / b.rps
        ratios.append(r)
        better = c.pct(99) <= b.pct(99)
        p99_ok &= better
        ratio_rows.append(
            [
                c.workload,
                str(c.clients),
                fmt_ratio(r),
                fmt_ratio(b.cpu_ms / c.cpu_ms),
                f"{fmt_num(c.pct(99))} vs {fmt_num(b.pct(99))}",
                "yes" if better else "no",
            ]
        )
    lines.append(
        md_table(
            [
                "workload",
                "clients",
                "req/s ratio",
                "req per CPU-s ratio",
                "p99 ms (ours vs baseline)",
                "p99 <= baseline",
            ],
            ratio_rows,
        )
    )
    lines.append("")
    if ratios:
        worst = min(ratios)
        met = worst >= 2 and p99_ok and errors == 0
        lines.append(
            f"- Goal: >= 2x the baseline's requests/s at equal or lower p99, zero errors: worst "
            f"ratio {fmt_ratio(worst)}, p99 {'never' if p99_ok else 'sometimes'} above the "
            f"baseline's, {errors} densparse errors — **{'met' if met else 'NOT met'}**"
        )
    lines += [f"- {n}" for n in notes]
    lines.append(
        "- Read with the load average above: on a 2-core machine shared with other jobs every "
        "engine is CPU-starved, so compare rows of the same run, not with other sections."
    )
    lines.append(MARK_END)
    return "\n".join(lines)


def _plan(args) -> str:
    from densparse.serve.service import ServeConfig, cpu_plan

    threads, workers = cpu_plan(ServeConfig(model="x", threads=args.serve_threads))
    return f"{workers} model worker(s) x {threads} intra-op thread(s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    ap.add_argument("--docs", type=int, default=2000, help="passages in the searched collection")
    ap.add_argument("--clients", default="1,16,64", help="concurrent clients (comma separated)")
    ap.add_argument("--requests", type=int, default=400, help="requests per cell at most")
    ap.add_argument("--seconds", type=float, default=20, help="seconds per cell at most")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the peers"
    )
    ap.add_argument(
        "--serve-threads", type=int, help="densparse serve --threads (default: its own plan)"
    )
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.add_argument("--no-infinity", action="store_true", help="skip infinity-emb")
    ap.add_argument("--infinity-exe", help="the infinity_emb command (default: on PATH)")
    ap.add_argument("--work-dir", type=Path, default=REPO / "benches" / ".cache" / "serve")
    ap.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    ap.add_argument("--no-write", action="store_true", help="print the section only")
    ap.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--baseline-vectors", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_server:
        run_baseline_server(args.baseline_server, args.baseline_vectors, args.threads)
        return
    if args.quick:
        args.docs, args.requests, args.seconds = 200, 40, 5
        args.clients = "1,16"
    run(args)


if __name__ == "__main__":
    main()
