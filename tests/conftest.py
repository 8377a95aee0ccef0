"""Shared fixtures: where ../shared is, and skips when it is absent."""

from __future__ import annotations

import json
import os
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
