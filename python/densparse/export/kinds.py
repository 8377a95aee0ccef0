"""Kinds of checkpoints the exporter knows, their detection and up-front validation.

=========  ====================================  ===================================
kind       torch model                           ONNX outputs
=========  ====================================  ===================================
``bge``    ``AutoModel`` (BERT-like encoder)     ``last_hidden_state``
``st``     the sentence-transformers directory's ``last_hidden_state`` (pooling stays
           Transformer module                    in the Encoder, from 1_Pooling)
``splade`` ``AutoModelForMaskedLM``              ``logits``
``m3``     ``AutoModel`` + FlagEmbedding heads   ``dense``, ``sparse``, ``colbert``,
           ``sparse_linear.pt``,                 ``last_hidden_state``
           ``colbert_linear.pt``
``reranker`` ``AutoModelForSequenceClassification`` ``logits`` [batch, 1] (cross-encoders;
           with one label                        loaded by ``densparse.Reranker``)
=========  ====================================  ===================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

KINDS = ("bge", "m3", "splade", "st", "reranker")
#: The Encoder family (densparse.models.families) each embedding kind is written as; a
#: ``reranker`` is no Encoder family (it loads as ``densparse.Reranker``).
FAMILY = {"bge": "bge", "m3": "bge-m3", "splade": "splade", "st": "sentence-transformers"}
#: sentence-transformers modules the Encoder reproduces outside the graph.
ST_SUPPORTED = ("Transformer", "Pooling", "Normalize")
M3_HEADS = ("sparse_linear.pt", "colbert_linear.pt")
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def st_modules(model_dir: Path) -> Optional[list]:
    """modules.json of a sentence-transformers directory (``None`` when absent)."""
    p = model_dir / "modules.json"
    if not p.is_file():
        return None
    mods = read_json(p)
    if not isinstance(mods, list):
        raise ValueError(f"{p}: expected a JSON list of modules")
    return mods


def transformer_dir(model_dir: Path) -> Path:
    """Where the transformer's config.json and weights are: the directory itself, or the
    sentence-transformers Transformer module's folder (``0_Transformer`` in old layouts)."""
    for m in st_modules(model_dir) or []:
        if isinstance(m, dict) and str(m.get("type", "")).endswith(".Transformer"):
            return model_dir / str(m.get("path", ""))
    return model_dir


def check_source(model_dir: Path, kind: Optional[str]) -> Path:
    """Validate ``model_dir`` (and ``kind`` when given) before any work; returns the folder
    holding the transformer's config.json and weights."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    if not model_dir.exists():
        raise FileNotFoundError(f"model directory {model_dir} does not exist")
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir} is not a directory; pass the model directory")
    tdir = transformer_dir(model_dir)
    if not (tdir / "config.json").is_file():
        raise ValueError(
            f"{model_dir} is not a Hugging Face model directory: {tdir / 'config.json'} is missing"
        )
    if not any((tdir / f).is_file() for f in WEIGHT_FILES):
        raise ValueError(f"{model_dir} has no weights ({', '.join(WEIGHT_FILES)} in {tdir})")
    for m in st_modules(model_dir) or []:
        t = str(m.get("type", "")) if isinstance(m, dict) else ""
        if t and not t.endswith(tuple("." + s for s in ST_SUPPORTED)):
            raise ValueError(
                f"{model_dir}: sentence-transformers module {t!r} is not supported (the Encoder "
                f"reproduces only {', '.join(ST_SUPPORTED)})"
            )
    if kind == "reranker":
        from densparse.models.reranker import check_classifier_config

        archs = check_classifier_config(tdir).get("architectures")
        if not archs:
            raise ValueError(
                f"kind='reranker' needs a sequence-classification checkpoint (config.json "
                f"architectures '...ForSequenceClassification', num_labels 1); {tdir} names none"
            )
    if kind == "m3":
        missing = [h for h in M3_HEADS if not (model_dir / h).is_file()]
        if missing:
            raise FileNotFoundError(
                f"kind='m3' needs FlagEmbedding's head weights {', '.join(missing)} in {model_dir}"
            )
    return tdir


def detect_kind(model_dir: Path) -> str:
    """The kind of a checkpoint directory, from densparse's family detection (names,
    architectures, head files, 1_Pooling)."""
    from densparse.models.families import detect_family
    from densparse.models.reranker import is_reranker_dir

    if is_reranker_dir(transformer_dir(model_dir)):
        return "reranker"
    family = detect_family(model_dir).family
    for kind, fam in FAMILY.items():
        if fam == family:
            return kind
    raise ValueError(
        f"cannot tell what kind of model {model_dir} is (no BGE name, no sentence-transformers "
        f"files, no masked-LM head, no BGE-M3 heads, no sequence classifier); pass kind= one "
        f"of {KINDS}"
    )
