"""Reranker fine-tuning end to end on a tiny random BERT sequence classifier: the group loss
goes down, dev nDCG@10 (BM25 candidates reranked) goes up, checkpoints reload with the same
logits, the ONNX export scores like the torch model in densparse.Reranker, bad settings fail
before anything is written."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from conftest import bert_wordpiece, tiny_bert_config

pytest.importorskip("torch", reason="fine-tuning needs torch (pip install densparse[train])")
pytest.importorskip("transformers", reason="fine-tuning needs transformers (densparse[train])")

N_TOPICS = 4
WORDS_PER_TOPIC = 4
N_FILLERS = 8
MAX_LEN = 32


def _vocab() -> list[str]:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    topic = [f"t{t}w{w}" for t in range(N_TOPICS) for w in range(WORDS_PER_TOPIC)]
    return special + topic + [f"f{i}" for i in range(N_FILLERS)]


def _save_tokenizer(path: Path):
    from transformers import BertTokenizerFast

    tok, vocab = bert_wordpiece(_vocab())
    BertTokenizerFast(tokenizer_object=tok, model_max_length=64).save_pretrained(str(path))
    return vocab


def _bert_config(vocab_size: int, **kw):
    return tiny_bert_config(
        vocab_size,
        num_attention_heads=2,
        # larger initial weights and no dropout: the tiny model learns the pairing in
        # tens of steps instead of hundreds
        initializer_range=0.1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **kw,
    )


def make_tiny_classifier(path: Path, num_labels: int = 1) -> Path:
    """A 2-layer random BERT sequence classifier (hidden 32) + WordPiece tokenizer."""
    import torch
    from transformers import BertForSequenceClassification

    path.mkdir(parents=True, exist_ok=True)
    vocab = _save_tokenizer(path)
    torch.manual_seed(0)
    BertForSequenceClassification(_bert_config(len(vocab), num_labels=num_labels)).save_pretrained(
        str(path)
    )
    return path


def make_tiny_st_model(path: Path) -> Path:
    """A random BERT encoder saved as a sentence-transformers directory (no classifier)."""
    import torch
    from transformers import BertModel

    path.mkdir(parents=True, exist_ok=True)
    vocab = _save_tokenizer(path)
    torch.manual_seed(0)
    BertModel(_bert_config(len(vocab))).save_pretrained(str(path))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    return path


def _text(rng: random.Random, t: int, n_topic: int, n_fill: int) -> str:
    words = rng.sample([f"t{t}w{w}" for w in range(WORDS_PER_TOPIC)], n_topic)
    words += rng.sample([f"f{i}" for i in range(N_FILLERS)], n_fill)
    rng.shuffle(words)
    return " ".join(words)


def make_data(tmp: Path, n_train: int = 128) -> tuple[Path, Path]:
    """Training JSONL (a query, a same-topic positive, other-topic negatives) and a BEIR dev
    set (3 documents per topic, 1 query per topic; filler words shared across topics make
    other topics' documents BM25 candidates too)."""
    rng = random.Random(0)
    train = tmp / "train.jsonl"
    with open(train, "w", encoding="utf-8") as f:
        for n in range(n_train):
            t = n % N_TOPICS
            others = [o for o in range(N_TOPICS) if o != t]
            rec = {
                "query": _text(rng, t, 2, 1),
                "pos": [_text(rng, t, 3, 3)],
                "neg": [_text(rng, rng.choice(others), 3, 3) for _ in range(5)],
            }
            f.write(json.dumps(rec) + "\n")
    dev = tmp / "dev"
    (dev / "qrels").mkdir(parents=True, exist_ok=True)
    with open(dev / "corpus.jsonl", "w", encoding="utf-8") as f:
        for t in range(N_TOPICS):
            for j in range(3):
                doc = {"_id": f"d{t}_{j}", "title": "", "text": _text(rng, t, 3, 3)}
                f.write(json.dumps(doc) + "\n")
    with open(dev / "queries.jsonl", "w", encoding="utf-8") as f:
        for t in range(N_TOPICS):
            for j in range(3):
                f.write(json.dumps({"_id": f"q{t}_{j}", "text": _text(rng, t, 2, 1)}) + "\n")
    with open(dev / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for t in range(N_TOPICS):
            for j in range(3):
                for d in range(3):
                    f.write(f"q{t}_{j}\td{t}_{d}\t1\n")
    return train, dev


def _has_reranker_export() -> bool:
    try:
        from densparse.export.kinds import KINDS
    except ImportError:
        return False
    return "reranker" in KINDS


STEPS = 48


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One 48-step run with dev evaluation every 16 steps, a checkpoint at 24, export."""
    from densparse.train.trainer import TrainConfig, Trainer

    tmp = tmp_path_factory.mktemp("ftr")
    model = make_tiny_classifier(tmp / "model")
    train, dev = make_data(tmp)
    cfg = TrainConfig(
        kind="reranker",
        train=str(train),
        model=str(model),
        out=str(tmp / "out"),
        dev=str(dev),
        max_steps=STEPS,
        lr=3e-3,
        batch_size=32,
        group_size=4,
        max_length=MAX_LEN,
        eval_steps=16,
        save_steps=24,
        export=_has_reranker_export(),
        quiet=True,
        seed=7,
    )
    trainer = Trainer(cfg)
    return trainer, trainer.train(), tmp


def test_loss_goes_down_and_dev_improves(run):
    _, res, _ = run
    losses = [v for _, v in res.losses]
    assert len(losses) == STEPS and all(np.isfinite(losses))
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert first == pytest.approx(np.log(4), abs=0.3)  # G=4: chance level at the start
    assert last < first - 0.4, (first, last)
    assert res.dev[0]["step"] == 0 and res.dev[-1]["step"] == STEPS
    assert res.dev[-1]["ndcg@10"] > res.dev[0]["ndcg@10"] + 0.1, res.dev
    # BM25 alone is the baseline row; reranking BM25's candidates keeps their recall
    assert res.baseline is not None and res.baseline["model"] == "bm25"
    assert res.dev[-1]["recall@100"] == pytest.approx(res.baseline["recall@100"], abs=1e-12)


def test_output_files(run):
    _, res, _ = run
    out = res.out_dir
    with open(res.train_csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    with open(res.dev_csv, encoding="utf-8") as f:
        dev_rows = list(csv.DictReader(f))
    assert [(int(r["step"]), r["model"]) for r in dev_rows] == [
        (0, "bm25"),
        (0, "reranker"),
        (16, "reranker"),
        (32, "reranker"),
        (48, "reranker"),
    ]
    assert float(dev_rows[0]["ndcg@10"]) == pytest.approx(res.baseline["ndcg@10"], abs=1e-4)
    assert res.plot is not None and res.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "train_config.json").read_text())
    assert (saved["kind"], saved["group_size"], saved["max_length"]) == ("reranker", 4, MAX_LEN)
    assert res.checkpoints == [out / "checkpoint-24"]
    final = res.final_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (final / name).is_file(), name
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert len(config["id2label"]) == 1
    meta = json.loads((final / "densparse.json").read_text())
    assert meta["kind"] == "reranker" and meta["max_length"] == MAX_LEN
    assert meta["fine_tuned"]["step"] == STEPS
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return
    assert any((out / "tensorboard").iterdir())


QUERIES = ["t1w0 t1w3 f2", "t5w1 f7", "f3", "t7w5 t0w0 t4w4 f1 f2 f3 f4 f5 t2w2 t3w3"]
PASSAGES = [
    "t1w2 t1w4 f2 f9 f10",
    "t5w1 t5w2 f9 t5w5 f0",
    "t6w0 f3",
    "t4w4 t4w1 f1 f2 f3 f4 f5 f6 f7 f8 f9 f10 f11 t0w0 t0w1 t0w2 t0w3 t0w4 t0w5 t7w5 t7w1",
]


def test_checkpoint_reloads_same_logits(run):
    from densparse.train.reranker import TorchReranker

    trainer, res, _ = run
    live = trainer.reranker.score(QUERIES, PASSAGES)
    again = TorchReranker.from_pretrained(res.final_dir, device="cpu")
    assert again.max_length == MAX_LEN  # densparse.json carries it
    np.testing.assert_allclose(again.score(QUERIES, PASSAGES), live, atol=1e-6)
    mid = TorchReranker.from_pretrained(res.checkpoints[0], device="cpu", max_length=MAX_LEN)
    assert np.abs(mid.score(QUERIES, PASSAGES) - live).max() > 1e-3  # an earlier model


def test_export_scores_like_torch(run):
    if not _has_reranker_export():
        pytest.skip("densparse.export has no kind='reranker' in this checkout")
    import densparse

    trainer, res, _ = run
    assert res.onnx_dir is not None and res.onnx_dir.is_dir()
    rr = densparse.Reranker.from_pretrained(res.onnx_dir, provider="cpu", max_length=MAX_LEN)
    want = trainer.reranker.score(QUERIES, PASSAGES)
    np.testing.assert_allclose(rr.score_pairs(list(zip(QUERIES, PASSAGES))), want, atol=1e-4)
    ranked = rr.rerank(QUERIES[0], PASSAGES)
    assert [i for i, _ in ranked] == list(
        np.argsort(-trainer.reranker.score([QUERIES[0]] * len(PASSAGES), PASSAGES), kind="stable")
    )


def test_pairs_tokenised_like_hugging_face(run):
    """Queries that fit: exactly tokenizer(q, p, truncation="only_second"); a query longer
    than 3/4 of max_length is cut instead of failing."""
    trainer, _, _ = run
    rr, tok = trainer.reranker, trainer.reranker.tokenizer
    enc = rr.tokenize(QUERIES, PASSAGES)
    for n, (q, p) in enumerate(zip(QUERIES, PASSAGES)):
        want = tok(q, p, truncation="only_second", max_length=MAX_LEN)
        got = enc["attention_mask"][n].bool()
        assert enc["input_ids"][n][got].tolist() == want["input_ids"], n
        assert enc["token_type_ids"][n][got].tolist() == want["token_type_ids"], n
    long_q = " ".join([f"t{t}w{w}" for t in range(N_TOPICS) for w in range(WORDS_PER_TOPIC)] * 2)
    enc = rr.tokenize([long_q], [PASSAGES[3]])
    types = enc["token_type_ids"][0][enc["attention_mask"][0].bool()].tolist()
    assert len(types) == MAX_LEN
    assert types.count(0) - 2 == int((MAX_LEN - 3) * 0.75)  # [CLS] q [SEP]: 3/4 of the room
    assert types.count(1) >= 2  # the passage keeps some tokens (and its [SEP])


def test_fresh_head_from_sentence_transformers_dir(tmp_path, caplog):
    import logging

    from densparse.train.reranker import TorchReranker

    model = make_tiny_st_model(tmp_path / "st")
    with caplog.at_level(logging.INFO, logger="densparse.train"):
        rr = TorchReranker.from_pretrained(model, device="cpu", max_length=1000)
    assert "fresh" in caplog.text
    assert rr.max_length == 64  # capped at the position embeddings
    assert type(rr.model).__name__ == "BertForSequenceClassification"
    assert rr.model.config.num_labels == 1
    assert rr.score(QUERIES[:2], PASSAGES[:2]).shape == (2,)
    rr.save(tmp_path / "saved")
    assert not (tmp_path / "saved" / "modules.json").exists()  # not an embedder any more
    with pytest.raises(ValueError, match="2 labels"):
        TorchReranker.from_pretrained(make_tiny_classifier(tmp_path / "two", num_labels=2))


# ------------------------------------------------------------------ bad settings and the CLI
def _small_cfg(tmp: Path, **kw):
    from densparse.train.trainer import TrainConfig

    if not (tmp / "model").is_dir():
        make_tiny_classifier(tmp / "model")
        make_data(tmp, n_train=16)
    base = dict(
        kind="reranker",
        train=str(tmp / "train.jsonl"),
        model=str(tmp / "model"),
        out=str(tmp / "out"),
        max_steps=2,
        lr=1e-3,
        batch_size=4,
        group_size=3,
        max_length=MAX_LEN,
        export=False,
        quiet=True,
        tensorboard=False,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize(
    ("overrides", "exc", "msg"),
    [
        ({"kind": "ranker"}, ValueError, "kind must be one of"),
        ({"group_size": 1}, ValueError, "group_size must be >= 2"),
        ({"group_size": 1, "in_batch": True}, ValueError, "group_size must be >= 2"),
        ({"pooling": "cls"}, ValueError, "pooling is for embedders"),
        ({"query_instruction": "q: "}, ValueError, "query_instruction is for embedders"),
        ({"export_kind": "st"}, ValueError, "export_kind 'reranker'"),
        ({"max_length": 3}, ValueError, "max_length"),
        ({"max_length": 64.0}, TypeError, "max_length"),
        ({"eval_candidates": 0}, ValueError, "eval_candidates"),
        ({"eval_max_queries": -1}, ValueError, "eval_max_queries"),
        ({"head_lr": 0.0}, ValueError, "head_lr"),
        ({"head_lr": "fast"}, TypeError, "head_lr"),
        ({"model": "MISSING"}, ValueError, "not found"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(tmp_path, overrides, exc, msg):
    from densparse.train.trainer import Trainer

    _small_cfg(tmp_path)
    if overrides.get("model") == "MISSING":
        overrides = {"model": str(tmp_path / "absent")}
    out = tmp_path / "never"
    with pytest.raises(exc, match=msg):
        Trainer(_small_cfg(tmp_path, out=str(out), **overrides))
    assert not out.exists()


def test_head_lr_trains_the_fresh_head_faster(tmp_path):
    from densparse.train.trainer import Trainer

    _small_cfg(tmp_path)
    st = make_tiny_st_model(tmp_path / "st")
    trainer = Trainer(_small_cfg(tmp_path, model=str(st), head_lr=1e-2))
    assert trainer.task.fresh_parameters == {"classifier.weight", "classifier.bias"}
    opt, _ = trainer._optimizer()
    fast = [g for g in opt.param_groups if g["lr"] == 1e-2]
    named = {id(p): n for n, p in trainer.task.model.named_parameters()}
    assert sorted(named[id(p)] for g in fast for p in g["params"]) == [
        "classifier.bias",
        "classifier.weight",
    ]
    assert sorted(g["lr"] for g in opt.param_groups) == [1e-3, 1e-3, 1e-2, 1e-2]
    # a classifier directory has no fresh parameter: head_lr changes nothing
    plain = Trainer(_small_cfg(tmp_path, head_lr=1e-2, out=str(tmp_path / "o2")))
    assert plain.task.fresh_parameters == frozenset()
    assert len(plain._optimizer()[0].param_groups) == 2


def test_embedder_rejects_reranker_export_kind(tmp_path):
    from densparse.train.trainer import TrainConfig

    cfg = TrainConfig(train="t", model="m", out=str(tmp_path / "o"), export_kind="reranker")
    with pytest.raises(ValueError, match="export_kind"):
        cfg.validate()


def test_eval_max_queries_samples_the_dev_set(tmp_path):
    from densparse.train.trainer import Trainer

    cfg = _small_cfg(tmp_path, dev=str(tmp_path / "dev"), eval_max_queries=3, seed=1)
    trainer = Trainer(cfg)
    assert len(trainer.dev.queries) == 3 and set(trainer.dev.qrels) == set(trainer.dev.queries)
    assert set(trainer.task.candidates.candidates) == set(trainer.dev.queries)
    again = Trainer(_small_cfg(tmp_path, dev=str(tmp_path / "dev"), eval_max_queries=3, seed=1))
    assert list(again.dev.queries) == list(trainer.dev.queries)  # a fixed sample


def test_groups_hold_the_positive_first(tmp_path):
    from densparse.train.trainer import Trainer

    trainer = Trainer(_small_cfg(tmp_path, group_size=4, batch_size=3))
    _, (qs, ps) = next(trainer.task.batches())
    assert len(qs) == len(ps) == 3 * 4
    by_query = {r["query"]: r for r in trainer.records}
    for g in range(3):
        group_q = qs[g * 4 : g * 4 + 4]
        assert len(set(group_q)) == 1
        rec = by_query[group_q[0]]
        assert ps[g * 4] in rec["pos"]
        assert all(p in rec["neg"] for p in ps[g * 4 + 1 : g * 4 + 4])


def test_cli_kind_reranker(tmp_path, capsys):
    from densparse.cli import main

    cfg = _small_cfg(tmp_path)
    conf = {
        "kind": "reranker",
        "train": cfg.train,
        "model": cfg.model,
        "out": str(tmp_path / "cli_out"),
        "dev": str(tmp_path / "dev"),
        "max_steps": 50,
        "batch_size": 4,
        "group_size": 3,
        "max_length": MAX_LEN,
        "lr": 1e-3,
    }
    (tmp_path / "ft.json").write_text(json.dumps(conf))
    rc = main(
        [
            "finetune",
            "--config",
            str(tmp_path / "ft.json"),
            "--max-steps",
            "2",
            "--no-export",
            "--quiet",
            "--no-tensorboard",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "fine-tuned 2 steps" in out and "bm25" in out
    assert (tmp_path / "cli_out" / "final" / "densparse.json").is_file()
    # the flag form, and a bad kind: a clear message, exit status 2, nothing written
    rc = main(
        [
            "finetune",
            "--config",
            str(tmp_path / "ft.json"),
            "--kind",
            "embedder",
            "--group-size",
            "0",
            "--out",
            str(tmp_path / "cli_bad"),
        ]
    )
    assert rc == 2
    assert "group_size" in capsys.readouterr().err
    assert not (tmp_path / "cli_bad").exists()
    with pytest.raises(SystemExit):
        main(["finetune", "--kind", "ranker"])
