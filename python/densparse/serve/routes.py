"""The HTTP routes: text-embeddings-inference's (``/embed``, ``/embed_sparse``, ``/rerank``,
``/tokenize``, ``/``, ``/health``, ``/info``, ``/metrics``), OpenAI's (``/v1/embeddings``,
``/v1/models``) and the Collection routes (``/collections/...``)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from typing import Any, Optional

import numpy as np
from fastapi import APIRouter, Body, Request, Response
from pydantic import ValidationError

from densparse.serve import schemas as S
from densparse.serve.limits import ServiceError
from densparse.serve.metrics import CONTENT_TYPE
from densparse.serve.service import EncoderWorker, Service

router = APIRouter()
_STARTED = int(time.time())

#: the errors every route may answer (documented in the OpenAPI schema)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": S.ErrorResponse, "description": what}
    for code, what in (
        (401, "missing or wrong API key"),
        (413, "payload or batch over the limits, or an input too long"),
        (422, "malformed JSON or a field of the wrong shape"),
        (424, "the loaded models cannot do this"),
        (429, "too many requests in flight"),
        (503, "still loading"),
    )
}
NOT_FOUND = {404: {"model": S.ErrorResponse, "description": "unknown collection or id"}}


def _svc(request: Request) -> Service:
    return request.app.state.service


def _json(obj: Any, status: int = 200) -> Response:
    """JSON without re-validating through the response model (big vector lists)."""
    return Response(json.dumps(obj, allow_nan=False), status, media_type="application/json")


def _finite(x: Optional[float]) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


def _texts(inputs) -> list[str]:
    return [inputs] if isinstance(inputs, str) else list(inputs)


def _sparse_rows(rows: list[dict]) -> list[list[dict]]:
    """``{str(token id): weight}`` -> TEI's ``[{index, value}]`` by token id."""
    out = []
    for w in rows:
        items = sorted((int(k), float(v)) for k, v in w.items())
        out.append([{"index": i, "value": v} for i, v in items])
    return out


def _truncate_dims(vecs: np.ndarray, dims: Optional[int], normalize: bool) -> np.ndarray:
    if dims is None:
        return vecs
    if dims > vecs.shape[1]:
        raise ServiceError(
            422, f"dimensions={dims} is more than the model's {vecs.shape[1]}", "Validation"
        )
    vecs = vecs[:, :dims]
    if normalize:
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(vecs, dtype=np.float32)


def _query_prefix(w: EncoderWorker, prompt_name: Optional[str]) -> str:
    return (w.encoder.query_instruction or "") if prompt_name == "query" else ""


# ---------------------------------------------------------------------------- TEI
async def _embed(svc: Service, req: S.EmbedRequest) -> Response:
    w = svc.need_encoder()
    if not w.dense:
        raise ServiceError(
            424, f"the model ({w.family}) gives no dense vectors: use /embed_sparse", "Backend"
        )
    texts = _texts(req.inputs)
    svc.check_batch(len(texts))
    prefix = _query_prefix(w, req.prompt_name)
    rows, _ = await w.run(
        "dense", [prefix + t for t in texts], normalize=req.normalize, truncate=req.truncate
    )
    vecs = _truncate_dims(np.stack(rows), req.dimensions, req.normalize)
    return _json(vecs.tolist())


async def _embed_sparse(svc: Service, req: S.EmbedSparseRequest) -> Response:
    if req.bm25 is not None:
        return await _bm25_vectors(svc, req)
    w = svc.need_encoder()
    if not w.sparse:
        raise ServiceError(
            424,
            f"the model ({w.family}) gives no sparse vectors (SPLADE and BGE-M3 do): use /embed",
            "Backend",
        )
    texts = _texts(req.inputs)
    svc.check_batch(len(texts))
    prefix = _query_prefix(w, req.prompt_name)
    rows, _ = await w.run("sparse", [prefix + t for t in texts], truncate=req.truncate)
    return _json(_sparse_rows(rows))


async def _bm25_vectors(svc: Service, req: S.EmbedSparseRequest) -> Response:
    """BM25 query vectors (term counts) or document vectors (idf x tf weights) over the
    index's vocabulary: their dot product is the BM25 score."""
    idx = svc.bm25_index(req.bm25 or "")
    texts = _texts(req.inputs)
    svc.check_batch(len(texts))
    fn = idx.encode_queries if req.bm25_kind == "query" else idx.encode_documents
    vecs = await asyncio.to_thread(fn, texts)
    out = [
        [{"index": int(i), "value": float(v)} for i, v in zip(ids.tolist(), vals.tolist())]
        for ids, vals in vecs
    ]
    return _json(out)


async def _rerank(svc: Service, req: S.RerankRequest) -> Response:
    r = svc.need_reranker()
    svc.check_batch(len(req.texts), "texts")
    scores = np.asarray(await r.run([(req.query, t) for t in req.texts]), dtype=np.float32)
    if not req.raw_scores:
        scores = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
    order = np.argsort(-scores, kind="stable")
    if req.top_n is not None:
        order = order[: req.top_n]
    out = []
    for i in order.tolist():
        hit: dict[str, Any] = {"index": i, "score": float(scores[i])}
        if req.return_text:
            hit["text"] = req.texts[i]
        out.append(hit)
    return _json(out)


@router.post(
    "/embed",
    response_model=list[list[float]],
    responses=ERRORS,
    tags=["text-embeddings-inference"],
    summary="Dense embeddings",
)
async def embed(request: Request, req: S.EmbedRequest) -> Response:
    """One vector per input (no query instruction unless ``prompt_name="query"``)."""
    return await _embed(_svc(request), req)


@router.post(
    "/embed_sparse",
    response_model=list[list[S.SparseValue]],
    responses=ERRORS,
    tags=["text-embeddings-inference"],
    summary="Sparse embeddings (SPLADE, BGE-M3 lexical weights, BM25)",
)
async def embed_sparse(request: Request, req: S.EmbedSparseRequest) -> Response:
    """Per input, ``[{index: token id, value: weight}]`` sorted by token id; with ``bm25``,
    the BM25 query or document vectors of that served index."""
    return await _embed_sparse(_svc(request), req)


@router.post(
    "/rerank",
    response_model=list[S.RankHit],
    responses=ERRORS,
    tags=["text-embeddings-inference"],
    summary="Rerank texts for a query",
)
async def rerank(request: Request, req: S.RerankRequest) -> Response:
    """Cross-encoder scores of ``(query, text)``, best first (sigmoid unless
    ``raw_scores``)."""
    return await _rerank(_svc(request), req)


@router.post(
    "/tokenize",
    response_model=list[list[S.SimpleToken]],
    responses=ERRORS,
    tags=["text-embeddings-inference"],
    summary="Tokens of the embedding model",
)
async def tokenize(request: Request, req: S.TokenizeRequest) -> Response:
    """Token ids, their strings and character offsets, as the model reads the inputs."""
    svc = _svc(request)
    w = svc.need_encoder()
    texts = _texts(req.inputs)
    svc.check_batch(len(texts))
    encs = await asyncio.to_thread(w.tokenize, texts, req.add_special_tokens)
    out = []
    for e in encs:
        toks = []
        for tid, tok, special, (a, b) in zip(e.ids, e.tokens, e.special_tokens_mask, e.offsets):
            s = bool(special)
            toks.append(
                {
                    "id": tid,
                    "text": tok,
                    "special": s,
                    "start": None if s else a,
                    "stop": None if s else b,
                }
            )
        out.append(toks)
    return _json(out)


@router.post(
    "/",
    responses=ERRORS,
    tags=["text-embeddings-inference"],
    summary="The model's default task",
)
@router.post("/invocations", responses=ERRORS, include_in_schema=False)
async def default_task(request: Request, body: dict[str, Any] = Body(...)) -> Response:  # noqa: B008
    """``/embed`` for an embedding model, ``/embed_sparse`` for a sparse-only one (SPLADE),
    ``/rerank`` when only a reranker is loaded."""
    svc = _svc(request)
    svc.ready()
    try:
        if svc.encoder is not None and svc.encoder.dense:
            return await _embed(svc, S.EmbedRequest.model_validate(body))
        if svc.encoder is not None:
            return await _embed_sparse(svc, S.EmbedSparseRequest.model_validate(body))
        if svc.reranker is not None:
            return await _rerank(svc, S.RerankRequest.model_validate(body))
    except ValidationError as e:
        from fastapi.exceptions import RequestValidationError

        raise RequestValidationError(e.errors(include_url=False)) from None
    raise ServiceError(424, "no model is loaded", "Backend")


@router.get(
    "/health",
    response_model=S.Health,
    responses={503: {"model": S.Health, "description": "loading, or loading failed"}},
    tags=["service"],
)
async def health(request: Request) -> Response:
    """200 once models and collections are loaded, 503 before (and if loading failed)."""
    svc = _svc(request)
    body = {"status": svc.status, "error": svc.error}
    return _json(body, 200 if svc.status == "ok" else 503)


@router.get("/", include_in_schema=False)
async def root(request: Request) -> Response:
    return await health(request)


@router.get("/info", response_model=S.Info, responses=ERRORS, tags=["service"])
async def info(request: Request) -> S.Info:
    """What is loaded and the limits in force."""
    import densparse

    svc = _svc(request)
    svc.ready()
    cfg = svc.cfg
    w = svc.encoder
    model_type: dict[str, Any] = {}
    if w is not None:
        kind = "embedding" if w.dense else "sparse_embedding"
        model_type[kind] = {"pooling": w.encoder.spec.pooling, "family": w.family}
    if svc.reranker is not None:
        model_type["reranker"] = {"max_length": svc.reranker.reranker.max_length}
    provider = (w.encoder if w is not None else None) or (
        svc.reranker.reranker if svc.reranker is not None else None
    )
    return S.Info(
        model_id=svc.model_id,
        model_dtype=None if w is None else _dtype(w.encoder),
        model_type=model_type,
        model_family=None if w is None else w.family,
        reranker_id=None if svc.reranker is None else svc.reranker.reranker.model_dir.name,
        max_input_length=None if w is None else w.encoder.max_length,
        max_batch_tokens=cfg.max_batch_tokens,
        max_concurrent_requests=cfg.max_concurrent_requests,
        max_client_batch_size=cfg.max_client_batch_size,
        payload_limit=cfg.payload_limit,
        provider=None if provider is None else provider.provider,
        collections=sorted(svc.collections),
        bm25=sorted(svc.bm25),
        read_only=cfg.read_only,
        version=densparse.__version__,
    )


def _dtype(encoder: Any) -> Optional[str]:
    name = str(getattr(encoder.model, "path", "")).lower()
    return "float16" if "fp16" in name else None


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    tags=["service"],
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latencies per route, queue sizes, batch sizes and
    tokens per model."""
    return Response(_svc(request).metrics.render(), media_type=CONTENT_TYPE)


# ---------------------------------------------------------------------------- OpenAI
@router.post(
    "/v1/embeddings",
    response_model=S.OpenAIEmbeddingResponse,
    responses=ERRORS,
    tags=["OpenAI"],
    summary="OpenAI embeddings",
)
async def openai_embeddings(request: Request, req: S.OpenAIEmbeddingRequest) -> Response:
    """OpenAI's embeddings API: ``encoding_format`` ``float`` or ``base64`` (little-endian
    float32), ``dimensions``, token ``usage``. Texts over the max length are truncated;
    ``model`` is echoed, not checked (clients send their own names)."""
    svc = _svc(request)
    w = svc.need_encoder()
    if not w.dense:
        raise ServiceError(424, f"the model ({w.family}) gives no dense vectors", "Backend")
    inp = req.input
    if isinstance(inp, list) and inp and not isinstance(inp[0], str):
        raise ServiceError(
            422,
            "input as token ids is not supported: ids come from the client's tokenizer, not "
            "this model's; send text (LangChain: check_embedding_ctx_length=False)",
            "Validation",
        )
    texts = _texts(inp)
    svc.check_batch(len(texts))
    rows, tokens = await w.run("dense", texts, normalize=True, truncate=True)
    vecs = _truncate_dims(np.stack(rows).astype(np.float32), req.dimensions, True)
    data = []
    for i, v in enumerate(vecs):
        emb: Any = (
            base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
            if req.encoding_format == "base64"
            else v.tolist()
        )
        data.append({"object": "embedding", "embedding": emb, "index": i})
    return _json(
        {
            "object": "list",
            "data": data,
            "model": req.model or svc.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.get("/v1/models", response_model=S.OpenAIModelList, responses=ERRORS, tags=["OpenAI"])
async def openai_models(request: Request) -> S.OpenAIModelList:
    """The loaded models."""
    svc = _svc(request)
    svc.ready()
    ids = []
    if svc.encoder is not None:
        ids.append(svc.model_id)
    if svc.reranker is not None:
        ids.append(svc.reranker.reranker.model_dir.name)
    return S.OpenAIModelList(
        data=[S.OpenAIModel(id=i, created=_STARTED, owned_by="densparse") for i in ids]
    )


# ---------------------------------------------------------------------------- collections
def _collection_info(svc: Service, name: str, col: Any) -> S.CollectionInfo:
    st = col.stats()
    enc = col.encoder
    return S.CollectionInfo(
        name=name,
        documents=st["documents"],
        dense_dim=col.dense_dim,
        encoder=None if enc is None else enc.model_dir.name,
        writable=not svc.cfg.read_only,
        segments=st["segments"],
    )


@router.get(
    "/collections", response_model=list[S.CollectionInfo], responses=ERRORS, tags=["collections"]
)
async def list_collections(request: Request) -> list[S.CollectionInfo]:
    """The served collections."""
    svc = _svc(request)
    svc.ready()
    return [_collection_info(svc, n, c) for n, c in sorted(svc.collections.items())]


def _sparse_arg(v: Any) -> Any:
    if isinstance(v, S.SparseVectorIn):
        if len(v.indices) != len(v.values):
            raise ServiceError(422, "sparse: indices and values differ in length", "Validation")
        return (np.asarray(v.indices, np.int64), np.asarray(v.values, np.float32))
    return v


async def _query_vectors(svc: Service, name: str, req: S.SearchRequest):
    """The collection encoder's query vectors for ``text`` (through the batcher), where the
    search needs them and the request did not bring them."""
    w = svc.col_encoders.get(name)
    dense, sparse = req.dense, _sparse_arg(req.sparse) if req.sparse is not None else None
    if w is None or req.text is None or req.mode == "bm25":
        return dense, sparse
    want_dense = w.dense and dense is None and req.mode in ("hybrid", "dense")
    want_sparse = w.sparse and sparse is None and req.mode in ("hybrid", "sparse")
    if not (want_dense or want_sparse):
        return dense, sparse
    (row,), _ = await w.run(
        "both" if w.dense and w.sparse else ("dense" if w.dense else "sparse"),
        [(w.encoder.query_instruction or "") + req.text],
    )
    if w.dense and w.sparse:
        d, s = row
    elif w.dense:
        d, s = row, None
    else:
        d, s = None, row
    if want_dense:
        dense = d
    if want_sparse and s:
        sparse = s
    return dense, sparse


def _hit(h: Any) -> dict:
    return {
        "id": h.id,
        "score": _finite(h.score),
        "scores": {k: _finite(v) for k, v in h.scores.items()},
        "text": h.text,
        "metadata": h.metadata,
    }


@router.post(
    "/collections/{name}/search",
    response_model=S.SearchResponse,
    responses={**ERRORS, **NOT_FOUND},
    tags=["collections"],
)
async def search(request: Request, name: str, req: S.SearchRequest) -> Response:
    """``Collection.search``: text (BM25, and the collection's encoder), dense and sparse
    vectors, mode, fusion, weights, filter, k; ``rerank`` with the service's reranker."""
    svc = _svc(request)
    col = svc.collection(name)
    rr = svc.need_reranker() if req.rerank else None
    if rr is not None and req.text is None:
        raise ServiceError(422, "rerank needs the query as text", "Validation")
    dense, sparse = await _query_vectors(svc, name, req)
    if len(col) == 0:
        return _json({"hits": []})

    def run():
        return col.search(
            text=req.text,
            dense=None if dense is None else np.asarray(dense, np.float32),
            sparse=sparse,
            k=req.k,
            mode=req.mode,
            fusion=req.fusion,
            weights=req.weights,
            filter=req.filter,
            candidates=req.candidates,
            rrf_k=req.rrf_k,
            normalization=req.normalization,
            rerank=rr,
            rerank_candidates=req.rerank_candidates,
        )

    hits = await asyncio.to_thread(run)
    return _json({"hits": [_hit(h) for h in hits]})


def _record(r: S.RecordIn) -> dict:
    out: dict[str, Any] = {"id": r.id, "text": r.text}
    if r.views:
        out["views"] = list(r.views)
    if r.dense is not None:
        out["dense"] = np.asarray(r.dense, np.float32)
    if r.sparse is not None:
        out["sparse"] = _sparse_arg(r.sparse)
    if r.colbert is not None:
        out["colbert"] = np.asarray(r.colbert, np.float32)
    if r.metadata is not None:
        out["metadata"] = r.metadata
    return out


async def _encode_records(w: EncoderWorker, recs: list[dict]) -> None:
    """Fill in the vectors records lack, as the Collection would (passages: no instruction;
    dense for the text and each view, sparse for the text), through the batcher."""
    need_dense = [r for r in recs if w.dense and "dense" not in r]
    need_sparse = [r for r in recs if w.sparse and "sparse" not in r]
    if w.dense and w.sparse:
        todo = [r for r in recs if "dense" not in r or "sparse" not in r]
        texts = [t for r in todo for t in (r["text"], *r.get("views", ()))]
        rows, _ = await w.run("both", texts)
        pos = 0
        for r in todo:
            n = 1 + len(r.get("views", ()))
            if "dense" not in r:
                r["dense"] = np.stack([d for d, _ in rows[pos : pos + n]])
            if "sparse" not in r and rows[pos][1]:
                r["sparse"] = rows[pos][1]
            pos += n
        return
    if need_dense:
        texts = [t for r in need_dense for t in (r["text"], *r.get("views", ()))]
        rows, _ = await w.run("dense", texts)
        pos = 0
        for r in need_dense:
            n = 1 + len(r.get("views", ()))
            r["dense"] = np.stack(rows[pos : pos + n])
            pos += n
    if need_sparse:
        rows, _ = await w.run("sparse", [r["text"] for r in need_sparse])
        for r, s in zip(need_sparse, rows):
            if s:
                r["sparse"] = s


@router.post(
    "/collections/{name}/upsert",
    response_model=S.UpsertResponse,
    responses={**ERRORS, **NOT_FOUND, 403: {"model": S.ErrorResponse, "description": "read-only"}},
    tags=["collections"],
)
async def upsert(request: Request, name: str, req: S.UpsertRequest) -> S.UpsertResponse:
    """Add records, replacing those with the same id; vectors the collection's encoder
    gives are computed when a record comes without them."""
    svc = _svc(request)
    col = svc.collection(name)
    svc.check_writable()
    svc.check_batch(len(req.records), "records")
    ids = [r.id for r in req.records]
    if len(set(ids)) != len(ids):
        raise ServiceError(422, "records: duplicate ids in one request", "Validation")
    recs = [_record(r) for r in req.records]
    w = svc.col_encoders.get(name)
    if w is not None:
        await _encode_records(w, recs)
    await svc.writers[name].run("upsert", recs)
    return S.UpsertResponse(upserted=len(recs), documents=len(col))


@router.post(
    "/collections/{name}/delete",
    response_model=S.DeleteResponse,
    responses={**ERRORS, **NOT_FOUND, 403: {"model": S.ErrorResponse, "description": "read-only"}},
    tags=["collections"],
)
async def delete(request: Request, name: str, req: S.DeleteRequest) -> S.DeleteResponse:
    """Delete documents by id; an unknown id is a 404 and deletes nothing."""
    svc = _svc(request)
    col = svc.collection(name)
    svc.check_writable()
    svc.check_batch(len(req.ids), "ids")
    if len(set(req.ids)) != len(req.ids):
        raise ServiceError(422, "ids: duplicates in one request", "Validation")
    await svc.writers[name].run("delete", list(req.ids))
    return S.DeleteResponse(deleted=len(req.ids), documents=len(col))


def _tolist(a: Any) -> Any:
    return np.asarray(a, dtype=np.float32).tolist()


@router.get(
    "/collections/{name}/documents/{doc_id}",
    response_model=S.Document,
    responses={**ERRORS, **NOT_FOUND},
    tags=["collections"],
)
async def get_document(request: Request, name: str, doc_id: str, vectors: bool = False) -> Response:
    """A stored record (``vectors=true``: with its dense, sparse and ColBERT vectors)."""
    svc = _svc(request)
    col = svc.collection(name)
    d = col.get(doc_id)
    out: dict[str, Any] = {"id": d["id"], "text": d["text"], "metadata": d.get("metadata", {})}
    if d.get("views"):
        out["views"] = d["views"]
    if vectors:
        if d.get("dense") is not None:
            out["dense"] = _tolist(d["dense"])
        if d.get("sparse") is not None:
            idx, val = d["sparse"]
            out["sparse"] = {"indices": np.asarray(idx).tolist(), "values": _tolist(val)}
        if d.get("colbert") is not None:
            out["colbert"] = _tolist(d["colbert"])
    return _json(out)
