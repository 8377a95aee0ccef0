"""densparse.Reranker: ONNX cross-encoders exported by `densparse export --kind reranker`,
against PyTorch.

Tiny BERT and XLM-RoBERTa sequence classifiers (one label, random seeded weights) and their
tokenizers are built here; their exports are compared with the transformers forward pass on
the Hugging Face tokenizer's ``truncation="only_second"`` inputs and with
sentence-transformers' ``CrossEncoder`` (1e-4). The shared MiniLM, given a seeded random
classification head, is the real-size check (skipped without ../shared).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    SHARED,
    TINY_MAX_POS,
    WORDS,
    bert_tokenizer,
    fill_hub_cache,
    need,
    read_jsonl,
    tiny_bert_config,
    tiny_xlmr_config,
    xlmr_tokenizer,
)

torch = pytest.importorskip("torch", reason="reranker export tests need torch (export extra)")
transformers = pytest.importorskip("transformers", reason="reranker tests need transformers")
pytest.importorskip("onnx", reason="export tests need onnx (the export extra)")

import densparse  # noqa: E402
from densparse import Collection, Encoder, Reranker  # noqa: E402
from densparse.cli import main  # noqa: E402
from densparse.export import export_model  # noqa: E402
from densparse.models.reranker import sigmoid  # noqa: E402

MAX_POS = TINY_MAX_POS
QUERIES = ["the first sentence about protein", "query about cells", "", "a"]
PASSAGES = [
    "we found high gene expression in mice cells, and the results show a long effect.",
    "model",
    "",
    "this is the second text with a few more words than the first text is",
    " ".join(["protein gene cells study results"] * 30),  # far over MAX_POS tokens
]
PAIRS = [(q, p) for q in QUERIES for p in PASSAGES]


def _scale_head(model) -> None:
    """Random heads give near-constant logits; spread them so orderings mean something."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "classifier" in name:
                p.mul_(4.0)
            elif "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.2)


def make_bert_reranker(path: Path, seed: int = 0):
    path.mkdir(parents=True)
    vocab = bert_tokenizer(path)
    torch.manual_seed(seed)
    cfg = tiny_bert_config(len(vocab), num_labels=1, initializer_range=0.2)
    model = transformers.BertForSequenceClassification(cfg).eval()
    _scale_head(model)
    model.save_pretrained(str(path))
    transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(path / "tokenizer.json"),
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_max_length=MAX_POS,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    ).save_pretrained(str(path))
    return model


def make_xlmr_reranker(path: Path, seed: int = 1):
    path.mkdir(parents=True)
    vocab_size = xlmr_tokenizer(path)
    torch.manual_seed(seed)
    cfg = tiny_xlmr_config(vocab_size, num_labels=1, initializer_range=0.2)
    model = transformers.XLMRobertaForSequenceClassification(cfg).eval()
    _scale_head(model)
    model.save_pretrained(str(path))
    transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(path / "tokenizer.json"),
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=MAX_POS,
        model_input_names=["input_ids", "attention_mask"],
    ).save_pretrained(str(path))
    return model


def torch_scores(src: Path, model, pairs, max_length: int = MAX_POS) -> np.ndarray:
    """The transformers forward on the HF tokenizer's only_second inputs, one pair at a time."""
    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    out = []
    for q, p in pairs:
        # lists: a lone "" second text would be taken as no pair at all
        enc = tok([q], [p], truncation="only_second", max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            out.append(float(model(**enc).logits[0, 0]))
    return np.asarray(out)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rerankers")


@pytest.fixture(scope="module", params=["bert", "xlmr"])
def tiny(request, work):
    """(source dir, torch model, exported dir) for a tiny BERT / XLM-R cross-encoder."""
    src = work / f"{request.param}-src"
    if not src.exists():
        make = make_bert_reranker if request.param == "bert" else make_xlmr_reranker
        make(src)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(src)).eval()
    out = work / f"{request.param}-onnx"
    if not out.exists():
        report = export_model(src, out)  # kind detected from the architectures
        assert report.kind == "reranker" and report.outputs == ["logits"]
        assert report.max_abs_diff["logits"] < 1e-4
    return src, model, out


# ---------------------------------------------------------------------------- faithfulness
def test_tokenization_equals_hf_only_second(tiny):
    src, _, out = tiny
    rr = Reranker.from_pretrained(out)
    hf = transformers.AutoTokenizer.from_pretrained(str(src))
    for (q, p), (ids, types) in zip(PAIRS, rr.tokenize_pairs(PAIRS)):
        enc = hf([q], [p], truncation="only_second", max_length=MAX_POS)
        assert ids == enc["input_ids"][0], (q, p)
        if "token_type_ids" in enc:
            assert types == enc["token_type_ids"][0]
        assert len(ids) <= MAX_POS


def test_scores_match_torch_forward(tiny):
    src, model, out = tiny
    rr = Reranker.from_pretrained(out, provider="cpu")
    got = rr.score_pairs(PAIRS)
    ref = torch_scores(src, model, PAIRS)
    assert got.dtype == np.float32 and got.shape == (len(PAIRS),)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert np.ptp(ref) > 0.5  # the scores really differ between pairs
    np.testing.assert_allclose(rr.score_pairs(PAIRS, normalize=True), sigmoid(ref), atol=1e-4)


def test_scores_match_sentence_transformers_cross_encoder(tiny):
    st = pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
    src, _, out = tiny
    ce = st.CrossEncoder(str(src), device="cpu", max_length=MAX_POS)
    ok = [(q, p) for q, p in PAIRS if len(p) < 100]  # CrossEncoder truncates longest_first
    ref_sig = ce.predict(ok, batch_size=3)  # one label: sigmoid by default
    ref_raw = ce.predict(ok, batch_size=3, activation_fn=torch.nn.Identity())
    rr = Reranker.from_pretrained(out)
    np.testing.assert_allclose(rr.score_pairs(ok), ref_raw, atol=1e-4)
    np.testing.assert_allclose(rr.score_pairs(ok, normalize=True), ref_sig, atol=1e-4)


def test_batched_equals_one_by_one(tiny):
    _, _, out = tiny
    rr = Reranker.from_pretrained(out)
    batched = rr.score_pairs(PAIRS, batch_size=32)
    single = np.array([rr.score_pairs([p])[0] for p in PAIRS])
    small_budget = rr.score_pairs(PAIRS, batch_size=3, max_tokens_per_batch=50)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(small_budget, single, atol=1e-5)


def test_score_and_rerank(tiny):
    _, _, out = tiny
    rr = Reranker.from_pretrained(out)
    q = QUERIES[0]
    scores = rr.score(q, PASSAGES)
    np.testing.assert_array_equal(scores, rr.score_pairs([(q, p) for p in PASSAGES]))
    ranked = rr.rerank(q, PASSAGES)
    assert [i for i, _ in ranked] == sorted(range(len(PASSAGES)), key=lambda i: -scores[i])
    assert [s for _, s in ranked] == sorted(scores.tolist(), reverse=True)
    assert rr.rerank(q, PASSAGES, top_k=2) == ranked[:2]
    assert rr.rerank(q, PASSAGES, top_k=100) == ranked
    assert rr.rerank(q, []) == [] and rr.score(q, []).shape == (0,)
    top = rr.rerank(q, PASSAGES, top_k=1, normalize=True)
    assert 0 < top[0][1] < 1


def test_ties_keep_input_order(tiny):
    _, _, out = tiny
    rr = Reranker.from_pretrained(out)
    assert [i for i, _ in rr.rerank("model", ["same text"] * 4)] == [0, 1, 2, 3]


def test_long_query_keeps_room_for_the_passage(tiny):
    _, _, out = tiny
    rr = Reranker.from_pretrained(out)
    long_q = " ".join(WORDS * 3)
    ((ids, _types),) = rr.tokenize_pairs([(long_q, "protein gene")])
    assert len(ids) <= MAX_POS
    n_special = rr.tokenizer.num_special_tokens_to_add(True)
    q_tokens = int((MAX_POS - n_special) * 0.75)
    # the query keeps 3/4 of the room; the passage's two tokens follow it
    assert len(ids) == q_tokens + 2 + n_special
    assert np.isfinite(rr.score(long_q, ["protein gene", PASSAGES[-1]])).all()
    # a shorter max_length per call
    ((ids8, _),) = rr.tokenize_pairs([(long_q, "protein gene")], max_length=16)
    assert len(ids8) == int((16 - n_special) * 0.75) + 2 + n_special


def test_threads_give_the_same_scores(tiny):
    _, _, out = tiny
    rr = Reranker.from_pretrained(out, threads=1)
    ref = rr.score_pairs(PAIRS)
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = rr.score_pairs(PAIRS, batch_size=i + 1)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, ref, atol=1e-5)


def test_int8_fp16_and_optimized_exports(tiny, work):
    src, model, _ = tiny
    name = src.name
    ref = torch_scores(src, model, PAIRS)
    for flag in ("int8", "fp16", "optimize"):
        dst = work / f"{name}-{flag}"
        if not dst.exists():
            export_model(src, dst, kind="reranker", **{flag: True})
        got = Reranker.from_pretrained(dst).score_pairs(PAIRS)
        meta = json.loads((dst / "densparse.json").read_text())
        assert meta["precision"] == ("fp32" if flag == "optimize" else flag)
        if flag == "optimize":  # fused attention, same numbers
            assert meta["optimized"]
            np.testing.assert_allclose(got, ref, atol=1e-4)
        elif flag == "fp16":
            np.testing.assert_allclose(got, ref, atol=2e-2 * max(1, np.abs(ref).max()))
        else:  # a 32-wide random model quantises coarsely; MiniLM is held tighter below
            assert np.corrcoef(got, ref)[0, 1] > 0.8


def test_hub_repo_id_from_the_local_cache(tiny, tmp_path):
    _, _, out = tiny
    cache = tmp_path / "hub"
    fill_hub_cache(cache, "someorg/tiny-reranker", out)
    rr = Reranker.from_pretrained(
        "someorg/tiny-reranker", cache_dir=cache, local_files_only=True, provider="cpu"
    )
    direct = Reranker.from_pretrained(out, provider="cpu")
    np.testing.assert_array_equal(rr.score_pairs(PAIRS), direct.score_pairs(PAIRS))
    with pytest.raises(ValueError, match="local Hugging Face cache"):
        Reranker.from_pretrained("someorg/absent", cache_dir=cache, local_files_only=True)


# ---------------------------------------------------------------------------- errors
def test_bad_inputs(tiny):
    _, _, out = tiny
    rr = Reranker.from_pretrained(out)
    with pytest.raises(TypeError, match="pairs"):
        rr.score_pairs("query")
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        rr.score_pairs([("only one",)])
    with pytest.raises(TypeError, match=r"pairs\[1\]"):
        rr.score_pairs([("q", "p"), ("q", 3)])
    with pytest.raises(TypeError, match="query"):
        rr.score(None, ["p"])
    with pytest.raises(TypeError, match="passages"):
        rr.score("q", "one passage")
    with pytest.raises(ValueError, match="top_k"):
        rr.rerank("q", ["p"], top_k=0)
    with pytest.raises(ValueError, match="max_length"):
        rr.score("q", ["p"], max_length=10_000)
    with pytest.raises(ValueError, match="max_length"):
        Reranker.from_pretrained(out, max_length=2)
    with pytest.raises(ValueError, match="batch_size"):
        rr.score("q", ["p"], batch_size=0)


def test_wrong_model_kinds_are_refused(tiny, work, tmp_path):
    src, _, out = tiny
    with pytest.raises(ValueError, match="Reranker"):
        Encoder.from_pretrained(out)
    # an embedding model is no reranker
    emb_src = tmp_path / "emb"
    emb_src.mkdir()
    vocab = bert_tokenizer(emb_src)
    cfg = tiny_bert_config(len(vocab), num_hidden_layers=1)
    transformers.BertModel(cfg).save_pretrained(str(emb_src))
    with pytest.raises(ValueError, match="not a sequence classifier"):
        Reranker.from_pretrained(emb_src)
    with pytest.raises(ValueError, match="sequence classifier"):
        export_model(emb_src, tmp_path / "x", kind="reranker")
    assert not (tmp_path / "x").exists()
    emb = export_model(emb_src, tmp_path / "emb-onnx", kind="bge").out_dir
    (emb / "densparse.json").unlink()
    cfg_path = emb / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "architectures": []}))
    with pytest.raises(ValueError, match=r"\[batch, 1\]"):
        Reranker.from_pretrained(emb)  # the graph gives last_hidden_state, not logits
    # three labels (an NLI cross-encoder) is not a reranker
    three = tmp_path / "three"
    three.mkdir()
    c = json.loads((out / "config.json").read_text())
    c["id2label"] = {"0": "a", "1": "b", "2": "c"}
    (three / "config.json").write_text(json.dumps(c))
    with pytest.raises(ValueError, match="3 labels"):
        Reranker.from_pretrained(three)
    # a two-label classifier (transformers 5 may write no id2label): refused by the exporter
    two = tmp_path / "two-src"
    two.mkdir()
    bert_tokenizer(two)
    cfg2 = transformers.BertConfig(**{**cfg.to_dict(), "num_labels": 2})
    transformers.BertForSequenceClassification(cfg2).save_pretrained(str(two))
    with pytest.raises(ValueError, match="2 labels"):
        export_model(two, tmp_path / "two-onnx", kind="reranker")
    assert not (tmp_path / "two-onnx").exists()
    with pytest.raises(ValueError, match=r"no ONNX graph|tokenizer\.json"):
        Reranker.from_pretrained(src)  # the torch checkpoint, not exported


# ---------------------------------------------------------------------------- Collection
class CountingReranker:
    """A deterministic stand-in with Reranker's score_pairs: the passage's length."""

    def __init__(self):
        self.calls = []

    def score_pairs(self, pairs, **kw):
        self.calls.append(list(pairs))
        return np.array([float(len(p)) for _, p in pairs], dtype=np.float32)


DOCS = [
    {"id": "d0", "text": "protein gene study", "metadata": {"y": 1}},
    {"id": "d1", "text": "protein protein protein gene cells in mice", "metadata": {"y": 2}},
    {"id": "d2", "text": "protein", "metadata": {"y": 1}},
    {"id": "d3", "text": "gene", "views": ["protein gene with a much, much longer view text here"]},
    {"id": "d4", "text": "unrelated words only", "metadata": {"y": 1}},
]


def test_collection_search_reranks_fused_candidates(tmp_path):
    col = Collection.create(tmp_path / "kb", dense_dim=None)
    col.add(DOCS)
    plain = col.search(text="protein gene", k=10)
    rr = CountingReranker()
    hits = col.search(text="protein gene", k=2, rerank=rr, rerank_candidates=10)
    # every fused candidate's texts (text and views) were scored, with the query
    scored = {p for call in rr.calls for _, p in call}
    assert {h.text for h in plain} <= scored
    assert "protein gene with a much, much longer view text here" in scored
    assert all(q == "protein gene" for call in rr.calls for q, _ in call)
    # best by the reranker: d3 by its long view, then d1
    assert [h.id for h in hits] == ["d3", "d1"]
    by_id = {h.id: h for h in plain}
    for h in hits:
        assert (
            h.score
            == h.scores["rerank"]
            == len(max([h.text, *col.get(h.id).get("views", [])], key=len))
        )
        assert h.scores["bm25"] == pytest.approx(by_id[h.id].scores["bm25"])
        assert h.scores["fused"] == pytest.approx(by_id[h.id].score)
    # candidates limit what is re-scored
    rr2 = CountingReranker()
    col.search(text="protein gene", k=1, rerank=rr2, rerank_candidates=2)
    assert len({p for call in rr2.calls for _, p in call}) <= 3  # 2 docs, one with a view
    # filters apply before reranking
    hits = col.search(text="protein gene", k=5, rerank=CountingReranker(), filter={"y": 1})
    assert {h.id for h in hits} <= {"d0", "d2", "d4"}
    col.close()


def test_collection_rerank_errors(tmp_path):
    col = Collection.create(tmp_path / "kb", dense_dim=2)
    col.add([{"id": "a", "text": "protein", "dense": [1.0, 0.0]}])
    with pytest.raises(ValueError, match="text="):
        col.search(dense=[1.0, 0.0], rerank=CountingReranker())
    with pytest.raises(ValueError, match="rerank_candidates"):
        col.search(text="protein", rerank=CountingReranker(), rerank_candidates=0)
    with pytest.raises(TypeError, match="Reranker"):
        col.search(text="protein", rerank="model-dir/")
    col.close()


def test_collection_with_a_real_reranker(tiny, tmp_path):
    _, _, out = tiny
    rr = Reranker.from_pretrained(out)
    col = Collection.create(tmp_path / "kb", dense_dim=None)
    col.add([{"id": f"p{i}", "text": p} for i, p in enumerate(PASSAGES) if p])
    q = "protein gene cells"
    fused = col.search(text=q, k=10)
    hits = col.search(text=q, k=3, rerank=rr, rerank_candidates=10)
    want = rr.rerank(q, [h.text for h in fused], top_k=3)
    assert [h.id for h in hits] == [fused[i].id for i, _ in want]
    np.testing.assert_allclose([h.scores["rerank"] for h in hits], [s for _, s in want], atol=1e-6)
    col.close()


# ---------------------------------------------------------------------------- CLI
def test_cli_export_search_and_eval_with_rerank(tiny, tmp_path, capsys):
    src = tiny[0]
    dst = tmp_path / "cli-onnx"
    assert main(["export", str(src), str(dst), "--kind", "reranker", "-q"]) == 0
    assert "exported reranker" in capsys.readouterr().out
    corpus = tmp_path / "corpus.jsonl"
    docs = [{"_id": f"d{i}", "title": "", "text": p} for i, p in enumerate(PASSAGES) if p]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    idx = tmp_path / "idx"
    assert main(["index", str(corpus), "-o", str(idx), "--language", "en", "-q"]) == 0
    capsys.readouterr()
    q = "protein gene cells"
    assert main(["search", str(idx), q, "-k", "2", "--rerank", str(dst)]) == 0
    lines = [
        ln for ln in capsys.readouterr().out.splitlines() if ln.strip()[:2].rstrip(".").isdigit()
    ]
    rr = Reranker.from_pretrained(dst)
    bm25_ids = [d["_id"] for d in docs]
    texts = [d["text"] for d in docs]
    from densparse import BM25, Analyzer

    bm = BM25(analyzer=Analyzer(language="en"))
    bm.index(texts)
    ids, scores = bm.search(q, k=len(texts))
    cands = [int(i) for i, s in zip(ids, scores) if s > 0]
    want = rr.rerank(q, [texts[i] for i in cands], top_k=2)
    assert [ln.split()[2] for ln in lines] == [bm25_ids[cands[j]] for j, _ in want]
    # eval --rerank: a qrels file, reranked top-k evaluated
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": "q1", "text": q}) + "\n")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text(f"query-id\tcorpus-id\tscore\nq1\t{bm25_ids[cands[want[0][0]]]}\t1\n")
    run = tmp_path / "run.trec"
    args = ["eval", str(idx), "--queries", str(queries), "--qrels", str(qrels), "-k", "5"]
    assert main([*args, "--rerank", str(dst), "--run", str(run), "--metrics", "mrr@10"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[printed.index("mrr@10") + 1] == "1.0000"
    first = run.read_text().splitlines()[0].split()
    assert first[2] == bm25_ids[cands[want[0][0]]] and first[3] == "1"


def test_cli_search_rerank_on_a_missing_model(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d", "title": "", "text": "protein"}) + "\n")
    idx = tmp_path / "idx"
    assert main(["index", str(corpus), "-o", str(idx), "-q"]) == 0
    assert main(["search", str(idx), "protein", "--rerank", str(tmp_path / "nope")]) == 2
    assert "error" in capsys.readouterr().err


# ---------------------------------------------------------------------------- real size
MINILM = SHARED / "models" / "minilm-l6-fp32"


def test_minilm_cross_encoder_matches_sentence_transformers(work):
    """The shared MiniLM with a seeded random head, as a real-size BERT cross-encoder."""
    st = pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
    need(MINILM)
    src = work / "minilm-ce"
    if not src.exists():
        torch.manual_seed(3)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(MINILM), num_labels=1
        )
        model.save_pretrained(str(src))
        transformers.AutoTokenizer.from_pretrained(str(MINILM)).save_pretrained(str(src))
    out = work / "minilm-ce-onnx"
    if not out.exists():
        export_model(src, out, kind="reranker")
    docs = read_jsonl(need(SHARED / "data" / "scifact" / "corpus.jsonl"))[:12]
    passages = [f"{d['title']} {d['text']}" for d in docs]
    pairs = [("does vitamin d reduce fracture risk", p) for p in passages]
    ce = st.CrossEncoder(str(src), device="cpu", max_length=256)
    ce.tokenizer.truncation_side = "right"
    rr = Reranker.from_pretrained(out, max_length=256)
    short = [(q, p[:400]) for q, p in pairs]  # within 256 tokens: same truncation for both
    ref = ce.predict(short, activation_fn=torch.nn.Identity())
    got = rr.score_pairs(short)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert densparse.Reranker is Reranker
    # int8 for CPUs: the same ranking signal
    q8 = work / "minilm-ce-int8"
    if not q8.exists():
        export_model(src, q8, kind="reranker", int8=True)
    got8 = Reranker.from_pretrained(q8, max_length=256).score_pairs(short)
    assert np.corrcoef(got8, got)[0, 1] > 0.95
