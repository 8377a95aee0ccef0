"""Cross-encoder rerankers on ONNX, no PyTorch: a query and a passage read together by a
sequence-classification transformer whose single logit is the relevance score.

Two input layouts, both produced by the model's own ``tokenizer.json`` post-processor:

- BERT family (ms-marco MiniLM cross-encoders, bge-reranker's predecessors):
  ``[CLS] query [SEP] passage [SEP]`` with ``token_type_ids`` 0 over ``[CLS] query [SEP]`` and
  1 over ``passage [SEP]``;
- XLM-R family (bge-reranker-base / -large / -v2-m3): ``<s> query </s></s> passage </s>``, no
  token types.

Truncation cuts the passage first (Hugging Face's ``only_second``): the query keeps at most
:data:`QUERY_SHARE` of ``max_length`` tokens, and the passage is cut so the pair with its special
tokens fits ``max_length``. For a query shorter than that share this is exactly
``tokenizer(query, passage, truncation="only_second", max_length=max_length)``; for a longer one,
where ``only_second`` alone would fail, the query's tail is dropped (as FlagEmbedding's rerankers
do) instead of raising.

The score is the raw logit; ``normalize=True`` applies a sigmoid (FlagReranker's
``normalize=True``, sentence-transformers' ``CrossEncoder`` default for one-label models, TEI's
``raw_scores=false``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from densparse.models.batching import (
    check_max_length,
    check_texts,
    find_pad_id,
    load_tokenizer,
    pad,
    pad_values,
    resolve_budget,
    run_batches,
)
from densparse.models.encoder import model_files, resolve_model_dir
from densparse.models.families import _max_length, _read_json
from densparse.models.session import OnnxModel

#: The largest share of ``max_length`` a query keeps; the passage gets the rest.
QUERY_SHARE = 0.75
#: The shortest ``max_length`` a caller may ask for: room for the special tokens and a token of
#: query and of passage.
MIN_LENGTH = 4
#: Architectures (config.json) that are not sequence classifiers: a clear error, not garbage.
_NOT_CLASSIFIERS = ("ForMaskedLM", "ForTokenClassification", "ForQuestionAnswering", "ForCausalLM")


def check_classifier_config(model_dir: Path) -> dict:
    """config.json of a one-label sequence classifier (``{}`` when there is none).

    Raises:
        ValueError: the config names another architecture, or more than one label.
    """
    config = _read_json(model_dir / "config.json")
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith(_NOT_CLASSIFIERS) for a in archs) or (
        archs and not any(a.endswith("ForSequenceClassification") for a in archs)
    ):
        raise ValueError(
            f"{model_dir} is not a sequence classifier (architectures {archs}); a reranker is a "
            "*ForSequenceClassification model with one label. For embedding models use "
            "densparse.Encoder."
        )
    labels = config.get("id2label")
    n_labels = len(labels) if isinstance(labels, dict) else config.get("num_labels")
    if archs and isinstance(n_labels, int) and n_labels != 1:
        raise ValueError(
            f"{model_dir} is a sequence classifier with {n_labels} labels; a reranker scores "
            "with exactly one logit (num_labels=1)"
        )
    return config


def is_reranker_dir(model_dir: Path) -> bool:
    """Whether a model directory holds a sequence classifier (config.json architectures or
    the ``densparse.json`` that ``densparse export --kind reranker`` writes)."""
    meta = _read_json(model_dir / "densparse.json")
    if meta.get("kind") == "reranker":
        return True
    archs = _read_json(model_dir / "config.json").get("architectures") or []
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


def _lengths(model_dir: Path) -> tuple[int, Optional[int]]:
    """(default max length, position limit) of a model directory: densparse.json's
    max_length, else as the Encoder reads it (tokenizer_config / config.json)."""
    config = _read_json(model_dir / "config.json")
    default, positions = _max_length(
        model_dir, config, _read_json(model_dir / "tokenizer_config.json")
    )
    return int(_read_json(model_dir / "densparse.json").get("max_length") or default), positions


def reranker_max_length(model_dir: Path) -> int:
    """The max length (tokens per pair) a :class:`Reranker` uses for ``model_dir``."""
    return _lengths(Path(model_dir))[0]


def check_pairs(pairs: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """A list of (query, passage) string pairs, or TypeError naming the bad item."""
    if isinstance(pairs, (str, bytes)):
        raise TypeError("pairs must be a list of (query, passage) pairs, not a str")
    out = []
    for i, p in enumerate(pairs):
        if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) != 2:
            raise TypeError(f"pairs[{i}] must be a (query, passage) pair of str, got {p!r:.80}")
        q, d = p[0], p[1]
        if not isinstance(q, str) or not isinstance(d, str):
            raise TypeError(
                f"pairs[{i}] must hold two str, got ({type(q).__name__}, {type(d).__name__})"
            )
        out.append((q, d))
    return out


def encode_pairs(
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    max_length: int,
    query_max_length: Optional[int] = None,
) -> list[tuple[list[int], list[int]]]:
    """Token ids and token type ids of each (query, passage) pair, special tokens included,
    truncated to ``max_length`` passage first (see the module docstring).

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (no truncation or padding set).
        pairs: (query, passage) strings.
        max_length: tokens per pair, special tokens included.
        query_max_length: tokens a query keeps at most (default ``QUERY_SHARE`` of what
            ``max_length`` leaves after the special tokens).
    """
    n_special = tokenizer.num_special_tokens_to_add(True)
    room = max_length - n_special
    if room < 2:
        raise ValueError(f"max_length={max_length} leaves no room for a query and a passage")
    q_cap = max(1, int(room * QUERY_SHARE)) if query_max_length is None else query_max_length
    q_cap = min(q_cap, room - 1)
    # Each distinct query is tokenised once (the usual call scores one query against many).
    queries = list(dict.fromkeys(q for q, _ in pairs))
    q_enc = dict(zip(queries, tokenizer.encode_batch(queries, add_special_tokens=False)))
    for e in q_enc.values():
        if len(e.ids) > q_cap:
            e.truncate(q_cap)
    p_enc = tokenizer.encode_batch([p for _, p in pairs], add_special_tokens=False)
    out = []
    for (q, _), pe in zip(pairs, p_enc):
        qe = q_enc[q]
        keep = room - len(qe.ids)
        if len(pe.ids) > keep:
            pe.truncate(keep)
        both = tokenizer.post_process(qe, pe, add_special_tokens=True)
        out.append((both.ids, both.type_ids))
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), float32, without overflow warnings for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out.astype(np.float32)


class Reranker:
    """Score (query, passage) pairs with an ONNX cross-encoder, no PyTorch.

    Create with :meth:`from_pretrained` from a directory written by
    ``densparse export --kind reranker`` (or any ONNX sequence classifier with a ``logits``
    output ``[batch, 1]`` and a ``tokenizer.json``). Thread-safe: several threads may score at
    once (onnxruntime sessions are thread-safe and release the GIL while they run; the
    tokenizer is only read).
    """

    def __init__(
        self,
        model_dir: Path,
        model: OnnxModel,
        tokenizer: Any,
        max_length: int,
        position_limit: Optional[int] = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.model = model
        self.tokenizer = tokenizer
        self._max_length = max_length
        self._position_limit = position_limit
        self._pad_id = find_pad_id(tokenizer)
        outs = model.outputs
        self._logits = "logits" if "logits" in outs else (outs[0] if len(outs) == 1 else None)
        shape = model.output_shapes.get(self._logits) if self._logits else None
        if shape is None or len(shape) != 2:
            raise ValueError(
                f"{model.path} is not a sequence classifier: a reranker graph has a 'logits' "
                f"output of shape [batch, 1] (outputs: {dict(model.output_shapes)})"
            )
        if isinstance(shape[1], int) and shape[1] != 1:
            raise ValueError(
                f"{model.path}: 'logits' has {shape[1]} labels; a reranker scores with one"
            )

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: Union[str, os.PathLike],
        provider: str = "auto",
        device_id: int = 0,
        max_length: Optional[int] = None,
        threads: Optional[int] = None,
        *,
        onnx_file: Optional[str] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        revision: Optional[str] = None,
        local_files_only: Optional[bool] = None,
    ) -> Reranker:
        """Load an ONNX cross-encoder directory or a Hugging Face repo id.

        Args:
            path_or_repo_id: a directory with an ONNX graph (``model.onnx``,
                ``onnx/model.onnx`` or its single ``*.onnx``) whose output ``logits`` is
                ``[batch, 1]``, ``tokenizer.json`` and ``config.json``; or ``"org/name"``
                resolved through ``huggingface_hub`` and its cache.
            provider: ``"auto"`` (CUDA when it comes up, else CPU), ``"cpu"`` or ``"cuda"``.
            device_id: CUDA device.
            max_length: tokens per pair, special tokens included (default: the model's, from
                densparse.json / tokenizer_config.json / config.json, at most its positions).
            threads: onnxruntime intra-op threads (default: one per physical core).
            onnx_file, cache_dir, revision, local_files_only: as
                :meth:`densparse.Encoder.from_pretrained`.

        Raises:
            ValueError: not a reranker directory (the message says what is missing or what
                the model is instead), a bad argument, or a graph onnxruntime cannot load.
        """
        model_dir = resolve_model_dir(path_or_repo_id, cache_dir, revision, local_files_only)
        check_classifier_config(model_dir)
        onnx_path, tok_path = model_files(model_dir, onnx_file, "reranker", " --kind reranker")
        tokenizer = load_tokenizer(tok_path)
        default, positions = _lengths(model_dir)
        if max_length is not None:
            default = check_max_length(max_length, positions, MIN_LENGTH)
        model = OnnxModel(onnx_path, provider=provider, device_id=device_id, threads=threads)
        return cls(model_dir, model, tokenizer, default, positions)

    # ------------------------------------------------------------------ info
    @property
    def max_length(self) -> int:
        """Tokens per (query, passage) pair, special tokens included."""
        return self._max_length

    @property
    def provider(self) -> str:
        """``"cpu"`` or ``"cuda"``: where the graph runs."""
        return self.model.provider

    @property
    def uses_token_types(self) -> bool:
        """Whether the graph reads ``token_type_ids`` (BERT family) or not (XLM-R family)."""
        return "token_type_ids" in self.model.inputs

    def __repr__(self) -> str:
        return (
            f"Reranker({str(self.model_dir)!r}, max_length={self.max_length}, "
            f"provider={self.provider!r})"
        )

    # ------------------------------------------------------------------ scoring
    def tokenize_pairs(
        self, pairs: Sequence[Sequence[str]], max_length: Optional[int] = None
    ) -> list[tuple[list[int], list[int]]]:
        """(token ids, token type ids) of each pair as the model reads it."""
        limit = (
            self.max_length
            if max_length is None
            else check_max_length(max_length, self._position_limit, MIN_LENGTH)
        )
        return encode_pairs(self.tokenizer, check_pairs(pairs), limit)

    def score_pairs(
        self,
        pairs: Sequence[Sequence[str]],
        batch_size: int = 32,
        normalize: bool = False,
        show_progress: Optional[bool] = None,
        max_tokens_per_batch: Union[int, str, None] = "auto",
        *,
        max_length: Optional[int] = None,
    ) -> np.ndarray:
        """Relevance scores of (query, passage) pairs, in input order.

        Args:
            pairs: a list of ``(query, passage)`` string pairs.
            batch_size: at most this many pairs per model call.
            normalize: apply a sigmoid (scores in (0, 1)); default raw logits.
            show_progress: a progress bar (``None``: on a terminal for 2,000+ pairs).
            max_tokens_per_batch: token budget per model call (rows x longest row), as
                :meth:`densparse.Encoder.encode`: ``"auto"`` = 2,048 on CPU, 16,384 on CUDA.
            max_length: truncate pairs at this many tokens instead of the model's max length.

        Returns:
            ``np.ndarray`` float32 ``[n]``.
        """
        encoded = self.tokenize_pairs(pairs, max_length)
        budget = resolve_budget(max_tokens_per_batch, self.model.provider)

        def run(rows):
            input_ids, mask = pad([encoded[i][0] for i in rows], self._pad_id)
            types = pad_values([encoded[i][1] for i in rows], input_ids.shape[1])
            (logits,) = self.model.run(input_ids, mask, [self._logits], types)
            if logits.shape != (len(rows), 1):  # a graph whose label axis is dynamic
                raise ValueError(
                    f"{self.model.path}: 'logits' came out {logits.shape}; a reranker gives one "
                    "score per pair ([batch, 1])"
                )
            return logits[:, 0]

        scores = run_batches(
            [len(e[0]) for e in encoded],
            batch_size,
            budget,
            show_progress,
            run,
            "rerank",
            unit="pair",
        )
        out = np.asarray(scores, dtype=np.float32).reshape(len(encoded))
        return sigmoid(out) if normalize else out

    def score(
        self,
        query: str,
        passages: Sequence[str],
        batch_size: int = 32,
        normalize: bool = False,
        show_progress: Optional[bool] = None,
        max_tokens_per_batch: Union[int, str, None] = "auto",
        *,
        max_length: Optional[int] = None,
    ) -> np.ndarray:
        """Scores of ``passages`` for one ``query`` (float32 ``[len(passages)]``, input
        order). Arguments as :meth:`score_pairs`."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        passages = check_texts(passages, "passages")
        return self.score_pairs(
            [(query, p) for p in passages],
            batch_size,
            normalize,
            show_progress,
            max_tokens_per_batch,
            max_length=max_length,
        )

    def rerank(
        self,
        query: str,
        passages: Sequence[str],
        top_k: Optional[int] = None,
        batch_size: int = 32,
        normalize: bool = False,
        show_progress: Optional[bool] = None,
        max_tokens_per_batch: Union[int, str, None] = "auto",
        *,
        max_length: Optional[int] = None,
    ) -> list[tuple[int, float]]:
        """``[(index into passages, score)]``, best first (ties: lower index first), the
        ``top_k`` best or all. Other arguments as :meth:`score_pairs`."""
        if top_k is not None and (
            not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1
        ):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        scores = self.score(
            query,
            passages,
            batch_size,
            normalize,
            show_progress,
            max_tokens_per_batch,
            max_length=max_length,
        )
        order = np.argsort(-scores, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        return [(int(i), float(scores[i])) for i in order]
