"""Model families: what to do with a model directory's outputs.

A family fixes the pooling, whether vectors are L2-normalised, the query instruction and the
special token ids. Detection reads only small files of the directory (config.json,
tokenizer_config.json, modules.json, 1_Pooling/config.json, sentence_bert_config.json, head
weight files, an optional ``densparse.json``) plus the ONNX graph's output names; every choice
can be overridden by the caller.

Families:

``bge``
    BGE v1.5 (bge-{small,base,large}-{en,zh}-v1.5): CLS pooling, L2 normalise, query instruction
    (English or Chinese, chosen from the name or, failing that, from the vocabulary: the
    21,128-token bert-base-chinese vocabulary means Chinese).
``bge-m3``
    BGE-M3: dense = CLS normalised, sparse = lexical weights, ColBERT vectors. No instruction.
``splade``
    Masked-LM models: weight(v) = max over tokens of log(1 + relu(logits[:, v])).
``sentence-transformers``
    Pooling from ``1_Pooling/config.json`` (cls / mean / max / mean_sqrt_len_tokens).
``generic``
    Anything else with a ``last_hidden_state``: masked mean pooling.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from densparse.models.heads import HEADS, head_files

log = logging.getLogger("densparse.models")

FAMILIES = ("bge", "bge-m3", "splade", "sentence-transformers", "generic")
POOLINGS = ("cls", "mean", "max", "mean_sqrt_len", "splade", "m3")

BGE_INSTRUCTION_EN = "Represent this sentence for searching relevant passages: "
BGE_INSTRUCTION_ZH = "为这个句子生成表示以用于检索相关文章："

#: Vocabulary size of bert-base-chinese, used by the Chinese BGE models.
ZH_VOCAB_SIZE = 21128
#: Token-id upper bound above which a tokenizer_config's model_max_length means "unset".
_UNSET_MAX_LENGTH = 1_000_000

#: ``max_seq_length`` of well-known sentence-transformers checkpoints (from their
#: ``sentence_bert_config.json``), for copies that dropped that file (ONNX repackagings often
#: do) and so would fall back to the base tokenizer's 512. Tried in order on the model's names;
#: only for a sentence-transformers layout (``modules.json`` / ``1_Pooling``) without
#: ``sentence_bert_config.json``. The bare ``minilm-l6`` pattern stands for all-MiniLM-L6-v2,
#: the MiniLM-L6 sentence model nearly every such copy is of.
ST_MAX_SEQ_LENGTH: tuple[tuple[str, int], ...] = (
    (r"paraphrase-multilingual-minilm-l12", 128),
    (r"paraphrase-minilm-l6", 128),
    (r"multi-qa-minilm-l6", 512),
    (r"all-mpnet-base-v2", 384),
    (r"minilm-l6", 256),
)


@dataclass(frozen=True)
class ModelSpec:
    """What the Encoder does with a model's outputs.

    Attributes:
        family: one of :data:`FAMILIES`.
        pooling: one of :data:`POOLINGS`.
        normalize: whether ``encode(normalize=None)`` would L2-normalise (informational; the
            ``normalize`` argument of ``encode`` decides).
        query_instruction: prepended to queries by ``encode_queries`` (``None`` = none).
        max_length: tokens per input, special tokens included.
        special_ids: token ids dropped from sparse outputs (BGE-M3: 0, 1, 2, 3).
        language: ``"en"``, ``"zh"`` or ``None`` when unknown.
    """

    family: str
    pooling: str
    normalize: bool = True
    query_instruction: Optional[str] = None
    max_length: int = 512
    special_ids: frozenset = field(default_factory=frozenset)
    language: Optional[str] = None
    position_limit: Optional[int] = None

    def with_(self, **kw: Any) -> ModelSpec:
        return replace(self, **kw)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    return data if isinstance(data, dict) else {"_list": data}


def _names(model_dir: Path, config: dict, tok_config: dict) -> str:
    """Lower-case text of every name the model goes by, for name-based detection."""
    parts = [
        model_dir.name,
        # hub cache snapshots live under models--org--name/snapshots/<hash>
        model_dir.parent.parent.name if model_dir.parent.name == "snapshots" else "",
        str(config.get("_name_or_path", "")),
        str(tok_config.get("name_or_path", "")),
    ]
    return " ".join(parts).lower()


def _st_pooling(model_dir: Path) -> Optional[str]:
    """Pooling named by a sentence-transformers directory (``None`` when absent)."""
    modules = _read_json(model_dir / "modules.json").get("_list")
    pool_dir = model_dir / "1_Pooling"
    if isinstance(modules, list):
        for m in modules:
            if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling"):
                pool_dir = model_dir / str(m.get("path", "1_Pooling"))
    cfg = _read_json(pool_dir / "config.json")
    if not cfg:
        return None
    order = [
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ]
    chosen = [name for key, name in order if cfg.get(key)]
    if len(chosen) > 1:
        raise ValueError(
            f"{pool_dir / 'config.json'} asks for several poolings at once ({chosen}); "
            "densparse supports exactly one"
        )
    if not chosen:
        mode = str(cfg.get("pooling_mode", "")).lower()
        chosen = {"cls": ["cls"], "mean": ["mean"], "max": ["max"]}.get(mode, [])
    return chosen[0] if chosen else None


def _st_normalizes(model_dir: Path) -> bool:
    modules = _read_json(model_dir / "modules.json").get("_list")
    return isinstance(modules, list) and any(
        isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize") for m in modules
    )


def _max_length(
    model_dir: Path, config: dict, tok_config: dict, names: str = "", st_layout: bool = False
) -> tuple[int, Optional[int]]:
    """sentence_bert_config max_seq_length (or, for a sentence-transformers layout without that
    file, :data:`ST_MAX_SEQ_LENGTH` by name), else tokenizer model_max_length, else position
    embeddings; never more than the position embeddings allow. Returns (max length, positions)."""
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style models (XLM-R, BGE-M3) offset positions by padding_idx + 1.
        if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
            positions -= int(config.get("pad_token_id", 1)) + 1
    else:
        positions = None
    candidates = []
    st_file = model_dir / "sentence_bert_config.json"
    st = _read_json(st_file).get("max_seq_length")
    if isinstance(st, int) and st > 0:
        candidates.append(st)
    elif st_layout and not st_file.exists():
        known = next((n for pat, n in ST_MAX_SEQ_LENGTH if re.search(pat, names)), None)
        if known:
            log.debug("max_length %d: known sentence-transformers model (%s)", known, names)
            candidates.append(known)
    tk = tok_config.get("model_max_length")
    if isinstance(tk, (int, float)) and 0 < tk < _UNSET_MAX_LENGTH:
        candidates.append(int(tk))
    if positions:
        candidates.append(positions)
    length = candidates[0] if candidates else 512
    return (min(length, positions) if positions else length), positions


def _language(names: str, vocab_size: Optional[int]) -> Optional[str]:
    if re.search(r"(^|[-_/ ])zh([-_/ ]|$)|chinese", names):
        return "zh"
    if re.search(r"(^|[-_/ ])en([-_/ ]|$)|english", names):
        return "en"
    if vocab_size == ZH_VOCAB_SIZE:
        return "zh"
    return None


def detect_family(
    model_dir: Path,
    output_names: tuple[str, ...] = (),
    family: Optional[str] = None,
    vocab_size: Optional[int] = None,
) -> ModelSpec:
    """Detect the family of ``model_dir``.

    Args:
        model_dir: the model directory.
        output_names: the ONNX graph's output names (BGE-M3 graphs have ``dense``/``sparse``/
            ``colbert``; masked-LM graphs have ``logits``).
        family: force a family (one of :data:`FAMILIES`); pooling etc. follow from it.
        vocab_size: the tokenizer's vocabulary size (tells Chinese BGE models apart).

    A ``densparse.json`` file in the directory (written by ``densparse export``) may name the
    family, pooling, query instruction and max length explicitly; it wins over guessing but not
    over ``family=``.
    """
    model_dir = Path(model_dir)
    config = _read_json(model_dir / "config.json")
    tok_config = _read_json(model_dir / "tokenizer_config.json")
    meta = _read_json(model_dir / "densparse.json")
    names = _names(model_dir, config, tok_config)
    if vocab_size is None and isinstance(config.get("vocab_size"), int):
        vocab_size = config["vocab_size"]
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if family is None and meta.get("family") in FAMILIES:
        family = meta["family"]
    archs = " ".join(str(a) for a in config.get("architectures", []) or [])
    outs = set(output_names)
    has_heads = any(head_files(model_dir, head) for head in HEADS)
    st_pooling = _st_pooling(model_dir)
    if family is None:
        m3_outs = {"dense", "sparse", "colbert", "dense_vecs", "sparse_vecs", "colbert_vecs"}
        if outs & m3_outs or has_heads or "bge-m3" in names:
            family = "bge-m3"
        elif "splade" in names or "ForMaskedLM" in archs or "logits" in outs:
            family = "splade"
        elif re.search(r"bge-(small|base|large)", names) and st_pooling in (None, "cls"):
            family = "bge"
        elif st_pooling is not None:
            family = "sentence-transformers"
        else:
            family = "generic"
    max_length, positions = _max_length(
        model_dir, config, tok_config, names, st_layout=st_pooling is not None
    )
    max_length = int(meta.get("max_length") or max_length)
    language = meta.get("language") or _language(names, vocab_size)

    if family == "bge":
        instruction = BGE_INSTRUCTION_ZH if language == "zh" else BGE_INSTRUCTION_EN
        spec = ModelSpec("bge", "cls", True, instruction, max_length, language=language or "en")
    elif family == "bge-m3":
        spec = ModelSpec("bge-m3", "m3", True, None, max_length, frozenset({0, 1, 2, 3}))
    elif family == "splade":
        # SPLADE (docs/algorithms.md): max over every non-padding position, no ids dropped.
        spec = ModelSpec("splade", "splade", False, None, max_length)
    elif family == "sentence-transformers":
        spec = ModelSpec(
            "sentence-transformers",
            st_pooling or "mean",
            _st_normalizes(model_dir),
            None,
            max_length,
        )
    else:
        spec = ModelSpec("generic", st_pooling or "mean", True, None, max_length)
    spec = spec.with_(position_limit=positions)
    if "pooling" in meta:
        if meta["pooling"] not in POOLINGS:
            raise ValueError(f"densparse.json: pooling must be one of {POOLINGS}")
        spec = spec.with_(pooling=meta["pooling"])
    if "query_instruction" in meta:
        spec = spec.with_(query_instruction=meta["query_instruction"] or None)
    log.debug("model family %s (pooling %s, max_length %d)", spec.family, spec.pooling, max_length)
    return spec
