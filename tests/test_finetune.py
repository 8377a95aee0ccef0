"""Fine-tuning end to end on a tiny random BERT: loss goes down, checkpoints reload, the ONNX
export loads in densparse.Encoder with the same embeddings, bad input fails before training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="fine-tuning needs torch (pip install densparse[train])")
pytest.importorskip("transformers", reason="fine-tuning needs transformers (densparse[train])")

N_TOPICS = 12
WORDS_PER_TOPIC = 8
N_FILLERS = 24


def _vocab() -> list[str]:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    topic = [f"t{t}w{w}" for t in range(N_TOPICS) for w in range(WORDS_PER_TOPIC)]
    return special + topic + [f"f{i}" for i in range(N_FILLERS)]


def make_tiny_model(path: Path) -> Path:
    """A 2-layer random BERT (hidden 32) + WordPiece tokenizer, as a sentence-transformers
    directory with mean pooling."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(_vocab())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=64)
    fast.save_pretrained(str(path))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(str(path))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    return path


def _doc(rng: random.Random, t: int) -> str:
    words = rng.sample([f"t{t}w{w}" for w in range(WORDS_PER_TOPIC)], 4)
    words += rng.sample([f"f{i}" for i in range(N_FILLERS)], 4)
    rng.shuffle(words)
    return " ".join(words)


def _query(rng: random.Random, t: int) -> str:
    words = rng.sample([f"t{t}w{w}" for w in range(WORDS_PER_TOPIC)], 2)
    words.append(rng.choice([f"f{i}" for i in range(N_FILLERS)]))
    rng.shuffle(words)
    return " ".join(words)


def make_data(tmp: Path, n_train: int = 96) -> tuple[Path, Path]:
    """A training JSONL (query -> same-topic doc, negatives from other topics) and a BEIR dev
    set (2 documents per topic, 1 query per topic)."""
    rng = random.Random(0)
    train = tmp / "train.jsonl"
    with open(train, "w", encoding="utf-8") as f:
        for n in range(n_train):
            t = n % N_TOPICS
            others = [o for o in range(N_TOPICS) if o != t]
            rec = {
                "query": _query(rng, t),
                "pos": [_doc(rng, t)],
                "neg": [_doc(rng, o) for o in rng.sample(others, 5)],
            }
            f.write(json.dumps(rec) + "\n")
    dev = tmp / "dev"
    (dev / "qrels").mkdir(parents=True, exist_ok=True)
    with open(dev / "corpus.jsonl", "w", encoding="utf-8") as f:
        for t in range(N_TOPICS):
            for j in range(2):
                f.write(json.dumps({"_id": f"d{t}_{j}", "title": "", "text": _doc(rng, t)}) + "\n")
    with open(dev / "queries.jsonl", "w", encoding="utf-8") as f:
        for t in range(N_TOPICS):
            f.write(json.dumps({"_id": f"q{t}", "text": _query(rng, t)}) + "\n")
    with open(dev / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for t in range(N_TOPICS):
            for j in range(2):
                f.write(f"q{t}\td{t}_{j}\t1\n")
    return train, dev
