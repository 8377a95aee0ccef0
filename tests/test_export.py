"""densparse.export: faithfulness of exported graphs, run by densparse.Encoder, against PyTorch.

Tiny BERT and XLM-RoBERTa models with random (seeded) weights and tokenizers built here with
the `tokenizers` library are exported by our exporter and compared with PyTorch references
of docs/algorithms.md "Model outputs": BGE (CLS + L2 norm), BGE-M3 (FlagEmbedding's dense,
sparse and ColBERT formulas) and SPLADE (on the shared splade-tiny). The shared
MiniLM is compared with sentence-transformers. Tests needing ../shared skip when it is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    DATA,
    SHARED,
    TINY_MAX_POS,
    bert_tokenizer,
    need,
    read_jsonl,
    subprocess_env,
    tiny_bert_config,
    tiny_xlmr_config,
    xlmr_tokenizer,
)

torch = pytest.importorskip("torch", reason="export tests need torch (the export extra)")
transformers = pytest.importorskip("transformers", reason="export tests need transformers")
pytest.importorskip("onnx", reason="export tests need onnx (the export extra)")
pytest.importorskip("onnxruntime", reason="the Encoder needs onnxruntime")
tokenizers = pytest.importorskip("tokenizers", reason="the Encoder needs tokenizers")

from densparse import Encoder  # noqa: E402
from densparse.cli import main  # noqa: E402
from densparse.export import ExportCheckError, export_model  # noqa: E402
from densparse.export import check as export_check  # noqa: E402
from densparse.export.load import verify_weights  # noqa: E402
from densparse.models.families import BGE_INSTRUCTION_EN, BGE_INSTRUCTION_ZH  # noqa: E402

SPLADE = SHARED / "models" / "splade-tiny"
MINILM = SHARED / "models" / "minilm-l6-fp32"

TEXTS = [
    "the first sentence about protein",
    "a",
    "",
    "we found high gene expression in mice cells, and the results show a long effect.",
    "this is the second text with a few more words than the first text is",
    "query about cells cells cells",
    "model",
]
LONG = " ".join(["protein gene cells study results"] * 40)  # far over 64 tokens
MAX_POS = TINY_MAX_POS


# ---------------------------------------------------------------------------- tiny models
def make_bert(path: Path, seed: int = 0):
    path.mkdir(parents=True)
    vocab = bert_tokenizer(path)
    torch.manual_seed(seed)
    cfg = tiny_bert_config(len(vocab))
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters, so a failed load shows
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(str(path))
    return model


def make_xlmr_m3(path: Path, seed: int = 1):
    path.mkdir(parents=True)
    vocab_size = xlmr_tokenizer(path)
    torch.manual_seed(seed)
    cfg = tiny_xlmr_config(vocab_size)
    model = transformers.XLMRobertaModel(cfg, add_pooling_layer=False).eval()
    model.save_pretrained(str(path))
    sparse = torch.nn.Linear(32, 1)
    colbert = torch.nn.Linear(32, 32)
    with torch.no_grad():
        sparse.weight.mul_(10)  # weights of order one, about half of them > 0
    torch.save(sparse.state_dict(), path / "sparse_linear.pt")  # as FlagEmbedding saves them
    torch.save(colbert.state_dict(), path / "colbert_linear.pt")
    return model, sparse.eval(), colbert.eval()


def token_ids(model_dir: Path, text: str, max_length: int = MAX_POS) -> list[int]:
    """Tokenised independently of the Encoder."""
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length)
    return tok.encode(text).ids


def hidden(model, ids: list[int]) -> torch.Tensor:
    t = torch.tensor([ids])
    with torch.no_grad():
        return model(input_ids=t, attention_mask=torch.ones_like(t))[0][0]


def unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x, dim=-1, eps=1e-12).numpy()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def bert(work):
    src = work / "tiny-bert"
    model = make_bert(src)
    out = work / "tiny-bert-onnx"
    report = export_model(src, out, kind="bge", show_progress=False)
    return src, model, out, report


@pytest.fixture(scope="module")
def m3(work):
    src = work / "tiny-m3"
    model, sparse, colbert = make_xlmr_m3(src)
    out = work / "tiny-m3-onnx"
    report = export_model(src, out, show_progress=False)  # kind detected from the head files
    return src, (model, sparse, colbert), out, report


# ---------------------------------------------------------------------------- BGE
def bge_ref(src: Path, model, text: str) -> np.ndarray:
    return unit(hidden(model, token_ids(src, text))[0])


def test_bge_report_and_files(bert):
    _, _, out, report = bert
    assert report.kind == "bge" and report.outputs == ["last_hidden_state"]
    assert report.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert report.onnx_path == out / "model.onnx" and report.onnx_path.is_file()
    assert set(report.max_abs_diff) == {"last_hidden_state"}
    assert report.max_abs_diff["last_hidden_state"] <= 1e-4
    assert not report.external_data and not (out / "model.onnx.data").exists()
    meta = json.loads((out / "densparse.json").read_text())
    assert meta["family"] == "bge" and meta["pooling"] == "cls" and meta["max_length"] == MAX_POS
    for name in ("tokenizer.json", "config.json"):
        assert (out / name).is_file()
    assert not list(out.glob("*.safetensors"))
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []
    import onnx

    g = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    for v in list(g.input) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and dims[1].dim_param == "sequence", v.name


def test_bge_encode_matches_torch(bert):
    src, model, out, _ = bert
    enc = Encoder.from_pretrained(out, provider="cpu")
    assert enc.family == "bge" and enc.max_length == MAX_POS
    got = enc.encode(TEXTS)
    ref = np.stack([bge_ref(src, model, t) for t in TEXTS])
    assert got.shape == (len(TEXTS), 32)
    assert np.abs(got - ref).max() <= 1e-4


def test_bge_query_instruction(bert):
    src, model, out, _ = bert
    enc = Encoder.from_pretrained(out, provider="cpu")
    assert enc.query_instruction == BGE_INSTRUCTION_EN
    queries = ["protein gene", "what is a cell?"]
    got = enc.encode_queries(queries)
    ref = np.stack([bge_ref(src, model, BGE_INSTRUCTION_EN + q) for q in queries])
    assert np.abs(got - ref).max() <= 1e-4
    # the instruction's tokens really are in the input (not [UNK]s): they change the vector
    ids = token_ids(src, BGE_INSTRUCTION_EN + queries[0])
    vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    assert ids[1:5] == [vocab[w] for w in ("represent", "this", "sentence", "for")]
    assert np.abs(got[0] - enc.encode(queries[:1])[0]).max() > 1e-3
    plain = enc.encode_corpus(queries)  # passages never get it
    assert np.abs(plain - np.stack([bge_ref(src, model, q) for q in queries])).max() <= 1e-4


def test_bge_kind_and_language_detected_from_the_source_name(bert, work):
    """A checkpoint named bge-small-zh-v1.5 is detected as `bge`, and its exported directory
    (named anything) keeps the Chinese query instruction via densparse.json."""
    src, _, _, _ = bert
    zh = work / "bge-small-zh-v1.5"
    shutil.copytree(src, zh)
    rep = export_model(zh, work / "exported-anything", check=False, show_progress=False)
    assert rep.kind == "bge" and rep.max_abs_diff == {}
    enc = Encoder.from_pretrained(work / "exported-anything", provider="cpu")
    assert enc.family == "bge" and enc.query_instruction == BGE_INSTRUCTION_ZH


def test_bge_truncation_at_max_length(bert):
    src, model, out, _ = bert
    enc = Encoder.from_pretrained(out, provider="cpu")
    ids = token_ids(src, LONG)
    assert len(ids) == MAX_POS and len(token_ids(src, LONG, 10_000)) > 2 * MAX_POS
    got = enc.encode([LONG, "a"])
    assert np.abs(got[0] - unit(hidden(model, ids)[0])).max() <= 1e-4
    short = enc.encode([LONG], max_length=16)[0]
    assert np.abs(short - unit(hidden(model, token_ids(src, LONG, 16))[0])).max() <= 1e-4


def test_bge_batched_equals_single(bert):
    _, _, out, _ = bert
    enc = Encoder.from_pretrained(out, provider="cpu")
    texts = [*TEXTS, LONG]
    batched = enc.encode(texts, batch_size=8)
    single = np.stack([enc.encode([t])[0] for t in texts])
    assert np.abs(batched - single).max() <= 1e-5


def test_optimize_and_fp16_on_tiny_bert(bert, work):
    src, _, out, _ = bert
    fp32 = Encoder.from_pretrained(out, provider="cpu").encode(TEXTS)
    rep = export_model(src, work / "bert-opt", kind="bge", optimize=True, show_progress=False)
    assert rep.optimized and rep.max_abs_diff["last_hidden_state"] <= 1e-4
    opt = Encoder.from_pretrained(work / "bert-opt", provider="cpu").encode(TEXTS)
    assert np.abs(opt - fp32).max() <= 1e-4
    # float16 weights and compute; int64 inputs and float32 outputs; runs on CPU
    rep = export_model(src, work / "bert-fp16", kind="bge", fp16=True, show_progress=False)
    assert rep.precision == "fp16" and rep.max_abs_diff["last_hidden_state"] < 0.1
    import onnx

    g = onnx.load(str(work / "bert-fp16" / "model.onnx")).graph
    assert {i.type.tensor_type.elem_type for i in g.input} == {onnx.TensorProto.INT64}
    assert g.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in g.initializer)
    half = Encoder.from_pretrained(work / "bert-fp16", provider="cpu").encode(TEXTS)
    assert (half * fp32).sum(1).min() >= 0.999


def test_int8_format_on_tiny_bert(bert, work):
    """The int8 graph: u8s8 integer MatMuls (weights signed, 7-bit, per output channel), the
    feed-forward down-projections float32, and outputs close to the float32 export."""
    import onnx
    from onnx import numpy_helper

    from densparse.export.optimize import ffn_down_projections

    src, _, out, _ = bert
    dst = work / "bert-int8"
    rep = export_model(src, dst, kind="bge", int8=True, show_progress=False)
    assert rep.precision == "int8" and rep.min_cosine["last_hidden_state"] >= 0.99
    m = onnx.load(str(dst / "model.onnx"))
    g = m.graph
    layers = tiny_bert_config(10).num_hidden_layers
    ops = [n.op_type for n in g.node]
    # per layer: Q, K, V, attention output, feed-forward up -> MatMulInteger
    assert ops.count("MatMulInteger") == 5 * layers
    assert ops.count("DynamicQuantizeLinear") >= 3 * layers
    down = ffn_down_projections(m)
    assert len(down) == layers
    inits = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.name in down:  # float32 weights, not quantised
            assert n.op_type == "MatMul"
            assert inits[n.input[1]].data_type == onnx.TensorProto.FLOAT
        if n.op_type == "MatMulInteger":
            w = inits[n.input[1]]
            assert w.data_type == onnx.TensorProto.INT8  # u8 activations x s8 weights
            v = numpy_helper.to_array(w)
            assert v.min() >= -64 and v.max() <= 64  # 7 bits: no vpmaddubsw saturation
            assert v.max() >= 60 or v.min() <= -60  # and the range is used
            if len(n.input) > 3 and n.input[3]:  # symmetric weights: zero points 0
                assert not numpy_helper.to_array(inits[n.input[3]]).any()
    # per-channel: one weight scale per output column
    scales = [t for t in g.initializer if t.name.endswith("_scale") and t.dims]
    assert scales and all(t.dims[0] > 1 for t in scales)
    a = Encoder.from_pretrained(dst, provider="cpu").encode(TEXTS)
    b = Encoder.from_pretrained(out, provider="cpu").encode(TEXTS)
    assert (a * b).sum(1).min() >= 0.99


def test_fp16_on_cuda(bert, work):
    """fp16 graphs are meant for the CUDA provider; skipped where CUDA does not come up."""
    src, _, out, _ = bert
    dst = work / "bert-fp16-cuda"
    export_model(src, dst, kind="bge", fp16=True, check=False, show_progress=False)
    try:
        enc = Encoder.from_pretrained(dst, provider="cuda")
    except RuntimeError as e:
        pytest.skip(f"no CUDA here: {e}")
    got = enc.encode(TEXTS)
    ref = Encoder.from_pretrained(out, provider="cpu").encode(TEXTS)
    assert (got * ref).sum(1).min() >= 0.999


def test_external_data_forced(bert, work):
    src, _, out, _ = bert
    dst = work / "bert-ext"
    rep = export_model(src, dst, kind="bge", external_data_threshold=0, show_progress=False)
    assert rep.external_data
    assert (dst / "model.onnx.data").is_file()
    assert (dst / "model.onnx").stat().st_size < (dst / "model.onnx.data").stat().st_size
    a = Encoder.from_pretrained(dst, provider="cpu").encode(TEXTS)
    b = Encoder.from_pretrained(out, provider="cpu").encode(TEXTS)
    assert np.abs(a - b).max() <= 1e-6


def test_old_layernorm_names_really_load(bert, work):
    """A checkpoint with LayerNorm gamma/beta keys (like splade-tiny) exports the SAME model."""
    from safetensors.torch import load_file, save_file

    src, model, _, _ = bert
    old = work / "bert-gamma"
    shutil.copytree(src, old)
    sd = load_file(str(old / "model.safetensors"))
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in sd.items()
    }
    assert renamed.keys() != sd.keys()
    save_file(renamed, str(old / "model.safetensors"), metadata={"format": "pt"})
    export_model(old, work / "bert-gamma-onnx", kind="bge", show_progress=False)
    got = Encoder.from_pretrained(work / "bert-gamma-onnx", provider="cpu").encode(TEXTS)
    ref = np.stack([bge_ref(src, model, t) for t in TEXTS])
    assert np.abs(got - ref).max() <= 1e-4
    # a missing tensor is a loud error, not a random layer
    del sd["encoder.layer.1.output.dense.weight"]
    broken = work / "bert-missing"
    shutil.copytree(src, broken)
    save_file(sd, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing.*layer\.1\.output\.dense\.weight"):
        export_model(broken, work / "never", kind="bge", show_progress=False)
    assert not (work / "never").exists()


def test_verify_weights_catches_a_changed_parameter(bert):
    src, _, _, _ = bert
    m = transformers.BertModel.from_pretrained(str(src), add_pooling_layer=False)
    assert verify_weights(m, src) > 10
    with torch.no_grad():
        m.encoder.layer[0].attention.output.LayerNorm.weight.add_(1.0)
    with pytest.raises(ValueError, match="did not load"):
        verify_weights(m, src)


# ---------------------------------------------------------------------------- BGE-M3
def m3_ref(src: Path, mods, text: str):
    """FlagEmbedding's formulas on one unpadded text (docs/algorithms.md, BGE-M3)."""
    model, sparse, colbert = mods
    ids = token_ids(src, text)
    h = hidden(model, ids)
    dense = unit(h[0])
    with torch.no_grad():
        w = torch.relu(sparse(h)).squeeze(-1).numpy()
        c = colbert(h[1:]) * torch.ones(len(ids) - 1, 1)
    lex: dict[str, float] = {}
    for i, wt in zip(ids, w):
        if i in (0, 1, 2, 3) or wt <= 0:
            continue
        lex[str(i)] = max(lex.get(str(i), 0.0), float(wt))
    cv = unit(c)[: len(ids) - 1]
    return dense, lex, cv, ids


def assert_same_sparse(a: dict, b: dict, tol: float = 1e-4) -> None:
    """Same key sets (keys whose weight is within tol of zero on both sides are numerically
    ambiguous and may be absent from one), values within tol."""
    for k in set(a) ^ set(b):
        assert max(a.get(k, 0.0), b.get(k, 0.0)) <= tol, f"key {k} only on one side"
    for k in set(a) & set(b):
        assert abs(a[k] - b[k]) <= tol, (k, a[k], b[k])


def test_m3_report(m3):
    _, _, out, report = m3
    assert report.kind == "m3"
    assert report.outputs == ["dense", "sparse", "colbert", "last_hidden_state"]
    assert report.inputs == ["input_ids", "attention_mask"]
    assert max(report.max_abs_diff.values()) <= 1e-4
    meta = json.loads((out / "densparse.json").read_text())
    assert meta["family"] == "bge-m3" and meta["max_length"] == MAX_POS
    assert not (out / "sparse_linear.pt").exists()  # the heads are in the graph


def test_m3_matches_flagembedding_formulas(m3):
    src, mods, out, _ = m3
    enc = Encoder.from_pretrained(out, provider="cpu")
    assert enc.family == "bge-m3" and enc.dim == 32
    texts = [*TEXTS, LONG]
    res = enc.encode(texts, return_dense=True, return_sparse=True, return_colbert=True)
    n_keys = 0
    for i, t in enumerate(texts):
        dense, lex, cv, ids = m3_ref(src, mods, t)
        assert np.abs(res["dense_vecs"][i] - dense).max() <= 1e-4
        assert set(res["lexical_weights"][i]) == set(lex), t
        assert_same_sparse(res["lexical_weights"][i], lex)
        n_keys += len(lex)
        assert res["colbert_vecs"][i].shape == (len(ids) - 1, 32)
        assert np.abs(res["colbert_vecs"][i] - cv).max() <= 1e-4
    assert n_keys > 10  # the head gives positive weights, so the sparse test tests something
    # repeated ids keep their max weight: "cells" occurs three times in TEXTS[5]
    ids = token_ids(src, TEXTS[5])
    assert len(ids) > len(set(ids))


def test_m3_scores_and_batching(m3):
    src, mods, out, _ = m3
    enc = Encoder.from_pretrained(out, provider="cpu")
    q, p = "protein cells", "we found high gene expression in mice cells about protein"
    r = enc.encode([q, p], return_colbert=True)
    _, lq, cq, _ = m3_ref(src, mods, q)
    _, lp, cp, _ = m3_ref(src, mods, p)
    ref_lex = sum(w * lp[k] for k, w in lq.items() if k in lp)
    assert ref_lex > 0
    got = enc.compute_lexical_matching_score(r["lexical_weights"][0], r["lexical_weights"][1])
    assert abs(got - ref_lex) <= 1e-4
    ref_col = float((cq @ cp.T).max(axis=1).mean())
    assert abs(enc.colbert_score(r["colbert_vecs"][0], r["colbert_vecs"][1]) - ref_col) <= 1e-4
    texts = [*TEXTS, LONG]
    batched = enc.encode(texts, batch_size=8, return_colbert=True)
    for i, t in enumerate(texts):
        one = enc.encode([t], return_colbert=True)
        assert np.abs(batched["dense_vecs"][i] - one["dense_vecs"][0]).max() <= 1e-5
        assert batched["lexical_weights"][i].keys() == one["lexical_weights"][0].keys()
        for k, w in one["lexical_weights"][0].items():
            assert abs(batched["lexical_weights"][i][k] - w) <= 1e-5
        assert np.abs(batched["colbert_vecs"][i] - one["colbert_vecs"][0]).max() <= 1e-5


# ---------------------------------------------------------------------------- SPLADE
def test_splade_tiny_matches_torch(work):
    src = need(SPLADE)
    out = work / "splade"
    report = export_model(src, out, show_progress=False)
    assert report.kind == "splade" and report.outputs == ["logits"]
    assert report.max_abs_diff["logits"] <= 1e-4
    enc = Encoder.from_pretrained(out, provider="cpu")
    assert enc.family == "splade"
    model = transformers.BertForMaskedLM.from_pretrained(str(src)).eval()
    # the gamma/beta checkpoint really loaded: LayerNorm weights are not the init's ones
    assert not torch.allclose(model.bert.embeddings.LayerNorm.weight, torch.ones(128))
    texts = [t for t in TEXTS if t] + ["SPLADE expands a query with related terms."]
    got = enc.encode(texts, batch_size=4)
    for t, g in zip(texts, got):
        ids = token_ids(src, t, 512)
        t_ids = torch.tensor([ids])
        with torch.no_grad():
            logits = model(input_ids=t_ids, attention_mask=torch.ones_like(t_ids)).logits[0]
        w = torch.log1p(torch.relu(logits)).max(dim=0).values.numpy()
        ref = {str(int(v)): float(w[v]) for v in np.flatnonzero(w > 0)}
        assert len(ref) > 10
        assert set(g) == set(ref), t
        assert_same_sparse(g, ref)


# ---------------------------------------------------------------------------- sentence-transformers
def test_st_directory_pooling_follows_1_pooling(bert, work):
    """A sentence-transformers directory (max pooling, no Normalize) is detected as `st` and
    pooled as its 1_Pooling says: equal to SentenceTransformer.encode."""
    st = pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
    src, _, _, _ = bert
    d = work / "tiny-st"
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    word = Transformer(str(src), max_seq_length=48)
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = Pooling(dim(), pooling_mode="max")
    model = st.SentenceTransformer(modules=[word, pool], device="cpu")
    model.save(str(d))
    if not (d / "tokenizer.json").is_file():
        shutil.copyfile(src / "tokenizer.json", d / "tokenizer.json")
    rep = export_model(d, work / "tiny-st-onnx", show_progress=False)
    assert rep.kind == "st"
    enc = Encoder.from_pretrained(work / "tiny-st-onnx", provider="cpu")
    assert enc.spec.pooling == "max" and enc.max_length == 48
    texts = [t for t in TEXTS if t] + [LONG]
    got = enc.encode(texts, normalize=False)
    ref = model.encode(texts, convert_to_numpy=True)
    assert np.abs(got - ref).max() <= 1e-4
    # a Dense module after pooling is outside the graph's reach: refused up front
    mods = json.loads((d / "modules.json").read_text())
    mods.append(
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (d / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(ValueError, match="Dense"):
        export_model(d, work / "never-st", show_progress=False)


# ---------------------------------------------------------------------------- real model
def scifact_texts(n: int = 36) -> list[str]:
    p = DATA / "scifact" / "corpus.jsonl"
    if p.is_file():
        docs = read_jsonl(p)[:n]
        return [d["title"] for d in docs[: n // 3]] + [d["text"] for d in docs[n // 3 :]]
    return [*TEXTS, LONG]


@pytest.fixture(scope="module")
def minilm(work):
    src = need(MINILM)
    out = work / "minilm"
    report = export_model(src, out, show_progress=False)
    return src, out, report


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
    src, out, report = minilm
    assert report.kind == "st" and report.max_abs_diff["last_hidden_state"] <= 1e-4
    for name in ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        assert (out / name).is_file(), name
    enc = Encoder.from_pretrained(out, provider="cpu")
    assert enc.spec.pooling == "mean" and enc.max_length == 256
    texts = scifact_texts()
    got = enc.encode(texts)
    ref = st.SentenceTransformer(str(src), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True
    )
    cos = (got * ref).sum(1)
    assert cos.min() >= 0.9999, cos.min()


def test_minilm_int8_close_to_fp32(minilm, work):
    src, out, _ = minilm
    dst = work / "minilm-int8"
    rep = export_model(src, dst, int8=True, show_progress=False)
    assert rep.precision == "int8" and rep.mean_cosine["last_hidden_state"] >= 0.95
    assert (dst / "model.onnx").stat().st_size < 0.5 * (out / "model.onnx").stat().st_size
    texts = scifact_texts()
    a = Encoder.from_pretrained(dst, provider="cpu").encode(texts)
    b = Encoder.from_pretrained(out, provider="cpu").encode(texts)
    assert (a * b).sum(1).min() >= 0.99


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs(bert, m3, work, tmp_path):
    src, _, _, _ = bert
    m3_src = m3[0]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_model(tmp_path / "nope", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"config\.json"):
        export_model(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(ValueError, match="kind must be one of"):
        export_model(src, tmp_path / "o", kind="clip")
    with pytest.raises(ValueError, match="at most one"):
        export_model(src, tmp_path / "o", kind="bge", fp16=True, int8=True)
    with pytest.raises(ValueError, match="cannot tell"):
        export_model(src, tmp_path / "o")  # a plain BertModel named tiny-bert: no kind
    no_heads = tmp_path / "m3-no-heads"
    shutil.copytree(m3_src, no_heads)
    (no_heads / "colbert_linear.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"colbert_linear\.pt"):
        export_model(no_heads, tmp_path / "o", kind="m3")
    assert not (tmp_path / "o").exists()


def test_existing_out_dir_is_protected(bert, tmp_path, monkeypatch):
    src, _, _, _ = bert
    dst = tmp_path / "existing"
    dst.mkdir()
    (dst / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        export_model(src, dst, kind="bge")
    # a failing export with overwrite=True leaves the old directory as it was, no temp dirs
    monkeypatch.setitem(export_check.TOLERANCE, "fp32", -1.0)
    with pytest.raises(ExportCheckError):
        export_model(src, dst, kind="bge", overwrite=True, show_progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]
    monkeypatch.undo()
    export_model(src, dst, kind="bge", overwrite=True, show_progress=False)
    assert (dst / "model.onnx").is_file() and not (dst / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


def test_import_is_torch_free():
    code = "import sys, densparse.export; assert 'torch' not in sys.modules, 'torch imported'"
    env = subprocess_env()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr


def test_missing_torch_says_how_to_install(bert, tmp_path, monkeypatch):
    src, _, _, _ = bert
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"densparse\[export\]"):
        export_model(src, tmp_path / "o", kind="bge")


# ---------------------------------------------------------------------------- CLI
def test_cli_export(bert, tmp_path, capsys):
    src, _, _, _ = bert
    dst = tmp_path / "cli"
    assert main(["export", str(src), str(dst), "--kind", "bge", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "max |onnx - torch| last_hidden_state" in printed
    assert Encoder.from_pretrained(dst, provider="cpu").family == "bge"
    assert main(["export", str(src), str(dst), "--kind", "bge", "-q"]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), str(dst)]) == 2


def test_python_dash_m_export(bert, tmp_path):
    src, _, _, _ = bert
    dst = tmp_path / "pym"
    env = subprocess_env()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "densparse",
            "export",
            str(src),
            str(dst),
            "--kind",
            "bge",
            "--no-check",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "not checked against torch" in r.stdout
    assert (dst / "model.onnx").is_file() and (dst / "densparse.json").is_file()
