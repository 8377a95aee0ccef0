"""Collection: a persistent store of chunks searched by BM25, dense, sparse or all fused."""

from __future__ import annotations

import bisect
import contextlib
import copy
import logging
import math
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from densparse import _core
from densparse._checks import MAX_K, check_choice, check_k, check_path
from densparse._progress import Progress, wants_progress
from densparse.analysis import Analyzer
from densparse.bm25 import METHODS, _analyzer_from_config
from densparse.collection import merge_policy, routes, store
from densparse.collection.encoding import (
    EncoderLike,
    encode_query,
    encode_records,
    load_encoder,
    produces,
)
from densparse.collection.filters import FilterSpec
from densparse.collection.records import (
    check_query_vector,
    sparse_vector,
    validate_records,
)
from densparse.collection.routes import Part
from densparse.collection.segment import (
    BM25_FILE,
    BuildConfig,
    Record,
    Segment,
    digests_of,
    fsync_path,
)
from densparse.dense import MAX_DIM

log = logging.getLogger(__name__)

MODES = ("hybrid", "bm25", "dense", "sparse")
_SEGMENT_NAME = re.compile(r"seg-[0-9]{6,}")
FUSIONS = ("rrf", "weighted", "m3")
PathLike = Union[str, os.PathLike]


@dataclass
class Hit:
    """One search result.

    ``score`` is the fused score in hybrid mode (the route's score otherwise), or the
    reranker's score when the search reranked; ``scores`` holds each route's own score,
    ``None`` where the document was not among that route's candidates, and after a rerank
    also ``"fused"`` (the score before reranking) and ``"rerank"``."""

    id: str
    score: float
    scores: dict[str, Optional[float]]
    text: str
    metadata: dict = field(default_factory=dict)


class Collection:
    """A persistent collection of chunks: ``{id, text, views, dense, sparse, colbert,
    metadata}`` records searched by BM25 (built from the text automatically), dense vectors,
    learned-sparse vectors, or all of them fused, with metadata filters.

    Create one with :meth:`create`, reopen it with :meth:`open`. Writes go into new
    immutable segments (deletions are marks), so adding or deleting never rebuilds what is
    there; small segments are merged in the background. Searches run on a snapshot and
    never wait for a writer. With ``autocommit=True`` (the default) every write is durable
    when the call returns: a commit writes new files, then switches the manifest atomically.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict,
        cfg: BuildConfig,
        parts: tuple[Part, ...],
        digests: dict[str, dict],
        readonly: bool,
        autocommit: bool,
        max_segments: int,
        auto_merge: bool,
        writer: Optional[store.WriterLock] = None,
        pin: Optional[store.ReaderPin] = None,
    ) -> None:
        self.path = path
        self._manifest = manifest
        self._cfg = cfg
        self._digests = digests  # segment name -> {file: digest} for segments on disk
        self._live_digests: dict[tuple[str, str], dict] = {}
        for s in manifest["segments"]:
            if s.get("live"):
                self._live_digests[(s["name"], s["live"])] = s["live_digest"]
        self._readonly = readonly
        self.autocommit = autocommit
        self.max_segments = check_k(max_segments, "max_segments")
        self.auto_merge = auto_merge
        self.encoder: Any = None  # set by create/open: computes vectors from text
        self._lock = threading.RLock()  # writers only; readers use the published snapshot
        self._writer = writer  # held from open to close by a writable collection
        self._pin = pin  # the generation this snapshot reads, locked against deletion
        self._closed = False
        self._merging: Optional[threading.Thread] = None
        self._merge_lock = threading.Lock()
        self._merge_error: Optional[BaseException] = None
        self._dirty = False
        self._parts: tuple[Part, ...] = ()
        self._view: Optional[tuple[tuple[Part, ...], _core.Snapshot]] = None
        self._publish(parts)

    # ------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: PathLike,
        dense_dim: Optional[int] = None,
        analyzer: Optional[Analyzer] = None,
        *,
        bm25_method: str = "lucene",
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        dense_dtype: str = "float32",
        metric: str = "ip",
        sparse_dtype: str = "float32",
        colbert_dim: Optional[int] = None,
        encoder: Optional[EncoderLike] = None,
        autocommit: bool = True,
        max_segments: int = 8,
        auto_merge: bool = True,
    ) -> Collection:
        """Create an empty collection in the directory ``path`` (new or empty).

        Args:
            dense_dim: dimension of the dense vectors; ``None`` for a collection without them.
            analyzer: text analysis for BM25 (default ``Analyzer()``, language ``"auto"``).
            bm25_method, k1, b, delta: BM25 variant and parameters (see :class:`densparse.BM25`).
            dense_dtype: ``"float32"``, ``"float16"`` or ``"int8"`` storage of dense vectors.
            metric: ``"ip"`` (inner product) or ``"cosine"``.
            sparse_dtype: ``"float32"``, ``"float16"`` or ``"uint8"`` sparse weights.
            colbert_dim: dimension of ColBERT vectors, if records carry them.
            encoder: a :class:`densparse.Encoder` (or a model directory / repo id): records
                and text queries then get their dense (and, for SPLADE / BGE-M3, sparse)
                vectors from it; ``dense_dim`` defaults to the model's. Saved by path, so
                :meth:`open` loads it again.
            autocommit: make every write durable before it returns (else call :meth:`commit`).
            max_segments: a cap on the number of segments: above it the smallest are merged.
                Below it, a tiered policy (segments of similar size merged three at a time,
                see :mod:`densparse.collection.merge_policy`) keeps merging cheap.
            auto_merge: merge in a background thread after writes (else call :meth:`merge`).
        """
        path = Path(check_path(path))
        check_k(max_segments, "max_segments")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f"{path} exists and is not an empty directory")
        check_choice(bm25_method, METHODS, "bm25_method")
        for name, x, hi in (("k1", k1, math.inf), ("b", b, 1.0), ("delta", delta, math.inf)):
            if (
                isinstance(x, bool)
                or not isinstance(x, (int, float))
                or not 0 <= x <= hi
                or not math.isfinite(x)
            ):
                raise ValueError(f"{name} must be a finite number in [0, {hi}], got {x!r}")
        if dense_dim is not None and (
            isinstance(dense_dim, bool)
            or not isinstance(dense_dim, (int, np.integer))
            or not 1 <= dense_dim <= MAX_DIM
        ):
            raise ValueError(f"dense_dim must be an int in [1, {MAX_DIM}] or None: {dense_dim!r}")
        if colbert_dim is not None and (
            isinstance(colbert_dim, bool)
            or not isinstance(colbert_dim, (int, np.integer))
            or not 1 <= colbert_dim <= MAX_DIM
        ):
            raise ValueError(
                f"colbert_dim must be an int in [1, {MAX_DIM}] or None: {colbert_dim!r}"
            )
        check_choice(dense_dtype, ("float32", "float16", "int8"), "dense_dtype")
        check_choice(metric, ("ip", "cosine"), "metric")
        check_choice(sparse_dtype, ("float32", "float16", "uint8"), "sparse_dtype")
        enc = None
        if encoder is not None:
            enc = load_encoder(encoder)
            if produces(enc)[0]:
                if dense_dim is None:
                    dense_dim = enc.dim
                if dense_dim is None:
                    raise ValueError("the encoder's output width is dynamic: give dense_dim")
                if enc.dim is not None and enc.dim != dense_dim:
                    raise ValueError(f"dense_dim={dense_dim} but the encoder gives {enc.dim}")
        analyzer = analyzer if analyzer is not None else Analyzer()
        if not isinstance(analyzer, Analyzer):
            raise TypeError(f"analyzer must be a densparse.Analyzer, not {type(analyzer).__name__}")
        acfg = dict(analyzer.config)
        if acfg.get("user_dict"):
            acfg["user_dict_text"] = Path(acfg["user_dict"]).read_text(encoding="utf-8")
        config = {
            "dense_dim": None if dense_dim is None else int(dense_dim),
            "dense_dtype": dense_dtype,
            "metric": metric,
            "sparse_dtype": sparse_dtype,
            "colbert_dim": colbert_dim,
            "bm25": {"method": bm25_method, "k1": float(k1), "b": float(b), "delta": float(delta)},
            "analyzer": acfg,
            "encoder": None if enc is None else str(enc.model_dir),
        }
        (path / store.SEGMENTS).mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": store.FORMAT,
            "version": store.VERSION,
            "densparse": _core.__version__,
            "generation": 0,
            "next_segment": 1,
            "config": config,
            "segments": [],
        }
        lock = store.WriterLock(path)
        lock.acquire()
        try:
            manifest = store.write_manifest(path, manifest)
        except BaseException:
            lock.release()
            raise
        log.info("created collection %s (dense_dim=%s)", path, dense_dim)
        c = cls._from_manifest(
            path, manifest, analyzer, True, False, autocommit, max_segments, auto_merge, lock, None
        )
        c.encoder = enc
        return c

    @classmethod
    def open(
        cls,
        path: PathLike,
        *,
        readonly: bool = False,
        mmap: bool = True,
        encoder: Union[str, EncoderLike, None] = "saved",
        autocommit: bool = True,
        max_segments: int = 8,
        auto_merge: bool = True,
    ) -> Collection:
        """Open the last committed state of a collection. ``readonly=True`` never takes the
        writer lock, so any number of processes can search while one writes.
        ``encoder="saved"`` loads the encoder the collection was created with (if any);
        pass another Encoder or path, or ``None`` for none."""
        path = Path(check_path(path))
        check_k(max_segments, "max_segments")
        writer = pin = None
        if readonly:
            manifest, pin = store.open_pinned(path)
        else:
            # The lock comes first, so the state read next is the one this writer extends.
            store.read_manifest(path)  # a clear error for a missing or foreign directory
            writer = store.WriterLock(path)
            writer.acquire()
        try:
            if writer is not None:
                manifest = store.read_manifest(path)
            try:
                analyzer = _analyzer_from_config(manifest["config"]["analyzer"])
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise _core.CorruptIndexError(
                    f"{path}: unreadable analyzer settings ({e!r})"
                ) from None
            c = cls._from_manifest(
                path,
                manifest,
                analyzer,
                mmap,
                readonly,
                autocommit,
                max_segments,
                auto_merge,
                writer,
                pin,
            )
        except BaseException:
            if writer is not None:
                writer.release()
            if pin is not None:
                pin.release()
            raise
        if isinstance(encoder, str) and encoder == "saved":
            encoder = manifest["config"].get("encoder")
        c.encoder = None if encoder is None else load_encoder(encoder)
        return c

    @classmethod
    def _from_manifest(
        cls,
        path: Path,
        manifest: dict,
        analyzer: Analyzer,
        mmap: bool,
        readonly: bool,
        autocommit: bool,
        max_segments: int,
        auto_merge: bool,
        writer: Optional[store.WriterLock],
        pin: Optional[store.ReaderPin],
    ) -> Collection:
        try:
            c = manifest["config"]
            cfg = BuildConfig(
                analyzer=analyzer,
                bm25_params=dict(c["bm25"]),
                dense_dim=c["dense_dim"],
                dense_dtype=c["dense_dtype"],
                metric=c["metric"],
                sparse_dtype=c["sparse_dtype"],
                colbert_dim=c.get("colbert_dim"),
            )
            parts, digests = [], {}
            for s in manifest["segments"]:
                if not isinstance(s.get("name"), str) or not _SEGMENT_NAME.fullmatch(s["name"]):
                    raise _core.CorruptIndexError(f"{path}: damaged manifest (segment name)")
                d = path / store.SEGMENTS / s["name"]
                seg = Segment.load(s["name"], d, s["files"], mmap)
                if seg.n_docs != s["n_docs"]:
                    raise _core.CorruptIndexError(
                        f"{d}: {seg.n_docs} records, manifest says {s['n_docs']}"
                    )
                if s.get("live"):
                    live = store.read_live(d, s["live"], s["live_digest"], seg.n_docs)
                else:
                    live = np.ones(seg.n_docs, dtype=bool)
                live.setflags(write=False)
                parts.append(Part(seg, live, int(live.sum()), s.get("live")))
                digests[s["name"]] = s["files"]
        except KeyError as e:
            raise _core.CorruptIndexError(f"{path}: manifest lacks {e}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise _core.CorruptIndexError(f"{path}: damaged manifest ({e!r})") from None
        return cls(
            path,
            manifest,
            cfg,
            tuple(parts),
            digests,
            readonly,
            autocommit,
            max_segments,
            auto_merge,
            writer,
            pin,
        )

    #: The on-disk format this densparse writes (older ones open; see :meth:`upgrade`).
    FORMAT_VERSION = store.VERSION

    @classmethod
    def upgrade(cls, path: PathLike) -> Optional[int]:
        """Rewrite an older collection's manifest in the current format, naming every
        file with its size and checksum; segments are kept as they are. Returns the old
        format version, or None when there was nothing to do. Takes the writer lock."""
        c = cls.open(path, encoder=None, auto_merge=False)
        try:
            old = c._manifest["version"]
            if old >= store.VERSION:
                return None
            c._dirty = True
            c.commit()
            log.info("upgraded %s from format version %d to %d", path, old, store.VERSION)
            return old
        finally:
            c.close()

    # ------------------------------------------------------------ facts
    @property
    def dense_dim(self) -> Optional[int]:
        return self._cfg.dense_dim

    @property
    def analyzer(self) -> Analyzer:
        return self._cfg.analyzer

    def __len__(self) -> int:
        return sum(p.n_live for p in self._parts)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._find(doc_id) is not None

    def ids(self) -> list[str]:
        """Ids of the live documents, in storage order."""
        return [i for p in self._parts for i in p.seg.ids(np.flatnonzero(p.live))]

    def stats(self) -> dict:
        parts = self._parts
        return {
            "documents": sum(p.n_live for p in parts),
            "deleted_not_merged": sum(p.seg.n_docs - p.n_live for p in parts),
            "segments": len(parts),
            "segment_sizes": [p.seg.n_docs for p in parts],
            "generation": self._manifest["generation"],
            "uncommitted_changes": self._dirty,
        }

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r}, documents={len(self)}, segments={len(self._parts)})"

    # ------------------------------------------------------------ reading
    def _snapshot(self) -> tuple[tuple[Part, ...], _core.Snapshot]:
        """The current parts and their Rust snapshot (built once per published version;
        ``_parts`` is replaced, never changed, so identity tells the version)."""
        view = self._view
        parts = self._parts
        if view is None or view[0] is not parts:
            view = (parts, _core.Snapshot([p.reader() for p in parts], self._cfg.analyzer))
            self._view = view
        return view

    def _find_many(self, ids: Sequence[str]) -> list[Optional[tuple[Part, int]]]:
        """The live document of each id (None where there is none): one parallel batch of
        hash lookups in Rust, however many segments there are."""
        parts, snap = self._snapshot()
        segs, docs = snap.find_many(list(ids))
        return [None if s < 0 else (parts[s], d) for s, d in zip(segs.tolist(), docs.tolist())]

    def _find(self, doc_id: str) -> Optional[tuple[Part, int]]:
        """The live document with this id: one hash lookup per segment, in Rust."""
        parts, snap = self._snapshot()
        found = snap.find(doc_id)
        return None if found is None else (parts[found[0]], found[1])

    def bm25_statistics(self, query: Union[str, Sequence[str]]) -> tuple[int, int, dict[str, int]]:
        """BM25 statistics of the live documents for a query: ``(rows, total tokens,
        {token: document frequency})``, where rows count each text and view. ``query`` is
        text (analysed with the collection's analyzer) or a list of tokens.

        Summed over several collections (shards of one corpus) and passed back as
        ``search(..., bm25_stats=)``, they make every shard score as one index over the
        whole corpus would."""
        if isinstance(query, str):
            tokens = self._cfg.analyzer.tokenize(query)
        elif isinstance(query, Sequence) and all(isinstance(t, str) for t in query):
            tokens = list(query)
        else:
            raise TypeError("query must be a str or a list of str tokens")
        n, total, df = self._snapshot()[1].bm25_stats(tokens)
        return int(n), int(total), df

    def get(self, doc_id: str) -> dict:
        """The stored record of ``doc_id`` (dense, sparse and colbert when present).
        Raises KeyError for an unknown id."""
        found = self._find(doc_id) if isinstance(doc_id, str) else None
        if found is None:
            raise KeyError(f"no document with id {doc_id!r}")
        p, d = found
        seg = p.seg
        out: dict[str, Any] = {"id": seg.id(d), "text": seg.text(d)}
        views = seg.views(d)
        if views:
            out["views"] = views
        out["metadata"] = seg.metadata(d)  # a new dict: never aliases the store
        dense = seg.dense_of(d)
        if dense is not None:
            out["dense"] = dense[0] if len(dense) == 1 else dense
        sv = seg.sparse_vector(d)
        if sv is not None:
            out["sparse"] = sv
        colbert = seg.colbert_of(d)
        if colbert is not None:
            out["colbert"] = colbert
        return out

    def search(
        self,
        text: Optional[str] = None,
        dense: Optional[Any] = None,
        sparse: Optional[Any] = None,
        colbert: Optional[Any] = None,
        k: int = 10,
        mode: str = "hybrid",
        fusion: str = "rrf",
        weights: Optional[Mapping[str, float]] = None,
        filter: Optional[FilterSpec] = None,
        candidates: int = 100,
        rrf_k: int = 60,
        normalization: str = "minmax",
        rerank: Optional[Any] = None,
        rerank_candidates: int = 100,
        bm25_stats: Optional[tuple[int, int, Mapping[str, int]]] = None,
    ) -> list[Hit]:
        """Exact top-k documents, optionally re-scored by a cross-encoder.

        Args:
            text: query text, for BM25 (analysed with the collection's analyzer).
            dense: query vector [dense_dim] for the dense route.
            sparse: query sparse vector, (indices, values) or {token id: weight}.
            colbert: query ColBERT vectors [m, d]: re-scores the other routes' candidates
                by MaxSim and joins the fusion as a route (hybrid mode).
            k: hits to return; fewer only when fewer documents match.
            mode: ``"hybrid"`` (every route a query is given for, fused), ``"bm25"``,
                ``"dense"`` or ``"sparse"`` (one route).
            fusion: ``"rrf"`` (k = ``rrf_k``, 60), ``"weighted"`` (sum of per-route
                normalised scores, ``normalization`` = ``"minmax"`` | ``"dbsf"`` | ``"none"``)
                or ``"m3"`` (BGE-M3 weighted mean).
            weights: per-route weights, e.g. ``{"bm25": 0.3, "dense": 0.7}`` (default 1 each).
            filter: metadata filter (see :mod:`densparse.collection.filters`), applied
                before top-k in every route.
            candidates: hits each route contributes to the fusion (at least k).
            rerank: a :class:`densparse.Reranker` (or any object with its
                ``score_pairs(pairs)``): the fused top ``rerank_candidates`` are re-scored
                with ``text`` as the query and the best ``k`` returned by that score (ties
                keep the fused order). Needs ``text=``.
            rerank_candidates: how many fused hits the reranker re-scores (at least k).
            bm25_stats: ``(rows, total_tokens, {token: df})`` to score BM25 with instead of
                this collection's own statistics: the sums of :meth:`bm25_statistics` over
                the shards of a corpus make every shard score as one index over all of them.
                It must give a df for every query token.

        A document's route score is the max over its views (text and extra texts); so is
        its rerank score.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        k = min(int(k), MAX_K)
        if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)):
            raise TypeError(f"candidates must be an int, not {type(candidates).__name__}")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        candidates = min(int(candidates), MAX_K)
        if (
            isinstance(rrf_k, bool)
            or not isinstance(rrf_k, (int, float, np.number))
            or not (0 < rrf_k < math.inf)
        ):
            raise ValueError(f"rrf_k must be a positive number, got {rrf_k!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {fusion!r}")
        if filter is not None:
            _core.validate_filter(filter)  # TypeError / ValueError before any work
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        top = k
        if rerank is not None:
            if not callable(getattr(rerank, "score_pairs", None)):
                raise TypeError(
                    f"rerank must be a densparse.Reranker (an object with score_pairs), not "
                    f"{type(rerank).__name__}"
                )
            if text is None:
                raise ValueError("rerank= needs the query as text= (the reranker reads it)")
            if (
                isinstance(rerank_candidates, bool)
                or not isinstance(rerank_candidates, (int, np.integer))
                or rerank_candidates < 1
            ):
                raise ValueError(
                    f"rerank_candidates must be an int >= 1, got {rerank_candidates!r}"
                )
            top = max(k, int(rerank_candidates))
        if self.encoder is not None and text is not None and mode != "bm25":
            want_dense, want_sparse = produces(self.encoder)
            if (want_dense and dense is None) or (want_sparse and sparse is None):
                qd, qs = encode_query(self.encoder, text)
                dense = qd if dense is None else dense
                sparse = qs if sparse is None else sparse
        wanted = {
            "bm25": text is not None and mode in ("hybrid", "bm25"),
            "dense": dense is not None and mode in ("hybrid", "dense"),
            "sparse": sparse is not None and mode in ("hybrid", "sparse"),
        }
        if mode != "hybrid" and not wanted[mode]:
            need = {"bm25": "text=", "dense": "dense=", "sparse": "sparse="}[mode]
            raise ValueError(f"mode={mode!r} needs {need}")
        if not any(wanted.values()):
            raise ValueError("nothing to search with: give text=, dense= and/or sparse=")
        if dense is not None:
            dense = check_query_vector(dense, self._cfg.dense_dim, "dense query")
        if sparse is not None:
            sparse = tuple(np.ascontiguousarray(a) for a in sparse_vector(sparse, "sparse query"))
        if colbert is not None:
            colbert = np.asarray(colbert, dtype=np.float32)
            if colbert.ndim != 2 or not np.isfinite(colbert).all():
                raise ValueError("colbert query must be a finite 2-D array [m, d]")
        if bm25_stats is not None:
            bm25_stats = _check_bm25_stats(bm25_stats)
        if weights is not None:
            if not isinstance(weights, Mapping):
                raise TypeError(
                    f"weights must be a dict {{route: weight}}, not {type(weights).__name__}"
                )
            unknown = set(weights) - {"bm25", "dense", "sparse", "colbert"}
            if unknown:
                raise ValueError(f"weights for unknown routes {sorted(unknown)}")

        parts, snap = self._snapshot()
        if not parts:
            raise ValueError("the collection is empty")
        n = top if mode != "hybrid" else max(top, int(candidates))
        query = dict(
            text=text if wanted["bm25"] else None,
            dense=dense if wanted["dense"] else None,
            sparse=sparse if wanted["sparse"] else None,
            filter=filter or None,
            per_route=n,
            bm25_stats=bm25_stats,
        )
        names = [r for r in ("bm25", "dense", "sparse") if wanted[r]]
        if bm25_stats is not None and wanted["bm25"]:
            missing = sorted(set(self._cfg.analyzer.tokenize(text)) - set(bm25_stats[2]))
            if missing:
                raise ValueError(f"bm25_stats has no df for the query tokens {missing}")
        locate = self._locator(parts)
        if colbert is not None and mode == "hybrid":
            # ColBERT re-scores the routes' candidates, then joins the fusion.
            lists = {r: (d, s) for r, d, s in snap.route_lists(**query)}
            cands = np.unique(np.concatenate([d for d, _ in lists.values()]))
            lists["colbert"] = routes.colbert_route(locate, cands, colbert)
            ranked = self._fuse(lists, top, fusion, weights, rrf_k, normalization)
            names = list(lists)
        else:
            names, docnos, scores, per_route = snap.search(
                **query,
                top=top,
                fusion=fusion,
                rrf_k=float(rrf_k),
                normalization=normalization,
                weights=self._fusion_weights(names, fusion, weights),
            )
            ranked = [
                (s, d, {r: (None if v != v else v) for r, v in zip(names, row)})
                for s, d, row in zip(scores.tolist(), docnos.tolist(), per_route.tolist())
            ]
        if rerank is not None:
            ranked = self._rerank(rerank, text, ranked, locate, k)
        out = []
        for score, docno, route_scores in ranked:
            p, d = locate(docno)
            out.append(
                Hit(
                    id=p.seg.id(d),
                    score=float(score),
                    scores={r: route_scores.get(r) for r in (*names, "fused", "rerank")}
                    if rerank is not None
                    else {r: route_scores.get(r) for r in names},
                    text=p.seg.text(d),
                    metadata=p.seg.metadata(d),  # a new dict: a hit never aliases the store
                )
            )
        return out

    @staticmethod
    def _fusion_weights(
        names: Sequence[str], fusion: str, weights: Optional[Mapping[str, float]]
    ) -> Optional[list[float]]:
        """One weight per route in ``names`` (None: the fusion's default of 1 each)."""
        if weights is not None:
            return [float(weights.get(r, 1.0)) for r in names]
        if fusion == "m3":
            default = {"dense": 0.4, "sparse": 0.2, "colbert": 0.4, "bm25": 0.2}
            return [default[r] for r in names]
        return None

    @staticmethod
    def _fuse(
        lists: dict[str, routes.Hits],
        k: int,
        fusion: str,
        weights: Optional[Mapping[str, float]],
        rrf_k: int,
        normalization: str,
    ) -> list[tuple[float, int, dict]]:
        from densparse.fusion import fuse

        names = list(lists)
        inputs = [lists[r] for r in names]
        w = Collection._fusion_weights(names, fusion, weights)
        res = fuse(inputs, method=fusion, k=rrf_k, weights=w, normalization=normalization, top_k=k)
        out = []
        for i, (docno, s) in enumerate(zip(res.ids.tolist(), res.scores.tolist())):
            rs = res.route_scores[i]
            out.append(
                (
                    s,
                    docno,
                    {r: (None if np.isnan(rs[j]) else float(rs[j])) for j, r in enumerate(names)},
                )
            )
        return out

    @staticmethod
    def _rerank(reranker, query: str, ranked: list, locate, k: int) -> list:
        """``ranked`` re-scored by the cross-encoder (max over a document's texts), best k;
        each route-score dict gains ``fused`` and ``rerank``."""
        pairs, owner = [], []
        for i, (_, docno, _) in enumerate(ranked):
            p, d = locate(docno)
            for t in (p.seg.text(d), *p.seg.views(d)):
                pairs.append((query, t))
                owner.append(i)
        best = np.full(len(ranked), -np.inf)
        if pairs:
            scores = np.asarray(reranker.score_pairs(pairs), dtype=np.float64).reshape(-1)
            np.maximum.at(best, np.asarray(owner), scores)
        order = np.argsort(-best, kind="stable")[:k]
        return [
            (
                float(best[i]),
                ranked[i][1],
                {**ranked[i][2], "fused": ranked[i][0], "rerank": float(best[i])},
            )
            for i in order.tolist()
        ]

    @staticmethod
    def _locator(parts: Sequence[Part]):
        bases = [p.base for p in parts]

        def locate(docno: int) -> tuple[Part, int]:
            i = bisect.bisect_right(bases, docno) - 1
            return parts[i], docno - parts[i].base

        return locate

    # ------------------------------------------------------------ writing
    def _check_writable(self) -> None:
        if self._readonly:
            raise PermissionError(f"{self.path} was opened readonly")
        if self._closed or self._writer is None or not self._writer.held:
            raise RuntimeError(f"{self.path}: the collection is closed")
        if self._merge_error is not None:
            err, self._merge_error = self._merge_error, None
            raise RuntimeError(f"a background merge failed: {err!r}") from err

    def _publish(self, parts: Iterable[Part]) -> None:
        """Make a new snapshot visible to readers (one attribute store: atomic)."""
        out, base = [], 0
        for p in parts:
            if p.n_live == 0:
                continue  # fully deleted: nothing left to search
            out.append(replace(p, base=base))
            base += p.seg.n_docs
        self._parts = tuple(out)

    def _new_segment_name(self) -> str:
        n = self._manifest["next_segment"]
        self._manifest["next_segment"] = n + 1
        return f"seg-{n:06d}"

    def _build(self, recs: list[Record], name: str, show_progress: Optional[bool]) -> Segment:
        rows = sum(1 + len(r.views) for r in recs)
        with Progress(
            rows, "Collection add", wants_progress(show_progress, rows), unit="text"
        ) as tick:
            return Segment.build(name, recs, self._cfg, progress=tick)

    @staticmethod
    def _deleted(parts: tuple[Part, ...], located: Iterable[tuple[Part, int]]) -> tuple[Part, ...]:
        """``parts`` with the ``located`` (part, document) pairs marked deleted
        (copy-on-write of the touched masks)."""
        by_part: dict[int, list[int]] = {}
        index = {id(p): i for i, p in enumerate(parts)}
        for p, d in located:
            by_part.setdefault(index[id(p)], []).append(d)
        out = list(parts)
        for i, docs in by_part.items():
            live = parts[i].live.copy()
            live[docs] = False
            live.setflags(write=False)
            out[i] = replace(parts[i], live=live, n_live=int(live.sum()), live_file=None, cache={})
        return tuple(out)

    def add(
        self, records: Sequence[Mapping[str, Any]], show_progress: Optional[bool] = None
    ) -> None:
        """Add new records; an id already in the collection raises ValueError (see
        :meth:`upsert`). Records: ``{"id": str, "text": str, "views": [str, ...],
        "dense": vector or [1 + len(views), dim], "sparse": (indices, values) or {id: w},
        "colbert": [n, d], "metadata": {...}}``; only ``id`` is required."""
        self._write(records, show_progress, replace_existing=False)

    def upsert(
        self, records: Sequence[Mapping[str, Any]], show_progress: Optional[bool] = None
    ) -> None:
        """Add records, replacing any existing document with the same id."""
        self._write(records, show_progress, replace_existing=True)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Undo every in-memory change when the body raises (a failed build, a full disk
        during the commit): a write that fails changes nothing. Call with ``_lock`` held."""
        saved = (
            self._parts,
            copy.deepcopy(self._manifest),
            dict(self._digests),
            dict(self._live_digests),
            self._dirty,
        )
        try:
            yield
        except BaseException:
            parts, self._manifest, self._digests, self._live_digests, self._dirty = saved
            self._parts = parts
            raise

    def _write(self, records: Any, show_progress: Optional[bool], replace_existing: bool) -> None:
        recs = validate_records(records, self._cfg.dense_dim, self._cfg.colbert_dim)
        if not recs:
            raise ValueError("no records given")
        if self.encoder is not None:
            encode_records(self.encoder, recs, show_progress)
        with self._lock:
            self._check_writable()
            parts = self._parts
            found = self._find_many([r.id for r in recs])
            existing = [r.id for r, f in zip(recs, found) if f is not None]
            if existing and not replace_existing:
                shown = ", ".join(repr(i) for i in existing[:5])
                raise ValueError(
                    f"{len(existing)} id(s) already in the collection ({shown}...): use upsert()"
                )
            log.info("adding %d records (%d replace existing ones)", len(recs), len(existing))
            with self._transaction():
                seg = self._build(recs, self._new_segment_name(), show_progress)
                if existing:
                    parts = self._deleted(parts, [f for f in found if f is not None])
                live = np.ones(seg.n_docs, dtype=bool)
                live.setflags(write=False)
                self._publish((*parts, Part(seg, live, seg.n_docs, None)))
                self._dirty = True
                if self.autocommit:
                    self.commit()
            self._maybe_merge()

    def delete(self, ids: Union[str, Sequence[str]]) -> None:
        """Delete documents by id; an unknown id raises KeyError and deletes nothing."""
        if isinstance(ids, str):
            ids = [ids]
        ids = list(ids)
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in delete()")
        with self._lock:
            self._check_writable()
            parts = self._parts
            unknown = [i for i in ids if not isinstance(i, str)]
            found = [] if unknown else self._find_many(ids)
            unknown += [i for i, f in zip(ids, found) if f is None]
            if unknown:
                raise KeyError(f"unknown id(s): {', '.join(repr(u) for u in unknown[:5])}")
            with self._transaction():
                self._publish(self._deleted(parts, found))  # type: ignore[arg-type]
                self._dirty = True
                if self.autocommit:
                    self.commit()
            log.info("deleted %d documents", len(ids))
            self._maybe_merge()

    def _maybe_merge(self) -> None:
        """Start a background merge when the tiered policy asks for one."""
        if self.auto_merge:
            self._start_merge(self._policy_choice, background=True)

    def _policy_choice(self, parts: tuple[Part, ...]) -> list[Part]:
        live = [p.n_live for p in parts]
        total = [p.seg.n_docs for p in parts]
        return [parts[i] for i in merge_policy.plan(live, total, self.max_segments)]

    # ------------------------------------------------------------ durability
    def commit(self) -> None:
        """Make the current state durable: new segment files and deletion marks first, then
        the manifest, switched atomically. A crash at any point keeps the last commit."""
        with self._lock:
            self._check_writable()
            on_disk = store.read_manifest(self.path)["generation"]
            if on_disk != self._manifest["generation"]:
                # Only possible where the writer lock is not honoured (some network file
                # systems): never overwrite a newer state.
                raise store.CollectionLockedError(
                    f"{self.path}: generation {on_disk} on disk is not the generation "
                    f"{self._manifest['generation']} this writer opened: another writer "
                    "committed meanwhile; nothing was written"
                )
            gen = self._manifest["generation"] + 1
            root = self.path / store.SEGMENTS
            segs, parts, wrote = [], [], False
            for p in self._parts:
                name = p.seg.name
                d = root / name
                if name not in self._digests:
                    # Leftovers under this name are from a writer killed before its
                    # manifest switch: no manifest names them.
                    tmp = root / f"{name}.tmp"
                    shutil.rmtree(tmp, ignore_errors=True)
                    shutil.rmtree(d, ignore_errors=True)
                    self._digests[name] = p.seg.write(tmp)
                    os.replace(tmp, d)
                    wrote = True
                    p = replace(p, cache={})  # its reader rebinds to the mapped files
                elif BM25_FILE not in self._digests[name]:
                    # A version-1 segment: its index files are named from now on.
                    self._digests[name] = digests_of(d)
                if p.live_file is None and p.n_live < p.seg.n_docs:
                    live_name, digest = store.write_live(d, gen, p.live)
                    self._live_digests[(name, live_name)] = digest
                    p = replace(p, live_file=live_name)
                    fsync_path(d)
                parts.append(p)
                entry = {"name": name, "n_docs": p.seg.n_docs, "files": self._digests[name]}
                if p.live_file:
                    entry["live"] = p.live_file
                    entry["live_digest"] = self._live_digests[(name, p.live_file)]
                segs.append(entry)
            if wrote:
                fsync_path(root)
            manifest = store.write_manifest(
                self.path, dict(self._manifest, generation=gen, segments=segs)
            )
            self._manifest = manifest
            self._publish(parts)
            self._dirty = False
            try:
                store.collect_garbage(self.path, manifest)
            except OSError as e:  # committed all the same; the next commit retries
                log.warning("could not remove old files of %s: %s", self.path, e)
            live_names = {s["name"] for s in segs}
            self._digests = {n: v for n, v in self._digests.items() if n in live_names}
            log.info(
                "committed generation %d (%d segments, %d documents)", gen, len(segs), len(self)
            )

    # ------------------------------------------------------------ merging
    def merge(self, max_segments: int = 1, background: bool = False) -> None:
        """Merge the smallest segments until at most ``max_segments`` remain (deleted
        documents are dropped for good). Searches and writes go on during a merge;
        deletions made meanwhile are carried over. ``background=True`` returns at once."""
        if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
            raise ValueError(f"max_segments must be an int >= 1, got {max_segments!r}")

        def smallest(parts: tuple[Part, ...]) -> list[Part]:
            n_merge = len(parts) - max_segments + 1
            if n_merge >= 2:
                return sorted(parts, key=lambda p: p.seg.n_docs)[:n_merge]
            # Nothing to combine; a lone segment with deletions is rewritten to drop them.
            if max_segments == 1 and len(parts) == 1 and parts[0].n_live < parts[0].seg.n_docs:
                return [parts[0]]
            return []

        self._start_merge(smallest, background)

    def _start_merge(
        self, choose: Callable[[tuple[Part, ...]], list[Part]], background: bool
    ) -> None:
        with self._lock:
            self._check_writable()
        # One merge at a time. A foreground merge waits for a running one (which needs
        # `_lock` to finish, so the wait happens without holding it); a background merge
        # does not queue behind another.
        if not self._merge_lock.acquire(blocking=not background):
            return
        handed_over = False
        try:
            with self._lock:
                self._check_writable()
                chosen = choose(self._parts)
                if not chosen:
                    return
                name = self._new_segment_name()
                if background:
                    t = threading.Thread(
                        target=self._merge_guarded, args=(chosen, name), daemon=True
                    )
                    self._merging = t
                    t.start()
                    handed_over = True  # the thread releases the merge lock
                    return
            self._merge(chosen, name)
        finally:
            if not handed_over:
                self._merge_lock.release()

    def wait_for_merges(self) -> None:
        """Block until a background merge (if any) is done; re-raise its error."""
        t = self._merging
        if t is not None:
            t.join()
        if self._merge_error is not None:
            err, self._merge_error = self._merge_error, None
            raise RuntimeError(f"a background merge failed: {err!r}") from err

    def _merge_guarded(self, chosen: list[Part], name: str) -> None:
        try:
            self._merge(chosen, name)
        except BaseException as e:  # reported on the next write or wait_for_merges()
            log.exception("background merge failed")
            self._merge_error = e
        finally:
            self._merge_lock.release()

    def _merge(self, chosen: list[Part], name: str) -> None:
        log.info("merging %d segments (%d documents)", len(chosen), sum(p.n_live for p in chosen))
        # (segment, its live documents) in order: the merged segment's documents
        origin = [(p.seg.name, np.flatnonzero(p.live)) for p in chosen]
        merged = None
        if any(len(docs) for _, docs in origin):
            # BM25 from the postings of the live rows (no text analysed again), records
            # and vectors copied, all in the same document order.
            bm25 = _core.BM25Index.merge([(p.seg.bm25, p.live[p.seg.row_doc]) for p in chosen])
            merged = Segment.merge(name, [(p.seg, p.live) for p in chosen], self._cfg, bm25)
        with self._lock:
            current = {p.seg.name: p for p in self._parts}
            if any(p.seg.name not in current for p in chosen):
                # A source vanished meanwhile (all its documents deleted): redo next time.
                log.info("merge abandoned: its segments changed meanwhile")
                return
            live = np.concatenate([current[s].live[docs] for s, docs in origin]).astype(bool)
            live.setflags(write=False)
            gone = {p.seg.name for p in chosen}
            out, placed = [], False
            for p in self._parts:
                if p.seg.name in gone:
                    if not placed and merged is not None:
                        out.append(Part(merged, live, int(live.sum()), None))
                        placed = True
                    continue
                out.append(p)
            self._publish(out)
            self._dirty = True
            log.info("merged into %s (%d documents)", name, int(live.sum()))
            if self.autocommit:
                self.commit()

    # ------------------------------------------------------------ lifecycle
    def reload(self) -> None:
        """Re-read the last committed state from disk (a reader following a writer). A
        reader's old snapshot, and the files it pinned, are let go."""
        if self._closed:
            raise RuntimeError(f"{self.path}: the collection is closed")
        other = Collection.open(self.path, readonly=True, encoder=None)
        with self._lock:
            old_pin = self._pin
            self._manifest = other._manifest
            self._digests = other._digests
            self._live_digests = other._live_digests
            self._publish(other._parts)
            self._dirty = False
            # A writer needs no pin (it is the one that deletes files).
            self._pin = other._pin if self._readonly else None
            if not self._readonly and other._pin is not None:
                other._pin.release()
            other._pin = None
        if old_pin is not None:
            old_pin.release()

    def close(self) -> None:
        """Wait for merges, commit pending changes (if writable) and release the locks.
        Searching a closed collection still works on its last snapshot; writing raises."""
        if self._closed:
            return
        self.wait_for_merges()
        if not self._readonly and self._dirty:
            self.commit()
        self._closed = True
        if self._writer is not None:
            self._writer.release()
        if self._pin is not None:
            self._pin.release()  # open files and maps stay valid: searching still works

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_bm25_stats(stats: Any) -> tuple[int, int, dict[str, int]]:
    """``(rows, total_tokens, {token: df})`` checked: a clear error before any work."""
    if not isinstance(stats, (tuple, list)) or len(stats) != 3:
        raise TypeError("bm25_stats must be a (rows, total_tokens, {token: df}) tuple")
    rows, total, df = stats
    for name, x in (("rows", rows), ("total_tokens", total)):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"bm25_stats {name} must be an int, not {type(x).__name__}")
        if x < 0:
            raise ValueError(f"bm25_stats {name} must be >= 0, got {x!r}")
    if rows < 1:
        raise ValueError("bm25_stats rows must be >= 1 (no live documents to score)")
    if not isinstance(df, Mapping):
        raise TypeError(f"bm25_stats df must be a mapping, not {type(df).__name__}")
    out = {}
    for t, v in df.items():
        if not isinstance(t, str):
            raise TypeError(f"bm25_stats df keys must be str tokens, got {t!r}")
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= rows:
            raise ValueError(f"bm25_stats df[{t!r}] must be an int in [0, rows], got {v!r}")
        out[t] = int(v)
    return int(rows), int(total), out
