"""What one running service holds: its settings, the models and collections it loads, one
batcher per model, and the model operations the routes ask for."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from densparse.serve.batching import Batcher, QueueFull
from densparse.serve.limits import ServiceError
from densparse.serve.metrics import Metrics

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class ServeConfig:
    """Settings of :func:`densparse.serve.create_app` (the ``densparse serve`` flags).

    Attributes:
        model: an embedding model (``Encoder``, or a directory / repo id to load): the
            ``/embed``, ``/embed_sparse``, ``/tokenize`` and ``/v1/embeddings`` routes.
        collections: ``{name: Collection or directory}``, served under
            ``/collections/{name}``; each encodes text with the encoder it was created with
            (the same instance as ``model`` when it is the same directory).
        reranker: a ``Reranker`` (or a directory / repo id): ``/rerank`` and ``rerank`` in
            searches.
        bm25: ``{name: BM25 or path}`` (a saved index file, or a ``densparse index``
            directory): ``/embed_sparse`` with ``"bm25": name`` gives its BM25 query or
            document vectors.
        api_key: when set, every route but ``/health`` needs ``Authorization: Bearer KEY``.
        max_batch_tokens: tokens merged from concurrent requests into one model batch.
        max_concurrent_requests: requests in flight beyond this are answered 429; it also
            bounds each model's queue.
        max_client_batch_size: inputs (texts, records, ids) per request, else 413.
        payload_limit: request body bytes, else 413.
        read_only: open collections read-only and answer writes with 403.
        provider, threads: onnxruntime provider (``"auto"``, ``"cpu"``, ``"cuda"``) and
            intra-op threads for models loaded from a path.
        model_workers: model batches that run at once, per model (each in its own thread,
            with ``threads`` intra-op threads). Default on CPU: ``min(cores, 4)`` workers of
            ``cores // workers`` threads (independent batches keep the cores busy without the
            per-operator hand-offs of many threads on one small batch); on CUDA: 1.
        commit_interval: seconds between commits of collection writes; 0 commits every write
            before answering it (a write that got 200 is durable).
        model_id: the name in ``/info`` and ``/v1/models`` (default: the model directory's).
    """

    model: Any = None
    collections: Mapping[str, Any] = field(default_factory=dict)
    reranker: Any = None
    bm25: Mapping[str, Any] = field(default_factory=dict)
    api_key: Optional[str] = None
    max_batch_tokens: int = 16384
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 256
    payload_limit: int = 2_000_000
    read_only: bool = False
    provider: str = "auto"
    threads: Optional[int] = None
    model_workers: Optional[int] = None
    commit_interval: float = 0.0
    model_id: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("threads", "model_workers"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {v!r}")
        for name in (
            "max_batch_tokens",
            "max_concurrent_requests",
            "max_client_batch_size",
            "payload_limit",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(self.commit_interval, (int, float)) or not (
            self.commit_interval >= 0 and math.isfinite(self.commit_interval)
        ):
            raise ValueError(f"commit_interval must be seconds >= 0, got {self.commit_interval!r}")
        if self.provider not in ("auto", "cpu", "cuda"):
            raise ValueError(f"provider must be auto, cpu or cuda, not {self.provider!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty")
        for name in (*self.collections, *self.bm25):
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(f"names must be non-empty strs without '/': {name!r}")
        if self.model is None and not self.collections and self.reranker is None and not self.bm25:
            raise ValueError(
                "nothing to serve: give a model, a collection, a reranker and/or a BM25 index"
            )


#: Inputs up to this many characters are tokenised on the event loop (tens of microseconds:
#: cheaper than a hop to a thread); longer ones in a worker thread.
INLINE_CHARS = 2000


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_plan(cfg: ServeConfig) -> tuple[int, int]:
    """(intra-op threads, workers) for a CPU model the service loads."""
    cores = _usable_cores()
    if cfg.threads is not None:
        return cfg.threads, cfg.model_workers or max(1, cores // cfg.threads)
    workers = cfg.model_workers or min(cores, 4)
    return max(1, cores // workers), workers


def _dense_sparse(family: str) -> tuple[bool, bool]:
    """Which vectors an encoder family gives: (dense, sparse)."""
    return family != "splade", family in ("splade", "bge-m3")


def _op(family: str) -> str:
    dense, sparse = _dense_sparse(family)
    return "both" if dense and sparse else ("dense" if dense else "sparse")


class EncoderWorker:
    """One Encoder behind a batcher: tokenises on the caller's thread pool, merges requests,
    runs the model in the batcher's thread."""

    def __init__(
        self, name: str, encoder: Any, cfg: ServeConfig, metrics: Metrics, workers: int = 1
    ) -> None:
        from tokenizers import Tokenizer

        self.name, self.encoder = name, encoder
        self.family = encoder.family
        self.dense, self.sparse = _dense_sparse(self.family)
        # a private copy without truncation: the Encoder's own one is shared with its lock
        self._tok = Tokenizer.from_str(encoder.tokenizer.to_str())
        self._tok.no_truncation()
        self._tok.no_padding()
        self._model_budget: Union[int, str] = (
            cfg.max_batch_tokens if encoder.provider == "cuda" else "auto"
        )
        self.batcher = Batcher(
            name, self._run, cfg.max_batch_tokens, cfg.max_concurrent_requests, metrics, workers
        )

    # the model thread
    def _run(self, key, texts: list[str]) -> list:
        op, normalize = key
        enc = self.encoder
        kw = dict(
            batch_size=max(len(texts), 1),
            normalize=normalize,
            show_progress=False,
            max_tokens_per_batch=self._model_budget,
        )
        if self.family == "bge-m3":
            out = enc.encode(
                texts, return_dense=op in ("dense", "both"), return_sparse=op != "dense", **kw
            )
            if op == "dense":
                return list(out["dense_vecs"])
            if op == "sparse":
                return out["lexical_weights"]
            return list(zip(out["dense_vecs"], out["lexical_weights"]))
        out = enc.encode(texts, **kw)
        return list(out) if self.family != "splade" else out

    def token_counts(self, texts: list[str], add_special_tokens: bool = True) -> list[int]:
        encs = self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)
        return [len(e.ids) for e in encs]

    def tokenize(self, texts: list[str], add_special_tokens: bool):
        return self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)

    async def run(
        self, op: str, texts: list[str], *, normalize: bool = True, truncate: bool = True
    ) -> tuple[list, int]:
        """Vectors of ``texts`` (``op``: dense, sparse or both) and their token count (after
        truncation). ``truncate=False``: a text over the max length is a 413."""
        lengths = (
            self.token_counts(texts)
            if sum(map(len, texts)) <= INLINE_CHARS
            else await asyncio.to_thread(self.token_counts, texts)
        )
        limit = self.encoder.max_length
        if not truncate:
            for i, n in enumerate(lengths):
                if n > limit:
                    raise ServiceError(
                        413,
                        f"inputs[{i}] has {n} tokens, more than the model's max length {limit}: "
                        "shorten it or send truncate=true",
                        "Validation",
                    )
        tokens = sum(min(n, limit) for n in lengths)
        try:
            out = await self.batcher.submit((op, normalize), texts, tokens)
        except QueueFull as e:
            raise ServiceError(429, str(e), "Overloaded") from None
        return out, tokens


class RerankWorker:
    """The Reranker behind a batcher; also a ``score_pairs`` object for Collection.search,
    called from a worker thread."""

    def __init__(self, reranker: Any, cfg: ServeConfig, metrics: Metrics, workers: int = 1) -> None:
        self.reranker = reranker
        self._model_budget: Union[int, str] = (
            cfg.max_batch_tokens if reranker.provider == "cuda" else "auto"
        )
        self.batcher = Batcher(
            "reranker",
            self._run,
            cfg.max_batch_tokens,
            cfg.max_concurrent_requests,
            metrics,
            workers,
        )
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def _run(self, key, pairs: list) -> list:
        scores = self.reranker.score_pairs(
            pairs,
            batch_size=max(len(pairs), 1),
            show_progress=False,
            max_tokens_per_batch=self._model_budget,
        )
        return scores.tolist()

    def _tokens(self, pairs: list) -> int:
        return sum(len(ids) for ids, _ in self.reranker.tokenize_pairs(pairs))

    async def run(self, pairs: list) -> list[float]:
        """Raw scores (logits) of ``(query, passage)`` pairs."""
        tokens = await asyncio.to_thread(self._tokens, pairs)
        try:
            return await self.batcher.submit("rerank", pairs, tokens)
        except QueueFull as e:
            raise ServiceError(429, str(e), "Overloaded") from None

    def score_pairs(self, pairs, *args, **kwargs) -> np.ndarray:
        """For ``Collection.search(rerank=...)``, from a worker thread: through the batcher."""
        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(self.run(list(pairs)), self.loop)
        return np.asarray(fut.result(), dtype=np.float32)


class WriteWorker:
    """One collection's writes behind a batcher: concurrent upserts become one
    ``Collection.upsert`` (one new segment, one commit), concurrent deletes one
    ``Collection.delete``. A merged write that fails is retried request by request (a write
    that fails changes nothing), so each request gets its own answer."""

    #: records (or ids) merged into one write
    MAX_WRITE = 4096

    def __init__(self, name: str, collection: Any, cfg: ServeConfig, metrics: Metrics) -> None:
        self.collection = collection
        self.batcher = Batcher(
            f"writes:{name}", self._run, self.MAX_WRITE, cfg.max_concurrent_requests, metrics
        )

    def _run(self, key, items: list) -> list:
        if key == "upsert":
            # the last of several records with one id wins, as sequential upserts would
            last = {r["id"]: r for r in items}
            self.collection.upsert(list(last.values()), False)
        else:
            self.collection.delete(items)
        return [None] * len(items)

    async def run(self, op: str, items: list) -> None:
        try:
            await self.batcher.submit(op, items, len(items))
        except QueueFull as e:
            raise ServiceError(429, str(e), "Overloaded") from None


class Service:
    """The models, collections and batchers of one app, loaded in the background."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.status = "loading"
        self.error: Optional[str] = None
        self.encoder: Optional[EncoderWorker] = None
        self.reranker: Optional[RerankWorker] = None
        self.collections: dict[str, Any] = {}
        self.bm25: dict[str, Any] = {}
        self.col_encoders: dict[str, EncoderWorker] = {}
        self.writers: dict[str, WriteWorker] = {}
        self._workers: list[Any] = []
        self._owned: set[str] = set()  # collections opened here (closed at shutdown)
        self._loaded_here: set[int] = set()  # models loaded with cpu_plan's threads
        self._committer: Optional[asyncio.Task] = None
        self._loader: Optional[asyncio.Task] = None
        self.on_load_error = None  # callable(message), set by the CLI to stop the server

    # ------------------------------------------------------------ loading
    @property
    def model_id(self) -> Optional[str]:
        if self.cfg.model_id:
            return self.cfg.model_id
        return None if self.encoder is None else self.encoder.encoder.model_dir.name

    def _load(self) -> None:
        """In a thread: load what the config names (paths), keep what it hands over."""
        from densparse import BM25, Collection, Encoder, Reranker

        cfg = self.cfg
        threads, _ = cpu_plan(cfg)
        kw = dict(provider=cfg.provider, threads=threads)
        encoder = cfg.model
        if encoder is not None and not isinstance(encoder, Encoder):
            encoder = Encoder.from_pretrained(encoder, **kw)
            self._loaded_here.add(id(encoder))
        reranker = cfg.reranker
        if reranker is not None and not isinstance(reranker, Reranker):
            reranker = Reranker.from_pretrained(reranker, **kw)
            self._loaded_here.add(id(reranker))
        bm25 = {}
        for name, idx in cfg.bm25.items():
            if not isinstance(idx, BM25):
                p = Path(idx)
                idx = BM25.load(p / "index.bm25" if p.is_dir() else p)
            bm25[name] = idx
        # collections last: a failure closes those opened (their writer locks) before it rises
        cols: dict[str, Any] = {}
        try:
            for name, col in cfg.collections.items():
                if not isinstance(col, Collection):
                    col = Collection.open(
                        col, readonly=cfg.read_only, autocommit=cfg.commit_interval == 0
                    )
                    self._owned.add(name)
                cols[name] = col
        except BaseException:
            for name in self._owned:
                cols[name].close()
            raise
        self._loaded = (encoder, reranker, cols, bm25)

    def _n_workers(self, model: Any) -> int:
        """Workers of a model: ``cpu_plan``'s for CPU models loaded here (their threads were
        chosen for it), else ``model_workers`` or 1."""
        if model.provider == "cpu" and id(model) in self._loaded_here:
            return cpu_plan(self.cfg)[1]
        return self.cfg.model_workers or 1

    def _attach(self) -> None:
        """On the loop: wrap the loaded models in workers and start their batchers."""
        encoder, reranker, cols, self.bm25 = self._loaded
        loop = asyncio.get_running_loop()
        m = self.metrics
        by_dir: dict[Path, EncoderWorker] = {}
        if encoder is not None:
            self.encoder = EncoderWorker("encoder", encoder, self.cfg, m, self._n_workers(encoder))
            by_dir[Path(encoder.model_dir).resolve()] = self.encoder
            self._workers.append(self.encoder)
        for name, col in cols.items():
            enc = col.encoder
            if enc is None:
                continue
            key = Path(enc.model_dir).resolve()
            w = by_dir.get(key)
            if w is None:
                w = EncoderWorker(f"encoder:{name}", enc, self.cfg, m, self._n_workers(enc))
                by_dir[key] = w
                self._workers.append(w)
            else:
                col.encoder = w.encoder  # one model in memory for both
            self.col_encoders[name] = w
        if not self.cfg.read_only:
            for name, col in cols.items():
                self.writers[name] = WriteWorker(name, col, self.cfg, m)
                self._workers.append(self.writers[name])
        if reranker is not None:
            self.reranker = RerankWorker(reranker, self.cfg, m, self._n_workers(reranker))
            self.reranker.loop = loop
            self._workers.append(self.reranker)
        self.collections = cols
        for w in self._workers:
            w.batcher.start()
        if self.cfg.commit_interval > 0 and not self.cfg.read_only and cols:
            self._committer = loop.create_task(self._commit_loop())

    async def start(self) -> None:
        """Begin loading; ``/health`` says 503 until it is done."""
        self._loader = asyncio.get_running_loop().create_task(self._load_then_attach())

    async def _load_then_attach(self) -> None:
        try:
            await asyncio.to_thread(self._load)
            self._attach()
        except Exception as e:
            # the reason is reported (health, exit status); the trace only with -v
            log.error("loading failed: %s", e, exc_info=log.isEnabledFor(logging.INFO))
            self.status, self.error = "failed", f"{type(e).__name__}: {e}"
            if self.on_load_error is not None:
                self.on_load_error(self.error)
            return
        self.status = "ok"
        log.info("ready: %s", ", ".join(self.describe()))

    def describe(self) -> list[str]:
        out = []
        if self.encoder is not None:
            out.append(f"model {self.model_id} ({self.encoder.family})")
        if self.reranker is not None:
            out.append(f"reranker {Path(self.reranker.reranker.model_dir).name}")
        out += [f"collection {n} ({len(c)} documents)" for n, c in self.collections.items()]
        out += [f"BM25 index {n} ({b.n_docs} documents)" for n, b in self.bm25.items()]
        return out

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.commit_interval)
            await asyncio.to_thread(self._commit_all)

    def _commit_all(self) -> None:
        for name, col in self.collections.items():
            try:
                if col.stats()["uncommitted_changes"]:
                    col.commit()
            except Exception:  # the next interval tries again; shutdown reports it
                log.exception("commit of collection %s failed", name)

    async def stop(self) -> None:
        """After the server drained its requests: stop batchers, commit and close."""
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        if self._committer is not None:
            self._committer.cancel()
        for w in self._workers:
            await w.batcher.stop()
        cols, self.collections = self.collections, {}

        def close_all() -> None:
            for name, col in cols.items():
                try:
                    if name in self._owned:
                        col.close()  # commits pending writes
                    elif col.stats()["uncommitted_changes"]:
                        col.commit()  # the caller's collection stays open
                except Exception:
                    log.exception("closing collection %s failed", name)

        await asyncio.to_thread(close_all)

    # ------------------------------------------------------------ lookups
    def ready(self) -> None:
        if self.status != "ok":
            what = "loading" if self.status == "loading" else f"failed: {self.error}"
            raise ServiceError(503, f"the service is not ready ({what})", "Unhealthy")

    def need_encoder(self) -> EncoderWorker:
        self.ready()
        if self.encoder is None:
            raise ServiceError(424, "no embedding model is loaded (--model)", "Backend")
        return self.encoder

    def need_reranker(self) -> RerankWorker:
        self.ready()
        if self.reranker is None:
            raise ServiceError(424, "no reranker is loaded (--reranker)", "Backend")
        return self.reranker

    def collection(self, name: str) -> Any:
        self.ready()
        col = self.collections.get(name)
        if col is None:
            raise ServiceError(404, f"no collection named {name!r}", "NotFound")
        return col

    def bm25_index(self, name: str) -> Any:
        self.ready()
        idx = self.bm25.get(name)
        if idx is None:
            raise ServiceError(404, f"no BM25 index named {name!r} (--bm25)", "NotFound")
        return idx

    def check_batch(self, n: int, what: str = "inputs") -> None:
        if n > self.cfg.max_client_batch_size:
            raise ServiceError(
                413,
                f"{n} {what} in one request, more than the limit of "
                f"{self.cfg.max_client_batch_size} (--max-client-batch-size)",
                "Validation",
            )
        if n == 0:
            raise ServiceError(422, f"no {what} given", "Empty")

    def check_writable(self) -> None:
        if self.cfg.read_only:
            raise ServiceError(403, "this service is read-only (--read-only)", "Forbidden")
