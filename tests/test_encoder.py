"""densparse.Encoder (torch-free, onnxruntime + tokenizers) and late chunking.

Most tests build tiny models here: a WordPiece tokenizer from a few words and a one-layer
self-attention ONNX graph with random weights (needs the `onnx` package, from the `test`
extra). References are computed independently: the graph run one text at a time through
onnxruntime directly, and FlagEmbedding's / the late-chunking paper's formulas in numpy.
Tests on the shared real models skip when ../shared is absent.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, SHARED, bert_wordpiece, fill_hub_cache, need

onnx = pytest.importorskip("onnx", reason="building the tiny test graphs needs the onnx package")
ort = pytest.importorskip("onnxruntime", reason="the Encoder needs onnxruntime")
tokenizers = pytest.importorskip("tokenizers", reason="the Encoder needs tokenizers")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from densparse import Encoder  # noqa: E402
from densparse.models import chunking as C  # noqa: E402
from densparse.models.batching import plan_batches  # noqa: E402
from densparse.models.families import (  # noqa: E402
    BGE_INSTRUCTION_EN,
    BGE_INSTRUCTION_ZH,
    detect_family,
)

MINILM = SHARED / "models" / "minilm-l6-int8-onnx"
BGE_EN_TOK = SHARED / "tokenizers" / "bge-small-en-v1.5"
BGE_ZH_TOK = SHARED / "tokenizers" / "bge-small-zh-v1.5"

_WORDS = (
    "the a of and to in is it this that first second third sentence word text protein gene "
    "cell cells mice study results show we found high low model long short document query "
    "passage about with for on are was be by as"
)
WORDS = _WORDS.split()
PUNCT = list(".,!?;:'\"-()")
LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789")
CJK = list("今天气很好我们去公园吧吗是的中文句子这一个测试")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
DIM = 16
POSITIONS = 64

TEXTS = [
    "the first sentence about protein",
    "a",
    "",
    "we found high gene expression in mice cells, and the results show a long effect.",
    "今天天气很好。我们去公园吧！",
    "this is the second text with a few more words than the first text is",
    "query about cells",
    "model",
]


# ---------------------------------------------------------------------------- tiny models
def write_tokenizer(path: Path, fixed_padding: bool = False) -> int:
    pieces = ["##" + c for c in LETTERS]
    tok, vocab = bert_wordpiece(SPECIAL + WORDS + PUNCT + LETTERS + CJK + pieces)
    if fixed_padding:  # like the shared int8 MiniLM's tokenizer.json
        tok.enable_truncation(12)
        tok.enable_padding(length=12, pad_id=0, pad_token="[PAD]")
    tok.save(str(path))
    return len(vocab)


def _init(name: str, arr: np.ndarray):
    return numpy_helper.from_array(np.asarray(arr), name)


def build_graph(
    path: Path,
    vocab_size: int,
    kind: str = "hidden",
    seed: int = 0,
    token_type_ids: bool = True,
) -> dict[str, np.ndarray]:
    """A one-layer masked self-attention model.

    kind: "hidden" (output last_hidden_state), "m3" (dense, sparse, colbert and
    last_hidden_state), "splade" (logits). Returns the weights (for head references)."""
    rng = np.random.default_rng(seed)
    w = {
        "emb": rng.normal(0, 1, (vocab_size, DIM)).astype(np.float32),
        "pos": rng.normal(0, 0.5, (POSITIONS, DIM)).astype(np.float32),
        "typ": rng.normal(0, 0.5, (2, DIM)).astype(np.float32),
        "wo": rng.normal(0, 0.3, (DIM, DIM)).astype(np.float32),
        "sparse_w": rng.normal(0, 0.5, (1, DIM)).astype(np.float32),
        "sparse_b": np.array([0.1], np.float32),
        "colbert_w": rng.normal(0, 0.3, (DIM, DIM)).astype(np.float32),
        "colbert_b": rng.normal(0, 0.1, (DIM,)).astype(np.float32),
        "vocab_w": rng.normal(0, 0.5, (DIM, vocab_size)).astype(np.float32),
    }
    N = helper.make_node
    inits = [
        _init("emb", w["emb"]),
        _init("pos", w["pos"]),
        _init("wo", w["wo"]),
        _init("one_f", np.array(1.0, np.float32)),
        _init("neg", np.array(-1e4, np.float32)),
        _init("scale", np.array(1 / np.sqrt(DIM), np.float32)),
        _init("axis1", np.array(1, np.int64)),
        _init("ax1", np.array([1], np.int64)),
    ]
    nodes = [
        N("Gather", ["emb", "input_ids"], ["tok"]),
        N("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        N("CumSum", ["mask_f", "axis1"], ["csum"]),
        N("Sub", ["csum", "one_f"], ["pos_raw"]),
        N("Relu", ["pos_raw"], ["pos_f"]),
        N("Cast", ["pos_f"], ["pos_ids"], to=TensorProto.INT64),
        N("Gather", ["pos", "pos_ids"], ["pe"]),
        N("Add", ["tok", "pe"], ["x0"]),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
    ]
    if token_type_ids:
        inputs.append(
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"])
        )
        inits.append(_init("typ", w["typ"]))
        nodes += [N("Gather", ["typ", "token_type_ids"], ["te"]), N("Add", ["x0", "te"], ["x"])]
    else:
        nodes.append(N("Identity", ["x0"], ["x"]))
    nodes += [
        N("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        N("MatMul", ["x", "xt"], ["s0"]),
        N("Mul", ["s0", "scale"], ["s1"]),
        N("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
        N("Unsqueeze", ["mf", "ax1"], ["mf3"]),
        N("Sub", ["one_f", "mf3"], ["inv"]),
        N("Mul", ["inv", "neg"], ["bias"]),
        N("Add", ["s1", "bias"], ["s2"]),
        N("Softmax", ["s2"], ["att"], axis=-1),
        N("MatMul", ["att", "x"], ["ctx"]),
        N("MatMul", ["ctx", "wo"], ["proj"]),
        N("Tanh", ["proj"], ["act"]),
        N("Add", ["act", "x"], ["last_hidden_state"]),
    ]
    hidden = helper.make_tensor_value_info(
        "last_hidden_state", TensorProto.FLOAT, ["batch", "seq", DIM]
    )
    outputs = [hidden]
    if kind == "m3":
        inits += [
            _init("sw", w["sparse_w"].T),
            _init("sb", w["sparse_b"]),
            _init("cw", w["colbert_w"].T),
            _init("cb", w["colbert_b"]),
            _init("zero", np.array([0], np.int64)),
            _init("s_start", np.array([1], np.int64)),
            _init("s_end", np.array([2**62], np.int64)),
        ]
        nodes += [
            N("Gather", ["last_hidden_state", "zero_s"], ["dense"], axis=1),
            N("MatMul", ["last_hidden_state", "sw"], ["sp0"]),
            N("Add", ["sp0", "sb"], ["sp1"]),
            N("Relu", ["sp1"], ["sparse"]),
            N("Slice", ["last_hidden_state", "s_start", "s_end", "ax1"], ["h1"]),
            N("MatMul", ["h1", "cw"], ["c0"]),
            N("Add", ["c0", "cb"], ["colbert"]),
        ]
        inits.append(_init("zero_s", np.array(0, np.int64)))
        outputs = [
            helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", DIM]),
            helper.make_tensor_value_info("sparse", TensorProto.FLOAT, ["batch", "seq", 1]),
            helper.make_tensor_value_info("colbert", TensorProto.FLOAT, ["batch", "seq1", DIM]),
            hidden,
        ]
    elif kind == "splade":
        inits.append(_init("vw", w["vocab_w"]))
        nodes.append(N("MatMul", ["last_hidden_state", "vw"], ["logits"]))
        outputs = [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab_size])
        ]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w


def make_model_dir(
    root: Path,
    kind: str = "hidden",
    config: dict | None = None,
    files: dict[str, object] | None = None,
    token_type_ids: bool = True,
    fixed_padding: bool = False,
) -> tuple[Path, dict]:
    root.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tokenizer(root / "tokenizer.json", fixed_padding=fixed_padding)
    w = build_graph(root / "model.onnx", vocab_size, kind, token_type_ids=token_type_ids)
    cfg = {"model_type": "bert", "max_position_embeddings": POSITIONS, "vocab_size": vocab_size}
    cfg.update(config or {})
    (root / "config.json").write_text(json.dumps(cfg))
    for name, content in (files or {}).items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return root, w


def st_files(pooling: str = "mean", normalize: bool = True) -> dict:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    pool = {
        f"pooling_mode_{m}": False
        for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
    }
    pool[
        {
            "cls": "pooling_mode_cls_token",
            "mean": "pooling_mode_mean_tokens",
            "max": "pooling_mode_max_tokens",
        }[pooling]
    ] = True
    pool["word_embedding_dimension"] = DIM
    return {"modules.json": modules, "1_Pooling/config.json": pool}


def ref_hidden(
    model_dir: Path, text: str, max_length: int | None = None, prefix: str = ""
) -> tuple:
    """Reference: tokenize one text (own tokenizer instance) and run the graph alone."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    if max_length:
        tok.enable_truncation(max_length)
    else:
        tok.no_truncation()
    ids = np.array([tok.encode(prefix + text).ids], np.int64)
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    key = "last_hidden_state" if "last_hidden_state" in out else "logits"
    return out[key][0], ids[0]


def unit(x: np.ndarray) -> np.ndarray:
    return x / max(np.linalg.norm(x), 1e-12)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d, _ = make_model_dir(
        tmp_path_factory.mktemp("tiny") / "model", "hidden", files=st_files("mean")
    )
    return d


@pytest.fixture(scope="module")
def tiny_enc(tiny) -> Encoder:
    return Encoder.from_pretrained(tiny, provider="cpu", threads=1)


# ---------------------------------------------------------------------------- families
def _cfg_dir(
    tmp_path: Path, name: str, config: dict | None = None, files: dict | None = None
) -> Path:
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(config or {}))
    for fname, content in (files or {}).items():
        p = d / fname
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return d


def test_family_bge_en_and_zh(tmp_path):
    d = _cfg_dir(
        tmp_path, "x", {"_name_or_path": "BAAI/bge-small-en-v1.5", "max_position_embeddings": 512}
    )
    s = detect_family(d)
    assert (s.family, s.pooling, s.query_instruction, s.language) == (
        "bge",
        "cls",
        BGE_INSTRUCTION_EN,
        "en",
    )
    assert s.max_length == 512
    d = _cfg_dir(tmp_path, "bge-large-zh-v1.5", {"max_position_embeddings": 512})
    s = detect_family(d)
    assert (s.family, s.query_instruction, s.language) == ("bge", BGE_INSTRUCTION_ZH, "zh")
    # language from the vocabulary when the name does not say
    d = _cfg_dir(tmp_path, "bge-base-v1.5", {"vocab_size": 21128})
    assert detect_family(d).query_instruction == BGE_INSTRUCTION_ZH
    d = _cfg_dir(tmp_path, "bge-base-v1.5b", {"vocab_size": 30522})
    assert detect_family(d).query_instruction == BGE_INSTRUCTION_EN
    # a BGE sentence-transformers directory with CLS pooling is still BGE
    d = _cfg_dir(tmp_path, "bge-small-en-st", {}, st_files("cls"))
    assert detect_family(d).family == "bge"


def test_family_m3_splade_st_generic(tmp_path):
    d = _cfg_dir(
        tmp_path,
        "m3",
        {"model_type": "xlm-roberta", "max_position_embeddings": 8194, "pad_token_id": 1},
    )
    (d / "sparse_linear.pt").write_bytes(b"x")
    s = detect_family(d)
    assert (s.family, s.pooling, s.max_length, s.query_instruction) == ("bge-m3", "m3", 8192, None)
    assert s.special_ids == frozenset({0, 1, 2, 3})
    d = _cfg_dir(tmp_path, "plain", {})
    assert detect_family(d, output_names=("dense", "sparse", "colbert")).family == "bge-m3"
    assert detect_family(_cfg_dir(tmp_path, "BAAI_bge-m3", {})).family == "bge-m3"
    d = _cfg_dir(tmp_path, "mlm", {"architectures": ["BertForMaskedLM"]})
    s = detect_family(d)
    assert (s.family, s.pooling, s.normalize) == ("splade", "splade", False)
    assert detect_family(_cfg_dir(tmp_path, "splade-v3", {})).family == "splade"
    for pooling in ("mean", "cls", "max"):
        d = _cfg_dir(tmp_path, f"st-{pooling}", {}, st_files(pooling, normalize=pooling != "max"))
        s = detect_family(d)
        assert (s.family, s.pooling, s.normalize) == (
            "sentence-transformers",
            pooling,
            pooling != "max",
        )
    d = _cfg_dir(tmp_path, "gen", {"max_position_embeddings": 512})
    s = detect_family(d)
    assert (s.family, s.pooling, s.query_instruction) == ("generic", "mean", None)
    # overrides
    s = detect_family(d, family="bge")
    assert (s.family, s.pooling, s.query_instruction) == ("bge", "cls", BGE_INSTRUCTION_EN)
    (d / "densparse.json").write_text(
        json.dumps({"family": "generic", "pooling": "cls", "query_instruction": "Q: "})
    )
    s = detect_family(d)
    assert (s.pooling, s.query_instruction) == ("cls", "Q: ")
    with pytest.raises(ValueError, match="family must be one of"):
        detect_family(d, family="bert")


def test_family_max_length_sources(tmp_path):
    files = {
        "sentence_bert_config.json": {"max_seq_length": 256},
        "tokenizer_config.json": {"model_max_length": 512},
    }
    d = _cfg_dir(tmp_path, "a", {"max_position_embeddings": 512}, files)
    assert detect_family(d).max_length == 256
    d = _cfg_dir(
        tmp_path,
        "b",
        {"max_position_embeddings": 512},
        {"tokenizer_config.json": {"model_max_length": 10**30}},
    )
    assert detect_family(d).max_length == 512
    d = _cfg_dir(
        tmp_path,
        "c",
        {"max_position_embeddings": 128},
        {"tokenizer_config.json": {"model_max_length": 512}},
    )
    assert detect_family(d).max_length == 128  # never past the position embeddings


def test_family_max_length_of_known_sentence_transformers_copies(tmp_path):
    """A sentence-transformers copy that dropped sentence_bert_config.json (like the shared
    int8 MiniLM) gets its checkpoint's max_seq_length, not the base tokenizer's 512."""
    st = {**st_files("mean"), "tokenizer_config.json": {"model_max_length": 512}}
    cfg = {"max_position_embeddings": 512, "_name_or_path": "nreimers/MiniLM-L6-H384-uncased"}
    assert detect_family(_cfg_dir(tmp_path, "minilm-l6-int8-onnx", cfg, st)).max_length == 256
    assert detect_family(_cfg_dir(tmp_path, "all-mpnet-base-v2", cfg, st)).max_length == 384
    para = _cfg_dir(tmp_path, "paraphrase-MiniLM-L6-v2-onnx", cfg, st)
    assert detect_family(para).max_length == 128
    # the file wins when present; without the sentence-transformers layout, no name rule
    own = {**st, "sentence_bert_config.json": {"max_seq_length": 200}}
    assert detect_family(_cfg_dir(tmp_path, "all-MiniLM-L6-v2", cfg, own)).max_length == 200
    plain = {"tokenizer_config.json": {"model_max_length": 512}}
    assert detect_family(_cfg_dir(tmp_path, "minilm-l6-plain", cfg, plain)).max_length == 512


def test_family_bad_pooling_config(tmp_path):
    files = st_files("mean")
    files["1_Pooling/config.json"]["pooling_mode_cls_token"] = True
    d = _cfg_dir(tmp_path, "both", {}, files)
    with pytest.raises(ValueError, match="several poolings"):
        detect_family(d)
    d = _cfg_dir(tmp_path, "badjson", {})
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        detect_family(d)


# ---------------------------------------------------------------------------- bad dirs
def test_bad_model_dirs(tmp_path, tiny):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no ONNX graph .* and no tokenizer\.json"):
        Encoder.from_pretrained(empty)
    only_onnx = tmp_path / "only_onnx"
    only_onnx.mkdir()
    shutil.copy(tiny / "model.onnx", only_onnx / "model.onnx")
    with pytest.raises(ValueError, match=r"no tokenizer\.json"):
        Encoder.from_pretrained(only_onnx)
    only_tok = tmp_path / "only_tok"
    only_tok.mkdir()
    shutil.copy(tiny / "tokenizer.json", only_tok / "tokenizer.json")
    with pytest.raises(ValueError, match="ONNX graph"):
        Encoder.from_pretrained(only_tok)
    two = tmp_path / "two"
    shutil.copytree(tiny, two)
    (two / "model.onnx").rename(two / "a.onnx")
    shutil.copy(two / "a.onnx", two / "b.onnx")
    with pytest.raises(ValueError, match="several ONNX files"):
        Encoder.from_pretrained(two)
    assert Encoder.from_pretrained(two, onnx_file="b.onnx", provider="cpu").dim == DIM
    nested = tmp_path / "nested"
    shutil.copytree(tiny, nested)
    (nested / "onnx").mkdir()
    (nested / "model.onnx").rename(nested / "onnx" / "model.onnx")
    assert Encoder.from_pretrained(nested, provider="cpu").dim == DIM
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="onnxruntime cannot load"):
        Encoder.from_pretrained(broken, provider="cpu")
    with pytest.raises(ValueError, match="is a file"):
        Encoder.from_pretrained(tiny / "model.onnx")
    with pytest.raises(ValueError, match="neither an existing directory nor"):
        Encoder.from_pretrained(str(tmp_path / "no" / "such" / "dir"))
    with pytest.raises(ValueError, match="provider must be"):
        Encoder.from_pretrained(tiny, provider="tpu")
    with pytest.raises(ValueError, match="threads"):
        Encoder.from_pretrained(tiny, threads=0)
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        Encoder.from_pretrained(tiny, max_length=65)
    with pytest.raises(ValueError, match="family must be one of"):
        Encoder.from_pretrained(tiny, family="nope")


def test_bad_inputs(tiny_enc):
    with pytest.raises(TypeError, match="single str"):
        tiny_enc.encode("hello")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tiny_enc.encode(["a", 3])
    with pytest.raises(ValueError, match="batch_size"):
        tiny_enc.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match="max_tokens_per_batch"):
        tiny_enc.encode(["a"], max_tokens_per_batch=0)
    with pytest.raises(ValueError, match="max_tokens_per_batch"):
        tiny_enc.encode(["a"], max_tokens_per_batch="big")
    out = tiny_enc.encode([])
    assert out.shape == (0, DIM) and out.dtype == np.float32


def test_cuda_request_without_cuda(tiny):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            enc = Encoder.from_pretrained(tiny, provider="cuda")
        except RuntimeError as e:
            assert "unavailable" in str(e)
        else:
            assert enc.provider == "cuda"
            return
    else:
        with pytest.raises(RuntimeError, match="unavailable"):
            Encoder.from_pretrained(tiny, provider="cuda")


def test_encoder_prints_nothing_on_stderr(tiny):
    """Creating and using an Encoder with provider="auto" writes nothing to stderr (no
    onnxruntime-gpu library-load errors on a machine without CUDA)."""
    import subprocess
    import sys

    from conftest import subprocess_env

    code = (
        "import densparse; "
        f"e = densparse.Encoder.from_pretrained({str(tiny)!r}); "
        "print(e.provider, e.encode(['a b']).shape)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    assert r.stdout.split()[0] in ("cpu", "cuda")


def test_no_gpu_reason_is_quiet(monkeypatch):
    from densparse.models import session

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES" in session._no_gpu_reason()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(session.ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError(name)))
    assert "no NVIDIA driver" in session._no_gpu_reason()


def test_auto_provider_logs_choice(tiny, caplog):
    with caplog.at_level(logging.INFO, logger="densparse.models"):
        enc = Encoder.from_pretrained(tiny, provider="auto")
    assert enc.provider in ("cpu", "cuda")
    assert any("ExecutionProvider" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------- batching
def test_plan_batches_sorted_budgeted_complete():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 300, 500)
    for batch_size, budget in ((32, 2048), (7, None), (1000, 512), (4, 100)):
        batches = plan_batches(lengths, batch_size, budget)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(len(lengths)))
        assert np.all(np.diff(lengths[flat]) <= 0)  # longest first
        for b in batches:
            assert 1 <= len(b) <= batch_size
            if budget is not None and len(b) > 1:
                assert len(b) * lengths[b].max() <= budget


def test_auto_budget_depends_on_provider():
    from densparse.models.batching import CPU_MAX_TOKENS, DEFAULT_MAX_TOKENS, resolve_budget

    assert resolve_budget("auto", "cpu") == CPU_MAX_TOKENS
    assert resolve_budget("auto", "cuda") == DEFAULT_MAX_TOKENS
    assert resolve_budget(None, "cpu") is None
    assert resolve_budget(77, "cuda") == 77


def test_batched_equals_one_by_one_and_order(tiny, tiny_enc):
    one = np.stack([tiny_enc.encode([t])[0] for t in TEXTS])
    for bs, budget in ((32, None), (3, None), (32, 40), (2, 7), (32, "auto")):
        got = tiny_enc.encode(TEXTS, batch_size=bs, max_tokens_per_batch=budget)
        assert got.shape == (len(TEXTS), DIM) and got.dtype == np.float32
        np.testing.assert_allclose(got, one, atol=1e-5)
    # reference: the graph run on each text alone, masked mean (no padding), normalised
    for t, v in zip(TEXTS, one):
        h, _ = ref_hidden(tiny, t)
        np.testing.assert_allclose(v, unit(h.mean(0)), atol=1e-5)


def test_dense_poolings_match_reference(tmp_path):
    for pooling in ("cls", "max", "mean"):
        d, _ = make_model_dir(tmp_path / pooling, files=st_files(pooling, normalize=False))
        enc = Encoder.from_pretrained(d, provider="cpu")
        got = enc.encode(TEXTS, batch_size=3, normalize=False)
        for t, v in zip(TEXTS, got):
            h, _ = ref_hidden(d, t)
            ref = {"cls": h[0], "max": h.max(0), "mean": h.mean(0)}[pooling]
            np.testing.assert_allclose(v, ref, atol=1e-5)


def test_truncation_and_fixed_padding_overridden(tmp_path):
    # the tokenizer.json ships truncation + fixed padding at 12 tokens: both must be ignored
    d, _ = make_model_dir(tmp_path / "m", files=st_files("mean"), fixed_padding=True)
    enc = Encoder.from_pretrained(d, provider="cpu", max_length=20)
    long_a = " ".join(["word"] * 30) + " protein"
    long_b = " ".join(["word"] * 30) + " gene cells"
    a, b = enc.encode([long_a, long_b])
    np.testing.assert_allclose(a, b, atol=1e-6)  # differ only past the 20th token
    h, _ = ref_hidden(d, long_a, max_length=20)
    assert h.shape[0] == 20
    np.testing.assert_allclose(a, unit(h.mean(0)), atol=1e-5)
    short = enc.encode(["protein"])[0]  # no fixed padding: [CLS] protein [SEP] only
    h, _ = ref_hidden(d, "protein")
    assert h.shape[0] == 3
    np.testing.assert_allclose(short, unit(h.mean(0)), atol=1e-5)
    # per-call max_length, and the model's positions as the cap
    c = enc.encode([long_a], max_length=8)[0]
    np.testing.assert_allclose(c, unit(ref_hidden(d, long_a, max_length=8)[0].mean(0)), atol=1e-5)
    with pytest.raises(ValueError, match="exceeds"):
        enc.encode(["a"], max_length=1000)


def test_query_instruction_and_corpus(tmp_path):
    d, _ = make_model_dir(
        tmp_path / "bge-small-en-v1.5", config={"_name_or_path": "BAAI/bge-small-en-v1.5"}
    )
    enc = Encoder.from_pretrained(d, provider="cpu")
    assert enc.family == "bge" and enc.query_instruction == BGE_INSTRUCTION_EN
    q = enc.encode_queries(["query about cells"])[0]
    h, _ = ref_hidden(d, "query about cells", prefix=BGE_INSTRUCTION_EN)
    np.testing.assert_allclose(q, unit(h[0]), atol=1e-5)  # CLS pooling over instruction + query
    assert not np.allclose(q, enc.encode(["query about cells"])[0], atol=1e-3)
    q2 = enc.encode_queries(["query about cells"], query_instruction="")[0]
    np.testing.assert_allclose(q2, enc.encode(["query about cells"])[0], atol=1e-6)
    enc2 = Encoder.from_pretrained(d, provider="cpu", query_instruction="query: ")
    np.testing.assert_allclose(
        enc2.encode_queries(["cells"])[0], enc.encode(["query: cells"])[0], atol=1e-6
    )
    corpus = [{"title": "protein", "text": "gene cells"}, {"text": "mice"}, "study"]
    got = enc.encode_corpus(corpus)
    np.testing.assert_allclose(got, enc.encode(["protein gene cells", "mice", "study"]), atol=1e-6)


def test_threads_from_many_threads(tiny):
    from concurrent.futures import ThreadPoolExecutor

    enc = Encoder.from_pretrained(tiny, provider="cpu", threads=1)
    ref = enc.encode(TEXTS)
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: enc.encode(TEXTS, batch_size=2), range(8)))
    for o in outs:
        np.testing.assert_allclose(o, ref, atol=1e-5)


# ---------------------------------------------------------------------------- BGE-M3
def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, np.float32).tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [off, off + len(raw)],
        }
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def m3_reference(h: np.ndarray, ids: np.ndarray, w: dict):
    """FlagEmbedding's BGE-M3 formulas on one text's hidden states."""
    dense = unit(h[0])
    tw = np.maximum(h @ w["sparse_w"].T + w["sparse_b"], 0)[:, 0]
    lex: dict[str, float] = {}
    for i, wt in zip(ids.tolist(), tw.tolist()):
        if i in (0, 1, 2, 3) or wt <= 0:
            continue
        lex[str(i)] = max(lex.get(str(i), 0.0), wt)
    col = h[1:] @ w["colbert_w"].T + w["colbert_b"]
    col = col / np.linalg.norm(col, axis=1, keepdims=True)
    return dense, lex, col[: len(ids) - 1]


@pytest.mark.parametrize("layout", ["graph", "npz", "safetensors", "npy"])
def test_bge_m3_matches_reference(tmp_path, layout):
    # special ids 0-3 are [PAD] [UNK] [CLS] [SEP] in the tiny vocab, as <s> <pad> </s> <unk> in M3's
    kind = "m3" if layout == "graph" else "hidden"
    d, w = make_model_dir(
        tmp_path / "m", kind, config={"_name_or_path": "BAAI/bge-m3"}, token_type_ids=False
    )
    if layout == "npz":
        np.savez(d / "sparse_linear.npz", weight=w["sparse_w"], bias=w["sparse_b"])
        np.savez(d / "colbert_linear.npz", weight=w["colbert_w"], bias=w["colbert_b"])
    elif layout == "safetensors":
        write_safetensors(
            d / "sparse_linear.safetensors", {"weight": w["sparse_w"], "bias": w["sparse_b"]}
        )
        write_safetensors(
            d / "colbert_linear.safetensors", {"weight": w["colbert_w"], "bias": w["colbert_b"]}
        )
    elif layout == "npy":
        for head, key in (("sparse_linear", "sparse"), ("colbert_linear", "colbert")):
            np.save(d / f"{head}.weight.npy", w[f"{key}_w"])
            np.save(d / f"{head}.bias.npy", w[f"{key}_b"])
    enc = Encoder.from_pretrained(d, provider="cpu")
    assert enc.family == "bge-m3" and enc.query_instruction is None
    out = enc.encode(TEXTS, batch_size=3, return_colbert=True)
    assert set(out) == {"dense_vecs", "lexical_weights", "colbert_vecs"}
    assert out["dense_vecs"].shape == (len(TEXTS), DIM)
    for n, t in enumerate(TEXTS):
        h, ids = ref_hidden(d, t)
        dense, lex, col = m3_reference(h, ids, w)
        np.testing.assert_allclose(out["dense_vecs"][n], dense, atol=1e-5)
        assert set(out["lexical_weights"][n]) == set(lex)
        for k, v in lex.items():
            assert out["lexical_weights"][n][k] == pytest.approx(v, abs=1e-5)
        assert out["colbert_vecs"][n].shape == (len(ids) - 1, DIM)
        np.testing.assert_allclose(out["colbert_vecs"][n], col, atol=1e-5)
    # batched == one by one
    for n, t in enumerate(TEXTS):
        one = enc.encode([t], return_colbert=True)
        np.testing.assert_allclose(one["dense_vecs"][0], out["dense_vecs"][n], atol=1e-5)
        assert one["lexical_weights"][0].keys() == out["lexical_weights"][n].keys()
        np.testing.assert_allclose(one["colbert_vecs"][0], out["colbert_vecs"][n], atol=1e-5)
    # scores
    a, b = out["lexical_weights"][0], out["lexical_weights"][3]
    manual = sum(a[k] * b[k] for k in a if k in b)
    assert Encoder.compute_lexical_matching_score(a, b) == pytest.approx(manual)
    q, p = out["colbert_vecs"][0], out["colbert_vecs"][3]
    assert Encoder.colbert_score(q, p) == pytest.approx(
        float(np.mean([(p @ r).max() for r in q])), abs=1e-6
    )
    only = enc.encode(TEXTS[:2], return_dense=False, return_sparse=True)
    assert set(only) == {"lexical_weights"}
    with pytest.raises(ValueError, match="at least one"):
        enc.encode(TEXTS, return_dense=False, return_sparse=False)


def test_bge_m3_torch_heads_only(tmp_path):
    d, _ = make_model_dir(
        tmp_path / "m", "hidden", config={"_name_or_path": "BAAI/bge-m3"}, token_type_ids=False
    )
    (d / "sparse_linear.pt").write_bytes(b"torch pickle")
    with pytest.raises(ValueError, match="torch pickle"):
        Encoder.from_pretrained(d, provider="cpu")
    (d / "sparse_linear.pt").unlink()
    enc = Encoder.from_pretrained(d, provider="cpu")  # dense only works without heads
    assert enc.encode(["cells"], return_sparse=False)["dense_vecs"].shape == (1, DIM)
    with pytest.raises(ValueError, match="sparse_linear"):
        enc.encode(["cells"])


def test_splade_matches_reference(tmp_path):
    d, _ = make_model_dir(
        tmp_path / "splade", "splade", config={"architectures": ["BertForMaskedLM"]}
    )
    enc = Encoder.from_pretrained(d, provider="cpu")
    assert enc.family == "splade" and enc.dim is None
    got = enc.encode(TEXTS, batch_size=3)
    for t, g in zip(TEXTS, got):
        logits, _ = ref_hidden(d, t)
        ref = np.log1p(np.maximum(logits, 0)).max(0)
        nz = {str(i): float(ref[i]) for i in np.flatnonzero(ref > 0)}
        assert set(g) == set(nz)
        for k, v in nz.items():
            assert g[k] == pytest.approx(v, abs=1e-5)


# ---------------------------------------------------------------------------- late chunking
def jina_chunked_pooling(h: np.ndarray, annotations, max_length=None) -> list[np.ndarray]:
    """jina-ai/late-chunking chunked_pooling, transcribed to numpy."""
    if max_length is not None:
        annotations = [(s, min(e, max_length - 1)) for s, e in annotations if s < max_length - 1]
    return [h[s:e].sum(0) / (e - s) for s, e in annotations if e - s >= 1]


def test_late_chunk_pool_equals_reference():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(5, 80))
        h = rng.normal(size=(n, 12)).astype(np.float32)
        cuts = np.sort(rng.choice(np.arange(1, n), size=min(4, n - 1), replace=False))
        bounds = [0, *cuts.tolist(), n]
        spans = list(zip(bounds[:-1], bounds[1:]))
        limit = None if trial % 2 else int(rng.integers(3, n + 2))
        ours, kept = C.late_chunk_pool(h, spans, max_length=limit, normalize=False)
        ref = jina_chunked_pooling(h, spans, max_length=limit)
        assert len(ours) == len(ref) == len(kept)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, atol=1e-5)
        normed, _ = C.late_chunk_pool(h, spans, max_length=limit)
        for a, b in zip(normed, ref):
            np.testing.assert_allclose(a, unit(b), atol=1e-5)


def test_special_token_adjustment_matches_reference():
    # content-token annotations of jina's chunk_by_tokens, adjusted by _extend_special_tokens
    content = [(0, 4), (4, 9), (9, 11)]
    full = [(s + 1, e + 1) for s, e in content]  # positions in [CLS] ... [SEP]
    ours = C.adjust_for_special_tokens(full, n_tokens=13)
    ref = []
    for i, (s, e) in enumerate(content):
        left = s + (1 if i > 0 else 0)
        right = e + 1 + (1 if i == len(content) - 1 else 0)
        ref.append((left, right))
    assert ours == ref == [(0, 5), (5, 10), (10, 13)]


def test_window_stitching_arithmetic():
    # a position-independent "model": stitched windows must equal the direct output
    rng = np.random.default_rng(5)
    table = rng.normal(size=(1000, 4))
    for n in (1, 5, 63, 64, 65, 200, 513):
        ids = rng.integers(0, 1000, n)
        direct = table[ids]
        for window, overlap in ((64, 0), (64, 16), (64, 63), (10, 3), (2, 1)):
            plan = C.window_plan(n, window, overlap)
            assert plan[0][0] == 0 and plan[-1][1] == n
            assert all(e - s <= window for s, e, _ in plan)
            got = C.stitch([table[ids[s:e]] for s, e, _ in plan], plan)
            np.testing.assert_array_equal(got, direct)
    with pytest.raises(ValueError):
        C.window_plan(10, 4, 4)


def test_window_stitching_equals_direct_encode_when_document_fits(tiny, tiny_enc):
    docs = [t for t in TEXTS if t] + [" ".join(["protein gene"] * 20)]
    stitched = tiny_enc.token_embeddings(docs, batch_size=2)
    for doc, h in zip(docs, stitched):
        ref, _ = ref_hidden(tiny, doc)
        assert len(ref) <= tiny_enc.max_length
        np.testing.assert_allclose(h, ref, atol=1e-5)
    # long late chunking on a document that fits equals the single-pass ("truncate") result
    a = tiny_enc.chunk_embed(docs, strategy="fixed", chunk_size=5)
    b = tiny_enc.chunk_embed(docs, strategy="fixed", chunk_size=5, long_documents="truncate")
    for (va, sa), (vb, sb) in zip(a, b):
        assert sa == sb
        np.testing.assert_allclose(va, vb, atol=1e-6)


def test_long_document_windows(tiny, tiny_enc):
    doc = " ".join(f"{w} cells" for w in WORDS * 3)  # far more than 64 tokens
    (h,) = tiny_enc.token_embeddings([doc])
    n_tokens = len(tiny_enc.tokenizer.encode(doc).ids)
    assert n_tokens > 3 * tiny_enc.max_length and h.shape == (n_tokens, DIM)
    # the windows are plain slices of the sequence: check the stitch against running them by hand
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tiny / "tokenizer.json")).encode(doc).ids
    sess = ort.InferenceSession(str(tiny / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = []
    for s, e, drop in C.window_plan(len(ids), 64, 16):
        x = np.array([ids[s:e]], np.int64)
        out = sess.run(
            None,
            {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)},
        )
        rows.append(out[0][0][drop:])
    np.testing.assert_allclose(h, np.concatenate(rows), atol=1e-5)
    vecs, spans = tiny_enc.chunk_embed([doc], strategy="fixed", chunk_size=32)[0]
    assert spans[-1][1] == len(doc) and len(vecs) == len(spans) == -(-(n_tokens - 2) // 32)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    # truncate mode keeps only the chunks starting before max_length - 1
    tv, ts = tiny_enc.chunk_embed(
        [doc], strategy="fixed", chunk_size=32, long_documents="truncate"
    )[0]
    assert len(ts) == 2 and ts == spans[:2] and tv.shape == (2, DIM)


def test_chunk_embed_late_equals_manual_pooling(tiny, tiny_enc):
    doc = (
        "the first sentence about protein. a second sentence on gene cells! third? "
        "今天天气很好。我们去公园吧！"
    )
    vecs, spans = tiny_enc.chunk_embed([doc], strategy="sentences")[0]
    assert [doc[s:e] for s, e in spans] == [
        "the first sentence about protein.",
        "a second sentence on gene cells!",
        "third?",
        "今天天气很好。",
        "我们去公园吧！",
    ]
    h, _ = ref_hidden(tiny, doc)
    from tokenizers import Tokenizer

    enc = Tokenizer.from_file(str(tiny / "tokenizer.json")).encode(doc)
    starts = [o[0] for o in enc.offsets]
    bounds = []
    for s, e in spans:
        toks = [
            i
            for i, (st, sp) in enumerate(zip(starts, enc.special_tokens_mask))
            if not sp and s <= st < e
        ]
        bounds.append((toks[0], toks[-1] + 1))
    bounds[0] = (0, bounds[0][1])
    bounds[-1] = (bounds[-1][0], bounds[-1][1] + 1)
    for v, (s, e) in zip(vecs, bounds):
        np.testing.assert_allclose(v, unit(h[s:e].mean(0)), atol=1e-5)
    # naive chunking = each chunk's text encoded alone with the model's pooling
    nv, ns = tiny_enc.chunk_embed([doc], strategy="sentences", late=False)[0]
    assert ns == spans
    np.testing.assert_allclose(nv, tiny_enc.encode([doc[s:e] for s, e in spans]), atol=1e-6)
    assert not np.allclose(nv, vecs, atol=1e-3)
    # packing sentences up to a token budget
    pv, ps = tiny_enc.chunk_embed([doc], strategy="sentences", chunk_size=15)[0]
    assert pv.shape == (len(ps), DIM)
    assert ps[0][0] == 0 and ps[-1][1] == len(doc) and len(ps) < len(spans)


def test_chunk_strategies_fixed_and_spans(tiny_enc):
    doc = "we found high gene cells in mice and the results show a long study about the model"
    vecs, spans = tiny_enc.chunk_embed([doc], strategy="fixed", chunk_size=4)[0]
    words = doc.split()
    assert [doc[s:e] for s, e in spans] == [
        " ".join(words[i : i + 4]) for i in range(0, len(words), 4)
    ]
    assert vecs.shape == (len(spans), DIM) and vecs.dtype == np.float32
    given = [(0, 8), (9, 25), (26, 26 + 10)]
    sv, ss = tiny_enc.chunk_embed([doc], strategy="spans", spans=[given])[0]
    assert ss == given and sv.shape == (3, DIM)
    # a span holding no token is dropped (with its char span)
    sv, ss = tiny_enc.chunk_embed(["a  b"], strategy="spans", spans=[[(0, 1), (1, 3), (3, 4)]])[0]
    assert ss == [(0, 1), (3, 4)]
    with pytest.raises(ValueError, match="spans"):
        tiny_enc.chunk_embed([doc], strategy="spans")
    with pytest.raises(ValueError, match="not a span"):
        tiny_enc.chunk_embed([doc], strategy="spans", spans=[[(5, 500)]])
    with pytest.raises(ValueError, match="strategy"):
        tiny_enc.chunk_embed([doc], strategy="words")
    with pytest.raises(ValueError, match="chunk_size"):
        tiny_enc.chunk_embed([doc], chunk_size=0)
    assert tiny_enc.chunk_embed([""], strategy="sentences")[0][0].shape == (0, DIM)


def test_sentence_spans_english_and_chinese():
    text = 'Dr. Smith said "hi." Then left! Why? 3.14 is pi.\n\nNew para'
    got = [text[s:e] for s, e in C.sentence_spans(text)]
    assert got == ["Dr.", 'Smith said "hi."', "Then left!", "Why?", "3.14 is pi.", "New para"]
    zh = "今天天气很好。我们去公园吧！好吗？是的；走吧……最后一句"
    assert [zh[s:e] for s, e in C.sentence_spans(zh)] == [
        "今天天气很好。",
        "我们去公园吧！",
        "好吗？",
        "是的；",
        "走吧……",
        "最后一句",
    ]
    fw = "你好！再见？好；完．"  # full-width ！？；．
    assert [fw[s:e] for s, e in C.sentence_spans(fw)] == ["你好！", "再见？", "好；", "完．"]
    assert C.sentence_spans("   ") == []


def test_chunk_embed_needs_hidden_states(tmp_path):
    d, _ = make_model_dir(
        tmp_path / "splade", "splade", config={"architectures": ["BertForMaskedLM"]}
    )
    enc = Encoder.from_pretrained(d, provider="cpu")
    with pytest.raises(ValueError, match="last_hidden_state"):
        enc.chunk_embed(["a b"])


# ---------------------------------------------------------------------------- hub cache
def test_hub_cache_resolution(tmp_path, tiny, monkeypatch):
    cache = tmp_path / "hub"
    fill_hub_cache(cache, "someorg/tiny-model", tiny)
    enc = Encoder.from_pretrained(
        "someorg/tiny-model", cache_dir=cache, local_files_only=True, provider="cpu"
    )
    direct = Encoder.from_pretrained(tiny, provider="cpu")
    np.testing.assert_allclose(enc.encode(TEXTS), direct.encode(TEXTS), atol=1e-6)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc2 = Encoder.from_pretrained("someorg/tiny-model", cache_dir=cache, provider="cpu")
    assert enc2.model_dir == enc.model_dir
    with pytest.raises(ValueError, match="local Hugging Face cache"):
        Encoder.from_pretrained("someorg/absent", cache_dir=cache)
    # no cache_dir: huggingface_hub's default cache (HF_HUB_CACHE, read when it is imported)
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    enc3 = Encoder.from_pretrained("someorg/tiny-model", provider="cpu")
    assert enc3.model_dir == enc.model_dir


# ---------------------------------------------------------------------------- shared models
def minilm_reference(texts: list[str], max_length: int = 256) -> np.ndarray:
    """Independent reference: tokenizers + onnxruntime by hand, masked mean, L2 normalise."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    sess = ort.InferenceSession(str(MINILM / "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for t in texts:
        ids = np.array([tok.encode(t).ids], np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        h = sess.run(None, feeds)[0][0]
        out.append(unit(h.mean(0)))
    return np.stack(out)


SENTENCES = [
    "Protein folding is a central problem in structural biology.",
    "Mice lacking the gene showed reduced tumour growth.",
    "The quick brown fox jumps over the lazy dog.",
    "a",
    "Vitamin D supplementation did not reduce the risk of fractures in older adults, "
    "according to a large randomised controlled trial with more than twenty thousand participants.",
]


def test_minilm_int8_max_length_is_256():
    need(MINILM)
    assert Encoder.from_pretrained(MINILM, provider="cpu").max_length == 256


def test_minilm_int8_matches_reference():
    need(MINILM)
    enc = Encoder.from_pretrained(MINILM, provider="cpu", max_length=256)
    assert enc.family == "sentence-transformers" and enc.spec.pooling == "mean" and enc.dim == 384
    got = enc.encode(SENTENCES, batch_size=2)
    ref = minilm_reference(SENTENCES)
    cos = (got * ref).sum(1)
    assert cos.min() >= 0.999, cos
    one = np.stack([enc.encode([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(got, one, atol=1e-5)
    # a long text is truncated at max_length, not a crash on the 512 position embeddings
    long = " ".join(SENTENCES * 40)
    assert enc.encode([long], max_length=512).shape == (1, 384)


def _bge_like(tmp_path: Path, tok_dir: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    shutil.copy(MINILM / "model.onnx", d / "model.onnx")
    shutil.copy(tok_dir / "tokenizer.json", d / "tokenizer.json")
    cfg = json.loads((MINILM / "config.json").read_text())
    cfg["_name_or_path"] = f"BAAI/{name}"
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_bge_like_dir_cls_and_instruction(tmp_path):
    need(MINILM)
    need(BGE_EN_TOK)
    d = _bge_like(tmp_path, BGE_EN_TOK, "bge-small-en-v1.5")
    enc = Encoder.from_pretrained(d, provider="cpu")
    assert (enc.family, enc.spec.pooling, enc.query_instruction) == (
        "bge",
        "cls",
        BGE_INSTRUCTION_EN,
    )
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_padding()
    q = "what causes tumour growth"
    ids = tok.encode(BGE_INSTRUCTION_EN + q).ids
    instr_ids = tok.encode(BGE_INSTRUCTION_EN, add_special_tokens=False).ids
    assert ids[1 : 1 + len(instr_ids)] == instr_ids  # instruction tokens come right after [CLS]
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([ids], np.int64)
    h = sess.run(
        None,
        {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)},
    )[0]
    got = enc.encode_queries([q, "another query"])[0]
    np.testing.assert_allclose(got, unit(h[0, 0]), atol=1e-5)
    p = enc.encode_corpus([q])[0]  # passages: no instruction
    x = np.array([tok.encode(q).ids], np.int64)
    h = sess.run(
        None,
        {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)},
    )[0]
    np.testing.assert_allclose(p, unit(h[0, 0]), atol=1e-5)


def test_bge_like_zh_instruction(tmp_path):
    need(MINILM)
    need(BGE_ZH_TOK)
    d = _bge_like(tmp_path, BGE_ZH_TOK, "bge-small-zh-v1.5")
    shutil.copy(MINILM / "config.json", d / "config.json")  # no name: the 21,128 vocab decides
    (d / "config.json").write_text(
        json.dumps(
            {
                **json.loads((MINILM / "config.json").read_text()),
                "_name_or_path": "BAAI/bge-small-v1.5",
            }
        )
    )
    enc = Encoder.from_pretrained(d, provider="cpu")
    assert enc.query_instruction == BGE_INSTRUCTION_ZH
    v = enc.encode_queries(["房东不退押金怎么办"])
    np.testing.assert_allclose(
        v, enc.encode([BGE_INSTRUCTION_ZH + "房东不退押金怎么办"]), atol=1e-6
    )


def test_minilm_late_chunking_runs():
    need(MINILM)
    enc = Encoder.from_pretrained(MINILM, provider="cpu", max_length=256)
    doc = " ".join(SENTENCES * 12)  # past 256 tokens: long late chunking
    ((vecs, spans),) = enc.chunk_embed([doc], strategy="sentences", chunk_size=64)
    assert spans[-1][1] == len(doc) and vecs.shape == (len(spans), 384)
    naive, nspans = enc.chunk_embed([doc], strategy="sentences", chunk_size=64, late=False)[0]
    assert nspans == spans
    # late chunks of a related passage stay close to their naive counterparts
    assert float((vecs * naive).sum(1).mean()) > 0.5


def test_scifact_ndcg_minilm_int8():
    """Shared int8 MiniLM on SciFact test: nDCG@10 >= 0.640 (sentence-transformers: 0.645).
    Corpus encoded at the model's max_seq_length 256 (as sentence-transformers does).
    Measured 0.6468 (recall@100 0.9217); about 9 CPU-minutes on a 2-core machine."""
    need(MINILM)
    from densparse import DenseIndex
    from densparse.eval import evaluate, load_beir

    ds = load_beir(need(DATA / "scifact"), split="test")
    enc = Encoder.from_pretrained(MINILM, max_length=256)
    doc_ids = list(ds.corpus)
    docs = enc.encode_corpus([ds.corpus[i] for i in doc_ids], batch_size=64)
    qids = list(ds.queries)
    qv = enc.encode_queries([ds.queries[q] for q in qids])
    index = DenseIndex(docs.shape[1])
    index.add(docs)
    hit_ids, hit_scores = index.search(qv, k=100)
    run = {
        q: {doc_ids[int(i)]: float(s) for i, s in zip(hit_ids[n], hit_scores[n]) if i >= 0}
        for n, q in enumerate(qids)
    }
    res = evaluate(ds.qrels, run, metrics=("ndcg@10", "recall@100"))
    print("SciFact test, shared int8 MiniLM:", res)
    assert res["ndcg@10"] >= 0.640, res


def _chunk_run(enc, ds, doc_ids, chunked, qv, k=100):
    """Retrieval run where a document scores the max over its chunks (docs/algorithms.md,
    "Late chunking")."""
    counts = np.array([len(v) for v, _ in chunked])
    vecs = np.concatenate([v for v, _ in chunked if len(v)])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sims = qv @ vecs.T
    doc_scores = np.full((len(qv), len(doc_ids)), -np.inf, dtype=np.float32)
    has = counts > 0
    doc_scores[:, has] = np.maximum.reduceat(sims, starts[has], axis=1)
    top = np.argsort(-doc_scores, axis=1, kind="stable")[:, :k]
    return {
        q: {doc_ids[j]: float(doc_scores[n, j]) for j in top[n]} for n, q in enumerate(ds.queries)
    }


@pytest.mark.skipif(
    os.environ.get("DENSPARSE_SLOW") != "1",
    reason="slow (encodes SciFact twice, ~5 min on 2 cores): set DENSPARSE_SLOW=1",
)
@pytest.mark.xfail(
    strict=False,
    reason="measured 2026-11-24: late 0.6668 < naive 0.6727 nDCG@10 with the shared int8 MiniLM "
    "(256-token context, mean pooling; the paper's gain is with long-context jina-v2 models)",
)
def test_scifact_late_chunking_beats_naive():
    """64-token chunks of SciFact documents with the shared int8 MiniLM: the issue expects late
    chunking to score a higher nDCG@10 than naive chunking (both printed). Measured: late
    0.6668, naive 0.6727 (whole documents: 0.6468); 23 min on 2 shared cores."""
    need(MINILM)
    from densparse.eval import evaluate, load_beir

    ds = load_beir(need(DATA / "scifact"), split="test")
    enc = Encoder.from_pretrained(MINILM, max_length=256)
    doc_ids = list(ds.corpus)
    texts = [f"{ds.corpus[i]['title']} {ds.corpus[i]['text']}".strip() for i in doc_ids]
    qv = enc.encode_queries([ds.queries[q] for q in ds.queries])
    res = {}
    for late in (True, False):
        chunked = enc.chunk_embed(texts, strategy="fixed", chunk_size=64, late=late, batch_size=64)
        run = _chunk_run(enc, ds, doc_ids, chunked, qv)
        res["late" if late else "naive"] = evaluate(ds.qrels, run, metrics=("ndcg@10",))["ndcg@10"]
    print("SciFact test nDCG@10, 64-token chunks, shared int8 MiniLM:", res)
    assert res["late"] > res["naive"], res


def test_late_chunking_groups_do_not_change_results(tiny_enc, monkeypatch):
    docs = [t for t in TEXTS if t] * 3
    ref = tiny_enc.chunk_embed(docs, strategy="fixed", chunk_size=3)
    monkeypatch.setattr(C, "HIDDEN_BUDGET", 1)  # one document per group
    got = tiny_enc.chunk_embed(docs, strategy="fixed", chunk_size=3, batch_size=2)
    for (a, sa), (b, sb) in zip(got, ref):
        assert sa == sb
        np.testing.assert_allclose(a, b, atol=1e-5)
