"""Fine-tune a dense embedding model with InfoNCE (FlagEmbedding's recipe; docs/algorithms.md),
or a cross-encoder reranker with group cross-entropy (``kind="reranker"``,
:mod:`densparse.train.reranker`).

Typical use::

    from densparse.train import TrainConfig, Trainer

    cfg = TrainConfig(train="train.jsonl", model="models/minilm", out="runs/ft",
                      dev="data/scifact", dev_split="test", epochs=1, group_size=8)
    result = Trainer(cfg).train()       # checks every input first, then trains
    result.onnx_dir                     # densparse.Encoder.from_pretrained(result.onnx_dir)

What :class:`Trainer` does:

* **Checks first.** The training file is read and validated (``densparse.train.data``), the model
  directory, dev dataset (qrels naming documents absent from the corpus are an error), every
  setting and the output directory are checked before any training starts.
* **Groups.** For each training record: the query (with the query instruction, or the record's
  ``prompt``), one positive drawn from ``pos`` and ``group_size - 1`` negatives drawn from
  ``neg`` (without replacement when there are enough, otherwise from ``neg`` repeated, like
  FlagEmbedding). ``group_size = 1`` trains on in-batch negatives only.
* **Loss.** :func:`densparse.train.loss.info_nce` on L2-normalised embeddings, temperature
  ``temperature``, in-batch negatives unless ``in_batch=False``.
* **Optimisation.** AdamW (weight decay on everything but biases and LayerNorm weights), linear
  warmup over ``warmup_ratio`` of the steps then linear decay to 0, gradient clipping at
  ``max_grad_norm``, ``grad_accum`` micro-batches per step, fp16/bf16 autocast on CUDA only
  (fp32 on CPU, logged), optional gradient checkpointing, a fixed seed.
* **Pooling** follows the model family (:func:`densparse.models.families.detect_family`): CLS
  for BGE and BGE-M3, the ``1_Pooling`` mode for sentence-transformers, mean otherwise.
* **Evaluation** on the dev split at step 0 (``eval_at_start``), every ``eval_steps`` steps and at
  the end: the model being trained encodes the dev queries and corpus (title + " " + text),
  exact inner-product search with :class:`densparse.DenseIndex`, nDCG@10 / Recall@100 /
  MRR@10 with :func:`densparse.eval.evaluate`.
* **Outputs** in ``out``: ``train_log.csv`` (step, epoch, loss, lr, grad_norm, elapsed_s),
  ``dev_metrics.csv``, ``training.png`` (loss and dev nDCG@10 over steps), ``tensorboard/``
  (when tensorboard is installed), ``train_config.json``, ``checkpoint-<step>/`` every
  ``save_steps`` steps, ``final/`` (a Hugging Face model directory with the tokenizer, the
  sentence-transformers files of the source model and a ``densparse.json`` naming family,
  pooling and query instruction) and ``onnx/`` (its ONNX export, loadable by
  ``densparse.Encoder.from_pretrained``).

With ``kind="reranker"`` the same loop (checks, optimisation, logs, plot, checkpoints, export)
trains a sequence classifier with one logit on the (query, passage) pairs of each group; the
loss, the dev evaluation (BM25 top-``eval_candidates`` reranked) and the outputs are described
in :mod:`densparse.train.reranker`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from densparse._progress import on_terminal
from densparse.export.files import ST_FILES
from densparse.export.kinds import WEIGHT_FILES

log = logging.getLogger("densparse.train")

PathLike = Union[str, os.PathLike]

DEV_METRICS = ("ndcg@10", "recall@100", "mrr@10")
#: What a run fine-tunes: a dense embedding model or a cross-encoder reranker.
KINDS = ("embedder", "reranker")
_INSTALL = 'fine-tuning needs torch and transformers: pip install "densparse[train]"'
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "vocab.json",
)
#: Files of the source model directory copied into every checkpoint (sentence-transformers
#: layout, BGE-M3 heads) so the family and pooling survive fine-tuning.
_COPY_FILES = (*ST_FILES, "colbert_linear.pt", "sparse_linear.pt")
_COPY_DIRS = ("1_Pooling", "2_Normalize")
_EXPORT_KIND = {"bge": "bge", "bge-m3": "m3", "sentence-transformers": "st"}


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    return torch


# --------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig:
    """Every setting of a fine-tuning run (the keys of a ``--config`` JSON/TOML file).

    Attributes:
        kind: ``"embedder"`` (InfoNCE on pooled embeddings) or ``"reranker"`` (a
            cross-encoder: group cross-entropy over one logit per (query, passage) pair).
        train: training JSONL (``{"query", "pos": [...], "neg": [...]}`` per line).
        model: Hugging Face model directory to start from (BERT / XLM-R / MiniLM,
            sentence-transformers or plain).
        out: output directory (must be empty or absent unless ``overwrite``).
        dev: optional BEIR dataset folder for periodic evaluation; ``dev_split`` its qrels.
        epochs: passes over the training file (ignored when ``max_steps`` > 0).
        max_steps: stop after this many optimizer steps (0 = ``epochs`` decide).
        lr: peak learning rate of AdamW. ``weight_decay``: its decoupled weight decay.
        head_lr: peak learning rate of the parameters the model directory did not hold (a
            reranker's fresh classification head); ``None`` = ``lr``. A fresh head trained
            at an encoder's small rate needs many steps before the scores move.
        batch_size: queries per micro-batch (B); each brings ``group_size`` passages.
        group_size: G = 1 positive + G - 1 hard negatives per query (1 = in-batch only;
            a reranker needs G >= 2).
        temperature: tau of the InfoNCE loss (FlagEmbedding 0.02; sentence-transformers 0.05);
            not used by rerankers.
        in_batch: use the other queries' passages as negatives too (embedders only: a
            cross-encoder scores its own pairs).
        warmup_ratio: fraction of the steps with linear warmup (then linear decay to 0).
        grad_accum: micro-batches per optimizer step.
        max_grad_norm: gradient clipping (0 = off).
        query_max_len, passage_max_len: tokens per query / passage (special tokens included;
            embedders).
        max_length: rerankers: tokens per (query, passage) pair, special tokens included;
            the query keeps at most 3/4 of them and the passage is cut to fill the rest
            (capped at the model's position embeddings).
        query_instruction: prepended to training and dev queries; ``None`` = the family's
            (BGE: its English/Chinese instruction; others none), ``""`` = none. A record's
            ``prompt`` field wins over it. Embedders only: a reranker reads queries as
            they are.
        pooling: ``cls`` / ``mean`` / ``max`` / ``mean_sqrt_len``; ``None`` = the family's
            (embedders only).
        eval_steps: evaluate on ``dev`` every N steps (0 = at the start and the end only).
        eval_at_start: also evaluate the untouched model at step 0.
        eval_batch_size: texts (rerankers: pairs) per forward pass on the dev set.
        eval_max_queries: evaluate on a fixed random sample (``seed``) of this many dev
            queries (0 = all), to bound the cost of each evaluation.
        eval_candidates: rerankers: BM25 candidates reranked per dev query.
        save_steps: write ``checkpoint-<step>/`` every N steps (0 = the final model only).
        logging_steps: log a line (and a progress-bar postfix) every N steps.
        seed: seeds Python's, numpy's and torch's generators (data order, sampling, dropout).
        fp16, bf16: autocast on CUDA (ignored with a log line on CPU).
        grad_checkpointing: trade compute for activation memory.
        device: ``"cuda"``, ``"cpu"``... (default: CUDA when available).
        export: export ``final/`` to ONNX in ``out/onnx`` at the end.
        export_kind: the exporter's ``kind`` (default: from the family; ``"reranker"`` for
            rerankers).
        tensorboard: log to ``out/tensorboard`` when tensorboard is installed.
        wandb: log to Weights & Biases (when installed; a warning otherwise);
            ``wandb_project`` its project.
        quiet: no progress bars.
        overwrite: allow a non-empty ``out``.
    """

    train: Optional[str] = None
    model: Optional[str] = None
    out: Optional[str] = None
    dev: Optional[str] = None
    dev_split: str = "test"
    kind: str = "embedder"
    epochs: int = 1
    max_steps: int = 0
    lr: float = 2e-5
    head_lr: Optional[float] = None
    weight_decay: float = 0.01
    batch_size: int = 16
    group_size: int = 8
    temperature: float = 0.02
    in_batch: bool = True
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    query_max_len: int = 64
    passage_max_len: int = 256
    max_length: int = 512
    query_instruction: Optional[str] = None
    pooling: Optional[str] = None
    eval_steps: int = 0
    eval_at_start: bool = True
    eval_batch_size: int = 64
    eval_max_queries: int = 0
    eval_candidates: int = 100
    save_steps: int = 0
    logging_steps: int = 10
    seed: int = 42
    fp16: bool = False
    bf16: bool = False
    grad_checkpointing: bool = False
    device: Optional[str] = None
    export: bool = True
    export_kind: Optional[str] = None
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "densparse"
    quiet: bool = False
    overwrite: bool = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; keys may use ``-`` or ``_``; unknown keys are an error."""
        if not isinstance(values, dict):
            raise ValueError(f"a config must be a mapping, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        clean = {}
        for key, value in values.items():
            k = str(key).replace("-", "_")
            if k not in names:
                raise ValueError(f"unknown config key {key!r} (known: {', '.join(sorted(names))})")
            clean[k] = value
        return cls(**clean)

    @classmethod
    def from_file(cls, path: PathLike, **overrides: Any) -> TrainConfig:
        """Read a JSON (``.json``) or TOML (``.toml``) file; ``overrides`` win over it.

        A TOML file may hold the keys at the top level or under a ``[finetune]`` table.
        """
        return cls.from_dict({**read_config_file(path), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise ValueError/TypeError for a setting that cannot work (no file is read)."""
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("train", "model", "out"):
            v = getattr(self, name)
            if v is None or str(v) == "":
                raise ValueError(f"{name} is required (--{name})")
        ints = {
            "epochs": 1,
            "max_steps": 0,
            "batch_size": 1,
            "group_size": 1,
            "grad_accum": 1,
            "query_max_len": 2,
            "passage_max_len": 2,
            "max_length": 4,
            "eval_steps": 0,
            "eval_batch_size": 1,
            "eval_max_queries": 0,
            "eval_candidates": 1,
            "save_steps": 0,
            "logging_steps": 1,
        }
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
            if v < low:
                raise ValueError(f"{name} must be >= {low}, got {v}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        floats = {"lr": (0.0, False), "temperature": (0.0, False)}
        for name, (low, inclusive) in floats.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"{name} must be a number, got {v!r}")
            if v < low or (v == low and not inclusive):
                raise ValueError(f"{name} must be > {low}, got {v}")
        if self.head_lr is not None:
            v = self.head_lr
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"head_lr must be a number or None, got {v!r}")
            if v <= 0:
                raise ValueError(f"head_lr must be > 0, got {v}")
        for name in ("weight_decay", "max_grad_norm"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if not (isinstance(self.warmup_ratio, (int, float)) and 0 <= self.warmup_ratio < 1):
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        for name in (
            "in_batch",
            "eval_at_start",
            "fp16",
            "bf16",
            "grad_checkpointing",
            "export",
            "tensorboard",
            "wandb",
            "quiet",
            "overwrite",
        ):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.fp16 and self.bf16:
            raise ValueError("fp16 and bf16 are exclusive: pick one")
        if self.kind == "reranker":
            self._validate_reranker()
            return
        if self.group_size < 2 and not self.in_batch:
            raise ValueError(
                "group_size must be >= 2 without in-batch negatives (1 positive + at least one "
                "negative); group_size=1 only works with in-batch negatives"
            )
        if self.group_size == 1 and self.batch_size < 2:
            raise ValueError(
                "group_size=1 with batch_size=1 leaves no negative: raise batch_size or group_size"
            )
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.query_instruction is not None and not isinstance(self.query_instruction, str):
            raise TypeError("query_instruction must be a string")
        if self.export_kind is not None and self.export_kind not in ("bge", "m3", "splade", "st"):
            raise ValueError(f"export_kind must be bge, m3, splade or st, got {self.export_kind!r}")

    def _validate_reranker(self) -> None:
        if self.group_size < 2:
            raise ValueError(
                f"a reranker learns from groups of 1 positive + G-1 negatives: group_size must "
                f"be >= 2, got {self.group_size}"
            )
        for name in ("pooling", "query_instruction"):
            if getattr(self, name):
                raise ValueError(f"{name} is for embedders; a reranker reads the pair as it is")
        if self.export_kind not in (None, "reranker"):
            raise ValueError(
                f"a reranker exports with export_kind 'reranker', got {self.export_kind!r}"
            )


def read_config_file(path: PathLike) -> dict[str, Any]:
    """The mapping in a JSON or TOML config file (by extension; JSON when unknown)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: config file not found")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".toml":
        try:
            import tomllib  # Python 3.11+
        except ImportError:  # pragma: no cover - Python < 3.11
            try:
                import tomli as tomllib
            except ImportError as e:
                raise ImportError("TOML configs need Python 3.11+ or `pip install tomli`") from e
        try:
            data = tomllib.loads(text)
        except Exception as e:
            raise ValueError(f"{p} is not valid TOML: {e}") from e
        if isinstance(data.get("finetune"), dict):
            data = data["finetune"]
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{p} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{p}: the config must be a mapping of keys to values")
    return data


POOLINGS = ("cls", "mean", "max", "mean_sqrt_len")


# --------------------------------------------------------------------------- data checks
def load_training_records(path: PathLike, group_size: int) -> list[dict]:
    """Read and check a training JSONL for a run with ``group_size``.

    Raises:
        ValueError: an empty or malformed file (line numbers in the message), a record without
            a positive, or (``group_size`` > 1) a record without negatives.
    """
    from densparse.train.data import read_jsonl

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: training file not found")
    records = read_jsonl(p, require_neg=group_size > 1)
    if not records:
        raise ValueError(f"{p}: the training file holds no record")
    for n, r in enumerate(records, 1):
        if not r.get("pos"):
            raise ValueError(f"{p}: record {n} has no positive passage ('pos' is empty)")
        if group_size > 1 and not r.get("neg"):
            raise ValueError(
                f"{p}: record {n} has no negative passage but group_size={group_size} needs "
                f"{group_size - 1} per query: mine some (`densparse mine`) or train with "
                "group_size=1 (in-batch negatives only)"
            )
    return records


def check_model_dir(path: PathLike) -> Path:
    """A Hugging Face model directory: config.json, weights and tokenizer files."""
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"{p}: model directory not found")
    if not (p / "config.json").is_file():
        raise ValueError(f"{p} is not a Hugging Face model directory: it has no config.json")
    if not any((p / f).is_file() for f in WEIGHT_FILES):
        raise ValueError(
            f"{p} is not a Hugging Face model directory: no weights "
            f"({' / '.join(WEIGHT_FILES[:2])}); ONNX-only directories cannot be fine-tuned"
        )
    if not any((p / f).is_file() for f in _TOKENIZER_FILES):
        raise ValueError(f"{p} has no tokenizer files ({', '.join(_TOKENIZER_FILES)})")
    try:
        cfg = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{p / 'config.json'} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise ValueError(f"{p / 'config.json'} names no model_type: not a transformers model")
    return p


def load_dev(path: PathLike, split: str):
    """Load a BEIR dev split; qrels naming documents absent from the corpus are an error."""
    from densparse.eval import load_beir

    ds = load_beir(path, split=split)
    unknown = sorted({d for judged in ds.qrels.values() for d in judged if d not in ds.corpus})
    if unknown:
        shown = ", ".join(repr(d) for d in unknown[:5])
        raise ValueError(
            f"{path}: qrels/{split} name {len(unknown)} documents absent from corpus.jsonl "
            f"(e.g. {shown})"
        )
    if not any(g > 0 for judged in ds.qrels.values() for g in judged.values()):
        raise ValueError(f"{path}: qrels/{split} hold no relevant judgement")
    if not ds.corpus:
        raise ValueError(f"{path}: the corpus is empty")
    return ds


# --------------------------------------------------------------------------- torch model
def pool(hidden, mask, mode: str):
    """Sentence embeddings [B, d] from token states [B, L, d] and the attention mask."""
    torch = _torch()
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, -1e9).max(dim=1).values
    total = (hidden * m).sum(dim=1)
    count = m.sum(dim=1).clamp(min=1e-9)
    if mode == "mean":
        return total / count
    if mode == "mean_sqrt_len":
        return total / torch.sqrt(count)
    raise ValueError(f"unknown pooling {mode!r}")


class TorchEmbedder:
    """A transformers model + tokenizer + pooling: embeddings with or without gradients.

    Create with :meth:`from_pretrained`; :meth:`embed` keeps the graph (training),
    :meth:`encode` is batched, length-sorted and gradient-free (evaluation) and returns
    float32 numpy rows in the input order.
    """

    def __init__(self, model, tokenizer, spec, pooling: str, query_instruction: Optional[str]):
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.pooling = pooling
        self.query_instruction = query_instruction or None

    @classmethod
    def from_pretrained(
        cls,
        model_dir: PathLike,
        *,
        pooling: Optional[str] = None,
        query_instruction: Optional[str] = None,
        device: Optional[str] = None,
    ) -> TorchEmbedder:
        """Load ``model_dir`` (checked by :func:`check_model_dir`) with the family's pooling
        and query instruction unless given (``query_instruction=""``: none)."""
        torch = _torch()
        from transformers import AutoModel, AutoTokenizer

        from densparse.models.families import detect_family

        model_dir = check_model_dir(model_dir)
        spec = detect_family(model_dir)
        if spec.family == "splade":
            raise ValueError(
                f"{model_dir} is a SPLADE (masked-LM) model; densparse fine-tunes dense "
                "embedding models only"
            )
        if pooling is None:
            pooling = "cls" if spec.pooling == "m3" else spec.pooling
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        instruction = spec.query_instruction if query_instruction is None else query_instruction
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            model = AutoModel.from_pretrained(str(model_dir))
        except Exception as e:
            raise ValueError(f"{model_dir}: transformers cannot load this model: {e}") from e
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{model_dir}: a fast tokenizer (tokenizer.json) is needed")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        return cls(model, tokenizer, spec, pooling, instruction)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def queries(self, texts: Sequence[str], prompts: Optional[Sequence[Optional[str]]] = None):
        """Queries with their instruction (a per-query ``prompt`` wins over the default)."""
        out = []
        for i, t in enumerate(texts):
            prompt = prompts[i] if prompts is not None else None
            prefix = prompt if prompt is not None else (self.query_instruction or "")
            out.append(prefix + t)
        return out

    def embed(self, texts: Sequence[str], max_len: int):
        """L2-normalised embeddings [n, d] of ``texts`` as they are (graph kept)."""
        torch = _torch()
        enc = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_len,
            return_tensors="pt",
        )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state
        return torch.nn.functional.normalize(
            pool(hidden, enc["attention_mask"], self.pooling), dim=-1
        )

    def encode(
        self,
        texts: Sequence[str],
        max_len: int,
        batch_size: int = 64,
        show_progress: bool = False,
        desc: str = "encoding",
        autocast_dtype=None,
    ) -> np.ndarray:
        """Gradient-free, length-sorted batches; float32 [n, d] in the input order."""
        torch = _torch()
        texts = list(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: Optional[np.ndarray] = None

        def run(idx: list[int]) -> None:
            nonlocal out
            with _autocast(torch, self.device, autocast_dtype):
                vec = self.embed([texts[i] for i in idx], max_len)
            vec = vec.float().cpu().numpy()
            if out is None:
                out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec

        no_grad_batches(self.model, order, batch_size, run, show_progress, desc, "text")
        if out is None:
            raise ValueError("nothing to encode")
        return out

    def save(self, out_dir: PathLike, source_dir: Optional[PathLike] = None, extra=None) -> Path:
        """Write a Hugging Face model directory (weights, config, tokenizer), the source's
        sentence-transformers / head files, and ``densparse.json`` (family, pooling, query
        instruction) so detection after fine-tuning gives the same model family."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out), safe_serialization=True)
        self.tokenizer.save_pretrained(str(out))
        if source_dir is not None:
            src = Path(source_dir)
            for name in _COPY_FILES:
                if (src / name).is_file():
                    shutil.copy2(src / name, out / name)
            for name in _COPY_DIRS:
                if (src / name).is_dir():
                    shutil.copytree(src / name, out / name, dirs_exist_ok=True)
        meta = {
            "family": self.spec.family,
            "pooling": "m3" if self.spec.family == "bge-m3" else self.pooling,
            "query_instruction": self.query_instruction or "",
        }
        if self.spec.language:
            meta["language"] = self.spec.language
        if extra:
            meta["fine_tuned"] = extra
        (out / "densparse.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return out


def no_grad_batches(
    model,
    order: Sequence[int],
    batch_size: int,
    fn: Callable[[list[int]], None],
    show_progress: bool = False,
    desc: str = "",
    unit: str = "text",
) -> None:
    """Call ``fn(indices)`` for each run of ``batch_size`` indices of ``order``, without
    gradients and with ``model`` in eval mode (its mode restored after); a progress bar when
    ``show_progress``."""
    torch = _torch()
    was_training = model.training
    model.eval()
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc=desc, unit=unit, dynamic_ncols=True, leave=False)
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = list(order[start : start + batch_size])
                fn(idx)
                if bar is not None:
                    bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _autocast(torch, device, dtype):
    if dtype is None or getattr(device, "type", str(device)) != "cuda":
        return _NullContext()
    return torch.autocast("cuda", dtype=dtype)


def evaluate_dense(
    embedder: TorchEmbedder,
    dataset,
    *,
    query_max_len: int = 64,
    passage_max_len: int = 256,
    batch_size: int = 64,
    k: int = 100,
    metrics: Sequence[str] = DEV_METRICS,
    show_progress: bool = False,
    autocast_dtype=None,
) -> dict[str, float]:
    """Encode a BEIR split with the torch model, exact dense search, densparse metrics."""
    from densparse.dense import DenseIndex
    from densparse.eval import evaluate
    from densparse.train.data import corpus_texts

    doc_ids, docs = corpus_texts(dataset.corpus)
    qids = list(dataset.queries)
    d_vecs = embedder.encode(
        docs, passage_max_len, batch_size, show_progress, "dev corpus", autocast_dtype
    )
    q_vecs = embedder.encode(
        embedder.queries([dataset.queries[q] for q in qids]),
        query_max_len,
        batch_size,
        show_progress,
        "dev queries",
        autocast_dtype,
    )
    index = DenseIndex(d_vecs.shape[1])
    index.add(d_vecs)
    ids, scores = index.search(q_vecs, k=min(k, len(doc_ids)))
    run = {
        q: {doc_ids[int(i)]: float(s) for i, s in zip(ids[n], scores[n]) if i >= 0}
        for n, q in enumerate(qids)
    }
    return evaluate(dataset.qrels, run, metrics=list(metrics))


# --------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        out_dir, final_dir: the run directory and its ``final/`` model directory.
        onnx_dir: the ONNX export (``None`` when ``export=False``).
        export_report: the exporter's report (per-output max |diff| vs torch).
        steps: optimizer steps done. ``train_seconds``: wall time of the training loop.
        losses: ``[(step, loss)]``. ``dev``: ``[{"step": s, "ndcg@10": ...}, ...]``.
        train_csv, dev_csv, plot: the log files (``dev_csv`` only with a dev set).
        checkpoints: the ``checkpoint-<step>`` directories written.
        baseline: the dev metrics of the task's reference run with its name under ``"model"``
            (rerankers: BM25 alone, ``{"model": "bm25", "ndcg@10": ...}``), else ``None``.
    """

    out_dir: Path
    final_dir: Path
    onnx_dir: Optional[Path]
    export_report: Any
    steps: int
    train_seconds: float
    losses: list[tuple[int, float]]
    dev: list[dict[str, float]]
    train_csv: Path
    dev_csv: Optional[Path]
    plot: Optional[Path]
    checkpoints: list[Path] = field(default_factory=list)
    baseline: Optional[dict[str, Any]] = None


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Checks a :class:`TrainConfig`'s inputs on construction, trains with :meth:`train`.

    The model side of a run — the torch model, its batches, loss, dev evaluation, saving and
    export kind — is a *task*: :class:`EmbedderTask` for ``kind="embedder"`` (its model is
    ``trainer.embedder``) and :class:`densparse.train.reranker.RerankerTask` for
    ``kind="reranker"`` (``trainer.reranker``); everything else (checks, optimiser, schedule,
    accumulation, clipping, autocast, logs, plot, checkpoints, export) is shared.

    Raises (from the constructor, before anything is written or trained):
        ValueError / TypeError: a bad setting, an empty or malformed training file, a model
            directory that is not a model, a dev split whose qrels name unknown documents,
            a non-empty output directory without ``overwrite``.
        FileNotFoundError: a missing training file, dev folder or qrels split.
        ImportError: torch / transformers missing.
    """

    def __init__(self, config: TrainConfig) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"expected a TrainConfig, got {type(config).__name__}")
        config.validate()
        self.config = cfg = config
        self.out = Path(cfg.out)
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"{self.out} exists and is not a directory")
        if self.out.is_dir() and any(self.out.iterdir()) and not cfg.overwrite:
            raise ValueError(f"{self.out} is not empty; pass overwrite=True (--overwrite)")
        self.records = load_training_records(cfg.train, cfg.group_size)
        if cfg.group_size == 1 and len(self.records) < 2:
            raise ValueError(
                "group_size=1 (in-batch negatives only) needs at least 2 training records"
            )
        self.model_dir = check_model_dir(cfg.model)
        self.dev = load_dev(cfg.dev, cfg.dev_split) if cfg.dev else None
        if self.dev is not None and cfg.eval_max_queries:
            self.dev = sample_queries(self.dev, cfg.eval_max_queries, cfg.seed)
        torch = _torch()
        self.torch = torch
        if cfg.export:  # the final export must not fail for a missing package after training
            try:
                from densparse.export._deps import require_all
            except ImportError as e:
                raise ImportError(f"export=True needs densparse.export: {e}") from e
            require_all()
        if cfg.quiet:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        _seed_everything(cfg.seed)
        if cfg.kind == "reranker":
            from densparse.train.reranker import RerankerTask

            self.task = RerankerTask(self.model_dir, cfg, self.records, self.dev)
            self.reranker = self.task.reranker
        else:
            self.task = EmbedderTask(self.model_dir, cfg, self.records)
            self.embedder = self.task.embedder
        self.device = self.task.device
        self.autocast_dtype = None
        if cfg.fp16 or cfg.bf16:
            if self.device.type == "cuda":
                self.autocast_dtype = torch.float16 if cfg.fp16 else torch.bfloat16
            else:
                log.info(
                    "%s autocast asked for but training runs on %s: staying in fp32",
                    "fp16" if cfg.fp16 else "bf16",
                    self.device.type,
                )
        n_batches = math.ceil(len(self.records) / cfg.batch_size)
        self.steps_per_epoch = max(1, math.ceil(n_batches / cfg.grad_accum))
        self.total_steps = cfg.max_steps or self.steps_per_epoch * cfg.epochs
        self.task.describe(self.total_steps, self.steps_per_epoch)

    # ------------------------------------------------------------------ training
    def _optimizer(self):
        torch = self.torch
        from transformers import get_linear_schedule_with_warmup

        cfg = self.config
        fresh = self.task.fresh_parameters if cfg.head_lr is not None else frozenset()
        decay, no_decay, head_decay, head_no_decay = [], [], [], []
        for name, p in self.task.model.named_parameters():
            if not p.requires_grad:
                continue
            lname = name.lower()
            plain = "bias" in lname or "norm" in lname
            if name in fresh:
                (head_no_decay if plain else head_decay).append(p)
            else:
                (no_decay if plain else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        for params, wd in ((head_decay, cfg.weight_decay), (head_no_decay, 0.0)):
            if params:
                groups.append({"params": params, "weight_decay": wd, "lr": cfg.head_lr})
        if head_decay or head_no_decay:
            log.info("fresh parameters %s train at lr %g", sorted(fresh), cfg.head_lr)
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
        warmup = round(self.config.warmup_ratio * self.total_steps)
        sched = get_linear_schedule_with_warmup(opt, warmup, self.total_steps)
        return opt, sched

    def _evaluate(self, step: int, t0: float, writers) -> dict[str, float]:
        t = time.perf_counter()
        res = self.task.evaluate(
            self.dev,
            show_progress=not self.config.quiet and on_terminal(),
            autocast_dtype=self.autocast_dtype,
        )
        row = {"step": step, **res, "elapsed_s": round(time.perf_counter() - t0, 2)}
        log.info(
            "step %d dev: %s (%.1fs)",
            step,
            ", ".join(f"{k} {v:.4f}" for k, v in res.items()),
            time.perf_counter() - t,
        )
        writers.dev(row if self.task.dev_label is None else {**row, "model": self.task.dev_label})
        return row

    def _baseline(self, t0: float, writers) -> Optional[dict[str, float]]:
        """The task's reference run on the dev set (rerankers: BM25 alone), logged once."""
        res = self.task.baseline(self.dev)
        if res is None:
            return None
        label, metrics = res
        row = {"step": 0, **metrics, "elapsed_s": round(time.perf_counter() - t0, 2)}
        log.info("dev %s: %s", label, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        writers.dev({**row, "model": label}, prefix=f"dev_{label}")
        return {"model": label, **metrics}

    def train(self) -> TrainResult:
        """Train, evaluate, checkpoint, plot and export; returns a :class:`TrainResult`."""
        torch, cfg, task = self.torch, self.config, self.task
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "train_config.json").write_text(
            json.dumps(cfg.to_dict(), indent=2, default=str), encoding="utf-8"
        )
        if cfg.grad_checkpointing:
            _checkpointing(task.model, True)
        opt, sched = self._optimizer()
        scaler = None
        if self.autocast_dtype is torch.float16:
            scaler = torch.amp.GradScaler("cuda")
        writers = _Writers(self.out, cfg, self.dev is not None, task.dev_label is not None)
        losses: list[tuple[int, float]] = []
        dev_rows: list[dict[str, float]] = []
        checkpoints: list[Path] = []
        baseline = None
        t0 = time.perf_counter()
        try:
            if self.dev is not None:
                baseline = self._baseline(t0, writers)
                if cfg.eval_at_start:
                    dev_rows.append(self._evaluate(0, t0, writers))
            task.model.train()
            batches = task.batches()
            bar = None
            if not cfg.quiet and on_terminal():
                from tqdm.auto import tqdm

                bar = tqdm(total=self.total_steps, desc="fine-tuning", unit="step")
            step, epoch = 0, 0
            while step < self.total_steps:
                total = 0.0
                for _ in range(cfg.grad_accum):
                    epoch, batch = next(batches)
                    with _autocast(torch, self.device, self.autocast_dtype):
                        loss = task.loss(batch) / cfg.grad_accum
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"the loss became {float(loss)} at step {step + 1}: lower the "
                            f"learning rate{task.nan_hint}"
                        )
                    (scaler.scale(loss) if scaler else loss).backward()
                    total += float(loss.detach())
                if scaler:
                    scaler.unscale_(opt)
                grad_norm = float("nan")
                if cfg.max_grad_norm > 0:
                    grad_norm = float(
                        torch.nn.utils.clip_grad_norm_(task.model.parameters(), cfg.max_grad_norm)
                    )
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                lr = sched.get_last_lr()[0]
                losses.append((step, total))
                writers.train(
                    {
                        "step": step,
                        "epoch": epoch,
                        "loss": round(total, 6),
                        "lr": lr,
                        "grad_norm": round(grad_norm, 6),
                        "elapsed_s": round(time.perf_counter() - t0, 2),
                    }
                )
                if bar is not None:
                    bar.update(1)
                    if step % cfg.logging_steps == 0:
                        bar.set_postfix(loss=f"{total:.4f}", lr=f"{lr:.2e}")
                if step % cfg.logging_steps == 0 or step == self.total_steps:
                    recent = [v for _, v in losses[-cfg.logging_steps :]]
                    log.info(
                        "step %d/%d epoch %d loss %.4f (mean of last %d) lr %.3g",
                        step,
                        self.total_steps,
                        epoch,
                        sum(recent) / len(recent),
                        len(recent),
                        lr,
                    )
                last = step == self.total_steps
                if self.dev is not None and (
                    last or (cfg.eval_steps and step % cfg.eval_steps == 0)
                ):
                    dev_rows.append(self._evaluate(step, t0, writers))
                    task.model.train()
                if cfg.save_steps and step % cfg.save_steps == 0 and not last:
                    checkpoints.append(self._save(self.out / f"checkpoint-{step}", step))
            if bar is not None:
                bar.close()
            train_seconds = time.perf_counter() - t0
            if cfg.grad_checkpointing:
                _checkpointing(task.model, False)
            task.model.eval()
            final_dir = self._save(self.out / "final", step)
        finally:
            writers.close()
        plot = plot_training(
            losses, dev_rows, self.out / "training.png", baseline=baseline, title=task.title
        )
        onnx_dir, report = None, None
        if cfg.export:
            onnx_dir, report = self._export(final_dir)
        log.info("fine-tuning done: %d steps in %.1fs -> %s", step, train_seconds, final_dir)
        return TrainResult(
            out_dir=self.out,
            final_dir=final_dir,
            onnx_dir=onnx_dir,
            export_report=report,
            steps=step,
            train_seconds=train_seconds,
            losses=losses,
            dev=dev_rows,
            train_csv=writers.train_path,
            dev_csv=writers.dev_path,
            plot=plot,
            checkpoints=checkpoints,
            baseline=baseline,
        )

    def _save(self, path: Path, step: int) -> Path:
        if path.exists():
            shutil.rmtree(path)
        self.task.save(path, {"base_model": str(self.model_dir), "step": step})
        log.info("saved %s", path)
        return path

    def _export(self, final_dir: Path):
        try:
            from densparse.export import export_model
        except ImportError as e:
            raise ImportError(f"ONNX export needs densparse.export: {e}") from e
        kind = self.config.export_kind or self.task.export_kind
        onnx_dir = self.out / "onnx"
        if onnx_dir.exists():
            shutil.rmtree(onnx_dir)
        report = export_model(
            final_dir, onnx_dir, kind=kind, show_progress=False if self.config.quiet else None
        )
        log.info(
            "exported %s -> %s (max |diff| vs torch %s)",
            final_dir,
            onnx_dir,
            getattr(report, "max_abs_diff", None),
        )
        return onnx_dir, report


# --------------------------------------------------------------------------- tasks
def sample_groups(
    records: Sequence[dict], batch_size: int, group_size: int, seed: int
) -> Iterator[tuple[int, list[dict], list[str]]]:
    """``(epoch, records, passages)`` batches forever, reshuffled each epoch.

    ``passages`` holds, per record in order, one positive drawn from ``pos`` and
    ``group_size - 1`` negatives drawn from ``neg`` (without replacement when there are
    enough, otherwise from ``neg`` repeated, like FlagEmbedding). A batch of a lone record
    with ``group_size=1`` (nothing to contrast) is skipped.
    """
    rng = random.Random(seed)
    g = group_size
    epoch = 0
    while True:
        order = list(range(len(records)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            chunk = [records[i] for i in order[start : start + batch_size]]
            if len(chunk) * g < 2:
                continue
            ps: list[str] = []
            for r in chunk:
                ps.append(rng.choice(r["pos"]))
                if g > 1:
                    negs = r["neg"]
                    if len(negs) < g - 1:
                        negs = negs * math.ceil((g - 1) / len(negs))
                    ps.extend(rng.sample(negs, g - 1))
            yield epoch, chunk, ps
        epoch += 1


def sample_queries(dataset, n: int, seed: int):
    """The dataset with a fixed random sample of ``n`` of its queries (all when fewer)."""
    from densparse.eval import BeirDataset

    qids = [q for q in dataset.queries if q in dataset.qrels]
    if n >= len(qids):
        return dataset
    keep = sorted(random.Random(seed).sample(qids, n), key=qids.index)
    log.info("dev evaluation on %d of %d queries (eval_max_queries)", n, len(qids))
    return BeirDataset(
        corpus=dataset.corpus,
        queries={q: dataset.queries[q] for q in keep},
        qrels={q: dataset.qrels[q] for q in keep},
    )


class EmbedderTask:
    """The embedder side of a run: a :class:`TorchEmbedder`, InfoNCE over its groups, dense
    dev evaluation, a model directory with the source's sentence-transformers files."""

    dev_label: Optional[str] = None  # dev rows are the embedder's own: no "model" column
    fresh_parameters: frozenset = frozenset()  # head_lr applies to none
    title = "fine-tuning"
    nan_hint = " or raise the temperature"

    def __init__(self, model_dir: Path, cfg: TrainConfig, records: Sequence[dict]) -> None:
        self.config, self.records, self.model_dir = cfg, records, model_dir
        self.embedder = TorchEmbedder.from_pretrained(
            model_dir,
            pooling=cfg.pooling,
            query_instruction=cfg.query_instruction,
            device=cfg.device,
        )
        self.model = self.embedder.model
        self.device = self.embedder.device
        self.export_kind = _EXPORT_KIND.get(self.embedder.spec.family)

    def describe(self, total_steps: int, steps_per_epoch: int) -> None:
        cfg = self.config
        log.info(
            "model %s: family %s, pooling %s, query instruction %r, device %s",
            self.model_dir,
            self.embedder.spec.family,
            self.embedder.pooling,
            self.embedder.query_instruction,
            self.device,
        )
        log.info(
            "%d training records, batch %d x group %d (%s in-batch negatives), %d steps "
            "(%d per epoch), lr %g, temperature %g",
            len(self.records),
            cfg.batch_size,
            cfg.group_size,
            "with" if cfg.in_batch else "without",
            total_steps,
            steps_per_epoch,
            cfg.lr,
            cfg.temperature,
        )

    def batches(self) -> Iterator[tuple[int, tuple[list[str], list[str]]]]:
        """(epoch, (query texts with their instruction, passage texts)) forever."""
        cfg = self.config
        for epoch, chunk, ps in sample_groups(
            self.records, cfg.batch_size, cfg.group_size, cfg.seed
        ):
            qs = self.embedder.queries(
                [r["query"] for r in chunk], [r.get("prompt") for r in chunk]
            )
            yield epoch, (qs, ps)

    def loss(self, batch: tuple[list[str], list[str]]):
        from densparse.train.loss import info_nce

        cfg = self.config
        qs, ps = batch
        q = self.embedder.embed(qs, cfg.query_max_len)
        p = self.embedder.embed(ps, cfg.passage_max_len)
        return info_nce(q, p, cfg.temperature, cfg.group_size, in_batch=cfg.in_batch)

    def evaluate(self, dev, *, show_progress: bool, autocast_dtype) -> dict[str, float]:
        cfg = self.config
        return evaluate_dense(
            self.embedder,
            dev,
            query_max_len=cfg.query_max_len,
            passage_max_len=cfg.passage_max_len,
            batch_size=cfg.eval_batch_size,
            show_progress=show_progress,
            autocast_dtype=autocast_dtype,
        )

    def baseline(self, dev) -> None:
        """Embedders have no reference run besides their own step-0 evaluation."""
        return None

    def save(self, path: Path, extra: dict) -> Path:
        return self.embedder.save(path, source_dir=self.model_dir, extra=extra)


def _checkpointing(model, on: bool) -> None:
    """Gradient (activation) checkpointing on/off, across transformers 4.x and 5.x names."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_disable()


def _seed_everything(seed: int) -> None:
    torch = _torch()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class _Writers:
    """CSV files (written as rows come), TensorBoard and W&B when available. ``with_model``:
    the dev CSV has a ``model`` column (rerankers: ``reranker`` rows and one ``bm25`` row)."""

    def __init__(self, out: Path, cfg: TrainConfig, with_dev: bool, with_model: bool) -> None:
        self.train_path = out / "train_log.csv"
        self.dev_path = out / "dev_metrics.csv" if with_dev else None
        self._train_f = open(self.train_path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._train_w = csv.DictWriter(
            self._train_f, ["step", "epoch", "loss", "lr", "grad_norm", "elapsed_s"]
        )
        self._train_w.writeheader()
        self._dev_f = self._dev_w = None
        if self.dev_path is not None:
            self._dev_f = open(self.dev_path, "w", newline="", encoding="utf-8")  # noqa: SIM115
            fields = ["step", *(["model"] if with_model else []), *DEV_METRICS, "elapsed_s"]
            self._dev_w = csv.DictWriter(self._dev_f, fields)
            self._dev_w.writeheader()
        self.tb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                log.info("tensorboard is not installed: no TensorBoard logs (CSV only)")
        self.wandb = None
        if cfg.wandb:
            try:
                import wandb

                self.wandb = wandb.init(
                    project=cfg.wandb_project, config=cfg.to_dict(), dir=str(out)
                )
            except ImportError:
                log.warning("wandb was asked for but is not installed: not logging to W&B")

    def train(self, row: dict) -> None:
        self._train_w.writerow(row)
        self._train_f.flush()
        if self.tb is not None:
            self.tb.add_scalar("train/loss", row["loss"], row["step"])
            self.tb.add_scalar("train/lr", row["lr"], row["step"])
        if self.wandb is not None:
            self.wandb.log({"train/loss": row["loss"], "train/lr": row["lr"]}, step=row["step"])

    def dev(self, row: dict, prefix: str = "dev") -> None:
        if self._dev_w is not None:
            self._dev_w.writerow(row)
            self._dev_f.flush()
        scalars = {f"{prefix}/{k}": v for k, v in row.items() if k in DEV_METRICS}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, row["step"])
        if self.wandb is not None:
            self.wandb.log(scalars, step=row["step"])

    def close(self) -> None:
        self._train_f.close()
        if self._dev_f is not None:
            self._dev_f.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def plot_training(
    losses: Sequence[tuple[int, float]],
    dev: Sequence[dict],
    path: PathLike,
    *,
    baseline: Optional[dict[str, Any]] = None,
    title: str = "fine-tuning",
) -> Optional[Path]:
    """PNG of the training loss (raw and moving average) and dev nDCG@10 over steps.

    ``baseline`` (``{"model": name, "ndcg@10": value}``, e.g. BM25 alone for a reranker) is
    drawn as a dashed horizontal line on the nDCG@10 axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning(
            'matplotlib is not installed: no training plot (pip install "densparse[train]")'
        )
        return None
    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if losses:
        steps = np.array([s for s, _ in losses])
        vals = np.array([v for _, v in losses])
        ax.plot(steps, vals, color="tab:blue", alpha=0.3, lw=1, label="loss")
        w = max(1, min(len(vals) // 10, 50))
        if w > 1:
            smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1 :], smooth, color="tab:blue", lw=2, label=f"loss (mean of {w})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    handles, labels = ax.get_legend_handles_labels()
    if dev or baseline:
        ax2 = ax.twinx()
        if dev:
            ax2.plot(
                [r["step"] for r in dev],
                [r["ndcg@10"] for r in dev],
                color="tab:red",
                marker="o",
                label="dev nDCG@10",
            )
        if baseline:
            ax2.axhline(
                baseline["ndcg@10"],
                color="tab:gray",
                ls="--",
                label=f"dev nDCG@10, {baseline.get('model', 'baseline')}",
            )
        ax2.set_ylabel("dev nDCG@10", color="tab:red")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="center right")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def finetune(config: Optional[TrainConfig] = None, **settings: Any) -> TrainResult:
    """Check and run a fine-tuning: ``finetune(train=..., model=..., out=..., ...)`` or
    ``finetune(TrainConfig(...))`` (keyword settings override the config's)."""
    if config is None:
        config = TrainConfig.from_dict(settings)
    elif settings:
        config = TrainConfig.from_dict({**config.to_dict(), **settings})
    return Trainer(config).train()
