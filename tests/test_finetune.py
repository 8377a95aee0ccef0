"""Fine-tuning end to end on a tiny random BERT: loss goes down, checkpoints reload, the ONNX
export loads in densparse.Encoder with the same embeddings, bad input fails before training."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from conftest import bert_wordpiece

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
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tok, vocab = bert_wordpiece(_vocab())
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


def _has_export() -> bool:
    try:
        import densparse.export  # noqa: F401
    except ImportError:
        return False
    return True


STEPS = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One 40-step run with dev evaluation every 10 steps, a checkpoint at 20, export."""
    from densparse.train.trainer import TrainConfig, Trainer

    tmp = tmp_path_factory.mktemp("ft")
    model = make_tiny_model(tmp / "model")
    train, dev = make_data(tmp)
    cfg = TrainConfig(
        train=str(train),
        model=str(model),
        out=str(tmp / "out"),
        dev=str(dev),
        max_steps=STEPS,
        lr=1e-3,
        batch_size=8,
        group_size=4,
        temperature=0.05,
        query_max_len=16,
        passage_max_len=32,
        eval_steps=10,
        save_steps=20,
        export=_has_export(),
        quiet=True,
        seed=7,
    )
    trainer = Trainer(cfg)
    return trainer, trainer.train(), tmp


def test_loss_goes_down(run):
    _, res, _ = run
    losses = [v for _, v in res.losses]
    assert len(losses) == STEPS and all(np.isfinite(losses))
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < first - 0.3, (first, last)
    # the dev metric moves the same way
    assert res.dev[0]["step"] == 0 and res.dev[-1]["step"] == STEPS
    assert res.dev[-1]["ndcg@10"] > res.dev[0]["ndcg@10"] + 0.1


def test_output_files(run):
    _, res, _ = run
    out = res.out_dir
    with open(res.train_csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    assert float(rows[-1]["lr"]) == pytest.approx(0.0, abs=1e-12)  # linear decay to 0
    with open(res.dev_csv, encoding="utf-8") as f:
        dev_rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in dev_rows] == [0, 10, 20, 30, 40]
    assert set(dev_rows[0]) >= {"ndcg@10", "recall@100", "mrr@10"}
    assert res.plot is not None and res.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "train_config.json").read_text())["group_size"] == 4
    assert res.checkpoints == [out / "checkpoint-20"]
    final = res.final_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json"):
        assert (final / name).is_file(), name
    assert (final / "1_Pooling" / "config.json").is_file()
    meta = json.loads((final / "densparse.json").read_text())
    assert meta["family"] == "sentence-transformers" and meta["pooling"] == "mean"
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return
    assert any((out / "tensorboard").iterdir())


TEXTS = ["t1w0 t1w3 f2", "t5w1 f7 t5w2 f9 t5w6 f0", "f3", "t11w7 t0w0 t4w4 f1 f2 f3 f4 f5"]


def test_checkpoint_reloads_same_embeddings(run):
    from densparse.train.trainer import TorchEmbedder

    trainer, res, _ = run
    live = trainer.embedder.encode(TEXTS, 32)
    again = TorchEmbedder.from_pretrained(res.final_dir, device="cpu")
    assert again.pooling == "mean" and again.spec.family == "sentence-transformers"
    np.testing.assert_allclose(again.encode(TEXTS, 32), live, atol=1e-6)
    mid = TorchEmbedder.from_pretrained(res.checkpoints[0], device="cpu").encode(TEXTS, 32)
    assert np.abs(mid - live).max() > 1e-3  # a different (earlier) model


def test_export_loads_in_encoder(run):
    if not _has_export():
        pytest.skip("densparse.export is not available in this checkout")
    import densparse

    trainer, res, _ = run
    assert res.onnx_dir is not None and res.onnx_dir.is_dir()
    enc = densparse.Encoder.from_pretrained(res.onnx_dir, provider="cpu")
    got = enc.encode(TEXTS, normalize=True)
    want = trainer.embedder.encode(TEXTS, 64)
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(enc.encode_queries(TEXTS[:2]), want[:2], atol=1e-4)


# ------------------------------------------------------------------ other modes and the CLI
def _small_cfg(tmp: Path, **kw):
    from densparse.train.trainer import TrainConfig

    if not (tmp / "model").is_dir():
        make_tiny_model(tmp / "model")
        make_data(tmp, n_train=24)
    base = dict(
        train=str(tmp / "train.jsonl"),
        model=str(tmp / "model"),
        out=str(tmp / "out"),
        max_steps=3,
        lr=1e-3,
        batch_size=4,
        group_size=3,
        query_max_len=16,
        passage_max_len=32,
        export=False,
        quiet=True,
        tensorboard=False,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize(("group_size", "in_batch"), [(1, True), (3, False)])
def test_other_modes_train(tmp_path, group_size, in_batch):
    from densparse.train.trainer import Trainer

    cfg = _small_cfg(
        tmp_path,
        group_size=group_size,
        in_batch=in_batch,
        grad_accum=2,
        grad_checkpointing=not in_batch,
        fp16=True,  # CPU: ignored (logged), training stays fp32
    )
    if group_size == 1:  # in-batch only: records need no negatives
        lines = tmp_path.joinpath("train.jsonl").read_text().splitlines()
        recs = [{**json.loads(x), "neg": []} for x in lines]
        tmp_path.joinpath("train.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    res = Trainer(cfg).train()
    assert res.steps == 3 and len(res.losses) == 3 and res.dev_csv is None
    assert all(np.isfinite(v) for _, v in res.losses)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _bad_cases(tmp: Path):
    """(name, config overrides or a callable, exception, message regex)."""
    good = json.dumps({"query": "t1w1", "pos": ["t1w2"], "neg": ["t2w2"]})
    (tmp / "notmodel").mkdir(exist_ok=True)
    (tmp / "noweights").mkdir(exist_ok=True)
    _write(tmp / "noweights" / "config.json", json.dumps({"model_type": "bert"}))
    bad_dev = tmp / "baddev"
    (bad_dev / "qrels").mkdir(parents=True, exist_ok=True)
    _write(bad_dev / "corpus.jsonl", json.dumps({"_id": "d1", "text": "t1w1"}) + "\n")
    _write(bad_dev / "queries.jsonl", json.dumps({"_id": "q1", "text": "t1w1"}) + "\n")
    _write(bad_dev / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tnope\t1\n")
    (tmp / "full").mkdir(exist_ok=True)
    _write(tmp / "full" / "something.txt", "x")
    return [
        ("empty", {"train": str(_write(tmp / "e.jsonl", "\n"))}, ValueError, "empty"),
        (
            "malformed",
            {"train": str(_write(tmp / "m.jsonl", good + "\n{not json\n"))},
            ValueError,
            ":2",
        ),
        (
            "no-pos",
            {
                "train": str(
                    _write(tmp / "p.jsonl", json.dumps({"query": "a", "pos": [], "neg": []}))
                )
            },
            ValueError,
            "pos",
        ),
        (
            "no-neg",
            {
                "train": str(
                    _write(tmp / "n.jsonl", json.dumps({"query": "a", "pos": ["b"], "neg": []}))
                )
            },
            ValueError,
            "no negative",
        ),
        ("missing-train", {"train": str(tmp / "absent.jsonl")}, FileNotFoundError, "absent"),
        ("model-absent", {"model": str(tmp / "nomodel")}, ValueError, "not found"),
        ("not-a-model", {"model": str(tmp / "notmodel")}, ValueError, "config.json"),
        ("no-weights", {"model": str(tmp / "noweights")}, ValueError, "no weights"),
        ("dev-unknown-doc", {"dev": str(bad_dev)}, ValueError, "absent from corpus"),
        ("dev-no-split", {"dev": str(bad_dev), "dev_split": "dev"}, FileNotFoundError, "split"),
        ("group-0", {"group_size": 0}, ValueError, "group_size"),
        ("group-1-no-in-batch", {"group_size": 1, "in_batch": False}, ValueError, "group_size"),
        ("fp16-bf16", {"fp16": True, "bf16": True}, ValueError, "exclusive"),
        ("temperature", {"temperature": 0.0}, ValueError, "temperature"),
        ("lr", {"lr": -1.0}, ValueError, "lr"),
        ("steps-type", {"max_steps": 2.5}, TypeError, "max_steps"),
        ("out-not-empty", {"out": str(tmp / "full")}, ValueError, "not empty"),
        ("no-model", {"model": None}, ValueError, "model is required"),
        (
            "one-record-g1",
            {"train": str(_write(tmp / "one.jsonl", good)), "group_size": 1},
            ValueError,
            "at least 2",
        ),
    ]


def test_bad_input_fails_before_training(tmp_path):
    from densparse.train.trainer import Trainer

    _small_cfg(tmp_path)
    for name, overrides, exc, msg in _bad_cases(tmp_path):
        cfg = _small_cfg(
            tmp_path, **{**overrides, "out": overrides.get("out", str(tmp_path / name))}
        )
        with pytest.raises(exc, match=msg):
            Trainer(cfg)
        if name != "out-not-empty":
            assert not (tmp_path / name).exists(), f"{name}: wrote output before failing"


def test_unknown_config_key_and_files(tmp_path):
    from densparse.train.trainer import TrainConfig

    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_dict({"learning_rate": 1e-5})
    _write(tmp_path / "c.toml", "[finetune]\nlr = 3e-5\ngroup-size = 4\nin_batch = false\n")
    cfg = TrainConfig.from_file(tmp_path / "c.toml", train="x")
    assert (cfg.lr, cfg.group_size, cfg.in_batch, cfg.train) == (3e-5, 4, False, "x")
    _write(tmp_path / "c.json", json.dumps({"batch_size": 3, "seed": 1}))
    assert TrainConfig.from_file(tmp_path / "c.json").batch_size == 3
    _write(tmp_path / "bad.json", "{")
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainConfig.from_file(tmp_path / "bad.json")


def test_cli_config_and_flags(tmp_path, capsys):
    from densparse.cli import main

    cfg = _small_cfg(tmp_path)
    conf = {
        "train": cfg.train,
        "model": cfg.model,
        "out": str(tmp_path / "cli_out"),
        "max_steps": 50,
        "batch_size": 4,
        "group_size": 3,
        "lr": 1e-3,
        "query_max_len": 16,
        "passage_max_len": 32,
    }
    _write(tmp_path / "ft.toml", "\n".join(f"{k} = {json.dumps(v)}" for k, v in conf.items()))
    rc = main(
        [
            "finetune",
            "--config",
            str(tmp_path / "ft.toml"),
            "--max-steps",
            "2",
            "--no-export",
            "--quiet",
            "--no-tensorboard",
        ]
    )
    assert rc == 0
    rows = (tmp_path / "cli_out" / "train_log.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # the flag overrode max_steps = 50
    assert "fine-tuned 2 steps" in capsys.readouterr().out
    # bad input: clear message, exit status 2, nothing trained
    rc = main(
        [
            "finetune",
            "--config",
            str(tmp_path / "ft.toml"),
            "--group-size",
            "0",
            "--out",
            str(tmp_path / "cli_bad"),
        ]
    )
    assert rc == 2
    assert "group_size" in capsys.readouterr().err
    assert not (tmp_path / "cli_bad").exists()
