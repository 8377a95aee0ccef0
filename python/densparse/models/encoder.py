"""The torch-free Encoder: ONNX graph + tokenizers + numpy pooling."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from densparse.models import pooling as P
from densparse.models.batching import (
    check_max_length,
    check_texts,
    find_pad_id,
    load_tokenizer,
    pad,
    resolve_budget,
    run_batches,
    tokenize,
)
from densparse.models.families import ModelSpec, detect_family
from densparse.models.heads import linear, load_head
from densparse.models.session import OnnxModel

#: SPLADE batches hold at most this many logits (tokens x vocabulary), ~256 MB of float32.
SPLADE_LOGIT_BUDGET = 1 << 26

_M3_NAMES = {
    "dense": ("dense", "dense_vecs", "dense_embeddings"),
    "sparse": ("sparse", "sparse_vecs", "sparse_weights", "lexical_weights"),
    "colbert": ("colbert", "colbert_vecs"),
}
_HIDDEN_NAMES = ("last_hidden_state", "token_embeddings", "hidden_states")
_HF_PATTERNS = [
    "*.json",
    "*.onnx",
    "*.onnx_data",
    "*.onnx.data",
    "*.data",
    "onnx/*",
    "1_Pooling/*",
    "sparse_linear.*",
    "colbert_linear.*",
    "*.txt",
]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def _truthy(v: Optional[str]) -> bool:
    return (v or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def resolve_model_dir(
    path_or_repo_id: Union[str, os.PathLike],
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    revision: Optional[str] = None,
    local_files_only: Optional[bool] = None,
) -> Path:
    """A local directory as is; otherwise a Hugging Face repo id through
    ``huggingface_hub.snapshot_download`` and its cache (``local_files_only=None`` means: only
    the cache when the environment sets ``HF_HUB_OFFLINE``)."""
    if not isinstance(path_or_repo_id, (str, os.PathLike)):
        raise TypeError(f"expected a path or repo id, got {type(path_or_repo_id).__name__}")
    p = Path(path_or_repo_id).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ValueError(f"{p} is a file; pass the model directory that contains it")
        return p
    name = str(path_or_repo_id)
    if not _REPO_ID.fullmatch(name) or name.count("/") != 1:
        raise ValueError(f"{name!r} is neither an existing directory nor a Hugging Face repo id")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ImportError("resolving repo ids needs huggingface_hub") from e
    if local_files_only is None:
        local_files_only = _truthy(os.environ.get("HF_HUB_OFFLINE"))
    try:
        path = snapshot_download(
            name,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=local_files_only,
            allow_patterns=_HF_PATTERNS,
        )
    except Exception as e:
        where = "the local Hugging Face cache" if local_files_only else "the Hugging Face hub"
        raise ValueError(
            f"{name!r} is not a local directory and could not be resolved from {where}: {e}"
        ) from e
    return Path(path)


def find_onnx(model_dir: Path, onnx_file: Optional[str] = None) -> Optional[Path]:
    """model.onnx, onnx/model.onnx, or the single .onnx file of the directory (or onnx/)."""
    if onnx_file is not None:
        p = model_dir / onnx_file
        if not p.is_file():
            raise ValueError(f"{p} does not exist")
        return p
    for p in (model_dir / "model.onnx", model_dir / "onnx" / "model.onnx"):
        if p.is_file():
            return p
    cands = sorted(model_dir.glob("*.onnx")) + sorted((model_dir / "onnx").glob("*.onnx"))
    if len(cands) > 1:
        names = ", ".join(str(c.relative_to(model_dir)) for c in cands)
        raise ValueError(
            f"{model_dir} holds several ONNX files ({names}); pick one with onnx_file="
        )
    return cands[0] if cands else None


def model_files(
    model_dir: Path, onnx_file: Optional[str], what: str, export_flags: str
) -> tuple[Path, Path]:
    """(ONNX graph, tokenizer.json) of a model directory, or ValueError naming what is missing
    and the ``densparse export`` command (with ``export_flags``) that writes such a directory."""
    onnx_path = find_onnx(model_dir, onnx_file)
    tok_path = next(
        (
            p
            for p in (model_dir / "tokenizer.json", model_dir / "onnx" / "tokenizer.json")
            if p.is_file()
        ),
        None,
    )
    missing = []
    if onnx_path is None:
        missing.append("ONNX graph (model.onnx, onnx/model.onnx or one *.onnx file)")
    if tok_path is None:
        missing.append("tokenizer.json")
    if onnx_path is None or tok_path is None:
        raise ValueError(
            f"{model_dir} is not a densparse {what} directory: it has no "
            f"{' and no '.join(missing)}. "
            f"Export a checkpoint with `densparse export MODEL_DIR OUT_DIR{export_flags}`."
        )
    return onnx_path, tok_path


class Encoder:
    """Text -> vectors with an ONNX model, no PyTorch.

    Create with :meth:`from_pretrained`. Dense families (BGE v1.5, sentence-transformers,
    generic) give ``np.ndarray`` float32 ``[n, dim]``; SPLADE gives a list of
    ``{str(token id): weight}`` dicts; BGE-M3 gives FlagEmbedding's dict (``dense_vecs``,
    ``lexical_weights``, ``colbert_vecs``).

    Thread-safe: ``encode`` may be called from several threads (onnxruntime sessions are
    thread-safe; tokenisation takes a short lock).
    """

    def __init__(
        self,
        model_dir: Path,
        spec: ModelSpec,
        model: OnnxModel,
        tokenizer: Any,
        heads: Optional[dict] = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.heads = heads or {}
        self._lock = threading.Lock()
        self._pad_id = find_pad_id(tokenizer)
        outs = model.outputs
        self._hidden = next((n for n in _HIDDEN_NAMES if n in outs), None)
        single_3d = len(outs) == 1 and len(model.output_shapes[outs[0]]) == 3
        if self._hidden is None and single_3d and spec.family != "splade":
            self._hidden = outs[0]
        self._m3 = {k: next((n for n in v if n in outs), None) for k, v in _M3_NAMES.items()}
        self._logits = "logits" if "logits" in outs else (outs[0] if len(outs) == 1 else None)
        self._check_outputs()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: Union[str, os.PathLike],
        provider: str = "auto",
        device_id: int = 0,
        max_length: Optional[int] = None,
        threads: Optional[int] = None,
        family: Optional[str] = None,
        *,
        query_instruction: Optional[str] = None,
        onnx_file: Optional[str] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        revision: Optional[str] = None,
        local_files_only: Optional[bool] = None,
    ) -> Encoder:
        """Load an ONNX model directory or a Hugging Face repo id.

        Args:
            path_or_repo_id: a directory with an ONNX graph (``model.onnx``, ``onnx/model.onnx``
                or its single ``*.onnx``) and ``tokenizer.json`` (plus config.json,
                sentence-transformers files, BGE-M3 head weights when relevant), or a repo id
                ``"org/name"`` resolved through ``huggingface_hub`` and its cache.
            provider: ``"auto"`` (CUDA when onnxruntime-gpu's CUDA provider works, else CPU),
                ``"cpu"`` or ``"cuda"`` (RuntimeError when CUDA does not come up).
            device_id: CUDA device.
            max_length: tokens per input including special tokens (default: the model's,
                from sentence_bert_config.json / tokenizer_config.json / config.json).
            threads: onnxruntime intra-op threads (default: one per physical core).
            family: force ``"bge"``, ``"bge-m3"``, ``"splade"``, ``"sentence-transformers"``
                or ``"generic"`` instead of detecting it.
            query_instruction: override the family's query instruction (``""`` = none).
            onnx_file: which ONNX file, relative to the directory, when there are several.
            cache_dir, revision, local_files_only: passed to ``snapshot_download`` for repo
                ids (``local_files_only=None``: the cache only when ``HF_HUB_OFFLINE`` is set).

        Raises:
            ValueError: not a model directory (the message names what is missing), a
                bad argument, or a graph onnxruntime cannot load.
        """
        model_dir = resolve_model_dir(path_or_repo_id, cache_dir, revision, local_files_only)
        from densparse.models.reranker import is_reranker_dir

        if is_reranker_dir(model_dir):
            raise ValueError(
                f"{model_dir} is a cross-encoder (a sequence classifier scoring query-passage "
                "pairs), not an embedding model: load it with densparse.Reranker"
            )
        onnx_path, tok_path = model_files(model_dir, onnx_file, "model", "")
        tokenizer = load_tokenizer(tok_path)
        model = OnnxModel(onnx_path, provider=provider, device_id=device_id, threads=threads)
        spec = detect_family(
            model_dir, model.outputs, family=family, vocab_size=tokenizer.get_vocab_size()
        )
        if max_length is not None:
            spec = spec.with_(max_length=check_max_length(max_length, spec.position_limit))
        if query_instruction is not None:
            if not isinstance(query_instruction, str):
                raise TypeError("query_instruction must be a str")
            spec = spec.with_(query_instruction=query_instruction or None)
        heads = {}
        if spec.family == "bge-m3":
            for key, name in (("sparse", "sparse_linear"), ("colbert", "colbert_linear")):
                if key not in model.outputs and not any(n in model.outputs for n in _M3_NAMES[key]):
                    head = load_head(model_dir, name)
                    if head is not None:
                        heads[key] = head
        return cls(model_dir, spec, model, tokenizer, heads)

    def _check_outputs(self) -> None:
        f, outs = self.spec.family, self.model.outputs
        if f == "splade" and self._logits is None:
            raise ValueError(f"SPLADE model: the graph has no 'logits' output (outputs: {outs})")
        if f == "bge-m3":
            if self._m3["dense"] is None and self._hidden is None:
                raise ValueError(
                    f"BGE-M3 model: the graph has neither 'dense' nor 'last_hidden_state' ({outs})"
                )
            return
        if f != "splade" and self._hidden is None:
            raise ValueError(f"the graph has no last_hidden_state output (outputs: {outs})")

    # ------------------------------------------------------------------ info
    @property
    def family(self) -> str:
        """The model family (see :mod:`densparse.models.families`)."""
        return self.spec.family

    @property
    def max_length(self) -> int:
        """Tokens per input, special tokens included."""
        return self.spec.max_length

    @property
    def provider(self) -> str:
        """``"cpu"`` or ``"cuda"``: where the graph runs."""
        return self.model.provider

    @property
    def query_instruction(self) -> Optional[str]:
        """What :meth:`encode_queries` prepends (``None``: nothing)."""
        return self.spec.query_instruction

    @property
    def dim(self) -> Optional[int]:
        """Dense vector size (``None`` for SPLADE, or when the graph leaves it dynamic)."""
        name = (
            self._m3["dense"]
            if self.spec.family == "bge-m3" and self._m3["dense"]
            else self._hidden
        )
        if name is None or self.spec.family == "splade":
            return None
        d = self.model.output_shapes[name][-1]
        return d if isinstance(d, int) else None

    def __repr__(self) -> str:
        return (
            f"Encoder({str(self.model_dir)!r}, family={self.family!r}, "
            f"pooling={self.spec.pooling!r}, "
            f"max_length={self.max_length}, provider={self.provider!r})"
        )

    # ------------------------------------------------------------------ internals
    def _tokenize(self, texts: Sequence[str], max_length: Optional[int]):
        with self._lock:
            return tokenize(self.tokenizer, texts, max_length)

    def _run_batches(self, ids: list, batch_size, max_tokens_per_batch, show_progress, fn, desc):
        """Run ``fn(input_ids, mask)`` over length-sorted batches; returns per-row
        results in the original order (fn returns a list with one item per row)."""

        def run(rows):
            return fn(*pad([ids[i] for i in rows], self._pad_id))

        budget = resolve_budget(max_tokens_per_batch, self.model.provider)
        return run_batches([len(r) for r in ids], batch_size, budget, show_progress, run, desc)

    def _hidden_batch(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (h,) = self.model.run(input_ids, mask, [self._hidden])
        return h

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: Optional[bool] = None,
        max_tokens_per_batch: Union[int, str, None] = "auto",
        *,
        return_dense: bool = True,
        return_sparse: bool = True,
        return_colbert: bool = False,
        max_length: Optional[int] = None,
    ):
        """Encode texts (no instruction added; see :meth:`encode_queries`).

        Args:
            texts: a list of strings.
            batch_size: at most this many texts per model call.
            normalize: L2-normalise dense vectors (eps 1e-12). ColBERT rows are always
                normalised, sparse weights never.
            show_progress: a progress bar (``None``: on a terminal for 2,000+ texts).
            max_tokens_per_batch: at most this many tokens (rows x longest row, padding
                included) per model call; ``None`` = no budget; ``"auto"`` (default) =
                2,048 on CPU (bigger CPU batches are no faster and cost memory: the
                attention scores grow with rows x length^2) and 16,384 on CUDA. SPLADE caps
                it further so a batch's logits stay near 256 MB.
            return_dense, return_sparse, return_colbert: BGE-M3 only: which outputs.
            max_length: truncate at this many tokens instead of the model's max length.

        Returns:
            Dense families: ``np.ndarray`` float32 ``[n, dim]``, in input order. SPLADE: a list
            of ``{str(token id): weight}``. BGE-M3: ``{"dense_vecs": [n, dim] array,
            "lexical_weights": [dict], "colbert_vecs": [array [n_tokens - 1, dim]]}`` with
            the keys asked for.
        """
        texts = check_texts(texts)
        limit = self._limit(max_length)
        ids = [e.ids for e in self._tokenize(texts, limit)]
        fam = self.spec.family
        if fam == "splade":
            # logits are [rows, tokens, vocab] float32: keep a batch's logits near 256 MB
            cap = max(1, SPLADE_LOGIT_BUDGET // max(self.tokenizer.get_vocab_size(), 1))
            budget = resolve_budget(max_tokens_per_batch, self.model.provider)
            budget = cap if budget is None else min(budget, cap)
            return self._run_batches(
                ids, batch_size, budget, show_progress, self._splade_batch, "encode"
            )
        if fam == "bge-m3":
            want = (return_dense, return_sparse, return_colbert)
            if not any(want):
                raise ValueError(
                    "ask for at least one of return_dense, return_sparse, return_colbert"
                )

            def fn(input_ids, mask):
                return self._m3_batch(input_ids, mask, want, normalize)

            rows = self._run_batches(
                ids, batch_size, max_tokens_per_batch, show_progress, fn, "encode"
            )
            res: dict[str, Any] = {}
            if return_dense:
                res["dense_vecs"] = self._stack([r[0] for r in rows])
            if return_sparse:
                res["lexical_weights"] = [r[1] for r in rows]
            if return_colbert:
                res["colbert_vecs"] = [r[2] for r in rows]
            return res
        pool = P.DENSE_POOLINGS[self.spec.pooling]

        def dense(input_ids, mask):
            v = pool(self._hidden_batch(input_ids, mask), mask)
            return list(P.l2_normalize(v) if normalize else v)

        rows = self._run_batches(
            ids, batch_size, max_tokens_per_batch, show_progress, dense, "encode"
        )
        return self._stack(rows)

    def _stack(self, rows: list) -> np.ndarray:
        if rows:
            return np.ascontiguousarray(np.stack(rows), dtype=np.float32)
        return np.zeros((0, self.dim or 0), dtype=np.float32)

    def _limit(self, max_length: Optional[int]) -> int:
        if max_length is None:
            return self.spec.max_length
        return check_max_length(max_length, self.spec.position_limit)

    def _splade_batch(self, input_ids, mask):
        (logits,) = self.model.run(input_ids, mask, [self._logits])
        return P.splade_pool(logits, input_ids, mask)

    def _m3_batch(self, input_ids, mask, want, normalize):
        need_dense, need_sparse, need_colbert = want
        names = []
        graph_dense = need_dense and self._m3["dense"] is not None
        graph_sparse = need_sparse and self._m3["sparse"] is not None
        graph_colbert = need_colbert and self._m3["colbert"] is not None
        for flag, key in (
            (graph_dense, "dense"),
            (graph_sparse, "sparse"),
            (graph_colbert, "colbert"),
        ):
            if flag:
                names.append(self._m3[key])
        need_hidden = (
            (need_dense and not graph_dense)
            or (need_sparse and not graph_sparse)
            or (need_colbert and not graph_colbert)
        )
        if need_hidden:
            if self._hidden is None:
                raise ValueError(
                    "this BGE-M3 graph lacks the outputs asked for and last_hidden_state"
                )
            names.append(self._hidden)
        got = dict(zip(names, self.model.run(input_ids, mask, names)))
        h = got.get(self._hidden) if need_hidden else None
        n = input_ids.shape[0]
        dense = sparse = colbert = [None] * n
        if need_dense:
            d = got[self._m3["dense"]] if graph_dense else h[:, 0]
            d = d.reshape(n, -1)
            dense = list(P.l2_normalize(d) if normalize else d)
        if need_sparse:
            if graph_sparse:
                w = got[self._m3["sparse"]]
            else:
                w = np.maximum(linear(h, self._head("sparse")), 0)
            sparse = P.m3_sparse(w, input_ids, mask, self.spec.special_ids)
        if need_colbert:
            if graph_colbert:
                c = got[self._m3["colbert"]]
                colbert = P.m3_colbert(c, mask, includes_cls=c.shape[1] == input_ids.shape[1])
            else:
                c = linear(h[:, 1:], self._head("colbert"))
                colbert = P.m3_colbert(c, mask, includes_cls=False)
        return list(zip(dense, sparse, colbert))

    def _head(self, key: str):
        if key not in self.heads:
            name = f"{key}_linear"
            raise ValueError(
                f"BGE-M3 {key} vectors need a '{key}' graph output or {name} weights "
                f"({name}.safetensors / {name}.npz / {name}.weight.npy) in {self.model_dir}"
            )
        return self.heads[key]

    def encode_queries(
        self,
        queries: Sequence[str],
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: Optional[bool] = None,
        max_tokens_per_batch: Union[int, str, None] = "auto",
        *,
        query_instruction: Optional[str] = None,
        **kw: Any,
    ):
        """Encode queries: the query instruction (the family's, or ``query_instruction=``;
        ``""`` for none) is prepended to each by plain concatenation. Other arguments as
        :meth:`encode`."""
        queries = check_texts(queries, "queries")
        instr = self.spec.query_instruction if query_instruction is None else query_instruction
        if instr:
            queries = [instr + q for q in queries]
        return self.encode(
            queries, batch_size, normalize, show_progress, max_tokens_per_batch, **kw
        )

    def encode_corpus(
        self,
        corpus: Sequence[Union[str, dict]],
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: Optional[bool] = None,
        max_tokens_per_batch: Union[int, str, None] = "auto",
        **kw: Any,
    ):
        """Encode passages (never with an instruction). Items may be strings or BEIR-style
        dicts ``{"title": ..., "text": ...}`` (joined as ``title + " " + text``)."""
        if isinstance(corpus, str):
            raise TypeError("corpus must be a list, not a single str")
        texts = []
        for i, d in enumerate(corpus):
            if isinstance(d, dict):
                title, text = d.get("title") or "", d.get("text") or ""
                texts.append(f"{title} {text}".strip() if title else text)
            elif isinstance(d, str):
                texts.append(d)
            else:
                raise TypeError(f"corpus[{i}] is {type(d).__name__}, expected str or dict")
        return self.encode(texts, batch_size, normalize, show_progress, max_tokens_per_batch, **kw)

    # ------------------------------------------------------------------ token level
    def token_embeddings(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        max_tokens_per_batch: Union[int, str, None] = "auto",
        *,
        window: Optional[int] = None,
        overlap: Optional[int] = None,
        show_progress: Optional[bool] = None,
    ) -> list[np.ndarray]:
        """Per text, the ``last_hidden_state`` rows of ALL its tokens ``[n_tokens, dim]``
        (special tokens included, no truncation): texts longer than ``window`` tokens
        (default: the max length) are encoded as overlapping windows, stitched (see
        :func:`densparse.models.chunking.window_plan`)."""
        from densparse.models.chunking import stitched_hidden

        texts = check_texts(texts)
        encs = self._tokenize(texts, None)
        return stitched_hidden(
            self,
            [e.ids for e in encs],
            batch_size,
            max_tokens_per_batch,
            window,
            overlap,
            show_progress,
        )

    def chunk_embed(
        self,
        texts: Sequence[str],
        strategy: str = "fixed",
        chunk_size: Optional[int] = None,
        spans: Optional[Sequence[Sequence[tuple[int, int]]]] = None,
        late: bool = True,
        *,
        batch_size: int = 32,
        max_tokens_per_batch: Union[int, str, None] = "auto",
        long_documents: str = "windows",
        window: Optional[int] = None,
        overlap: Optional[int] = None,
        normalize: bool = True,
        show_progress: Optional[bool] = None,
    ) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
        """Chunk vectors per text, late (pooled from the whole document's token embeddings)
        or naive (each chunk encoded alone); see docs/algorithms.md, "Late chunking".

        Args:
            texts: documents.
            strategy: ``"fixed"`` (``chunk_size`` tokens per chunk, default 256),
                ``"sentences"`` (one sentence per chunk, or sentences packed up to
                ``chunk_size`` tokens when given) or ``"spans"`` (``spans[i]`` = character
                spans ``(start, end)`` of text i).
            late: pool from the whole document's token embeddings (True) or encode each
                chunk's text alone (False, naive chunking).
            long_documents: ``"windows"`` (long late chunking) or ``"truncate"``.
            window, overlap: long late chunking window length (default: max length) and
                overlap.

        Returns:
            Per text a tuple (vectors float32 ``[n_chunks, dim]``, character spans
            ``[(start, end)]``); the vectors are L2-normalised when ``normalize``.
        """
        from densparse.models.chunking import chunk_embed

        return chunk_embed(
            self,
            texts,
            strategy=strategy,
            chunk_size=chunk_size,
            spans=spans,
            late=late,
            batch_size=batch_size,
            max_tokens_per_batch=max_tokens_per_batch,
            long_documents=long_documents,
            window=window,
            overlap=overlap,
            normalize=normalize,
            show_progress=show_progress,
        )

    # ------------------------------------------------------------------ scores
    @staticmethod
    def compute_lexical_matching_score(a: dict, b: dict) -> float:
        """Sum over shared token ids of w_a * w_b (FlagEmbedding's lexical matching score)."""
        return P.compute_lexical_matching_score(a, b)

    @staticmethod
    def colbert_score(q: np.ndarray, p: np.ndarray) -> float:
        """Mean over query rows of the max over passage rows of the dot (FlagEmbedding)."""
        return P.colbert_score(q, p)
