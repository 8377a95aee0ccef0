"""`densparse serve`: real server processes (uvicorn on a free loopback port, started with the
CLI) answering TEI-, OpenAI- and Collection-shaped requests.

Models are the tiny random ONNX graphs of test_encoder (dense and SPLADE; they need only the
`onnx` package) and the tiny exported cross-encoder of test_reranker (needs torch; the rerank
tests skip without it). Every answer is compared with the library called in this process:
``Encoder.encode``, ``Reranker.score_pairs``, ``Collection.search``. Each server is stopped in
teardown; every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, need, subprocess_env

httpx = pytest.importorskip("httpx", reason="the service tests need httpx (test extra)")
pytest.importorskip("fastapi", reason="densparse serve needs the serve extra")
pytest.importorskip("uvicorn", reason="densparse serve needs the serve extra")
pytest.importorskip("onnx", reason="building the tiny test graphs needs the onnx package")

from densparse import Collection, Encoder  # noqa: E402
from test_encoder import make_model_dir, st_files  # noqa: E402

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
START_TIMEOUT = 120  # seconds for a server to answer /health 200 (a loaded CI machine)
TEXTS = [
    "the first sentence about protein",
    "a",
    "we found high gene expression in mice cells, and the results show a long effect.",
    "query about cells",
    "model",
]
DOCS = [
    {"id": "d1", "text": "protein gene expression in mice", "metadata": {"year": 2020}},
    {"id": "d2", "text": "the results show a long effect", "metadata": {"year": 2021}},
    {"id": "d3", "text": "a short document about cells", "metadata": {"year": 2019}},
    {"id": "d4", "text": "query passage text word", "metadata": {"year": 2021}},
    {"id": "d5", "text": "high and low model study", "metadata": {"year": 2022}},
]


# ---------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``densparse serve ARGS`` in a subprocess on a free loopback port."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "densparse", "serve", *args, "--port", str(self.port)]
        self._out = open(log, "wb")  # noqa: SIM115  (open while the server runs)
        self.proc = subprocess.Popen(
            cmd, env={**subprocess_env(), **(env or {})}, stdout=self._out, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server not ready after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-models")
    dense, _ = make_model_dir(root / "dense", "hidden", files=st_files("mean"))
    splade, _ = make_model_dir(
        root / "splade", "splade", config={"architectures": ["BertForMaskedLM"]}
    )
    return {"dense": dense, "splade": splade, "root": root}


@pytest.fixture(scope="module")
def reranker_dir(models):
    """The tiny BERT cross-encoder of test_reranker, exported (None without torch)."""
    try:
        from densparse.export import export_model
        from test_reranker import make_bert_reranker
    except (ImportError, pytest.skip.Exception):
        return None
    root = models["root"]
    make_bert_reranker(root / "ce")
    export_model(root / "ce", root / "ce-onnx", kind="reranker")
    return root / "ce-onnx"


def make_collection(path: Path, encoder_dir: Path) -> Path:
    col = Collection.create(path, encoder=encoder_dir)
    col.add(DOCS)
    col.close()
    return path


@pytest.fixture(scope="module")
def main_server(models, reranker_dir, tmp_path_factory):
    """Dense model, a searched collection (kb) and a written one (rw), the reranker, an API
    key from the environment."""
    root = tmp_path_factory.mktemp("serve-main")
    kb = make_collection(root / "kb", models["dense"])
    rw = make_collection(root / "rw", models["dense"])
    args = ["--model", str(models["dense"]), "--collection", f"kb={kb}", "--collection", f"rw={rw}"]
    if reranker_dir is not None:
        args += ["--reranker", str(reranker_dir)]
    srv = Server(args, root / "server.log", env={"DENSPARSE_API_KEY": KEY})
    srv.kb = kb
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(main_server):
    with httpx.Client(base_url=main_server.url, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def dense_enc(models) -> Encoder:
    return Encoder.from_pretrained(models["dense"], provider="cpu")


def _error(r, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "error_type"}, body
    assert "Traceback" not in body["error"]
    if kind is not None:
        assert body["error_type"] == kind, body
    return body


# ---------------------------------------------------------------------------- TEI routes
def test_embed_equals_encoder(client, dense_enc):
    r = client.post("/embed", json={"inputs": TEXTS})
    assert r.status_code == 200, r.text
    got = np.asarray(r.json(), dtype=np.float32)
    ref = dense_enc.encode(TEXTS)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-6)
    # one string, no normalisation, the default-task route
    r = client.post("/embed", json={"inputs": TEXTS[0], "normalize": False})
    np.testing.assert_allclose(
        np.asarray(r.json()[0]), dense_enc.encode(TEXTS[:1], normalize=False)[0], atol=1e-6
    )
    r = client.post("/", json={"inputs": TEXTS[:2]})
    np.testing.assert_allclose(np.asarray(r.json()), ref[:2], atol=1e-6)


def test_tei_client_huggingface_hub(main_server, dense_enc):
    """huggingface_hub's InferenceClient, given the service URL, posts TEI requests to /."""
    from huggingface_hub import InferenceClient

    c = InferenceClient(model=main_server.url, token=KEY, timeout=60)
    got = c.feature_extraction(TEXTS[0])
    np.testing.assert_allclose(np.asarray(got)[0], dense_enc.encode(TEXTS[:1])[0], atol=1e-6)


def test_embed_dimensions_and_truncate(client, dense_enc):
    r = client.post("/embed", json={"inputs": TEXTS[:2], "dimensions": 4})
    full = dense_enc.encode(TEXTS[:2])[:, :4]
    np.testing.assert_allclose(
        np.asarray(r.json()), full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-6
    )
    long = " ".join(["protein gene cells"] * 40)  # over the 64 positions of the tiny model
    _error(client.post("/embed", json={"inputs": [long]}), 413, "Validation")
    r = client.post("/embed", json={"inputs": [long], "truncate": True})
    assert r.status_code == 200
    np.testing.assert_allclose(np.asarray(r.json()[0]), dense_enc.encode([long])[0], atol=1e-6)


def test_concurrent_embeds_are_batched_and_each_correct(client, main_server, dense_enc):
    """Many requests at once: each answer is its own texts' vectors; the metrics show batches
    of more than one request's inputs."""
    texts = [f"{w} sentence {i}" for i, w in enumerate(TEXTS * 8)]
    ref = dense_enc.encode(texts)
    out: dict[int, np.ndarray] = {}

    def one(i: int) -> None:
        with httpx.Client(base_url=main_server.url, headers=AUTH, timeout=60) as c:
            out[i] = np.asarray(c.post("/embed", json={"inputs": [texts[i]]}).json())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == len(texts)
    for i, v in out.items():
        np.testing.assert_allclose(v[0], ref[i], atol=1e-6)
    m = client.get("/metrics").text
    count = _metric(m, 'densparse_batch_size_count{model="encoder"}')
    total = _metric(m, 'densparse_batch_size_sum{model="encoder"}')
    assert count >= 1 and total >= len(texts)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics")


def test_tokenize(client, dense_enc):
    r = client.post("/tokenize", json={"inputs": ["first sentence"]})
    toks = r.json()[0]
    ids = dense_enc.tokenizer.encode("first sentence").ids
    assert [t["id"] for t in toks] == ids
    assert toks[0]["special"] and toks[-1]["special"]
    assert [(t["start"], t["stop"]) for t in toks[1:-1]] == [(0, 5), (6, 14)]
    r = client.post("/tokenize", json={"inputs": "first", "add_special_tokens": False})
    assert [t["text"] for t in r.json()[0]] == ["first"]


def test_embed_sparse_needs_a_sparse_model(client):
    _error(client.post("/embed_sparse", json={"inputs": "a"}), 424, "Backend")


def test_rerank_equals_reranker(client, reranker_dir):
    if reranker_dir is None:
        pytest.skip("needs torch to export the tiny cross-encoder")
    from densparse import Reranker

    rr = Reranker.from_pretrained(reranker_dir, provider="cpu")
    query, texts = "query about cells", TEXTS
    raw = rr.score_pairs([(query, t) for t in texts])
    r = client.post("/rerank", json={"query": query, "texts": texts, "return_text": True})
    assert r.status_code == 200, r.text
    hits = r.json()
    assert [h["index"] for h in hits] == np.argsort(-raw, kind="stable").tolist()
    for h in hits:
        assert h["score"] == pytest.approx(1 / (1 + np.exp(-raw[h["index"]])), abs=1e-6)
        assert h["text"] == texts[h["index"]]
    r = client.post("/rerank", json={"query": query, "texts": texts, "raw_scores": True})
    assert [h["score"] for h in r.json()] == pytest.approx(np.sort(raw)[::-1].tolist(), abs=1e-5)


def test_health_info_models_metrics(client, main_server):
    assert httpx.get(main_server.url + "/health", timeout=10).json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["max_input_length"] == 64 and info["collections"] == ["kb", "rw"]
    assert info["max_batch_tokens"] == 16384 and info["max_concurrent_requests"] == 512
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "dense"
    m = client.get("/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    assert 'densparse_requests_total{method="POST",route="/embed",status="200"}' in m.text
    assert "densparse_request_duration_seconds_bucket" in m.text


# ---------------------------------------------------------------------------- OpenAI
def _decoded(embeddings: list) -> np.ndarray:
    """The SDK hands back base64 strings as they came when base64 was asked for explicitly
    (it decodes them itself only when it chose base64)."""
    return np.asarray(
        [
            np.frombuffer(base64.b64decode(e), dtype="<f4") if isinstance(e, str) else e
            for e in embeddings
        ]
    )


def test_openai_sdk_float_and_base64(main_server, dense_enc):
    openai = pytest.importorskip("openai", reason="needs the openai package (test extra)")
    c = openai.OpenAI(base_url=main_server.url + "/v1", api_key=KEY, timeout=60, max_retries=0)
    ref = dense_enc.encode(TEXTS)
    for fmt in ("float", "base64"):
        res = c.embeddings.create(model="dense", input=TEXTS, encoding_format=fmt)
        got = [d.embedding for d in sorted(res.data, key=lambda d: d.index)]
        np.testing.assert_allclose(_decoded(got), ref, atol=1e-6)
        n_tokens = sum(len(e.ids) for e in dense_enc.tokenizer.encode_batch(TEXTS))
        assert res.usage.prompt_tokens == res.usage.total_tokens == n_tokens
    # the SDK's default (base64, decoded by the SDK) and one string
    res = c.embeddings.create(model="anything", input=TEXTS[0])
    np.testing.assert_allclose(res.data[0].embedding, ref[0], atol=1e-6)
    with pytest.raises(openai.UnprocessableEntityError):
        c.embeddings.create(model="dense", input=[[1, 2, 3]])


def test_openai_base64_is_little_endian_float32(client, dense_enc):
    r = client.post("/v1/embeddings", json={"input": ["model"], "encoding_format": "base64"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    np.testing.assert_allclose(
        np.frombuffer(raw, dtype="<f4"), dense_enc.encode(["model"])[0], atol=1e-6
    )


# ---------------------------------------------------------------------------- collections
def test_search_equals_collection_search(client, main_server):
    col = Collection.open(main_server.kb, readonly=True)
    queries = [
        dict(text="protein cells"),
        dict(text="long effect", mode="bm25", k=2),
        dict(text="a study", mode="dense", k=3),
        dict(text="results", fusion="weighted", weights={"bm25": 0.3, "dense": 0.7}),
        dict(text="model", filter={"year": {"$gte": 2021}}),
    ]
    for q in queries:
        r = client.post("/collections/kb/search", json=q)
        assert r.status_code == 200, r.text
        got = r.json()["hits"]
        ref = col.search(**q)
        assert [h["id"] for h in got] == [h.id for h in ref], q
        for g, h in zip(got, ref):
            assert g["score"] == pytest.approx(h.score, abs=1e-6)
            assert g["metadata"] == h.metadata and g["text"] == h.text
    vec = np.random.default_rng(0).standard_normal(col.dense_dim).astype(np.float32)
    r = client.post("/collections/kb/search", json={"dense": vec.tolist(), "k": 3})
    assert [h["id"] for h in r.json()["hits"]] == [h.id for h in col.search(dense=vec, k=3)]
    col.close()


def test_search_rerank_equals_collection_search(client, main_server, reranker_dir):
    if reranker_dir is None:
        pytest.skip("needs torch to export the tiny cross-encoder")
    from densparse import Reranker

    col = Collection.open(main_server.kb, readonly=True)
    rr = Reranker.from_pretrained(reranker_dir, provider="cpu")
    ref = col.search(text="protein cells", k=3, rerank=rr)
    r = client.post(
        "/collections/kb/search", json={"text": "protein cells", "k": 3, "rerank": True}
    )
    got = r.json()["hits"]
    assert [h["id"] for h in got] == [h.id for h in ref]
    assert [h["scores"]["rerank"] for h in got] == pytest.approx(
        [h.scores["rerank"] for h in ref], abs=1e-5
    )
    col.close()


def test_upsert_get_delete(client, main_server, dense_enc):
    recs = [
        {"id": "n1", "text": "new protein text", "metadata": {"tag": "x"}},
        {"id": "n2", "text": "with a vector", "dense": [0.25] * 16},
    ]
    r = client.post("/collections/rw/upsert", json={"records": recs})
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": 2, "documents": len(DOCS) + 2}
    doc = client.get("/collections/rw/documents/n1", params={"vectors": True}).json()
    assert doc["metadata"] == {"tag": "x"}
    # encoded by the collection's encoder, as Collection.add would
    np.testing.assert_allclose(doc["dense"], dense_enc.encode(["new protein text"])[0], atol=1e-6)
    assert client.get("/collections/rw/documents/n2", params={"vectors": True}).json()["dense"] == (
        [0.25] * 16
    )
    hits = client.post("/collections/rw/search", json={"text": "new protein", "k": 1}).json()
    assert hits["hits"][0]["id"] == "n1"
    r = client.post("/collections/rw/delete", json={"ids": ["n1", "n2"]})
    assert r.json() == {"deleted": 2, "documents": len(DOCS)}
    _error(client.get("/collections/rw/documents/n1"), 404, "NotFound")
    _error(client.post("/collections/rw/delete", json={"ids": ["nope"]}), 404, "NotFound")
    listed = {c["name"]: c for c in client.get("/collections").json()}
    assert listed["rw"]["documents"] == len(DOCS) and listed["kb"]["dense_dim"] == 16


def test_concurrent_writes_and_searches(client, main_server):
    """Writers and searchers at once: every write lands, no request fails, searches always
    see a consistent collection."""
    errors: list[str] = []
    n_writers, per_writer = 4, 5

    def writer(w: int) -> None:
        with httpx.Client(base_url=main_server.url, headers=AUTH, timeout=60) as c:
            for i in range(per_writer):
                rec = {"id": f"w{w}-{i}", "text": f"writer {w} protein doc {i}"}
                r = c.post("/collections/rw/upsert", json={"records": [rec]})
                if r.status_code != 200:
                    errors.append(r.text)

    def searcher() -> None:
        with httpx.Client(base_url=main_server.url, headers=AUTH, timeout=60) as c:
            for _ in range(10):
                r = c.post("/collections/rw/search", json={"text": "protein doc", "k": 5})
                if r.status_code != 200 or not r.json()["hits"]:
                    errors.append(r.text)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    threads += [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    ids = {f"w{w}-{i}" for w in range(n_writers) for i in range(per_writer)}
    for i in ids:
        assert client.get(f"/collections/rw/documents/{i}").status_code == 200
    client.post("/collections/rw/delete", json={"ids": sorted(ids)})


# ---------------------------------------------------------------------------- errors and auth
def test_auth(main_server):
    url = main_server.url
    assert httpx.get(url + "/health", timeout=10).status_code == 200  # open
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(url + "/embed", json={"inputs": "a"}, headers=headers, timeout=10)
        _error(r, 401, "Unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
    _error(httpx.get(url + "/metrics", timeout=10), 401)
    _error(httpx.get(url + "/collections", timeout=10), 401)


def test_bad_input_422_names_the_field(client):
    body = _error(client.post("/embed", json={"inputs": 3}), 422, "Validation")
    assert "inputs" in body["error"]
    r = client.post("/embed", content=b"{not json", headers={"content-type": "application/json"})
    _error(r, 422, "Validation")
    body = _error(client.post("/embed", json={"inputs": "a", "normalise": True}), 422)
    assert "normalise" in body["error"]
    body = _error(client.post("/collections/kb/search", json={"text": "a", "k": 0}), 422)
    assert "k" in body["error"]
    body = _error(
        client.post("/collections/kb/search", json={"text": "a", "filter": {"year": {"$x": 1}}}),
        422,
    )
    assert "$x" in body["error"]
    _error(client.post("/collections/kb/search", json={"k": 3}), 422)  # nothing to search with
    _error(client.post("/collections/kb/search", json={"dense": [1.0, 2.0]}), 422)  # wrong dim
    _error(client.post("/v1/embeddings", json={"input": "a", "encoding_format": "hex"}), 422)


def test_unknown_names_404(client):
    _error(client.post("/collections/nope/search", json={"text": "a"}), 404, "NotFound")
    _error(client.get("/collections/kb/documents/nope"), 404, "NotFound")
    _error(client.get("/no/such/route"), 404)


def test_client_batch_over_limit_413(client):
    _error(client.post("/embed", json={"inputs": ["a"] * 257}), 413, "Validation")


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    for path in ("/embed", "/embed_sparse", "/rerank", "/tokenize", "/v1/embeddings"):
        assert path in spec["paths"]
    assert "/collections/{name}/search" in spec["paths"]
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------------- limits server
@pytest.fixture(scope="module")
def small_server(models, tmp_path_factory):
    """A SPLADE model and a BM25 index, with tight limits: 1 request in flight, 4 inputs,
    3,000 bytes."""
    from densparse import BM25

    root = tmp_path_factory.mktemp("serve-small")
    bm25 = BM25()
    bm25.index([d["text"] for d in DOCS])
    bm25.save(root / "docs.bm25")
    args = [
        "--model",
        str(models["splade"]),
        "--bm25",
        f"docs={root / 'docs.bm25'}",
        "--max-concurrent-requests",
        "1",
        "--max-client-batch-size",
        "4",
        "--payload-limit",
        "3000",
    ]
    srv = Server(args, root / "server.log")
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def test_embed_sparse_equals_encoder(small_server, models):
    enc = Encoder.from_pretrained(models["splade"], provider="cpu")
    ref = enc.encode(TEXTS[:4])
    for route in ("/embed_sparse", "/"):  # a sparse-only model's default task
        r = httpx.post(small_server.url + route, json={"inputs": TEXTS[:4]}, timeout=60)
        assert r.status_code == 200, r.text
        for row, w in zip(r.json(), ref):
            assert [e["index"] for e in row] == sorted(int(k) for k in w)
            for e in row:
                assert e["value"] == pytest.approx(w[str(e["index"])], abs=1e-6)
    _error(httpx.post(small_server.url + "/embed", json={"inputs": "a"}, timeout=10), 424)


def test_embed_sparse_bm25_vectors(small_server):
    from densparse import BM25

    idx = BM25.load(small_server.log.parent / "docs.bm25")
    texts = ["protein cells", "the long effect of a short study"]
    for kind, ref in (
        ("query", idx.encode_queries(texts)),
        ("document", idx.encode_documents(texts)),
    ):
        r = httpx.post(
            small_server.url + "/embed_sparse",
            json={"inputs": texts, "bm25": "docs", "bm25_kind": kind},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        for row, (ids, vals) in zip(r.json(), ref):
            assert [e["index"] for e in row] == ids.tolist()
            assert [e["value"] for e in row] == pytest.approx(vals.tolist(), abs=1e-6)
    # their dot product is the BM25 score
    q, d = idx.encode_queries(["protein cells"])[0], idx.encode_documents([DOCS[0]["text"]])[0]
    dot = sum(v * d[1][list(d[0]).index(i)] for i, v in zip(q[0], q[1]) if i in set(d[0]))
    assert dot == pytest.approx(idx.get_scores("protein cells")[0], rel=1e-5)
    r = httpx.post(small_server.url + "/embed_sparse", json={"inputs": "a", "bm25": "nope"})
    _error(r, 404, "NotFound")


@contextlib.contextmanager
def request_in_flight(url: str, rest_of_body: bytes) -> Iterator[dict]:
    """A POST of ``{"inputs": <rest_of_body>`` whose body arrives slowly: it is in flight
    (the server has read its headers) while the block runs, and is let finish after it; the
    yielded dict holds its response under "r" once the block has ended."""
    release, sent = threading.Event(), threading.Event()
    result: dict = {}

    def slow_body():
        yield b'{"inputs": '
        sent.set()
        release.wait(30)
        yield rest_of_body

    def post() -> None:
        result["r"] = httpx.post(
            url, content=slow_body(), headers={"content-type": "application/json"}, timeout=60
        )

    t = threading.Thread(target=post)
    t.start()
    try:
        assert sent.wait(30)
        time.sleep(0.3)  # the server has read the headers
        yield result
    finally:
        release.set()
        t.join(60)


def test_limits_413_and_429(small_server):
    url = small_server.url
    _error(httpx.post(url + "/embed_sparse", json={"inputs": ["a"] * 5}, timeout=10), 413)
    big = {"inputs": ["protein " * 500]}
    _error(httpx.post(url + "/embed_sparse", json=big, timeout=10), 413, "Validation")

    # hold one request in flight (its body arrives slowly), then a second one is refused
    with request_in_flight(url + "/embed_sparse", b'"a"}') as result:
        r = httpx.post(url + "/embed_sparse", json={"inputs": "a"}, timeout=10)
        _error(r, 429, "Overloaded")
        assert httpx.get(url + "/health", timeout=10).status_code == 200  # never refused
    assert result["r"].status_code == 200, result["r"].text


def test_cli_errors_exit_2(tmp_path, models):
    env = subprocess_env()

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "densparse", "serve", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = run()
    assert r.returncode == 2 and "nothing to serve" in r.stderr
    r = run("--collection", "kb")
    assert r.returncode == 2 and "NAME=DIR" in r.stderr
    r = run("--collection", f"kb={tmp_path / 'missing'}")
    assert r.returncode == 2 and "not a directory" in r.stderr
    r = run("--bm25", f"x={tmp_path / 'missing.bm25'}")
    assert r.returncode == 2 and "does not exist" in r.stderr
    from densparse.models.session import _no_gpu_reason

    if _no_gpu_reason():  # the CUDA provider asked for where there is none: a clear stop
        r = run("--model", str(models["dense"]), "--provider", "cuda", "--port", str(free_port()))
        assert r.returncode == 2 and "loading failed" in r.stderr and "cuda" in r.stderr
    # a model that does not load: the server stops and says why
    bad = tmp_path / "bad-model"
    bad.mkdir()
    r = run("--model", str(bad), "--port", str(free_port()), "-q")
    assert r.returncode == 2 and "loading failed" in r.stderr, r.stderr


def test_health_503_while_loading(models, tmp_path):
    """/health answers (503) before the models are loaded, then 200."""
    from densparse.serve import create_app

    fastapi_testclient = pytest.importorskip("fastapi.testclient")
    gate = threading.Event()

    app = create_app(model=models["dense"])
    service = app.state.service
    load = service._load

    def slow_load():
        gate.wait(30)
        load()

    service._load = slow_load
    with fastapi_testclient.TestClient(app) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        _error(c.post("/embed", json={"inputs": "a"}), 503, "Unhealthy")
        gate.set()
        deadline = time.monotonic() + 60
        while c.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/health").status_code == 200
        assert c.post("/embed", json={"inputs": "a"}).status_code == 200


# ---------------------------------------------------------------------------- lifecycle
def test_sigterm_drains_and_commits_pending_writes(models, tmp_path):
    col_dir = make_collection(tmp_path / "col", models["dense"])
    srv = Server(
        [
            "--model",
            str(models["dense"]),
            "--collection",
            f"c={col_dir}",
            "--commit-interval",
            "3600",
        ],
        tmp_path / "server.log",
    ).wait_ready()
    try:
        r = httpx.post(
            srv.url + "/collections/c/upsert",
            json={"records": [{"id": "pending", "text": "written before SIGTERM"}]},
            timeout=60,
        )
        assert r.status_code == 200
        assert "pending" not in Collection.open(col_dir, readonly=True, encoder=None)  # not yet
        # a request in flight when SIGTERM arrives is finished
        with request_in_flight(srv.url + "/embed", b'["a", "model"]}') as result:
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.TransportError):  # no new connections
                httpx.get(srv.url + "/health", timeout=5)
        assert result["r"].status_code == 200 and len(result["r"].json()) == 2
        # uvicorn re-raises the SIGTERM it caught once it has drained, as servers do
        assert srv.proc.wait(60) in (0, -signal.SIGTERM)
        assert "Finished server process" in srv.output()
    finally:
        srv.stop()
    col = Collection.open(col_dir, readonly=True, encoder=None)
    assert "pending" in col and len(col) == len(DOCS) + 1


def test_sigkill_during_upserts_keeps_the_last_commit(models, tmp_path):
    col_dir = make_collection(tmp_path / "col", models["dense"])
    srv = Server(
        ["--model", str(models["dense"]), "--collection", f"c={col_dir}"], tmp_path / "server.log"
    ).wait_ready()
    acked: list[str] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                rec = {"id": f"k{w}-{i}", "text": f"doc {i} about protein cells"}
                try:
                    r = c.post("/collections/c/upsert", json={"records": [rec]})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acked.append(rec["id"])
                i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.proc.kill()
        srv.proc.wait(30)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        srv.stop()
    assert len(acked) >= 10
    col = Collection.open(col_dir, encoder=None)  # opens (the writer lock died with it)
    for i in acked:  # every acknowledged write was committed before its answer
        assert i in col
    for d in DOCS:
        assert d["id"] in col
    col.search(text="protein cells", k=3)
    col.close()


def test_read_only(models, tmp_path):
    col_dir = make_collection(tmp_path / "col", models["dense"])
    srv = Server(
        ["--collection", f"c={col_dir}", "--read-only"], tmp_path / "server.log"
    ).wait_ready()
    try:
        r = httpx.post(srv.url + "/collections/c/upsert", json={"records": [{"id": "x"}]})
        _error(r, 403, "Forbidden")
        _error(httpx.post(srv.url + "/collections/c/delete", json={"ids": ["d1"]}), 403)
        r = httpx.post(srv.url + "/collections/c/search", json={"text": "protein", "k": 2})
        assert r.status_code == 200 and r.json()["hits"][0]["id"] == "d1"
        # no embedding model was given: the collection's own encoder still encodes queries
        r = httpx.post(srv.url + "/collections/c/search", json={"text": "cells", "mode": "dense"})
        assert r.status_code == 200
        _error(httpx.post(srv.url + "/embed", json={"inputs": "a"}), 424, "Backend")
    finally:
        srv.stop()


def test_cuda_provider_or_skip(models, tmp_path):
    from densparse.models.session import _no_gpu_reason

    reason = _no_gpu_reason()
    if reason:
        pytest.skip(f"no GPU: {reason}")
    srv = Server(
        ["--model", str(models["dense"]), "--provider", "cuda"], tmp_path / "server.log"
    ).wait_ready()
    try:
        assert httpx.get(srv.url + "/info").json()["provider"] == "cuda"
        ref = Encoder.from_pretrained(models["dense"], provider="cpu").encode(TEXTS)
        got = np.asarray(httpx.post(srv.url + "/embed", json={"inputs": TEXTS}).json())
        np.testing.assert_allclose(got, ref, atol=1e-4)
    finally:
        srv.stop()


# ---------------------------------------------------------------------------- real model
def test_openai_on_minilm(tmp_path):
    """The shared MiniLM (int8 ONNX): /v1/embeddings equals the Encoder to 1e-6."""
    openai = pytest.importorskip("openai", reason="needs the openai package (test extra)")
    model = need(SHARED / "models" / "minilm-l6-int8-onnx")
    srv = Server(["--model", str(model)], tmp_path / "server.log").wait_ready()
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        texts = ["when is my deposit returned?", "Wages are paid monthly. " * 40]
        ref = Encoder.from_pretrained(model, provider="cpu").encode(texts)
        for fmt in ("float", "base64"):
            res = c.embeddings.create(model="minilm", input=texts, encoding_format=fmt)
            np.testing.assert_allclose(_decoded([d.embedding for d in res.data]), ref, atol=1e-6)
    finally:
        srv.stop()


# ---------------------------------------------------------------------------- fuzzing
def test_openapi_fuzzed_no_5xx(main_server, tmp_path):
    """schemathesis generates requests from /openapi.json: none may get a 5xx."""
    pytest.importorskip("schemathesis", reason="needs schemathesis (test extra)")
    # its command line, run by this interpreter (its script need not be on PATH)
    cli = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            cli,
            "run",
            main_server.url + "/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--workers",
            "1",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "-H",
            f"Authorization: Bearer {KEY}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", r.stdout)
    assert tested and int(tested.group(1)) >= 14, r.stdout[-2000:]  # every operation was fuzzed


# ---------------------------------------------------------------------------- the batcher
def test_batcher_merges_by_token_budget_and_isolates_errors():
    """Jobs queued while the model is busy share the next call, up to the token budget, in
    arrival order; a job that fails a merged call fails alone."""
    import asyncio

    from densparse.serve.batching import Batcher

    calls: list[list] = []
    gate = threading.Event()

    def run(key, items):
        if not calls:
            gate.wait(10)  # hold the first call so the others queue up
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad input")
        return [f"{key}:{x}" for x in items]

    async def main():
        b = Batcher("t", run, max_batch_tokens=10, max_queue=100)
        b.start()
        first = asyncio.ensure_future(b.submit("k", ["a"], 1))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(b.submit("k", [f"x{i}"], 4)) for i in range(4)]
        bad = asyncio.ensure_future(b.submit("k", ["bad"], 1))
        await asyncio.sleep(0.05)
        gate.set()
        out = await asyncio.gather(first, *rest, bad, return_exceptions=True)
        await b.stop()
        return out

    out = asyncio.run(main())
    assert out[:5] == [["k:a"], ["k:x0"], ["k:x1"], ["k:x2"], ["k:x3"]]
    assert isinstance(out[5], ValueError)
    # 1st call alone; then x0+x1 (8 tokens; x2 would pass 10); then x2+x3+bad, which failed
    # and was retried job by job
    assert calls[:3] == [["a"], ["x0", "x1"], ["x2", "x3", "bad"]]
    assert calls[3:] == [["x2"], ["x3"], ["bad"]]


def test_merged_writes_fail_alone(client):
    """Concurrent upserts are merged into one write; one with a bad record gets its 422, the
    others land."""
    results: dict[str, int] = {}

    def up(rid: str, dense) -> None:
        rec = {"id": rid, "text": "merged write"}
        if dense is not None:
            rec["dense"] = dense
        with httpx.Client(base_url=client.base_url, headers=AUTH, timeout=60) as c:
            results[rid] = c.post("/collections/rw/upsert", json={"records": [rec]}).status_code

    jobs = [(f"m{i}", None) for i in range(6)] + [("m-bad", [1.0, 2.0])]  # wrong dimension
    threads = [threading.Thread(target=up, args=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results.pop("m-bad") == 422
    assert set(results.values()) == {200}
    for rid in results:
        assert client.get(f"/collections/rw/documents/{rid}").status_code == 200
    assert client.get("/collections/rw/documents/m-bad").status_code == 404
    client.post("/collections/rw/delete", json={"ids": sorted(results)})


# ---------------------------------------------------------------------------- BGE-M3
def test_bge_m3_dense_sparse_and_collection(tmp_path):
    """A BGE-M3 model gives both: /embed and /embed_sparse equal the Encoder's outputs, and a
    collection with it searches (BM25 + dense + sparse) as Collection.search and stores both
    vectors for upserted records."""
    m3, _ = make_model_dir(
        tmp_path / "m3", "m3", config={"_name_or_path": "BAAI/bge-m3"}, token_type_ids=False
    )
    enc = Encoder.from_pretrained(m3, provider="cpu")
    col_dir = make_collection(tmp_path / "col", m3)
    srv = Server(
        ["--model", str(m3), "--collection", f"c={col_dir}"], tmp_path / "server.log"
    ).wait_ready()
    try:
        ref = enc.encode(TEXTS)
        r = httpx.post(srv.url + "/embed", json={"inputs": TEXTS}, timeout=60)
        np.testing.assert_allclose(np.asarray(r.json()), ref["dense_vecs"], atol=1e-6)
        r = httpx.post(srv.url + "/embed_sparse", json={"inputs": TEXTS}, timeout=60)
        for row, w in zip(r.json(), ref["lexical_weights"]):
            assert {str(e["index"]): e["value"] for e in row} == pytest.approx(w, abs=1e-6)
        col = Collection.open(col_dir, readonly=True)
        for q in (dict(text="protein cells", k=3), dict(text="long effect", mode="sparse")):
            got = httpx.post(srv.url + "/collections/c/search", json=q, timeout=60).json()["hits"]
            want = col.search(**q)
            assert [h["id"] for h in got] == [h.id for h in want]
            assert [h["score"] for h in got] == pytest.approx([h.score for h in want], abs=1e-6)
            assert set(got[0]["scores"]) == set(want[0].scores)
        col.close()
        rec = {"id": "new", "text": "protein gene cells"}
        r = httpx.post(srv.url + "/collections/c/upsert", json={"records": [rec]}, timeout=60)
        assert r.status_code == 200, r.text
        doc = httpx.get(
            srv.url + "/collections/c/documents/new", params={"vectors": True}, timeout=60
        ).json()
        one = enc.encode([rec["text"]])
        np.testing.assert_allclose(doc["dense"], one["dense_vecs"][0], atol=1e-6)
        stored = dict(zip(map(str, doc["sparse"]["indices"]), doc["sparse"]["values"]))
        assert stored == pytest.approx(one["lexical_weights"][0], abs=1e-6)
    finally:
        srv.stop()
