"""Fine-tune a cross-encoder reranker (FlagEmbedding's reranker recipe; docs/algorithms.md).

Used by :class:`densparse.train.trainer.Trainer` for ``TrainConfig(kind="reranker")``
(``densparse finetune --kind reranker``); the optimiser, schedule, logs, plot, checkpoints and
export are the trainer's. What is specific to rerankers lives here:

* **Model.** ``AutoModelForSequenceClassification`` with one label. A directory that already
  holds a one-label sequence classifier keeps its head; any other transformer (a
  sentence-transformers embedder, a plain BERT / XLM-R) gets a fresh, randomly initialised
  classification head (logged).
* **Pairs** are tokenised exactly as :class:`densparse.Reranker` reads them at inference
  (``[CLS] q [SEP] p [SEP]`` with token types 0/1, or ``<s> q </s></s> p </s>``): the query
  keeps at most 3/4 of ``max_length``, the passage is cut to fill the rest — Hugging Face's
  ``tokenizer(q, p, truncation="only_second", max_length=...)`` whenever the query fits.
* **Groups.** For each training record one positive and ``group_size - 1`` negatives (the
  embedder trainer's sampling, :func:`densparse.train.trainer.sample_groups`); the G logits of
  a group go through :func:`densparse.train.loss.group_cross_entropy` (target: the positive).
* **Dev evaluation.** Each dev query's BM25 top ``eval_candidates`` (densparse BM25 over
  ``title + " " + text``; English analysis unless the corpus holds Chinese characters, then
  ``language="auto"``; built once per run) is reranked by the model being trained (eval mode,
  no gradients): nDCG@10 / Recall@100 / MRR@10 with :func:`densparse.eval.evaluate`. BM25
  alone is evaluated once, at the start, and logged as the ``bm25`` row of ``dev_metrics.csv``
  (a dashed line in ``training.png``): the gain over it is what the reranker adds. Recall@100
  of a reranked top 100 equals BM25's.
* **Outputs.** ``final/`` and ``checkpoint-<step>/`` are Hugging Face sequence-classifier
  directories with the tokenizer and a ``densparse.json`` (``kind: reranker``, ``max_length``);
  ``onnx/`` is ``export_model(final, out/onnx, kind="reranker")``, loadable by
  :meth:`densparse.Reranker.from_pretrained`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from densparse.train.trainer import (
    DEV_METRICS,
    TrainConfig,
    _autocast,
    _torch,
    check_model_dir,
    no_grad_batches,
    sample_groups,
)

log = logging.getLogger("densparse.train")

__all__ = ["BM25Candidates", "RerankerTask", "TorchReranker", "evaluate_reranker"]

PathLike = Union[str, os.PathLike]
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class TorchReranker:
    """A transformers sequence classifier (one logit) + its tokenizer, reading (query,
    passage) pairs as :class:`densparse.Reranker` does.

    Create with :meth:`from_pretrained`. :meth:`logits` keeps the graph (training);
    :meth:`score` is batched, length-sorted and gradient-free (evaluation).
    """

    def __init__(
        self, model, tokenizer, max_length: int, fresh_parameters: Sequence[str] = ()
    ) -> None:
        from tokenizers import Tokenizer

        self.model = model
        #: names of the parameters initialised here, not read from the model directory
        self.fresh_parameters = frozenset(fresh_parameters)
        self.tokenizer = tokenizer
        self.max_length = max_length
        # the tokenizers.Tokenizer densparse.Reranker uses, without fixed truncation/padding
        self._pairs_tokenizer = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._pairs_tokenizer.no_truncation()
        self._pairs_tokenizer.no_padding()
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._token_types = "token_type_ids" in tokenizer.model_input_names

    @classmethod
    def from_pretrained(
        cls,
        model_dir: PathLike,
        *,
        max_length: Optional[int] = None,
        device: Optional[str] = None,
    ) -> TorchReranker:
        """Load ``model_dir`` (checked by :func:`~densparse.train.trainer.check_model_dir`)
        as a one-label sequence classifier; a fresh head when it is not one already.

        Args:
            model_dir: a Hugging Face model directory with a fast tokenizer.
            max_length: tokens per pair, special tokens included (default: the model's, as
                :class:`densparse.Reranker` reads it: ``densparse.json``, else the tokenizer /
                config); capped at the model's position embeddings (logged).
            device: ``"cuda"``, ``"cpu"``... (default: CUDA when available).

        Raises:
            ValueError: not a model directory, a sequence classifier with more than one
                label, no fast tokenizer, or a model transformers cannot load.
        """
        torch = _torch()
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        from densparse.models.reranker import _lengths, check_classifier_config, is_reranker_dir

        model_dir = check_model_dir(model_dir)
        has_head = is_reranker_dir(model_dir)
        if has_head:
            check_classifier_config(model_dir)  # a sequence classifier, or a clear error
            # transformers leaves the default label count (2) out of config.json: ask it
            labels = AutoConfig.from_pretrained(str(model_dir)).num_labels
            if labels != 1:
                raise ValueError(
                    f"{model_dir} is a sequence classifier with {labels} labels; a reranker "
                    "scores with exactly one logit (num_labels=1)"
                )
        default, positions = _lengths(model_dir)
        if max_length is None:
            max_length = default
        if positions is not None and max_length > positions:
            log.info(
                "max_length %d exceeds the model's %d positions: using %d",
                max_length,
                positions,
                positions,
            )
            max_length = positions
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            model, info = AutoModelForSequenceClassification.from_pretrained(
                str(model_dir), num_labels=1, output_loading_info=True
            )
        except Exception as e:
            raise ValueError(f"{model_dir}: transformers cannot load this model: {e}") from e
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{model_dir}: a fast tokenizer (tokenizer.json) is needed")
        if has_head:
            log.info("%s is a sequence classifier: training its own head", model_dir)
        else:
            log.info(
                "%s is not a sequence classifier: a fresh one-logit classification head "
                "(randomly initialised) is trained on top of it",
                model_dir,
            )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        return cls(model, tokenizer, max_length, sorted(info.get("missing_keys") or ()))

    @property
    def device(self):
        return next(self.model.parameters()).device

    def tokenize(self, queries: Sequence[str], passages: Sequence[str]) -> dict[str, Any]:
        """Padded torch inputs (on the model's device) of the pairs, truncated as
        :class:`densparse.Reranker` truncates (see the module docstring)."""
        torch = _torch()
        from densparse.models.batching import pad, pad_values
        from densparse.models.reranker import encode_pairs

        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        encoded = encode_pairs(self._pairs_tokenizer, list(zip(queries, passages)), self.max_length)
        ids, mask = pad([e[0] for e in encoded], self._pad_id)
        enc = {"input_ids": ids, "attention_mask": mask}
        if self._token_types:
            enc["token_type_ids"] = pad_values([e[1] for e in encoded], ids.shape[1])
        return {k: torch.from_numpy(v).to(self.device) for k, v in enc.items()}

    def logits(self, queries: Sequence[str], passages: Sequence[str]):
        """One logit per pair, a [n] tensor with its graph (the model's mode as it is)."""
        return self.model(**self.tokenize(queries, passages)).logits[:, 0]

    def score(
        self,
        queries: Sequence[str],
        passages: Sequence[str],
        batch_size: int = 64,
        show_progress: bool = False,
        desc: str = "reranking",
        autocast_dtype=None,
    ) -> np.ndarray:
        """Gradient-free logits of the pairs in eval mode, float32 [n] in input order
        (length-sorted batches; the model's train/eval mode is restored after)."""
        torch = _torch()
        n = len(queries)
        if n != len(passages):
            raise ValueError(f"{n} queries but {len(passages)} passages")
        order = sorted(range(n), key=lambda i: -(len(queries[i]) + len(passages[i])))
        out = np.empty(n, dtype=np.float32)

        def run(idx: list[int]) -> None:
            with _autocast(torch, self.device, autocast_dtype):
                got = self.logits([queries[i] for i in idx], [passages[i] for i in idx])
            out[idx] = got.float().cpu().numpy()

        no_grad_batches(self.model, order, batch_size, run, show_progress, desc, "pair")
        return out

    def save(self, out_dir: PathLike, extra: Optional[Mapping[str, Any]] = None) -> Path:
        """Write a Hugging Face sequence-classifier directory (weights, config, tokenizer)
        and ``densparse.json`` (``kind: reranker``, ``max_length``, the fine-tuning facts)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out), safe_serialization=True)
        self.tokenizer.save_pretrained(str(out))
        meta: dict[str, Any] = {"kind": "reranker", "max_length": self.max_length}
        if extra:
            meta["fine_tuned"] = dict(extra)
        (out / "densparse.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return out


# --------------------------------------------------------------------------- dev evaluation
def corpus_language(texts: Sequence[str], sample: int = 2000) -> str:
    """The BM25 analyzer language for a corpus: ``"en"``, or ``"auto"`` (Han runs to jieba,
    the rest English) when any of the first ``sample`` texts holds a Chinese character."""
    return "auto" if any(_HAN.search(t) for t in texts[:sample]) else "en"


class BM25Candidates:
    """Each query's BM25 top ``k`` over a BEIR corpus (``title + " " + text``), computed once.

    Attributes:
        doc_ids, texts: the corpus in order. ``language``: the analyzer's language.
        candidates: ``{query_id: [corpus index, ...]}`` best first (documents sharing no
            term with the query are left out).
        run: ``{query_id: {doc_id: BM25 score}}`` (what :func:`densparse.eval.evaluate` takes).
    """

    def __init__(self, dataset, k: int = 100, language: Optional[str] = None) -> None:
        from densparse.analysis import Analyzer
        from densparse.bm25 import BM25
        from densparse.train.data import corpus_texts

        self.doc_ids, self.texts = corpus_texts(dataset.corpus)
        self.language = language or corpus_language(self.texts)
        bm25 = BM25(analyzer=Analyzer(language=self.language)).index(
            self.texts, show_progress=False
        )
        qids = list(dataset.queries)
        ids, scores = bm25.search([dataset.queries[q] for q in qids], k=min(k, len(self.texts)))
        self.candidates: dict[str, list[int]] = {}
        self.run: dict[str, dict[str, float]] = {}
        for q, row_ids, row_scores in zip(qids, ids, scores):
            keep = [(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0 and s > 0]
            self.candidates[q] = [i for i, _ in keep]
            self.run[q] = {self.doc_ids[i]: s for i, s in keep}


def evaluate_reranker(
    reranker: TorchReranker,
    dataset,
    candidates: BM25Candidates,
    *,
    batch_size: int = 64,
    metrics: Sequence[str] = DEV_METRICS,
    show_progress: bool = False,
    autocast_dtype=None,
) -> dict[str, float]:
    """Rerank every query's candidates with the torch model; densparse metrics of the run."""
    from densparse.eval import evaluate

    qs: list[str] = []
    ps: list[str] = []
    owners: list[tuple[str, int]] = []
    for q, cands in candidates.candidates.items():
        for i in cands:
            qs.append(dataset.queries[q])
            ps.append(candidates.texts[i])
            owners.append((q, i))
    scores = reranker.score(qs, ps, batch_size, show_progress, "dev reranking", autocast_dtype)
    run: dict[str, dict[str, float]] = {q: {} for q in candidates.candidates}
    for (q, i), s in zip(owners, scores):
        run[q][candidates.doc_ids[i]] = float(s)
    return evaluate(dataset.qrels, run, metrics=list(metrics))


# --------------------------------------------------------------------------- the task
class RerankerTask:
    """The reranker side of a :class:`~densparse.train.trainer.Trainer` run (see the module
    docstring): model, group batches, loss, dev evaluation, BM25 baseline, saving."""

    dev_label = "reranker"
    title = "reranker fine-tuning"
    nan_hint = ""
    export_kind = "reranker"

    def __init__(
        self, model_dir: Path, cfg: TrainConfig, records: Sequence[dict], dev=None
    ) -> None:
        self.config, self.records, self.model_dir = cfg, records, model_dir
        self.reranker = TorchReranker.from_pretrained(
            model_dir, max_length=cfg.max_length, device=cfg.device
        )
        self.model = self.reranker.model
        self.device = self.reranker.device
        self.fresh_parameters = self.reranker.fresh_parameters
        self.candidates = None
        if dev is not None:
            self.candidates = BM25Candidates(dev, k=cfg.eval_candidates)

    def describe(self, total_steps: int, steps_per_epoch: int) -> None:
        cfg = self.config
        log.info(
            "reranker %s (%s): max length %d tokens per pair, device %s",
            self.model_dir,
            type(self.model).__name__,
            self.reranker.max_length,
            self.device,
        )
        log.info(
            "%d training records, batch %d x group %d (1 positive + %d negatives), %d steps "
            "(%d per epoch), lr %g",
            len(self.records),
            cfg.batch_size,
            cfg.group_size,
            cfg.group_size - 1,
            total_steps,
            steps_per_epoch,
            cfg.lr,
        )
        if self.candidates is not None:
            log.info(
                "dev: BM25 (language %s) top %d of %d documents reranked for %d queries",
                self.candidates.language,
                self.config.eval_candidates,
                len(self.candidates.texts),
                len(self.candidates.candidates),
            )

    def batches(self) -> Iterator[tuple[int, tuple[list[str], list[str]]]]:
        """(epoch, (query of every pair, passage of every pair)) forever: B groups of G
        pairs, each group's positive first."""
        cfg, g = self.config, self.config.group_size
        for epoch, chunk, ps in sample_groups(
            self.records, cfg.batch_size, cfg.group_size, cfg.seed
        ):
            yield epoch, ([r["query"] for r in chunk for _ in range(g)], ps)

    def loss(self, batch: tuple[list[str], list[str]]):
        from densparse.train.loss import group_cross_entropy

        qs, ps = batch
        return group_cross_entropy(self.reranker.logits(qs, ps), self.config.group_size)

    def evaluate(self, dev, *, show_progress: bool, autocast_dtype) -> dict[str, float]:
        return evaluate_reranker(
            self.reranker,
            dev,
            self.candidates,
            batch_size=self.config.eval_batch_size,
            show_progress=show_progress,
            autocast_dtype=autocast_dtype,
        )

    def baseline(self, dev) -> tuple[str, dict[str, float]]:
        """BM25 alone on the dev set: ``("bm25", metrics)``."""
        from densparse.eval import evaluate

        return "bm25", evaluate(dev.qrels, self.candidates.run, metrics=list(DEV_METRICS))

    def save(self, path: Path, extra: dict) -> Path:
        return self.reranker.save(path, extra=extra)
