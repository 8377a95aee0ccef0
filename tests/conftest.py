"""Shared fixtures: where ../shared is, and skips when it is absent."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

import densparse

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"


def bert_wordpiece(tokens: Iterable[str]):
    """A BERT-style WordPiece ``tokenizers.Tokenizer`` ([CLS] text [SEP], lowercasing, CJK
    characters split) over ``tokens`` in order (repeats ignored); returns (tokenizer, vocab)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tok, vocab


#: Vocabulary of the tiny random models the export and reranker tests build.
_WORDS = (
    "the a of and to in is it this that first second sentence word text protein gene cell "
    "cells mice study results show we found high low model long short document query passage "
    "about with for on are was be by as represent searching relevant passages"
)
WORDS = _WORDS.split()
LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789")
PUNCT = list(".,!?;:'\"-()")


def bert_tokenizer(path: Path) -> dict[str, int]:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PUNCT, *LETTERS]
    tok, vocab = bert_wordpiece(tokens + ["##" + c for c in LETTERS])
    tok.save(str(path / "tokenizer.json"))
    return vocab


def xlmr_tokenizer(path: Path) -> int:
    """A Unigram tokenizer with XLM-R's special ids <s>=0 <pad>=1 </s>=2 <unk>=3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    seen = {p for p, _ in pieces}
    for w in WORDS:
        for p in ("▁" + w,):
            if p not in seen:
                pieces.append((p, -1.0))
                seen.add(p)
    for c in LETTERS + PUNCT:
        for p in (c, "▁" + c):
            if p not in seen:
                pieces.append((p, -5.0))
                seen.add(p)
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
    tok.save(str(path / "tokenizer.json"))
    return len(pieces)


def fill_hub_cache(cache: Path, repo_id: str, src: Path, commit: str = "a" * 40) -> None:
    """Lay ``src`` out as huggingface_hub's cache holds a downloaded repo (snapshot + ref)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    shutil.copytree(src, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


#: Positions of the tiny random models (XLM-R adds its padding offset of 2).
TINY_MAX_POS = 64


def tiny_bert_config(vocab_size: int, **overrides):
    """A ``transformers.BertConfig`` 32 wide, 2 layers of 4 heads, ``TINY_MAX_POS`` positions."""
    import transformers

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=TINY_MAX_POS,
    )
    return transformers.BertConfig(**{**kw, **overrides})


def tiny_xlmr_config(vocab_size: int, **overrides):
    """A ``transformers.XLMRobertaConfig`` of the same size, with XLM-R's special ids (see
    :func:`xlmr_tokenizer`) and no token types."""
    import transformers

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=TINY_MAX_POS + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    return transformers.XLMRobertaConfig(**{**kw, **overrides})


def subprocess_env() -> dict[str, str]:
    """Environment for a child Python that must import the densparse these tests import:
    the source tree (with its built extension) in development, the installed wheel in CI."""
    return dict(os.environ, PYTHONPATH=str(Path(densparse.__file__).resolve().parents[1]))


def need(path: Path) -> Path:
    """Skip the calling test, with the reason, when shared data is missing."""
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder is not present on this machine)")
    return path


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def stard_texts() -> list[str]:
    d = need(DATA / "stard")
    texts = []
    for name in ("corpus.jsonl", "queries.jsonl"):
        for r in read_jsonl(d / name):
            texts += [r.get("title", ""), r["text"]]
    return [t for t in texts if t]


@pytest.fixture(scope="session")
def scifact_corpus() -> list[dict]:
    return read_jsonl(need(DATA / "scifact") / "corpus.jsonl")
